//! lesson-pool: a pool of worker processes, as Python's `multiprocessing.Pool`.
//!
//! `with Pool(4) as pool: pool.map(square, range(1000))`: workers forked once, tasks sent to
//! them in chunks, results back in input order; `imap_unordered` for results as they finish;
//! a task that raises; a worker that is killed. This lesson uses `multiproc::pool::Pool` (one
//! socketpair per worker, JSON messages, a feeder thread). `--measure` times the pool's cost
//! per task with chunksize 1 and the default, beside Python's `Pool.map`, and CPU-bound tasks
//! on 1, 2 and 4 workers beside a plain loop.

use std::hint::black_box;
use std::ops::RangeInclusive;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use multiproc::pool::{Pool, Transport};
use multiproc::proc::{fork_child, join_all};
use multiproc::ring::{Ring, Wait};
use multiproc::shm::Shared;
use multiproc::wire::{recv, send};
use nix::sys::signal::{Signal, kill};
use plumbing::measure::cpu_time;
use plumbing::{Args, Bench, Case, Lesson, fault, varies};

const LESSON: Lesson = Lesson {
    name: "pool",
    about: "A pool of worker processes, as Python's multiprocessing.Pool: workers forked once, tasks \
            sent in chunks over one socketpair per worker, results back in input order (map) or as \
            they finish (imap_unordered), a task that panics reported with its item, a killed worker \
            breaking the pool instead of hanging it, and shutdown by sentinels. --measure times the \
            pool's cost per task (chunksize 1 and the default) beside Python's Pool.map, and \
            CPU-bound tasks on 1, 2 and 4 workers beside a plain loop.",
    python: concat!(env!("CARGO_MANIFEST_DIR"), "/python/pool_lesson.py"),
    roles: &[],
};

/// Workers in sections 1 to 4: fixed, not one per CPU, so the output is the same everywhere.
const WORKERS: usize = 4;
/// Section 2's items: 0..1000.
const ITEMS: u64 = 1000;
/// Section 3's chunksize.
const CHUNK: usize = 10;
/// Workers in sections 5 and 6.
const SMALL_POOL: usize = 2;
/// Section 5's items, and the one its task panics on.
const UNLUCKY_ITEMS: RangeInclusive<u64> = 1..=20;
const UNLUCKY: u64 = 13;

fn main() -> std::process::ExitCode {
    LESSON.run(lesson)
}

