//! Exercise queue/one-sentinel: the parent puts 10 items into a queue for two consumers,
//! then a sentinel to tell them to stop; each consumer reports how many it got on a second
//! queue. The program never ends. Make both consumers stop.

use anyhow::Context;
use multiproc::proc::Children;
use multiproc::queue::Queue;
use plumbing::{Args, Exercise};

const EXERCISE: Exercise = Exercise {
    lesson: "queue",
    name: "one-sentinel",
    about: "two consumers get items from a queue until a sentinel",
};

const CONSUMERS: usize = 2;
const ITEMS: u32 = 10;
/// What tells a consumer to stop: an empty message.
const STOP: &[u8] = b"";

fn main() -> std::process::ExitCode {
    EXERCISE.run(exercise)
}

// ANCHOR: exercise
fn exercise(_args: &Args) -> anyhow::Result<()> {
    let (items, reports) = (Queue::new()?, Queue::new()?);
    let mut consumers = Children::new("consumer");
    for _ in 0..CONSUMERS {
        consumers.fork(|| -> anyhow::Result<()> {
            let mut got: u32 = 0;
            while items.get()?.context("the queue ended")? != STOP {
                got += 1;
            }
            reports.put(&got.to_le_bytes())
        })?;
    }
    for i in 0..ITEMS {
        items.put(&i.to_le_bytes())?;
    }
    items.put(STOP)?;
    let mut total = 0;
    for _ in 0..CONSUMERS {
        let report = reports.get()?.context("a consumer ended without a report")?;
        total += u32::from_le_bytes(report[..].try_into()?);
    }
    consumers.join_all()?;
    println!("the consumers got {total} items in all");
    Ok(())
}
// ANCHOR_END: exercise
