//! Exercise copy-on-write/no-writes: the parent builds a 32 MiB table, and four workers each
//! sum the last digit of each number in their quarter. The sums are right, but each worker
//! first cuts its numbers down in place, in the table it inherited, and every page it writes
//! is copied. Get the same sums without writing to the table.

use multiproc::proc::Children;
use multiproc::shm::Array;
use plumbing::{Args, Exercise};

const EXERCISE: Exercise = Exercise {
    lesson: "copy-on-write",
    name: "no-writes",
    about: "four workers sum the last three digits of their quarter of a table",
};

const WORKERS: usize = 4;
/// 4 Mi numbers: 32 MiB, 8192 pages of 4 KiB.
const LEN: usize = 4 << 20;

fn main() -> std::process::ExitCode {
    EXERCISE.run(exercise)
}

/// The table every worker reads: number i is i * 7 % 1000.
fn build_table() -> Vec<u64> {
    (0..LEN as u64).map(|i| i * 7 % 1000).collect()
}

/// The numbers worker `w` sums: its quarter of the table.
fn quarter(w: usize) -> std::ops::Range<usize> {
    w * LEN / WORKERS..(w + 1) * LEN / WORKERS
}

// ANCHOR: exercise
fn exercise(_args: &Args) -> anyhow::Result<()> {
    let table = build_table(); // before the fork: every worker inherits it
    let sums = Array::<u64>::new(WORKERS)?;
    let mut workers = Children::new("worker");
    for w in 0..WORKERS {
        workers.fork(|| -> anyhow::Result<()> {
            // Read only: the digit is computed on the way, and no page of the table is written.
            sums.lock()?[w] = table[quarter(w)].iter().map(|x| x % 10).sum();
            Ok(())
        })?;
    }
    workers.join_all()?;
    let sums = sums.lock()?;
    println!("the workers' sums: {:?}, in all {}", &sums[..], sums.iter().sum::<u64>());
    Ok(())
}
// ANCHOR_END: exercise
