//! Exercise when-slower/serial-is-faster: 20,000 numbers to square and add up. Two workers
//! get them one at a time through a queue and send each square back. The sum is right, but
//! the run is far slower than it should be. Make it fast.

use anyhow::Context;
use multiproc::proc::Children;
use multiproc::queue::Queue;
use plumbing::{Args, Exercise};

const EXERCISE: Exercise = Exercise {
    lesson: "when-slower",
    name: "serial-is-faster",
    about: "20,000 numbers to square and add up",
};

const ITEMS: u64 = 20_000;
const WORKERS: usize = 2;
/// What tells a worker to stop.
const STOP: &[u8] = b"";

fn main() -> std::process::ExitCode {
    EXERCISE.run(exercise)
}

// ANCHOR: exercise
fn exercise(_args: &Args) -> anyhow::Result<()> {
    let (tasks, mut results) = (Queue::new()?, Queue::new()?);
    let mut workers = Children::new("worker");
    for _ in 0..WORKERS {
        workers.fork(|| -> anyhow::Result<()> {
            while let Some(task) = tasks.get()?.filter(|t| !t.is_empty()) {
                let x = u64::from_le_bytes(task[..].try_into()?);
                results.put(&(x * x).to_le_bytes())?;
            }
            Ok(())
        })?;
    }
    results.close(); // the parent puts no results
    let mut sum = 0u64;
    for x in 0..ITEMS {
        tasks.put(&x.to_le_bytes())?;
        let square = results.get()?.context("a worker ended early")?;
        sum += u64::from_le_bytes(square[..].try_into()?);
    }
    for _ in 0..WORKERS {
        tasks.put(STOP)?;
    }
    workers.join_all()?;
    println!("the sum of {ITEMS} squares: {sum}");
    Ok(())
}
// ANCHOR_END: exercise
