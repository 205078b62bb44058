//! Exercise zero-copy/skip-the-header: each of two workers writes its results into a block
//! of shared bytes: a u64 header (how many numbers it wrote), then the numbers. The parent
//! reads the numbers back, but prints the wrong ones. Read the numbers where they are.

use multiproc::shm::{Array, cast, cast_mut};
use plumbing::{Args, Exercise};

const EXERCISE: Exercise = Exercise {
    lesson: "zero-copy",
    name: "skip-the-header",
    about: "two workers write a header and numbers into blocks of shared bytes",
};

const WORKERS: usize = 2;
const NUMBERS: usize = 4;
/// One worker's block: the header, then the numbers, all u64.
const BLOCK: usize = (1 + NUMBERS) * size_of::<u64>();

fn main() -> std::process::ExitCode {
    EXERCISE.run(exercise)
}

// ANCHOR: exercise
fn exercise(_args: &Args) -> anyhow::Result<()> {
    let mut bytes = Array::<u8>::new(WORKERS * BLOCK)?;
    bytes.fork_chunks(BLOCK, |w, block| -> anyhow::Result<()> {
        let words = cast_mut::<u64>(block, 0, 1 + NUMBERS)?;
        words[0] = NUMBERS as u64; // the header
        for (i, x) in words[1..].iter_mut().enumerate() {
            *x = (w * 100 + i) as u64;
        }
        Ok(())
    })?;
    let all = bytes.lock()?;
    for w in 0..WORKERS {
        // The numbers start one u64 into the block, after its header.
        let numbers = cast::<u64>(&all, w * BLOCK + size_of::<u64>(), NUMBERS)?;
        println!("worker {w} wrote {numbers:?}");
    }
    Ok(())
}
// ANCHOR_END: exercise
