//! lesson-fast-lane: a ring buffer in shared memory that hands a message to another process
//! in well under a microsecond, and the ways to wait for one.
//!
//! Every channel in the lessons before this one (a pipe, a socketpair, a queue, a proxy, a
//! pool) costs a round trip of 15 to 25 µs on a 2-CPU VM, and most of that is not the copy:
//! it is the kernel waking the other process. A ring in shared memory needs no system call
//! while both sides are awake and looking at it. This lesson sends messages through the
//! kit's ring (`multiproc::ring`), times a ping-pong with each way to wait (spin, spin and
//! yield, sleep on a futex, spin a moment and then sleep) beside a socketpair, measures what
//! an idle waiter costs in CPU time, and shows that a waiting side notices a peer that dies.
//! `--measure` times it all, with and without a busy process beside, beside Python.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use multiproc::proc::{Children, ExitCode, fork_named, fork_named_closing, join, join_all, join_ok};
use multiproc::ring::{Ring, Wait};
use multiproc::shm::Shared;
use nix::sys::signal::{Signal, raise};
use plumbing::measure::{cpu_time, duration, times};
use plumbing::varies::varies;
use plumbing::{Args, Bench, Case, Lesson};

const LESSON: Lesson = Lesson {
    name: "fast-lane",
    about: "The fast lane: a ring buffer in shared memory between two processes. Send messages \
            through it (one longer than the ring), time a ping-pong with each way to wait (spin, \
            spin + yield, sleep on a futex, spin then sleep) beside a socketpair, measure the CPU \
            an idle waiter burns, and see a waiting process notice a peer that dies. --measure \
            times each way, with and without a busy process beside, and Python's ring.",
    python: concat!(env!("CARGO_MANIFEST_DIR"), "/python/fast_lane.py"),
    roles: &[],
};

/// The ways to wait, in the order the lesson shows them.
const WAITS: [Wait; 4] = [Wait::Spin, Wait::SpinYield, Wait::Sleep, Wait::ADAPTIVE];
/// Round trips in section 2.
const TRIPS: usize = 2_000;
/// How long section 3's waiter waits for nothing.
const IDLE: Duration = Duration::from_millis(200);

fn main() -> std::process::ExitCode {
    LESSON.run(lesson)
}

/// The lesson, top to bottom (plumbing's `run` parses its options first, and reports a
/// failure in one line after stopping any child left running).
fn lesson(args: &Args) -> anyhow::Result<()> {
    if args.measure {
        return measure(args);
    }

    // ANCHOR: messages
    println!("1. A ring in shared memory: the parent sends, a child answers");
    // Two rings, one each way, made before fork: the child maps the same pages.
    let rings = Shared::<(Ring, Ring)>::new()?;
    let (down, up) = &*rings;
    let big = vec![7u8; 200_000]; // longer than a ring (64 KiB): it goes in pieces
    let echo = fork_named("echo", || -> anyhow::Result<()> {
        for _ in 0..3 {
            let message = down.recv(Wait::ADAPTIVE)?;
            let answer = format!("got {} bytes, summing to {}", message.len(), sum(&message));
            up.send(answer.as_bytes(), Wait::ADAPTIVE)?;
        }
        Ok(())
    })?;
    for message in [&b"ping"[..], b"hello from the parent", &big] {
        down.send(message, Wait::ADAPTIVE)?;
        let answer = up.recv(Wait::ADAPTIVE)?;
        println!("   sent {} bytes; the child: {}", message.len(), String::from_utf8_lossy(&answer));
    }
    println!("   joined the echo child: exitcode {}", join_ok(echo)?);
    // ANCHOR_END: messages

    // ANCHOR: ways
    println!("2. Ping-pong, {TRIPS} round trips of 8 bytes: a socketpair, then each way to wait");
    let socket = socket_ping_pong(TRIPS, false)?;
    println!("   socketpair:             {} a round trip", per_trip(socket, TRIPS));
    for wait in WAITS {
        let time = ring_ping_pong(TRIPS, wait, false)?;
        let against = varies(times(time, socket));
        println!(
            "   {:<23} {} a round trip, {against} the socketpair's",
            format!("{wait}:"),
            per_trip(time, TRIPS)
        );
    }
    // ANCHOR_END: ways

    // ANCHOR: idle
    println!("3. A waiter with nothing to receive for {} ms: the CPU it burns", IDLE.as_millis());
    for wait in WAITS {
        let share = idle_cpu(IDLE, wait)?;
        let verdict = if share > 0.10 { "busy: it keeps a CPU" } else { "asleep: the CPU is free" };
        println!(
            "   {:<23} {} of a CPU; {verdict}",
            format!("{wait}:"),
            varies(format!("{:.0}%", share * 100.0))
        );
    }
    // ANCHOR_END: idle

    // ANCHOR: peer_dies
    println!("4. A peer that dies while the parent waits for its answer");
    for wait in [Wait::Spin, Wait::ADAPTIVE] {
        let (error, after) = answer_that_never_comes(wait, |_| {
            let _ = raise(Signal::SIGKILL); // a crash, before the answer
        })?;
        println!(
            "   {wait}: the victim is killed; the wait ended after {}, with",
            duration(after.as_secs_f64())
        );
        println!("   {error}");
    }
    let (error, after) = answer_that_never_comes(Wait::ADAPTIVE, |_| {})?; // exits 0, silent
    println!(
        "   a victim that exits 0 without a word; the wait ended after {}, with",
        duration(after.as_secs_f64())
    );
    println!("   {error}");
    // ANCHOR_END: peer_dies
    Ok(())
}

