//! Exercise zero-copy/aligned-offset: a block of shared bytes holds a count (a u32) and then
//! that many f64, which the parent reads as a typed slice. `cast` refuses: the numbers start
//! at an offset where an f64 cannot be. Lay the block out so that the cast succeeds.

use multiproc::proc::fork_child;
use multiproc::proc::join_all;
use multiproc::shm::{Array, cast, cast_mut};
use plumbing::{Args, Exercise};

const EXERCISE: Exercise = Exercise {
    lesson: "zero-copy",
    name: "aligned-offset",
    about: "a child writes a count and that many numbers into shared bytes; the parent reads them",
};

const COUNT: usize = 5;

fn main() -> std::process::ExitCode {
    EXERCISE.run(exercise)
}

// ANCHOR: exercise
/// Where the numbers start: after the count, at the next offset an f64 can start at (the
/// block itself starts on a page, so an offset that is a multiple of 8 is aligned for f64).
fn values_at() -> usize {
    size_of::<u32>().next_multiple_of(align_of::<f64>())
}

fn exercise(_args: &Args) -> anyhow::Result<()> {
    let bytes = Array::<u8>::new(values_at() + COUNT * size_of::<f64>())?;
    let child = fork_child(|| -> anyhow::Result<()> {
        let mut block = bytes.lock()?;
        cast_mut::<u32>(&mut block, 0, 1)?[0] = COUNT as u32;
        for (i, x) in cast_mut::<f64>(&mut block, values_at(), COUNT)?.iter_mut().enumerate() {
            *x = i as f64 * 1.5;
        }
        Ok(())
    })?;
    join_all(&[child])?;
    let block = bytes.lock()?;
    let count = cast::<u32>(&block, 0, 1)?[0] as usize;
    let values = cast::<f64>(&block, values_at(), count)?;
    println!("{count} values: {values:?}");
    Ok(())
}
// ANCHOR_END: exercise