/// The lesson, top to bottom (plumbing's `run` parses its options first, and reports a
/// failure in one line after stopping any child left running).
fn lesson(args: &Args) -> anyhow::Result<()> {
    if args.measure {
        return measure(args);
    }

    // ANCHOR: map
    let first = [1, 2, 3, 4, 5];
    println!("1. map: Pool({WORKERS}).map(square, {first:?})");
    let mut pool = Pool::with_initializer(Some(WORKERS), start_worker, square)?;
    println!("   forked {} workers, each with a socketpair to the parent", pool.processes());
    let squares = pool.map(&first, None)?;
    println!("   map returned {squares:?}, in input order");
    // ANCHOR_END: map

    // ANCHOR: chunks
    println!("2. chunksize: map(square, range({ITEMS}))");
    let items: Vec<u64> = (0..ITEMS).collect();
    let chunksize = pool.default_chunksize(items.len());
    let chunks = items.len().div_ceil(chunksize);
    println!("   default chunksize: ceil({ITEMS} / (4 * {WORKERS} workers)) = {chunksize}");
    println!("   so {chunks} messages go to the workers, and {chunks} come back");
    let before = pool.tasks_done().to_vec();
    let squares = pool.map(&items, None)?;
    let sum: u64 = squares.iter().sum();
    println!("   sum {sum}; first {:?}; last {:?}", &squares[..3], &squares[squares.len() - 3..]);
    let mut did: Vec<u64> =
        pool.tasks_done().iter().zip(&before).map(|(after, before)| after - before).collect();
    did.sort_unstable();
    println!("   the {WORKERS} workers did {} tasks each, fewest first", varies(format!("{did:?}")));
    println!("   {} tasks in all: every item went to exactly one worker", did.iter().sum::<u64>());
    let one_by_one = pool.map(&items, Some(1))?;
    println!("   chunksize 1: {ITEMS} messages each way, the same results: {}", one_by_one == squares);
    ensure!(one_by_one == squares, "chunksize changed the results");
    // ANCHOR_END: chunks

    // ANCHOR: unordered
    println!("3. imap_unordered(square, range({ITEMS}), chunksize={CHUNK}): results as they finish");
    let arrived = pool.imap_unordered(&items, CHUNK)?;
    println!("   in input order this time: {}", varies(arrived == squares));
    let whole = arrived.chunks(CHUNK).all(|chunk| {
        let first = chunk[0].isqrt();
        first % CHUNK as u64 == 0 && chunk.iter().zip(first..).all(|(&r, x)| r == square(x))
    });
    println!("   each chunk's {CHUNK} results came together, in input order: {whole}");
    let mut sorted = arrived.clone();
    sorted.sort_unstable();
    println!("   sorted, they are map's results: {}", sorted == squares);
    ensure!(whole && sorted == squares, "imap_unordered lost, repeated or split results");
    // ANCHOR_END: unordered

    // ANCHOR: close
    println!("4. close: a sentinel (an empty message) to each worker, then join");
    pool.close()?;
    println!("   all {WORKERS} workers exited with exitcode 0");
    // ANCHOR_END: close

    // ANCHOR: panic
    println!("5. A task that panics: Pool({SMALL_POOL}).map(unlucky, {UNLUCKY_ITEMS:?})");
    let mut pool = Pool::new(Some(SMALL_POOL), unlucky)?;
    let pids = pool.pids();
    let items: Vec<u64> = UNLUCKY_ITEMS.collect();
    let error = pool.map(&items, None).err().with_context(|| format!("unlucky({UNLUCKY}) did not panic"))?;
    println!("   map returned an error: {error}");
    let lucky = [1, 2, 3];
    let again = pool.map(&lucky, None)?;
    println!("   the workers caught the panic and live on: map(unlucky, {lucky:?}) returned {again:?}");
    println!("   the same worker processes as before: {}", pool.pids() == pids);
    pool.close()?;
    // ANCHOR_END: panic

    // ANCHOR: broken
    println!("6. A worker killed with SIGKILL (the OOM killer does that): the pool is broken");
    let mut pool = Pool::new(Some(SMALL_POOL), square)?;
    let worker = 1;
    let victim = pool.pids()[worker];
    kill(victim, Signal::SIGKILL).with_context(|| format!("kill worker {worker}"))?;
    println!("   killed worker {worker}, pid {victim}");
    let error = pool.map(&items, None).err().context("map on a pool with a dead worker succeeded")?;
    println!("   map returned an error, and did not hang: {error}");
    let error = pool.map(&[1], None).err().context("a broken pool ran a task")?;
    println!("   map again: the same error at once: {}", error.to_string().contains("pool is broken"));
    println!("   workers left: {} (the dead one was reaped, the other killed and reaped)", pool.pids().len());
    // ANCHOR_END: broken

    // ANCHOR: rings
    println!("7. The fast lane: Pool({WORKERS}) over rings in shared memory, not socketpairs");
    let mut pool = Pool::with_transport(Some(WORKERS), Transport::Rings(Wait::ADAPTIVE), square)?;
    let items: Vec<u64> = (0..ITEMS).collect();
    let squares: Vec<u64> = items.iter().map(|&x| square(x)).collect();
    let one_by_one = pool.map(&items, Some(1))?;
    println!("   map(square, range({ITEMS}), chunksize=1): the same results: {}", one_by_one == squares);
    let arrived = pool.imap_unordered(&items, CHUNK)?;
    println!("   imap_unordered, chunksize={CHUNK}: {} results, each once", arrived.len());
    pool.close()?;
    println!("   closed: all {WORKERS} workers exited with exitcode 0");
    // ANCHOR_END: rings
    Ok(())
}