/// The bytes' sum, so that the child can show it read them all.
fn sum(bytes: &[u8]) -> u64 {
    bytes.iter().map(|&b| u64::from(b)).sum()
}

/// Time per round trip, as the table prints it.
fn per_trip(time: Duration, trips: usize) -> String {
    duration(time.as_secs_f64() / trips as f64)
}

// ANCHOR: ping_pong
/// `trips` round trips of an 8-byte message through two rings: the parent sends a
/// number, a child sends it back. With `worst`, the slowest single trip instead of the
/// total. (If a trip fails, the echo child is left to the lesson's end, which names it if
/// it died, and stops it.)
fn ring_ping_pong(trips: usize, wait: Wait, worst: bool) -> anyhow::Result<Duration> {
    let rings = Shared::<(Ring, Ring)>::new()?;
    let (down, up) = &*rings;
    let echo = fork_named("echo", || -> anyhow::Result<()> {
        let mut message = Vec::with_capacity(8);
        for _ in 0..=trips {
            down.recv_into(&mut message, wait)?;
            up.send(&message, wait)?;
        }
        Ok(())
    })?;
    let mut answer = Vec::with_capacity(8);
    let time = timed_trips(trips, worst, |trip| {
        down.send(&trip.to_le_bytes(), wait)?;
        up.recv_into(&mut answer, wait)?;
        ensure!(answer == trip.to_le_bytes(), "trip {trip} came back as {answer:?}");
        Ok(())
    })?;
    join_all(&[echo])?;
    Ok(time)
}
// ANCHOR_END: ping_pong

/// The same ping-pong over a socketpair: 8 bytes written, 8 bytes read back.
fn socket_ping_pong(trips: usize, worst: bool) -> anyhow::Result<Duration> {
    let (mut parent_end, mut child_end) = UnixStream::pair().context("create a socketpair")?;
    let echo = fork_named_closing("echo", [&mut parent_end], move || -> anyhow::Result<()> {
        let mut message = [0u8; 8];
        for _ in 0..=trips {
            child_end.read_exact(&mut message).context("read a message")?;
            child_end.write_all(&message).context("write it back")?;
        }
        Ok(())
    })?;
    let mut answer = [0u8; 8];
    let time = timed_trips(trips, worst, |trip| {
        parent_end.write_all(&trip.to_le_bytes()).context("write a message")?;
        parent_end.read_exact(&mut answer).context("read the echo")?;
        ensure!(answer == trip.to_le_bytes(), "trip {trip} came back as {answer:?}");
        Ok(())
    })?;
    join_all(&[echo])?;
    Ok(time)
}

/// Run `trip` for 0..=trips: the total time of trips 1 to `trips`, or with `worst` the
/// slowest of them. Trip 0 is not timed: it waits for the child to start.
fn timed_trips(
    trips: usize,
    worst: bool,
    mut trip: impl FnMut(u64) -> anyhow::Result<()>,
) -> anyhow::Result<Duration> {
    trip(0)?;
    let (start, mut slowest) = (Instant::now(), Duration::ZERO);
    for number in 1..=trips as u64 {
        let one = Instant::now();
        trip(number)?;
        slowest = slowest.max(one.elapsed());
    }
    Ok(if worst { slowest } else { start.elapsed() })
}

