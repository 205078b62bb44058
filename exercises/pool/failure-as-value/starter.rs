//! Exercise pool/failure-as-value: a pool checks 100 numbers, and one of them, 13, makes
//! the task fail. The whole `map` fails with it, and the other 99 results are lost. Make
//! the task report its failure as a value, so that the program prints every result, and
//! the one failure among them.

use multiproc::pool::Pool;
use plumbing::{Args, Exercise};

const EXERCISE: Exercise = Exercise {
    lesson: "pool",
    name: "failure-as-value",
    about: "a pool checks 100 numbers; one of them makes the task fail",
};

fn main() -> std::process::ExitCode {
    EXERCISE.run(exercise)
}

// ANCHOR: exercise
/// Check one number: its square, unless it is unlucky.
fn check(x: u64) -> u64 {
    if x == 13 {
        panic!("{x} is unlucky");
    }
    x * x
}

fn exercise(_args: &Args) -> anyhow::Result<()> {
    let mut pool = Pool::new(Some(2), check)?;
    let items: Vec<u64> = (0..100).collect();
    let results = pool.map(&items, None)?;
    pool.close()?;
    println!("{} results, sum {}", results.len(), results.iter().sum::<u64>());
    Ok(())
}
// ANCHOR_END: exercise
