//! Exercise when-slower/too-many-workers: 100 small items, each a few microseconds of work,
//! and the program starts one process per item. The results are right, but the run is far
//! slower than it should be on a machine with two CPUs. Make it fast, still in parallel.

use multiproc::shm::Array;
use plumbing::{Args, Exercise};

const EXERCISE: Exercise = Exercise {
    lesson: "when-slower",
    name: "too-many-workers",
    about: "100 small items of work, in parallel",
};

const ITEMS: usize = 100;

fn main() -> std::process::ExitCode {
    EXERCISE.run(exercise)
}

/// One item: a few microseconds of arithmetic.
fn work(item: usize) -> u64 {
    (0..5_000u64).fold(item as u64, |acc, x| acc.wrapping_mul(31).wrapping_add(x))
}

// ANCHOR: exercise
fn exercise(_args: &Args) -> anyhow::Result<()> {
    let mut results = Array::<u64>::new(ITEMS)?;
    // One process per item, each writing its own result.
    results.fork_chunks(1, |item, result| {
        result[0] = work(item);
        0
    })?;
    let results = results.lock()?;
    println!("{} results, checksum {}", results.len(), results.iter().fold(0u64, |a, r| a ^ r));
    Ok(())
}
// ANCHOR_END: exercise
