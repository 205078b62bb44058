//! Exercise copy-on-write/build-before-fork: four workers each sum their quarter of a 32 MiB
//! table. Each worker builds the whole table itself, after the fork. Build it once, so that
//! every worker reads the same pages.

use multiproc::shm::Array;
use plumbing::{Args, Exercise};

const EXERCISE: Exercise = Exercise {
    lesson: "copy-on-write",
    name: "build-before-fork",
    about: "four workers sum their quarter of a table",
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
    // Built once, before the fork: the workers inherit its pages, and reading copies none.
    let table = build_table();
    let mut sums = Array::<u64>::new(WORKERS)?;
    sums.fork_chunks(1, |w, sum| {
        sum[0] = table[quarter(w)].iter().sum();
        0
    })?;
    let sums = sums.lock()?;
    println!("the workers' sums: {:?}, in all {}", &sums[..], sums.iter().sum::<u64>());
    Ok(())
}
// ANCHOR_END: exercise