// ANCHOR: tasks
/// Each worker calls this first, before its first task (Python's `initializer`).
fn start_worker(worker: usize) {
    fault::inject(worker); // the tests make worker 1 panic, or be killed, here
}

/// The task: runs in a worker process. A plain `fn`, known when the workers are forked.
fn square(x: u64) -> u64 {
    x * x
}

/// A task that panics on one item.
fn unlucky(x: u64) -> u64 {
    if x == UNLUCKY {
        panic!("{UNLUCKY} is unlucky");
    }
    x * x
}
// ANCHOR_END: tasks

/// The baselines: the work alone, in this process.
const SERIAL: &str = "serial loop, square (floor)";
const SERIAL_CPU: &str = "serial loop, CPU-bound tasks";
/// Workers for the per-task cases (Python's too).
const MEASURE_WORKERS: usize = 2;
/// Workers for the CPU-bound cases.
const CPU_WORKERS: [usize; 3] = [1, 2, 4];

// ANCHOR: measure
fn measure(args: &Args) -> anyhow::Result<()> {
    let title = format!("a Pool's cost per task, and CPU-bound tasks on {CPU_WORKERS:?} workers");
    let mut bench = Bench::new(&LESSON, args, &title);

    // Trivial tasks: what the pool itself costs per task.
    let n = args.pick(20_000u64, 200);
    let items: Vec<u64> = (0..n).collect();
    let expected: Vec<u64> = items.iter().map(|&x| square(x)).collect();
    let tasks = |name: &str| Case::new(name).ops(n);
    bench.run(tasks(SERIAL), || {
        let squares: Vec<u64> = black_box(&items).iter().map(|&x| square(x)).collect();
        ensure!(squares == expected, "the loop went wrong");
        Ok(())
    })?;
    let socket_trip = "round trip per task, 1 worker, no pool";
    bench.run_timed(tasks(socket_trip).vs(SERIAL), || round_trips(n))?;
    bench.run_timed(tasks(&format!("{socket_trip}, on rings")).vs(socket_trip), || ring_round_trips(n))?;
    // The same pool over each transport: on rings, each row against its socketpair row.
    for (transport, on) in [(Transport::Socketpair, ""), (Transport::Rings(Wait::ADAPTIVE), ", on rings")] {
        let mut pool = Pool::with_transport(Some(MEASURE_WORKERS), transport, square)?;
        for (name, chunksize) in [("pool.map, chunksize 1", Some(1)), ("pool.map, default chunksize", None)] {
            let case = tasks(&format!("{name}{on}")).vs(if on.is_empty() { SERIAL } else { name });
            bench.run_timed(case, || {
                let start = Instant::now();
                let squares = pool.map(&items, chunksize)?;
                let time = start.elapsed();
                ensure!(squares == expected, "the pool returned other results");
                Ok(time)
            })?;
        }
        // What the workers burn between maps: nothing to do for a second after one.
        let idle = args.pick(Duration::from_secs(1), Duration::from_millis(50));
        let case = Case::new(&format!("CPU time {MEASURE_WORKERS} idle workers burn per second{on}"));
        bench.run_timed(case, || idle_workers(&mut pool, idle))?;
        pool.close()?;
    }

    // CPU-bound tasks, a few ms each: the speedup that the overhead buys.
    let count = args.pick(40, 4);
    let spins = args.pick(1_000_000, 10_000);
    let work: Vec<(u64, u64)> = (0..count).map(|seed| (seed, spins)).collect();
    let expected: Vec<u64> = work.iter().map(|&w| spin(w)).collect();
    let cpu = |name: &str| Case::new(name).ops(count);
    bench.run(cpu(SERIAL_CPU), || {
        let results: Vec<u64> = black_box(&work).iter().map(|&w| spin(w)).collect();
        ensure!(results == expected, "the loop went wrong");
        Ok(())
    })?;
    for workers in CPU_WORKERS {
        let mut pool = Pool::new(Some(workers), spin)?;
        let name = format!("pool.map CPU-bound, {workers} worker{}", if workers == 1 { "" } else { "s" });
        bench.run_timed(cpu(&name).vs(SERIAL_CPU), || {
            let start = Instant::now();
            let results = pool.map(&work, Some(1))?;
            let time = start.elapsed();
            ensure!(results == expected, "the pool returned other results");
            Ok(time)
        })?;
        pool.close()?;
    }

    bench.python()?;
    bench.finish();
    Ok(())
}
// ANCHOR_END: measure

