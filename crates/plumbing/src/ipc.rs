//! ipc-channel, made ready before a lesson forks.
//!
//! ipc-channel learns the system's socket send-buffer size on its first send, from a socket
//! it makes just then, and panics if it cannot make one (no file descriptor left, under a
//! low `ulimit -n`). [`ready`] makes it learn the size now, where running out is an error
//! like any other; children forked later inherit what it learnt.

use anyhow::Context;
use ipc_channel::ipc;

/// Make ipc-channel ready: afterwards its sends make no socket of their own.
pub fn ready() -> anyhow::Result<()> {
    let (tx, rx) = ipc::channel::<()>().context("create an ipc-channel")?;
    // Two descriptors, made and let go: the first send's own socketpair then has them.
    drop(ipc::channel::<()>().context("create an ipc-channel")?);
    tx.send(()).context("send on an ipc-channel")?;
    rx.recv().context("receive on an ipc-channel")?;
    Ok(())
}
