//! Exercise lock-race/atomic-add: four workers each add 1 to a counter in shared memory five
//! thousand times, with no lock: the counter is an atomic, so each load and each store is
//! indivisible. The count still comes out short. Make every addition count, still with no
//! lock.

use std::sync::atomic::AtomicI64;
use std::sync::atomic::Ordering::Relaxed;

use anyhow::ensure;
use multiproc::proc::Children;
use multiproc::shm::Shared;
use plumbing::{Args, Exercise};

const EXERCISE: Exercise = Exercise {
    lesson: "lock-race",
    name: "atomic-add",
    about: "four workers add to an atomic counter in shared memory, with no lock",
};

const WORKERS: i64 = 4;
const ADDS: i64 = 5_000;

fn main() -> std::process::ExitCode {
    EXERCISE.run(exercise)
}

// ANCHOR: exercise
/// Add 1 to `counter`.
fn add_one(counter: &AtomicI64) {
    let seen = counter.load(Relaxed);
    std::thread::yield_now(); // let others run here, as a preemption would
    counter.store(seen + 1, Relaxed);
}
// ANCHOR_END: exercise

fn exercise(_args: &Args) -> anyhow::Result<()> {
    let counter = Shared::<AtomicI64>::new()?;
    let mut workers = Children::new("worker");
    for _ in 0..WORKERS {
        workers.fork(|| {
            for _ in 0..ADDS {
                add_one(&counter);
            }
            0
        })?;
    }
    workers.join_all()?;
    let count = counter.load(Relaxed);
    println!("count: {count} (expected {})", WORKERS * ADDS);
    ensure!(count == WORKERS * ADDS, "lost {} additions", WORKERS * ADDS - count);
    Ok(())
}
