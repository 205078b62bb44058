//! Exercise pipe/framing: the child sends two messages through a pipe, "hello" and "hey",
//! and the parent should receive two messages. It receives one, "hellohey": a pipe carries
//! bytes, not messages. Complete `send_message` and `recv_message` so that each message
//! arrives whole and alone.

use std::io::{Read, Write};

use anyhow::Context;
use multiproc::proc::{fork_child_closing, join_ok};
use plumbing::{Args, Exercise};

const EXERCISE: Exercise = Exercise {
    lesson: "pipe",
    name: "framing",
    about: "the child sends two messages through a pipe; the parent receives them",
};

fn main() -> std::process::ExitCode {
    EXERCISE.run(exercise)
}

// ANCHOR: exercise
/// Send one message.
fn send_message(to: &mut impl Write, message: &[u8]) -> std::io::Result<()> {
    to.write_all(message)
}

/// Receive one message; `None` at EOF.
fn recv_message(from: &mut impl Read) -> std::io::Result<Option<Vec<u8>>> {
    let mut buffer = vec![0u8; 4096];
    let n = from.read(&mut buffer)?;
    buffer.truncate(n);
    Ok((n > 0).then_some(buffer))
}
// ANCHOR_END: exercise

fn exercise(_args: &Args) -> anyhow::Result<()> {
    let (mut reader, writer) = std::io::pipe().context("create a pipe")?;
    let child = fork_child_closing([&mut reader], move || -> anyhow::Result<()> {
        let mut writer = writer;
        send_message(&mut writer, b"hello").context("send")?;
        send_message(&mut writer, b"hey").context("send")?;
        Ok(())
    })?;
    // Join first: both messages are in the pipe, together, before the parent reads.
    join_ok(child)?;
    let mut count = 0;
    while let Some(message) = recv_message(&mut reader).context("receive")? {
        println!("message: {}", String::from_utf8_lossy(&message));
        count += 1;
    }
    println!("EOF after {count} messages");
    Ok(())
}
