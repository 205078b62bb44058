//! Exercise value-array/dead-worker: four workers add to a shared counter under its lock,
//! and the parent joins them one by one, as Python's `for p in workers: p.join()` does. The
//! check kills worker 1 early on, while it holds the lock. Then this program never ends.
//! Make it end at once, with an error that names the worker that died.

use std::sync::atomic::AtomicU32;

use multiproc::lock::meet;
use multiproc::proc::Children;
use multiproc::shm::{Shared, Value};
use plumbing::{Args, Exercise, fault};

const EXERCISE: Exercise = Exercise {
    lesson: "value-array",
    name: "dead-worker",
    about: "four workers add to a shared counter under its lock, and one of them may die",
};

const WORKERS: usize = 4;
const ADDS: i64 = 100_000;

fn main() -> std::process::ExitCode {
    EXERCISE.run(exercise)
}

// ANCHOR: exercise
fn exercise(_args: &Args) -> anyhow::Result<()> {
    let counter = Value::new(0i64)?;
    let started = Shared::<AtomicU32>::new()?; // a meeting point: all add at the same time
    // A set named "worker": worker 0 to worker 3 in every message about them.
    let mut workers = Children::new("worker");
    for worker in 0..WORKERS {
        workers.fork(|| -> anyhow::Result<()> {
            meet(&started, WORKERS as u32);
            for i in 0..ADDS {
                let mut count = counter.lock()?;
                if i == 1 {
                    fault::inject(worker); // the check kills worker 1 here, holding the lock
                }
                *count += 1;
            }
            Ok(())
        })?;
    }
    // Waits for whichever ends first; if one failed, kills the others and says which.
    workers.join_all()?;
    println!("final count: {}", *counter.lock()?);
    Ok(())
}
// ANCHOR_END: exercise
