// fork_child_closing closes the parent's end in the child: the child's work cannot use it.
use std::io::Write;
use std::os::unix::net::UnixStream;

use multiproc::proc::fork_child_closing;

fn main() -> anyhow::Result<()> {
    let (mut parent_end, _child_end) = UnixStream::pair()?;
    fork_child_closing([&mut parent_end], || parent_end.write_all(b"hello").is_ok() as i32)?;
    Ok(())
}
