//! Exercise queue/join-before-get: a producer puts 20 messages of 16 KiB into a queue, and
//! the parent, as in Python's docs' warning, joins the producer before it gets them. The
//! program never ends. Make it end, getting every message.

use anyhow::Context;
use multiproc::proc::{fork_child, join_ok};
use multiproc::queue::Queue;
use plumbing::{Args, Exercise};

const EXERCISE: Exercise = Exercise {
    lesson: "queue",
    name: "join-before-get",
    about: "a producer puts 20 big messages into a queue; the parent gets them",
};

const MESSAGES: usize = 20;
const SIZE: usize = 16 * 1024;

fn main() -> std::process::ExitCode {
    EXERCISE.run(exercise)
}

// ANCHOR: exercise
fn exercise(_args: &Args) -> anyhow::Result<()> {
    let queue = Queue::new()?;
    let producer = fork_child(|| -> anyhow::Result<()> {
        for i in 0..MESSAGES {
            queue.put(&vec![i as u8; SIZE])?;
        }
        Ok(())
    })?;
    join_ok(producer)?; // Python: p.join()
    let mut bytes = 0;
    for _ in 0..MESSAGES {
        bytes += queue.get()?.context("the queue ended early")?.len();
    }
    println!("got {MESSAGES} messages, {bytes} bytes");
    Ok(())
}
// ANCHOR_END: exercise
