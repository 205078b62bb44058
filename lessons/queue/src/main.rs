//! lesson-queue: one queue, many processes putting and getting, as Python's `multiprocessing.Queue`.
//!
//! `q = Queue()` made before the workers start, `q.put(x)` in producers, `q.get()` in consumers,
//! one sentinel per consumer to stop it, and `Queue(maxsize)` to hold back a fast producer.
//! This lesson uses `multiproc::queue::Queue` (a pipe, a writers' lock and a readers' lock): three
//! producers and two consumers with sentinels, the hang when a parent joins a child before
//! getting what it put, and a bounded queue's backpressure. `--measure` times small and 1 MiB
//! messages beside a bare pipe, and returns 4 million numbers through the queue beside shared
//! memory, each beside Python.

use std::io::{Read, Write};
use std::sync::atomic::Ordering::{Acquire, Release};
use std::sync::atomic::{AtomicU32, AtomicU64};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use multiproc::proc::{Children, fork_child, join_all, join_ok, join_timeout};
use multiproc::queue::Queue;
use multiproc::shm::Shared;
use plumbing::fault;
use plumbing::random_job::{self, FLOOR, WORKERS, array_unlocked, numbers, private_vec};
use plumbing::{Args, Bench, Case, Lesson, varies};

const LESSON: Lesson = Lesson {
    name: "queue",
    about: "One queue shared by many processes, as Python's multiprocessing.Queue: a pipe carrying \
            length-prefixed messages, a writers' lock and a readers' lock. Three producers and two \
            consumers stopped by sentinels, the hang when a parent joins a child before getting what \
            it put (and the fix), and a bounded queue (maxsize) holding back a fast producer. \
            --measure times small and 1 MiB messages beside a bare pipe, and 4 million numbers \
            returned through the queue beside shared memory, each beside Python.",
    python: concat!(env!("CARGO_MANIFEST_DIR"), "/python/queue_lesson.py"),
    roles: &[],
};

/// Section 1: producers are workers 0, 1, 2; consumers are workers 3 and 4.
const PRODUCERS: usize = 3;
const CONSUMERS: usize = 2;
/// Items each producer puts.
const ITEMS: u32 = 1000;
/// What tells a consumer to stop: an empty message (Python's `None`).
const SENTINEL: &[u8] = b"";
const MIB: usize = 1 << 20;
/// Section 2's message: more than a pipe holds.
const BIG_MESSAGE: usize = MIB;
/// How long section 2 watches the child before it says that join would wait forever.
const PATIENCE: Duration = Duration::from_millis(300);
/// Section 3's queue size, and how many items its producer puts.
const MAXSIZE: u32 = 4;
const BOUNDED_ITEMS: u32 = 20;
/// How long section 3 waits once the queue is full, to see whether the producer gets ahead.
const PAUSE: Duration = Duration::from_millis(100);

fn main() -> std::process::ExitCode {
    LESSON.run(lesson)
}

