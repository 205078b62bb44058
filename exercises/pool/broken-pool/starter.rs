//! Exercise pool/broken-pool: a pool squares 1,000 numbers and the parent adds them up. The
//! check kills the worker that handles number 500: the pool is broken, `map` fails, and
//! this program prints a sum of 0 and exits 0, as if all were well. Make it fail, saying
//! which worker died.

use multiproc::pool::Pool;
use plumbing::{Args, Exercise, fault};

const EXERCISE: Exercise = Exercise {
    lesson: "pool",
    name: "broken-pool",
    about: "a pool squares 1,000 numbers; one of its workers may die",
};

fn main() -> std::process::ExitCode {
    EXERCISE.run(exercise)
}

fn square(x: u64) -> u64 {
    if x == 500 {
        fault::inject(1); // the check kills the worker that handles 500, here
    }
    x * x
}

// ANCHOR: exercise
fn exercise(_args: &Args) -> anyhow::Result<()> {
    let mut pool = Pool::new(Some(2), square)?;
    let items: Vec<u64> = (0..1000).collect();
    let squares = pool.map(&items, None).unwrap_or_default();
    println!("{} squares, sum {}", squares.len(), squares.iter().sum::<u64>());
    Ok(())
}
// ANCHOR_END: exercise
