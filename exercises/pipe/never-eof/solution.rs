//! Exercise pipe/never-eof: the parent writes three words into a pipe and closes its end;
//! the child reads words until EOF and says how many it read. The program never ends. Make
//! the child see EOF.

use std::io::Write;

use anyhow::Context;
use multiproc::proc::{fork_child_closing, join_ok};
use multiproc::wire::{recv, send};
use plumbing::{Args, Exercise};

const EXERCISE: Exercise = Exercise {
    lesson: "pipe",
    name: "never-eof",
    about: "the parent writes three words into a pipe; the child reads them until EOF",
};

fn main() -> std::process::ExitCode {
    EXERCISE.run(exercise)
}

// ANCHOR: exercise
fn exercise(_args: &Args) -> anyhow::Result<()> {
    let (mut reader, mut writer) = std::io::pipe().context("create a pipe")?;
    // The child closes its copy of the write end first: a reader sees EOF only once every
    // copy of the write end is closed, its own included.
    let child = fork_child_closing([&mut writer], move || -> anyhow::Result<()> {
        let mut words = 0;
        while let Some(word) = recv(&mut reader).context("read a word")? {
            println!("child read: {}", String::from_utf8_lossy(&word));
            words += 1;
        }
        println!("child: EOF after {words} words");
        Ok(())
    })?;
    for word in ["apple", "banana", "cherry"] {
        send(&mut writer, word.as_bytes()).context("send a word")?;
    }
    writer.flush()?;
    drop(writer); // the parent's write end is closed: the child should now see EOF
    join_ok(child)?;
    println!("parent: joined the child");
    Ok(())
}
// ANCHOR_END: exercise
