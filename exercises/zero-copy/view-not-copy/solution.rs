//! Exercise zero-copy/view-not-copy: four workers fill 32 MiB of f64 in shared memory, a
//! quarter each, and the parent finds the largest value. The answer is right, but the parent
//! first copies all 32 MiB into a Vec of its own. Find it in the shared memory itself: the
//! check counts the pages every process touches.

use multiproc::shm::Array;
use plumbing::{Args, Exercise};

const EXERCISE: Exercise = Exercise {
    lesson: "zero-copy",
    name: "view-not-copy",
    about: "four workers fill 32 MiB of numbers in shared memory; the parent finds the largest",
};

const WORKERS: usize = 4;
/// 4 Mi f64: 32 MiB.
const LEN: usize = 4 << 20;

fn main() -> std::process::ExitCode {
    EXERCISE.run(exercise)
}

// ANCHOR: exercise
fn exercise(_args: &Args) -> anyhow::Result<()> {
    let mut values = Array::<f64>::new(LEN)?;
    values.fork_chunks(LEN / WORKERS, |w, part| {
        for (i, x) in part.iter_mut().enumerate() {
            *x = ((w * LEN / WORKERS + i) % 1_000_003) as f64; // the numbers go straight into shared pages
        }
        0
    })?;
    // A view: the guard derefs to a `&[f64]` over the shared pages; nothing is copied.
    let all = values.lock()?;
    let largest = all.iter().copied().fold(f64::MIN, f64::max);
    println!("the largest of {} values: {largest}", all.len());
    Ok(())
}
// ANCHOR_END: exercise
