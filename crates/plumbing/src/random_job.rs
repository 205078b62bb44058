//! The job the value-array lesson asks about, and the queue lesson asks again: 4 workers
//! each make 1,000,000 random f64, and the parent must end up able to read them all. The
//! lessons measure ways of getting the numbers to the parent; the numbers, the floor and
//! the shared-memory way are here, once, so that both tables measure the same work. The
//! value-array chapter includes this file.
//!
//! The floor times the work alone. Every other case times the whole job, from nothing to the
//! numbers in memory the parent can read: starting the workers, making the numbers, getting
//! them to the parent, joining. A case returns its time and the sum of what the parent got,
//! taken after the clock stops.

use std::time::{Duration, Instant};

use anyhow::ensure;
use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};

use multiproc::shm::Array;

/// Worker processes in every multi-process case.
pub const WORKERS: usize = 4;

/// The name of the floor case, which every other case is compared with.
pub const FLOOR: &str = "private Vec, 1 process (floor)";

// ANCHOR: numbers
/// One worker's share of the job: `count` random numbers from a generator seeded with the
/// worker's number. Making them is the work; the cases differ in how they reach the parent.
pub fn numbers(worker: usize, count: usize) -> impl Iterator<Item = f64> {
    let mut rng = SmallRng::seed_from_u64(worker as u64);
    (0..count).map(move |_| rng.random::<f64>())
}
// ANCHOR_END: numbers

// ANCHOR: floor
/// The floor: the work alone. The Vec is kept from run to run, so its pages are mapped
/// already and no time goes to the kernel: what is left is making the numbers.
pub fn private_vec(all: &mut Vec<f64>, per_worker: usize) -> anyhow::Result<(Duration, f64)> {
    all.clear();
    let start = Instant::now();
    for worker in 0..WORKERS {
        all.extend(numbers(worker, per_worker));
    }
    let time = start.elapsed();
    Ok((time, all.iter().sum()))
}
// ANCHOR_END: floor

// ANCHOR: array_unlocked
/// Shared memory with lock=False: each worker writes its own part, the parent reads them all.
pub fn array_unlocked(per_worker: usize) -> anyhow::Result<(Duration, f64)> {
    let start = Instant::now();
    let mut array = Array::<f64>::new(WORKERS * per_worker)?;
    array.fork_chunks(per_worker, |worker, part| {
        for (x, number) in part.iter_mut().zip(numbers(worker, per_worker)) {
            *x = number;
        }
        0
    })?;
    let time = start.elapsed();
    let sum = array.lock()?.iter().sum();
    Ok((time, sum))
}
// ANCHOR_END: array_unlocked

/// A case's time, once the sum of what the parent got is checked against the floor's:
/// every case makes the same numbers, so the parent must end up with the same sum.
pub fn checked(run: anyhow::Result<(Duration, f64)>, expected: f64) -> anyhow::Result<Duration> {
    let (time, sum) = run?;
    ensure!(sum == expected, "the parent got other numbers: sum {sum}, expected {expected}");
    Ok(time)
}
