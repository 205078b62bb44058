//! Exercise value-array/lost-updates: four workers each add 1 to a shared counter 10,000
//! times, and the count should end at 40,000. It comes out short. Make every update count.

use anyhow::ensure;
use multiproc::proc::Children;
use multiproc::shm::Value;
use plumbing::{Args, Exercise};

const EXERCISE: Exercise = Exercise {
    lesson: "value-array",
    name: "lost-updates",
    about: "four workers add 1 to a shared counter 10,000 times each",
};

const WORKERS: i64 = 4;
const ADDS: i64 = 10_000;

fn main() -> std::process::ExitCode {
    EXERCISE.run(exercise)
}

// ANCHOR: exercise
fn exercise(_args: &Args) -> anyhow::Result<()> {
    let counter = Value::new(0i64)?;
    let mut workers = Children::new("worker");
    for _ in 0..WORKERS {
        workers.fork(|| -> anyhow::Result<()> {
            for _ in 0..ADDS {
                // Python: `counter.value += 1`, without `with counter.get_lock():`
                let seen = *counter.lock()?;
                *counter.lock()? = seen + 1;
            }
            Ok(())
        })?;
    }
    workers.join_all()?;
    let count = *counter.lock()?;
    println!("final count: {count} (expected {})", WORKERS * ADDS);
    ensure!(count == WORKERS * ADDS, "lost {} updates", WORKERS * ADDS - count);
    Ok(())
}
// ANCHOR_END: exercise
