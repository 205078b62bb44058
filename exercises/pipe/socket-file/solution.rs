//! Exercise pipe/socket-file: the parent listens on a Unix socket with a name in the file
//! system, the child connects and sends a greeting, and the parent prints it. It works, but
//! it leaves a file behind. Leave nothing, even when something fails half-way.

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;

use anyhow::Context;
use multiproc::proc::{fork_child, join_ok};
use plumbing::{Args, Exercise};

const EXERCISE: Exercise = Exercise {
    lesson: "pipe",
    name: "socket-file",
    about: "a child connects to the parent's Unix socket, named in the file system, and greets it",
};

fn main() -> std::process::ExitCode {
    EXERCISE.run(exercise)
}

// ANCHOR: exercise
/// A file that is removed when this value is dropped: on every way out, an error included.
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn exercise(_args: &Args) -> anyhow::Result<()> {
    let path = std::env::temp_dir().join(format!("greeting-{}.sock", std::process::id()));
    // bind() makes a file at `path`: that is how another process finds the socket.
    let listener = UnixListener::bind(&path).with_context(|| format!("bind {}", path.display()))?;
    let _file = RemoveOnDrop(path.clone()); // dropped last: after the child is joined
    let child = fork_child(|| -> anyhow::Result<()> {
        let mut stream = UnixStream::connect(&path).context("connect to the parent")?;
        stream.write_all(b"hello from the child").context("send the greeting")?;
        Ok(())
    })?;
    let (mut stream, _) = listener.accept().context("accept the child's connection")?;
    let mut greeting = String::new();
    stream.read_to_string(&mut greeting).context("read the greeting")?;
    println!("the parent got: {greeting}");
    join_ok(child)?;
    Ok(())
}
// ANCHOR_END: exercise