// ANCHOR: round_trip
/// The mechanism underneath, without the pool: one child, one socketpair, one 8-byte task
/// out and one 8-byte result back at a time. No JSON, no chunks, no feeder thread.
fn round_trips(n: u64) -> anyhow::Result<Duration> {
    let (mut parent_end, mut child_end) = UnixStream::pair().context("create a socketpair")?;
    let child = fork_child(move || -> anyhow::Result<()> {
        while let Some(task) = recv(&mut child_end).context("read a task")? {
            let x = u64::from_le_bytes(task.as_slice().try_into()?);
            send(&mut child_end, &square(x).to_le_bytes()).context("send a result")?;
        }
        Ok(())
    })?;
    let start = Instant::now();
    for x in 0..n {
        send(&mut parent_end, &x.to_le_bytes()).context("send a task")?;
        let result = recv(&mut parent_end).context("read a result")?.context("the child ended early")?;
        ensure!(result == square(x).to_le_bytes(), "a wrong result for {x}");
    }
    let time = start.elapsed();
    // EOF for the child. shutdown, not drop: the child holds a copy of this end too.
    parent_end.shutdown(std::net::Shutdown::Write).context("close the socket for writing")?;
    join_all(&[child])?; // it must have succeeded, or this is an error naming it
    Ok(time)
}
// ANCHOR_END: round_trip

// ANCHOR: ring_round_trip
/// The same mechanism on the fast lane: two rings in shared memory instead of a socketpair
/// (an empty message ends the child).
fn ring_round_trips(n: u64) -> anyhow::Result<Duration> {
    let rings = Shared::<(Ring, Ring)>::new()?;
    let (down, up, wait) = (&rings.0, &rings.1, Wait::ADAPTIVE);
    let child = fork_child(|| -> anyhow::Result<()> {
        loop {
            let task = down.recv(wait)?;
            if task.is_empty() {
                return Ok(());
            }
            let x = u64::from_le_bytes(task.as_slice().try_into()?);
            up.send(&square(x).to_le_bytes(), wait)?;
        }
    })?;
    let start = Instant::now();
    for x in 0..n {
        down.send(&x.to_le_bytes(), wait)?;
        ensure!(up.recv(wait)? == square(x).to_le_bytes(), "a wrong result for {x}");
    }
    let time = start.elapsed();
    down.send(b"", wait)?;
    join_all(&[child])?; // it must have succeeded, or this is an error naming it
    Ok(time)
}
// ANCHOR_END: ring_round_trip

/// One map to wake the workers, then `idle` with nothing to do: the CPU time all of them
/// burn meanwhile, per second (`cpu_time` reads /proc/PID/schedstat).
fn idle_workers(pool: &mut Pool<u64, u64>, idle: Duration) -> anyhow::Result<Duration> {
    pool.map(&[1, 2, 3, 4], Some(1))?;
    let pids = pool.pids();
    let used =
        |pids: &[nix::unistd::Pid]| pids.iter().map(|&pid| cpu_time(pid)).sum::<anyhow::Result<Duration>>();
    let before = used(&pids)?;
    std::thread::sleep(idle);
    Ok((used(&pids)? - before).div_f64(idle.as_secs_f64()))
}

/// A CPU-bound task: `spins` steps of a xorshift generator seeded with `seed`.
fn spin((seed, spins): (u64, u64)) -> u64 {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    for _ in 0..spins {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
    }
    x
}