/// The lesson, top to bottom (plumbing's `run` parses its options first, and reports a
/// failure in one line after stopping any child left running).
fn lesson(args: &Args) -> anyhow::Result<()> {
    if args.measure {
        return measure(args);
    }

    // ANCHOR: many
    println!("1. One queue, {PRODUCERS} producers and {CONSUMERS} consumers");
    println!("   each producer puts {ITEMS} items (its number and a sequence number)");
    // Made before the fork: every child inherits the pipe and maps the same locks.
    let queue = Queue::new()?;
    let mut reports = Queue::new()?; // the consumers' reports to the parent
    let mut producers = Children::new("producer");
    for producer in 0..PRODUCERS {
        producers.fork(|| produce(&queue, producer))?;
    }
    let mut consumers = Children::new("consumer");
    for consumer in 0..CONSUMERS {
        consumers.fork(|| consume(&queue, &reports, consumer))?;
    }
    reports.close(); // the parent puts no reports: EOF once every worker is gone
    // A failed producer means no sentinels: returning its error drops `consumers`, which
    // stops them too, or they would wait forever.
    producers.join_all()?;
    for _ in 0..CONSUMERS {
        queue.put(SENTINEL)?;
    }
    println!("   joined the producers, then put {CONSUMERS} sentinels (empty messages), one per consumer");
    // Get before join: a consumer cannot exit before its report is out of the pipe.
    let mut got = Vec::new();
    while got.len() < CONSUMERS {
        // A consumer that died never reports: the parent's get then ends with an error naming it.
        let Some(report) = reports.get()? else { break };
        got.push(report);
    }
    consumers.join_all()?;
    println!("   got {} reports and joined the consumers", got.len());
    check(&got)?;
    // ANCHOR_END: many

    // ANCHOR: deadlock
    println!(
        "2. Join before get: a child puts {}, and the parent joins it before getting",
        size(BIG_MESSAGE)
    );
    let queue = Queue::new()?;
    let child = fork_child(|| queue.put(&vec![1u8; BIG_MESSAGE]))?;
    // join() would wait forever here; join(timeout=PATIENCE) instead, and look.
    if let Some(code) = join_timeout(child, PATIENCE)? {
        bail!(
            "the child (pid {child}) ended with exitcode {code} before the parent got its {}",
            size(BIG_MESSAGE)
        );
    }
    println!("   after {} ms the child is still running: join would wait forever", PATIENCE.as_millis());
    println!("   the child is blocked in put, writing into a full pipe that nobody reads");
    let message = queue.get()?.context("the queue ended before the message came")?;
    println!("   the fix, get first: got {} bytes", message.len());
    println!("   then join: exitcode {}", join_ok(child)?);
    // ANCHOR_END: deadlock

    // ANCHOR: bounded
    println!("3. A bounded queue: Queue(maxsize={MAXSIZE}) holds back a fast producer");
    let queue = Queue::bounded(MAXSIZE)?;
    let puts = Shared::<AtomicU32>::new()?; // how many puts the child has finished
    let child = fork_child(|| -> anyhow::Result<()> {
        for i in 0..BOUNDED_ITEMS {
            queue.put(&i.to_le_bytes())?;
            puts.fetch_add(1, Release);
        }
        Ok(())
    })?;
    wait_until(|| puts.load(Acquire) == MAXSIZE)?;
    std::thread::sleep(PAUSE);
    let done = puts.load(Acquire);
    ensure!(done == MAXSIZE, "a queue of maxsize {MAXSIZE} took {done} items");
    let pause = PAUSE.as_millis();
    println!("   the child put {done} items straight away; {pause} ms later it has still put only {done}");
    println!("   qsize() is {}: put number {} waits for a free slot", queue.qsize().unwrap_or(0), done + 1);
    let mut most_ahead = i64::from(done); // before the parent's first get
    for got in 1..=BOUNDED_ITEMS {
        queue.get()?.context("the queue ended early")?;
        most_ahead = most_ahead.max(i64::from(puts.load(Acquire)) - i64::from(got));
    }
    println!(
        "   the parent got {BOUNDED_ITEMS} items; the child was never more than {most_ahead} puts ahead"
    );
    ensure!(most_ahead == i64::from(MAXSIZE), "the child got {most_ahead} puts ahead");
    println!("   joined the child: exitcode {}", join_ok(child)?);
    // ANCHOR_END: bounded
    Ok(())
}

// ANCHOR: workers
/// A producer: its items, in order. An item is the producer's number and a sequence number.
fn produce(queue: &Queue, producer: usize) -> anyhow::Result<()> {
    for seq in 0..ITEMS {
        if seq == ITEMS / 2 {
            fault::inject(producer); // the tests make worker 1 fail here
        }
        queue.put(&item(producer, seq))?;
    }
    Ok(())
}

/// A consumer: get until a sentinel comes, then report to the parent every item it got, in
/// the order it got them.
fn consume(queue: &Queue, reports: &Queue, consumer: usize) -> anyhow::Result<()> {
    let mut report = Vec::new();
    // Never EOF: this process holds a write end of the queue too. Hence the sentinel.
    while let Some(message) = queue.get()? {
        if message == SENTINEL {
            break;
        }
        if report.len() == 8 * ITEMS as usize / 2 {
            fault::inject(PRODUCERS + consumer); // only if it gets this far
        }
        report.extend_from_slice(&message);
    }
    reports.put(&report)
}

fn item(producer: usize, seq: u32) -> [u8; 8] {
    let mut item = [0u8; 8];
    item[..4].copy_from_slice(&(producer as u32).to_le_bytes());
    item[4..].copy_from_slice(&seq.to_le_bytes());
    item
}
// ANCHOR_END: workers