// ANCHOR: idle_cpu
/// A child waits `idle` on an empty ring; the share of one CPU it burnt meanwhile, as the
/// kernel counts its time on a CPU (`cpu_time` reads /proc/PID/schedstat, in nanoseconds).
fn idle_cpu(idle: Duration, wait: Wait) -> anyhow::Result<f64> {
    let ring = Shared::<Ring>::new()?;
    let mut children = Children::new("waiter");
    let waiter = children.fork(|| ring.recv(wait).map(drop))?;
    std::thread::sleep(Duration::from_millis(10)); // let it start waiting
    let before = cpu_time(waiter)?;
    std::thread::sleep(idle);
    let used = cpu_time(waiter)? - before;
    ring.send(b"stop", wait)?;
    children.join_all()?;
    Ok(used.as_secs_f64() / idle.as_secs_f64())
}

// ANCHOR_END: idle_cpu

// ANCHOR: never
/// A child named victim gets a message and, instead of answering, does `fail` (dies, or
/// returns). The parent waits for the answer as `wait` says: the error that ends its wait,
/// and how long after the message it came.
fn answer_that_never_comes(wait: Wait, fail: fn(&[u8])) -> anyhow::Result<(String, Duration)> {
    let rings = Shared::<(Ring, Ring)>::new()?;
    let (down, up) = &*rings;
    let victim = fork_named("victim", || -> anyhow::Result<()> {
        fail(&down.recv(wait)?);
        Ok(())
    })?;
    down.send(b"are you there?", wait)?;
    let start = Instant::now();
    let Err(error) = up.recv(wait) else { bail!("an answer came from the victim") };
    let after = start.elapsed();
    let code = join(victim)?; // reap it: it ended, as the error says
    ensure!(matches!(code, ExitCode(-9) | ExitCode(0)), "the victim ended with exitcode {code}");
    Ok((error.to_string(), after))
}
// ANCHOR_END: never

// ANCHOR: measure
fn measure(args: &Args) -> anyhow::Result<()> {
    let mut bench = Bench::new(&LESSON, args, "round trips of 8 bytes between two processes");

    let trips = args.pick(20_000, 200);
    let case = |name: &str| Case::new(name).ops(trips as u64);
    let floor = "socketpair round trip (baseline)";
    bench.run_timed(case(floor), || socket_ping_pong(trips, false))?;
    let spins =
        [Wait::SpinThenSleep(Duration::from_micros(2)), Wait::SpinThenSleep(Duration::from_micros(100))];
    for wait in WAITS.into_iter().chain(spins) {
        bench.run_timed(case(&format!("ring, {wait}")).vs(floor), || ring_ping_pong(trips, wait, false))?;
    }

    // The same with a process beside that keeps a CPU busy: two CPUs, three processes. Each
    // run lasts many of the scheduler's time slices (a few milliseconds each).
    let busy = [Wait::Spin, Wait::Sleep, Wait::SpinThenSleep(Duration::from_micros(2)), Wait::ADAPTIVE];
    let floor = "socketpair, a busy process beside";
    bench.run_timed(case(floor), || with_busy_process(|| socket_ping_pong(trips, false)))?;
    for wait in busy {
        let name = format!("ring, {wait}, a busy process beside");
        bench
            .run_timed(case(&name).vs(floor), || with_busy_process(|| ring_ping_pong(trips, wait, false)))?;
    }
    // The slowest single round trip of each run.
    let worst =
        |name: &str| Case::new(&format!("slowest round trip of a run: {name}, a busy process beside"));
    let floor = "slowest round trip of a run: socketpair, a busy process beside";
    bench.run_timed(worst("socketpair"), || with_busy_process(|| socket_ping_pong(trips, true)))?;
    for wait in busy {
        let case = worst(&format!("ring, {wait}")).vs(floor);
        bench.run_timed(case, || with_busy_process(|| ring_ping_pong(trips, wait, true)))?;
    }

    // CPU time an idle waiter burns in a second of nothing to receive.
    let idle = args.pick(Duration::from_secs(1), Duration::from_millis(50));
    for wait in WAITS {
        let case = Case::new(&format!("CPU time an idle waiter burns per second: {wait}"));
        bench.run_timed(case, || Ok(Duration::from_secs_f64(idle_cpu(idle, wait)?)))?;
    }

    bench.python()?;
    bench.finish();
    Ok(())
}
// ANCHOR_END: measure

/// Run `work` while a child named busy keeps a CPU busy.
fn with_busy_process<T>(work: impl FnOnce() -> anyhow::Result<T>) -> anyhow::Result<T> {
    let stop = Shared::<AtomicBool>::new()?;
    let mut children = Children::new("busy");
    children.fork(|| {
        while !stop.load(Relaxed) {
            std::hint::spin_loop();
        }
        0
    })?;
    let result = work();
    stop.store(true, Relaxed);
    children.join_all()?;
    result
}
