//! Exercise lock-race/check-then-set: a home-made spinlock guards a balance in shared
//! memory, and four workers each deposit 1 two thousand times. The balance comes out short.
//! Fix `lock`, so that only one worker at a time can hold it.

use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};
use std::sync::atomic::{AtomicI64, AtomicU32};

use anyhow::ensure;
use multiproc::lock::meet;
use multiproc::proc::Children;
use multiproc::shm::Shared;
use plumbing::{Args, Exercise};

const EXERCISE: Exercise = Exercise {
    lesson: "lock-race",
    name: "check-then-set",
    about: "a home-made spinlock guards a balance that four workers deposit into",
};

const WORKERS: u32 = 4;
const DEPOSITS: i64 = 2_000;

fn main() -> std::process::ExitCode {
    EXERCISE.run(exercise)
}

// ANCHOR: exercise
/// Take the lock: 0 is free, 1 is taken.
fn lock(taken: &AtomicU32) {
    while taken.load(Acquire) == 1 {
        std::thread::yield_now(); // taken: let the holder run until it is free
    }
    taken.store(1, Relaxed); // free: take it
}

fn unlock(taken: &AtomicU32) {
    taken.store(0, Release);
}
// ANCHOR_END: exercise

/// One deposit: read the balance, let others run (as a preemption would), write it back.
fn deposit(balance: &AtomicI64) {
    let seen = balance.load(Relaxed);
    std::thread::yield_now();
    balance.store(seen + 1, Relaxed);
}

fn exercise(_args: &Args) -> anyhow::Result<()> {
    // The lock, the balance and a meeting point, in shared memory.
    let shared = Shared::<(AtomicU32, AtomicI64, AtomicU32)>::new()?;
    let (taken, balance, started) = &*shared;
    let mut workers = Children::new("worker");
    for _ in 0..WORKERS {
        workers.fork(|| {
            meet(started, WORKERS); // all start together
            for _ in 0..DEPOSITS {
                lock(taken);
                deposit(balance);
                unlock(taken);
            }
            0
        })?;
    }
    workers.join_all()?;
    let total = balance.load(Relaxed);
    println!("balance: {total} (expected {})", i64::from(WORKERS) * DEPOSITS);
    ensure!(
        total == i64::from(WORKERS) * DEPOSITS,
        "lost {} deposits",
        i64::from(WORKERS) * DEPOSITS - total
    );
    Ok(())
}
