//! lesson-lock-race: two processes update one shared balance; without a lock, updates get lost.
//!
//! A balance of 100 lives in shared memory. One child process deposits 1 ten thousand times,
//! another withdraws 1 ten thousand times, ten rounds over: first with no lock (a read, then
//! a write, and the updates the other process made in between are lost), then under the
//! futex lock of multiproc::lock, then with one atomic instruction. Python's twin uses
//! `Value('i', 100, lock=False)` with and without a `multiprocessing.Lock`. `--measure` times
//! one deposit or withdrawal each way, two processes contending and one alone.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicI64, AtomicU32};
use std::time::{Duration, Instant};

use anyhow::ensure;
use multiproc::lock::{Lock, SpinLock, meet};
use multiproc::proc::Children;
use multiproc::shm::Shared;
use plumbing::fault;
use plumbing::{Args, Bench, Case, Lesson, varies};

const LESSON: Lesson = Lesson {
    name: "lock-race",
    about: "Two processes update one balance in shared memory: one deposits 1, the other \
            withdraws 1, ten thousand times each, ten rounds. With no lock (read, then write) \
            updates are lost and the final balance differs from round to round; under a \
            process-shared futex lock, or with one atomic fetch_add, it is 100 every time. \
            --measure times one deposit or withdrawal with no lock, a spinlock, the futex lock \
            and an atomic, two processes contending and one alone, beside Python's Value and Lock.",
    python: concat!(env!("CARGO_MANIFEST_DIR"), "/python/lock_race.py"),
    roles: &[],
};

/// The balance every round starts with, and ends with when no update is lost.
const START: i64 = 100;
/// Deposits by worker 0, and withdrawals by worker 1, in each round.
const OPS: i64 = 10_000;
/// Rounds of each variant: the race is shown as what happened over all of them.
const ROUNDS: usize = 10;
/// What worker 0 adds to the balance each time, and worker 1.
const DEPOSIT: i64 = 1;
const WITHDRAW: i64 = -1;
/// Time between reading the balance and writing it back, where a real program would work
/// out the new balance (Python's `v.value += 1` runs bytecode there). It makes the race
/// show on every machine, even one with a single free CPU.
const WINDOW: Duration = Duration::from_micros(1);

fn main() -> std::process::ExitCode {
    LESSON.run(lesson)
}

/// The lesson, top to bottom (plumbing's `run` parses its options first, and reports a
/// failure in one line after stopping any child left running).
fn lesson(args: &Args) -> anyhow::Result<()> {
    if args.measure {
        return measure(args);
    }

    // ANCHOR: setup
    println!("1. A balance of {START} in shared memory; worker 0 deposits 1 and worker 1 withdraws 1");
    println!("   {OPS} times each, {ROUNDS} rounds of each variant: a fair result is {START} every round");
    // Made before any fork, mapped MAP_SHARED: every worker reads and writes the same page.
    let bank = Shared::<Bank>::new()?;
    let accounts = Accounts::of(&bank);
    // ANCHOR_END: setup

    // ANCHOR: no_lock
    println!("2. No lock: read the balance, work for {} ns, write it back", WINDOW.as_nanos());
    let finals = rounds(&accounts, |_worker, amount| {
        for _ in 0..OPS {
            let v = accounts.balance.load(Relaxed); // read
            busy_for(WINDOW); // the other process may write meanwhile: that write is lost
            accounts.balance.store(v + amount, Relaxed); // write what was read, plus the amount
        }
    })?;
    // Which rounds go wrong, and by how much, changes from run to run (`varies` marks it
    // for the tests, which redact it).
    let wrong = finals.iter().filter(|&&b| b != START).count();
    let (low, high) = (finals.iter().min().unwrap_or(&START), finals.iter().max().unwrap_or(&START));
    println!("   final balances: {}", varies(list(&finals)));
    println!(
        "   wrong in {} rounds, from {}",
        varies(format!("{wrong} of {ROUNDS}")),
        varies(format!("{low} to {high}"))
    );
    // What holds on every run: each write is a balance read earlier, plus or minus 1, and
    // each worker writes OPS times.
    let (lowest, highest) = (START - OPS, START + OPS);
    ensure!(
        finals.iter().all(|b| (lowest..=highest).contains(b)),
        "a balance outside {lowest}..={highest}: {finals:?}"
    );
    println!(
        "   always between {lowest} and {highest}: each write is a balance read before, plus or minus 1"
    );
    // ANCHOR_END: no_lock

    // ANCHOR: with_lock
    println!("3. The same read and write, holding multiproc::lock::Lock (a futex lock)");
    let finals = rounds(&accounts, |worker, amount| {
        for i in 0..OPS {
            let _guard = accounts.lock.lock(); // held until the end of this turn of the loop
            if i == OPS / 2 {
                fault::inject(worker); // the tests make worker 1 die here, holding the lock
            }
            let v = accounts.balance.load(Relaxed);
            busy_for(WINDOW); // the other process must wait: it cannot get in
            accounts.balance.store(v + amount, Relaxed);
        }
    })?;
    exact(&finals)?;
    // ANCHOR_END: with_lock

    // ANCHOR: atomic
    println!("4. No lock, one indivisible instruction: fetch_add");
    let finals = rounds(&accounts, |_worker, amount| {
        for _ in 0..OPS {
            accounts.balance.fetch_add(amount, Relaxed); // read, add and write in one step
        }
    })?;
    exact(&finals)?;
    // ANCHOR_END: atomic
    Ok(())
}

