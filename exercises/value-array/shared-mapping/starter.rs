//! Exercise value-array/shared-mapping: four workers each compute a number and write it into
//! memory made before the fork, one slot each; the parent then prints what they wrote. It
//! prints zeros. Make the workers' numbers reach the parent.

use anyhow::Context;
use memmap2::MmapMut;
use multiproc::proc::Children;
use plumbing::{Args, Exercise};

const EXERCISE: Exercise = Exercise {
    lesson: "value-array",
    name: "shared-mapping",
    about: "four workers write a number each into memory made before the fork",
};

const WORKERS: usize = 4;

/// What worker `w` computes.
fn square(w: usize) -> u64 {
    let n = (w + 1) as u64 * 1000;
    n * n
}

fn main() -> std::process::ExitCode {
    EXERCISE.run(exercise)
}

// ANCHOR: exercise
fn exercise(_args: &Args) -> anyhow::Result<()> {
    // One 8-byte slot per worker, made before the fork so that every worker has it.
    let mut results = MmapMut::map_anon(WORKERS * 8).context("map the results")?;
    let mut workers = Children::new("worker");
    for w in 0..WORKERS {
        workers.fork(|| {
            results[w * 8..w * 8 + 8].copy_from_slice(&square(w).to_le_bytes());
            0
        })?;
    }
    workers.join_all()?;
    for w in 0..WORKERS {
        let bytes: [u8; 8] = results[w * 8..w * 8 + 8].try_into()?;
        println!("worker {w} wrote {}", u64::from_le_bytes(bytes));
    }
    Ok(())
}
// ANCHOR_END: exercise