// ANCHOR: check
/// The parent's checks: every item got exactly once, and in each consumer, each producer's
/// items in the order they were put. Which consumer got how many varies from run to run.
fn check(reports: &[Vec<u8>]) -> anyhow::Result<()> {
    let mut times_got = vec![vec![0u32; ITEMS as usize]; PRODUCERS];
    let mut in_order = true;
    let mut counts = Vec::new();
    for report in reports {
        let mut last: Vec<Option<u32>> = vec![None; PRODUCERS];
        for item in report.chunks_exact(8) {
            let producer = u32::from_le_bytes(item[..4].try_into()?) as usize;
            let seq = u32::from_le_bytes(item[4..].try_into()?);
            times_got[producer][seq as usize] += 1;
            in_order &= last[producer] < Some(seq); // None is less than any Some
            last[producer] = Some(seq);
        }
        counts.push(report.len() / 8);
    }
    counts.sort_unstable();
    let total: usize = counts.iter().sum();
    println!("   the consumers got {} items, fewest first", varies(format!("{counts:?}")));
    println!("   {total} items in all");
    for (producer, times) in times_got.iter().enumerate() {
        let once = times.iter().all(|&t| t == 1);
        let seqs: u64 = times.iter().enumerate().map(|(seq, &t)| seq as u64 * u64::from(t)).sum();
        println!(
            "   producer {producer}: every item got exactly once: {once}; sequence numbers add up to {seqs}"
        );
        ensure!(once, "producer {producer}'s items were lost or got twice");
    }
    println!("   in each consumer, every producer's items came in the order they were put: {in_order}");
    ensure!(in_order, "a consumer got a producer's items out of order");
    Ok(())
}
// ANCHOR_END: check

/// `bytes` as the lesson prints a size: `1 MiB`, `64 KiB` or `1000 bytes`.
fn size(bytes: usize) -> String {
    match bytes {
        b if b >= MIB && b % MIB == 0 => format!("{} MiB", b / MIB),
        b if b >= 1024 && b % 1024 == 0 => format!("{} KiB", b / 1024),
        b => format!("{b} bytes"),
    }
}

/// Wait, looking every millisecond, until `done()`; give up after 5 seconds.
fn wait_until(done: impl Fn() -> bool) -> anyhow::Result<()> {
    let start = Instant::now();
    while !done() {
        ensure!(start.elapsed() < Duration::from_secs(5), "the child did not fill the queue within 5 s");
        std::thread::sleep(Duration::from_millis(1));
    }
    Ok(())
}

/// Bytes in a small item.
const SMALL: usize = 64;
/// Producers, and consumers, in the contended case.
const PAIRS: usize = 2;

// ANCHOR: measure
fn measure(args: &Args) -> anyhow::Result<()> {
    let mut bench =
        Bench::new(&LESSON, args, "messages through a Queue, beside a bare pipe and shared memory");

    // Small items: how many per second. The floor: the bare pipe underneath the queue.
    let n = args.pick(200_000, 1_000);
    let small = |name: &str| Case::new(name).ops(n as u64);
    let small_floor = format!("pipe raw {SMALL} B (floor)");
    bench.run_timed(small(&small_floor), || pipe_raw(n, SMALL))?;
    let one = format!("queue {SMALL} B, 1 producer 1 consumer");
    bench.run_timed(small(&one).vs(&small_floor), || queue_1x1(n, SMALL))?;
    let pairs = format!("queue {SMALL} B, {PAIRS} producers {PAIRS} consumers");
    bench.run_timed(small(&pairs).vs(&small_floor), || queue_pairs(n, SMALL))?;

    // 1 MiB items: how many MiB per second.
    let count = args.pick(256, 4);
    let big = |name: &str| Case::new(name).ops(count as u64).bytes((count * MIB) as u64);
    let big_floor = format!("pipe raw {} (floor)", size(MIB));
    bench.run_timed(big(&big_floor), || pipe_raw(count, MIB))?;
    let one = format!("queue {}, 1 producer 1 consumer", size(MIB));
    bench.run_timed(big(&one).vs(&big_floor), || queue_1x1(count, MIB))?;

    // The value-array lesson's question: WORKERS workers return their numbers to the parent.
    let per_worker = args.pick(1_000_000, 10_000);
    let case = |name: &str| Case::new(name).ops((WORKERS * per_worker) as u64);
    // The same numbers, floor and lock=False case as value-array's: plumbing::random_job.
    let mut mine = Vec::new();
    let (_, expected) = private_vec(&mut mine, per_worker)?;
    let checked = |run| random_job::checked(run, expected);
    bench.run_timed(case(FLOOR), || checked(private_vec(&mut mine, per_worker)))?;
    bench.run_timed(case(&format!("queue to the parent, {WORKERS} workers")).vs(FLOOR), || {
        checked(queue_to_parent(per_worker))
    })?;
    let unlocked = format!("Array lock=False, {WORKERS} workers");
    bench.run_timed(case(&unlocked).vs(FLOOR), || checked(array_unlocked(per_worker)))?;

    bench.python()?;
    bench.finish();
    Ok(())
}
// ANCHOR_END: measure

