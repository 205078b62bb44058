//! Exercise pool/chunksize: a pool of two workers squares 20,000 numbers with `map`, and
//! the parent adds up the squares. The sum is right, but the run takes far longer than it
//! should. Make it fast, still with the pool.

use multiproc::pool::Pool;
use plumbing::{Args, Exercise};

const EXERCISE: Exercise =
    Exercise { lesson: "pool", name: "chunksize", about: "a pool of two workers squares 20,000 numbers" };

const ITEMS: u64 = 20_000;

fn main() -> std::process::ExitCode {
    EXERCISE.run(exercise)
}

fn square(x: u64) -> u64 {
    x * x
}

// ANCHOR: exercise
fn exercise(_args: &Args) -> anyhow::Result<()> {
    let mut pool = Pool::new(Some(2), square)?;
    let items: Vec<u64> = (0..ITEMS).collect();
    // The default chunksize: a few big messages per worker, not one per item.
    let squares = pool.map(&items, None)?;
    pool.close()?;
    println!("{} squares, sum {}", squares.len(), squares.iter().sum::<u64>());
    Ok(())
}
// ANCHOR_END: exercise