// ANCHOR: shared
/// What the workers share, in one piece of shared memory: the balance, two locks and a
/// meeting point. Only atomics and multiproc's locks can live there (shm::Shareable).
type Bank = (AtomicI64, Lock, SpinLock, AtomicU32);

/// The same, by name.
struct Accounts<'a> {
    balance: &'a AtomicI64,
    /// multiproc::lock's futex lock: one u32, and no system call unless someone waits.
    lock: &'a Lock,
    /// multiproc::lock's spinlock: one u32 too (only `--measure` uses it).
    spin: &'a SpinLock,
    gate: &'a AtomicU32,
}

impl<'a> Accounts<'a> {
    fn of(bank: &'a Shared<Bank>) -> Accounts<'a> {
        let (balance, lock, spin, gate) = &**bank;
        Accounts { balance, lock, spin, gate }
    }
}
// ANCHOR_END: shared

// ANCHOR: round
/// One round: the balance set to 100, the depositor (worker 0, +1) and the withdrawer
/// (worker 1, -1) forked, each running `work` with its number and amount, both joined.
/// Returns the final balance, and (for --measure) the time from the forks to the join.
fn round(accounts: &Accounts, work: impl Fn(usize, i64)) -> anyhow::Result<(i64, Duration)> {
    accounts.balance.store(START, Relaxed);
    accounts.gate.store(0, Relaxed);
    let mut workers = Children::new("worker");
    for (worker, amount) in [(0, DEPOSIT), (1, WITHDRAW)] {
        workers.fork(|| {
            // Both start together (multiproc::lock::meet): otherwise one could be done before
            // the other has started, and nothing would race.
            meet(accounts.gate, 2);
            work(worker, amount);
            0
        })?;
    }
    let start = Instant::now();
    // A worker that dies holding the lock leaves the other asleep forever, waiting for it:
    // join_all then kills the other, and says which worker failed and how.
    workers.join_all()?;
    Ok((accounts.balance.load(Relaxed), start.elapsed()))
}

// ANCHOR_END: round

// ANCHOR: busy_for
/// Stay busy for `time` without giving up the CPU. (`std::thread::yield_now()` here would
/// also open the window, but what it costs depends on what else the machine is running.)
fn busy_for(time: Duration) {
    let until = Instant::now() + time;
    while Instant::now() < until {
        std::hint::spin_loop();
    }
}
// ANCHOR_END: busy_for

/// `ROUNDS` rounds of `work`: the final balance of each.
fn rounds(accounts: &Accounts, work: impl Fn(usize, i64)) -> anyhow::Result<Vec<i64>> {
    (0..ROUNDS).map(|_| Ok(round(accounts, &work)?.0)).collect()
}

/// Print the final balances of a variant that must never lose an update, and check them.
fn exact(finals: &[i64]) -> anyhow::Result<()> {
    let right = finals.iter().filter(|&&b| b == START).count();
    println!("   final balances: {}", list(finals));
    println!("   right in {right} of {ROUNDS} rounds");
    ensure!(right == ROUNDS, "updates were lost: {finals:?}");
    Ok(())
}

fn list(balances: &[i64]) -> String {
    balances.iter().map(i64::to_string).collect::<Vec<_>>().join(" ")
}

// ANCHOR: ops
/// One deposit (+1) or withdrawal (-1), four ways, as `--measure` times them.
fn atomic(s: &Accounts, amount: i64) {
    s.balance.fetch_add(amount, Relaxed);
}

/// The race without the window: as fast as it gets, and wrong.
fn unlocked(s: &Accounts, amount: i64) {
    let v = s.balance.load(Relaxed);
    s.balance.store(v + amount, Relaxed);
}

fn spinlocked(s: &Accounts, amount: i64) {
    s.spin.lock();
    unlocked(s, amount);
    s.spin.unlock();
}

fn locked(s: &Accounts, amount: i64) {
    let _guard = s.lock.lock();
    unlocked(s, amount);
}
// ANCHOR_END: ops

/// The baselines: the cheapest way to update the balance that never loses an update.
const FLOOR: &str = "atomic fetch_add, 2 processes (floor)";
const FLOOR_ALONE: &str = "atomic fetch_add, 1 process (floor)";

// ANCHOR: measure
fn measure(args: &Args) -> anyhow::Result<()> {
    let mut bench = Bench::new(&LESSON, args, "one deposit or withdrawal on a shared balance");
    let bank = Shared::<Bank>::new()?;
    let accounts = Accounts::of(&bank);

    // Two processes at once, each doing `n` operations: 2n per run.
    let n = args.pick(5_000_000, 10_000);
    let two = |name: &str| Case::new(name).ops(2 * n as u64);
    bench.run_timed(two(FLOOR), || exact_time(both(&accounts, n, atomic)))?;
    let racy = "no lock, load+store, 2 processes (wrong)";
    bench.run_timed(two(racy).vs(FLOOR), || Ok(both(&accounts, n, unlocked)?.1))?;
    bench.run_timed(two("SpinLock, 2 processes").vs(FLOOR), || exact_time(both(&accounts, n, spinlocked)))?;
    bench.run_timed(two("Lock (futex), 2 processes").vs(FLOOR), || exact_time(both(&accounts, n, locked)))?;

    // One process alone: the lock is always free when it is asked for.
    let m = args.pick(50_000_000, 10_000);
    let one = |name: &str| Case::new(name).ops(m as u64);
    bench.run_timed(one(FLOOR_ALONE), || alone(&accounts, m, atomic))?;
    bench.run_timed(one("SpinLock, 1 process").vs(FLOOR_ALONE), || alone(&accounts, m, spinlocked))?;
    bench.run_timed(one("Lock (futex), 1 process").vs(FLOOR_ALONE), || alone(&accounts, m, locked))?;

    bench.python()?;
    bench.finish();
    Ok(())
}
// ANCHOR_END: measure

/// One round in which each worker applies `op` `n` times; the forks are left out of the time.
fn both(accounts: &Accounts, n: i64, op: impl Fn(&Accounts, i64)) -> anyhow::Result<(i64, Duration)> {
    round(accounts, |_worker, amount| {
        for _ in 0..n {
            op(accounts, amount);
        }
    })
}

/// The time of a round that must end at exactly 100.
fn exact_time(round: anyhow::Result<(i64, Duration)>) -> anyhow::Result<Duration> {
    let (balance, time) = round?;
    ensure!(balance == START, "updates were lost: the balance is {balance}");
    Ok(time)
}

/// This process alone deposits `m` times: nobody else ever wants the lock.
fn alone(accounts: &Accounts, m: i64, op: impl Fn(&Accounts, i64)) -> anyhow::Result<Duration> {
    accounts.balance.store(START, Relaxed);
    let start = Instant::now();
    for _ in 0..m {
        op(accounts, DEPOSIT);
    }
    let time = start.elapsed();
    ensure!(accounts.balance.load(Relaxed) == START + m, "a deposit was lost with no one else there");
    Ok(time)
}