// ANCHOR: floor
/// The floor: a child writes `count` messages of `size` bytes into a bare pipe, and the
/// parent reads them: no framing, no locks, the reader knows the size.
fn pipe_raw(count: usize, size: usize) -> anyhow::Result<Duration> {
    let start = Instant::now();
    let (mut reader, mut writer) = std::io::pipe().context("create a pipe")?;
    let child = fork_child(move || -> anyhow::Result<()> {
        let message = vec![b'x'; size];
        for _ in 0..count {
            writer.write_all(&message).context("write a message")?;
        }
        Ok(())
    })?;
    let mut message = vec![0u8; size];
    for _ in 0..count {
        reader.read_exact(&mut message).context("read a message")?;
    }
    join_all(&[child])?;
    Ok(start.elapsed())
}
// ANCHOR_END: floor

// ANCHOR: one_one
/// The same through the queue: framing, the writers' lock, the readers' lock.
fn queue_1x1(count: usize, size: usize) -> anyhow::Result<Duration> {
    let start = Instant::now();
    let queue = Queue::new()?;
    let child = fork_child(|| -> anyhow::Result<()> {
        let message = vec![b'x'; size];
        for _ in 0..count {
            queue.put(&message)?;
        }
        Ok(())
    })?;
    for _ in 0..count {
        let message = queue.get()?.context("the queue ended early")?;
        ensure!(message.len() == size, "a message of {} bytes", message.len());
    }
    join_all(&[child])?;
    Ok(start.elapsed())
}
// ANCHOR_END: one_one

/// PAIRS producers and PAIRS consumers, which stop at a sentinel and add up what they got.
fn queue_pairs(count: usize, size: usize) -> anyhow::Result<Duration> {
    let start = Instant::now();
    let queue = Queue::new()?;
    let got = Shared::<AtomicU64>::new()?;
    let mut producers = Children::new("producer");
    for _ in 0..PAIRS {
        producers.fork(|| -> anyhow::Result<()> {
            let message = vec![b'x'; size];
            for _ in 0..count / PAIRS {
                queue.put(&message)?;
            }
            Ok(())
        })?;
    }
    let mut consumers = Children::new("consumer");
    for _ in 0..PAIRS {
        consumers.fork(|| -> anyhow::Result<()> {
            let mut mine = 0;
            while queue.get()?.context("the queue ended early")? != SENTINEL {
                mine += 1;
            }
            got.fetch_add(mine, Release);
            Ok(())
        })?;
    }
    producers.join_all()?;
    for _ in 0..PAIRS {
        queue.put(SENTINEL)?;
    }
    consumers.join_all()?;
    let time = start.elapsed();
    let got = got.load(Acquire);
    ensure!(got == (count / PAIRS * PAIRS) as u64, "the consumers got {got} messages");
    Ok(time)
}

// ANCHOR: to_parent
/// Each worker puts its numbers as one message: its number, then the numbers' bytes.
fn queue_to_parent(per_worker: usize) -> anyhow::Result<(Duration, f64)> {
    let start = Instant::now();
    let queue = Queue::new()?;
    let mut workers = Children::new("worker");
    for worker in 0..WORKERS {
        workers.fork(|| {
            let mut message = Vec::with_capacity(8 * (per_worker + 1));
            message.extend_from_slice(&(worker as u64).to_le_bytes());
            numbers(worker, per_worker).for_each(|x| message.extend_from_slice(&x.to_le_bytes()));
            queue.put(&message)
        })?;
    }
    let mut parts = vec![Vec::new(); WORKERS];
    for _ in 0..WORKERS {
        let message = queue.get()?.context("the queue ended early")?;
        let worker = u64::from_le_bytes(message[..8].try_into()?) as usize;
        parts[worker] = message;
    }
    workers.join_all()?; // after the gets, as section 2 says
    let time = start.elapsed();
    let floats = parts.iter().flat_map(|p| p[8..].chunks_exact(8));
    Ok((time, floats.map(|b| f64::from_le_bytes(b.try_into().expect("8 bytes"))).sum()))
}
// ANCHOR_END: to_parent
