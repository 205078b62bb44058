//! Exercise copy-on-write/read-in-place: the parent builds a 32 MiB table, and four workers
//! each sum their quarter of it. The sums are right, but each worker first takes a copy of
//! the whole table, and the run costs four times the memory it needs. Make the workers read
//! the parent's table where it is: the check counts the pages they touch.

use multiproc::shm::Array;
use plumbing::{Args, Exercise};

const EXERCISE: Exercise = Exercise {
    lesson: "copy-on-write",
    name: "read-in-place",
    about: "four workers sum their quarter of a table the parent built",
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
    let mut sums = Array::<u64>::new(WORKERS)?;
    sums.fork_chunks(1, |w, sum| {
        let mine = table.clone(); // a table of its own, to be safe
        sum[0] = mine[quarter(w)].iter().sum();
        0
    })?;
    let sums = sums.lock()?;
    println!("the workers' sums: {:?}, in all {}", &sums[..], sums.iter().sum::<u64>());
    Ok(())
}
// ANCHOR_END: exercise
