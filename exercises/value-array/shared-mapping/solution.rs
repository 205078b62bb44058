//! Exercise value-array/shared-mapping: four workers each compute a number and write it into
//! memory made before the fork, one slot each; the parent then prints what they wrote. It
//! prints zeros. Make the workers' numbers reach the parent.

use multiproc::shm::Array;
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
    // Shared memory (MAP_SHARED), one slot per worker: what a worker writes, the parent sees.
    let mut results = Array::<u64>::new(WORKERS)?;
    // Each worker gets its own slot, `&mut`, and no lock is needed (lock=False).
    results.fork_chunks(1, |w, slot| {
        slot[0] = square(w);
        0
    })?;
    let results = results.lock()?;
    for (w, value) in results.iter().enumerate() {
        println!("worker {w} wrote {value}");
    }
    Ok(())
}
// ANCHOR_END: exercise
