//! lesson-threads-or-processes: in Rust, threads run in parallel. When is a process still the
//! right tool?
//!
//! In Python the answer is usually "processes, because of the GIL". In Rust it is a choice,
//! and this lesson shows what each side costs and buys: starting one, a CPU-bound job split
//! in two, big results (threads write them in place; processes copy them or need shared
//! memory), a crash in one worker (a thread's panic, a process killed: what survives), a
//! worker's own memory limit, and running another program. Last, rayon: the job in one line
//! on a pool of threads, after which this process may no longer fork. `--measure` times the
//! start, the CPU job and the big results every way, beside Python's threads and processes.

use std::hint::black_box;
use std::ops::Range;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, ensure};
use multiproc::pool::Pool;
use multiproc::proc::{Children, ExitCode, fork_child, fork_named, join, join_ok};
use multiproc::queue::Queue;
use multiproc::shm::{Array, Shared};
use nix::sys::resource::{Resource, getrlimit, setrlimit};
use nix::sys::signal::{Signal, kill};
use nix::unistd::getpid;
use plumbing::measure::{duration, times};
use plumbing::varies::varies;
use plumbing::{Args, Bench, Case, Lesson, fault};
use rayon::prelude::*;

const LESSON: Lesson = Lesson {
    name: "threads-or-processes",
    about: "Threads or processes? Start a thread and a process; split a CPU-bound job between 2 \
            threads and between 2 processes; make big results in place (threads) or copy them \
            (processes); see what survives a thread's panic, a thread that kills its process and a \
            worker process killed; give a worker process its own memory limit; run another \
            program; and run the job on rayon's threads, after which this process may not fork. \
            --measure times starting each, the CPU job and the big results every way, beside \
            Python's threads and processes.",
    python: concat!(env!("CARGO_MANIFEST_DIR"), "/python/threads_or_processes.py"),
    roles: &[],
};

/// The CPU job: ITEMS items, each ROUNDS rounds of arithmetic; the result is their sum.
const ITEMS: u64 = 20_000;
const ROUNDS: u32 = 2_000;
/// Workers, threads or processes, in every section.
const WORKERS: u64 = 2;
/// Section 3's job: BIG_ITEMS items, each a result of ITEM_WORDS u32s (256 KiB).
const BIG_ITEMS: usize = 64;
const ITEM_WORDS: usize = 64 * 1024;
const WORD_ROUNDS: u32 = 8;
/// Section 5: the worker's own limit on its memory, and what it asks for.
const MIB: u64 = 1 << 20;
const LIMIT: u64 = 256 * MIB;
const ASK: usize = 1024 * MIB as usize;

fn main() -> std::process::ExitCode {
    LESSON.run(lesson)
}

/// The lesson, top to bottom (plumbing's `run` parses its options first, and reports a
/// failure in one line after stopping any child left running).
fn lesson(args: &Args) -> anyhow::Result<()> {
    if args.measure {
        return measure(args);
    }

    // ANCHOR: start
    println!("1. Start a thread and a process, and get a number back from each");
    let start = Instant::now();
    let answer = thread::scope(|s| {
        let worker = thread::Builder::new().spawn_scoped(s, || work(7, ROUNDS))?;
        worker.join().map_err(|_| anyhow!("the thread panicked"))
    })?;
    let by_thread = start.elapsed();
    println!("   a thread returned {answer}: its result is a value, in this process's memory");
    let start = Instant::now();
    let results = Queue::new()?;
    let child = fork_child(|| results.put(&work(7, ROUNDS).to_le_bytes()))?;
    let message = results.get()?.context("the child sent nothing")?;
    join_ok(child)?;
    let by_process = start.elapsed();
    let answer = u64::from_le_bytes(message[..].try_into()?);
    println!("   a process sent {answer}: its memory is its own, so the result came through a pipe");
    println!(
        "   the thread took {}, the process {}",
        varies(duration(by_thread.as_secs_f64())),
        varies(duration(by_process.as_secs_f64()))
    );
    // ANCHOR_END: start

    // ANCHOR: cpu_job
    println!(
        "2. A CPU-bound job: {ITEMS} items of {ROUNDS} rounds each, summed; the loop, then split in {WORKERS}"
    );
    let (expected, alone) = timed(|| Ok(part_sum(0..ITEMS)))?;
    println!("   one thread: sum {expected}");
    let (sum, threaded) = timed(|| with_threads(ITEMS, WORKERS))?;
    println!("   {WORKERS} threads: sum {sum}, the same: {}", sum == expected);
    let (sum, forked) = timed(|| with_processes(ITEMS, WORKERS))?;
    println!("   {WORKERS} processes: sum {sum}, the same: {}", sum == expected);
    let (sum, pooled) = timed(|| with_pool(ITEMS, WORKERS))?;
    println!("   a Pool of {WORKERS} processes (map): sum {sum}, the same: {}", sum == expected);
    println!(
        "   the loop took {}; of its time, the threads {}, the processes {}, the pool {}",
        varies(duration(alone.as_secs_f64())),
        varies(times(threaded, alone)),
        varies(times(forked, alone)),
        varies(times(pooled, alone))
    );
    // ANCHOR_END: cpu_job

    // ANCHOR: big_results
    let kib = ITEM_WORDS * size_of::<u32>() / 1024;
    println!("3. Big results: {BIG_ITEMS} items of {kib} KiB each, made by {WORKERS} workers");
    let mut results = vec![1u32; BIG_ITEMS * ITEM_WORDS]; // written, so its pages exist
    let ((), alone) = timed(|| big_loop(&mut results))?;
    let made = digest(&results);
    println!("   the loop made them in {}", varies(duration(alone.as_secs_f64())));
    results.fill(0);
    let ((), threaded) = timed(|| big_threads(&mut results))?;
    let same = digest(&results) == made;
    println!("   {WORKERS} threads wrote them in place, each into its own &mut half: the same: {same}");
    results.fill(0);
    let ((), queued) = timed(|| big_queue(&mut results))?;
    let (same, copied) = (digest(&results) == made, BIG_ITEMS * kib);
    println!("   {WORKERS} processes sent them through a Queue, {copied} KiB copied twice: the same: {same}");
    let mut shared = Array::<u32>::new(BIG_ITEMS * ITEM_WORDS)?;
    shared.lock()?.fill(0); // its pages exist before the clock starts, as the Vec's do
    let ((), in_place) = timed(|| big_shared(&mut shared))?;
    let same = digest(&shared.lock()?) == made;
    println!("   {WORKERS} processes wrote them into shared memory made before the fork: the same: {same}");
    println!(
        "   of the loop's time: the threads {}, the Queue {}, shared memory {}",
        varies(times(threaded, alone)),
        varies(times(queued, alone)),
        varies(times(in_place, alone))
    );
    // ANCHOR_END: big_results

    println!("4. A worker that fails");
    // ANCHOR: thread_panic
    let sums = Mutex::new(Vec::new());
    let survived = thread::scope(|s| -> anyhow::Result<usize> {
        let mut threads = Vec::new();
        for worker in 0..WORKERS {
            let (thread, sums) = (thread::Builder::new().name(format!("worker {worker}")), &sums);
            threads.push(thread.spawn_scoped(s, move || {
                let mut sums = sums.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                if worker == 1 {
                    panic!("worker 1 gave up"); // while holding the lock
                }
                sums.push(part_sum(share(worker, WORKERS, ITEMS)));
            })?);
        }
        Ok(threads.into_iter().filter_map(|t| t.join().ok()).count()) // a panic: an Err
    })?;
    println!(
        "   a thread panicked: join returned an Err; {survived} of {WORKERS} threads finished; this process lives on"
    );
    match sums.lock() {
        Ok(_) => println!("   the Mutex it held is fine"),
        Err(poisoned) => println!(
            "   the Mutex it held is poisoned: lock() returns an error, with the data inside ({} sum)",
            poisoned.into_inner().len()
        ),
    }
    // ANCHOR_END: thread_panic

    // ANCHOR: thread_kills_process
    // In a process of its own (a "victim", as spawn-join names what it kills on purpose), two
    // threads: one works, the other is killed as the OOM killer would kill it. A signal that
    // kills, kills the whole process.
    let lab = fork_named("victim", || -> anyhow::Result<()> {
        thread::scope(|s| {
            thread::Builder::new().spawn_scoped(s, || part_sum(0..ITEMS))?;
            thread::Builder::new().spawn_scoped(s, || kill(getpid(), Signal::SIGKILL))?;
            Ok(())
        })
    })?;
    let code = join(lab)?;
    println!("   a thread was killed: its whole process died, exitcode {code}, the other thread with it");
    // ANCHOR_END: thread_kills_process

    // ANCHOR: process_killed
    let slots = Shared::<[AtomicU64; 2]>::new()?; // one sum per worker
    let sum_into = |worker: u64| {
        slots[worker as usize].store(part_sum(share(worker, 2, ITEMS)), Relaxed);
        Ok::<_, anyhow::Error>(())
    };
    let healthy = fork_child(|| sum_into(0))?;
    let victim = fork_named("victim", || {
        kill(getpid(), Signal::SIGKILL)?; // as the OOM killer would
        sum_into(1)
    })?;
    let (lost, kept) = (join(victim)?, join_ok(healthy)?); // join_ok: worker 0 must end well
    println!(
        "   a worker process was killed: worker 0 ended with exitcode {kept}, worker 1 with exitcode {lost}"
    );
    let sum = slots[0].load(Relaxed); // join saw worker 0 end: its store is visible
    println!(
        "   worker 0's sum arrived ({}), and this process lives on",
        sum == part_sum(share(0, 2, ITEMS))
    );
    // ANCHOR_END: process_killed

    // ANCHOR: limit
    println!(
        "5. A limit of its own: a worker process may use {} MiB of memory, and asks for {} MiB",
        LIMIT / MIB,
        ASK as u64 / MIB
    );
    let before = getrlimit(Resource::RLIMIT_DATA)?;
    let worker = fork_child(|| -> anyhow::Result<()> {
        setrlimit(Resource::RLIMIT_DATA, LIMIT, LIMIT)?; // this process's, not its parent's
        let mut memory: Vec<u8> = Vec::new();
        match memory.try_reserve_exact(ASK) {
            Ok(()) => println!("   the worker got it: the limit did not hold"),
            Err(_) => {
                println!("   the worker was refused (try_reserve_exact returned an error), and carries on")
            }
        }
        Ok(())
    })?;
    join_ok(worker)?;
    println!("   this process's own limit is unchanged: {}", getrlimit(Resource::RLIMIT_DATA)? == before);
    // ANCHOR_END: limit

    // ANCHOR: program
    println!("6. Another program: only a process can run one");
    let status = std::process::Command::new("sh").args(["-c", "exit 3"]).status().context("run sh")?;
    println!(
        "   sh -c 'exit 3' ran in a process of its own and ended with exitcode {}",
        ExitCode::from(status)
    );
    // ANCHOR_END: program

    // ANCHOR: rayon
    println!(
        "7. rayon: the CPU job in one line, on a pool of {WORKERS} threads that lives until the process ends"
    );
    rayon::ThreadPoolBuilder::new().num_threads(WORKERS as usize).build_global()?;
    let sum: u64 = (0..ITEMS).into_par_iter().map(|item| work(item, ROUNDS)).sum();
    println!("   sum {sum}, the same: {}", sum == expected);
    match fork_child(|| 0) {
        Ok(child) => anyhow::bail!("a fork with rayon's threads alive went ahead: {}", join(child)?),
        Err(refused) => {
            let refused = refused.to_string(); // the kit's whole reason is long: its first clause
            println!("   and now fork_child refuses: {}", refused.split(',').next().unwrap_or_default());
        }
    }
    // ANCHOR_END: rayon
    Ok(())
}

// ANCHOR: work
/// One item of the CPU job: ROUNDS rounds of xorshift, a stand-in for any arithmetic that
/// keeps one CPU busy; the Python twin does the same rounds.
fn work(item: u64, rounds: u32) -> u64 {
    let mut x = item.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(1);
    for _ in 0..rounds {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
    }
    x & 0xFFFF
}

/// The sum of some items of the job.
fn part_sum(items: Range<u64>) -> u64 {
    items.map(|item| work(item, black_box(ROUNDS))).sum()
}

/// The items worker `worker` of `workers` does: a contiguous share.
fn share(worker: u64, workers: u64, items: u64) -> Range<u64> {
    let per_worker = items.div_ceil(workers);
    (worker * per_worker).min(items)..((worker + 1) * per_worker).min(items)
}
// ANCHOR_END: work

// ANCHOR: split
/// Threads: each returns its share's sum; `join` hands it back. They borrow nothing here,
/// but could borrow anything of this function's: `thread::scope` ends only when they have.
fn with_threads(items: u64, workers: u64) -> anyhow::Result<u64> {
    thread::scope(|s| {
        let mut threads = Vec::new();
        for worker in 0..workers {
            let thread = thread::Builder::new().name(format!("worker {worker}"));
            threads.push(thread.spawn_scoped(s, move || part_sum(share(worker, workers, items)))?);
        }
        threads.into_iter().map(|t| t.join().map_err(|_| anyhow!("a worker thread panicked"))).sum()
    })
}

/// Processes: each sends its share's sum through a Queue, 8 bytes; the parent adds them up.
fn with_processes(items: u64, workers: u64) -> anyhow::Result<u64> {
    let mut sums = Queue::new()?;
    let mut children = Children::new("worker");
    for worker in 0..workers {
        children.fork(|| {
            fault::inject(worker as usize); // the tests make worker 1 fail here
            sums.put(&part_sum(share(worker, workers, items)).to_le_bytes())
        })?;
    }
    sums.close(); // get returns None once every worker is gone
    let (mut total, mut got) = (0, 0);
    while let Some(message) = sums.get()? {
        total += u64::from_le_bytes(message[..].try_into()?);
        got += 1;
    }
    children.join_all()?; // names a worker that failed
    ensure!(got == workers, "{got} sums from {workers} workers");
    Ok(total)
}

/// The kit's Pool, as Python's `Pool(2).map(work, items)`: the items go to the workers in
/// chunks, as JSON, and each chunk's results come back the same way, in order.
fn with_pool(items: u64, workers: u64) -> anyhow::Result<u64> {
    let mut pool = Pool::new(Some(workers as usize), item_work)?;
    let all: Vec<u64> = (0..items).collect();
    let sum = pool.map(&all, None)?.into_iter().sum();
    pool.close()?;
    Ok(sum)
}

/// The pool's task: a plain function, which the workers have since they were forked.
fn item_work(item: u64) -> u64 {
    work(item, ROUNDS)
}
// ANCHOR_END: split

// ANCHOR: big
/// One big result: ITEM_WORDS numbers made from the item's number, WORD_ROUNDS rounds of
/// arithmetic each: a job that is mostly computing, with a result as big as its input.
fn fill(item: usize, out: &mut [u32]) {
    let mut x = (item as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    for word in out {
        for _ in 0..WORD_ROUNDS {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
        }
        *word = x as u32;
    }
}

/// One thread: every item in turn. (A Result, as the other ways return.)
fn big_loop(results: &mut [u32]) -> anyhow::Result<()> {
    results.chunks_mut(ITEM_WORDS).enumerate().for_each(|(item, out)| fill(item, out));
    Ok(())
}

/// Threads: each gets its own `&mut` half of the one Vec; the compiler proves they cannot
/// overlap, and nothing is copied.
fn big_threads(results: &mut [u32]) -> anyhow::Result<()> {
    let half = results.len().div_ceil(WORKERS as usize);
    thread::scope(|s| {
        let mut threads = Vec::new();
        for (worker, part) in results.chunks_mut(half).enumerate() {
            let first = worker * half / ITEM_WORDS;
            threads.push(thread::Builder::new().spawn_scoped(s, move || {
                part.chunks_mut(ITEM_WORDS).enumerate().for_each(|(k, out)| fill(first + k, out))
            })?);
        }
        threads.into_iter().try_for_each(|t| t.join().map_err(|_| anyhow!("a worker thread panicked")))
    })
}

/// Processes with a Queue: each makes its items and puts each one, its number first; the
/// parent copies each into place. Every byte is copied into the pipe and out of it.
fn big_queue(results: &mut [u32]) -> anyhow::Result<()> {
    let mut queue = Queue::new()?;
    let mut children = Children::new("worker");
    for worker in 0..WORKERS {
        children.fork(|| -> anyhow::Result<()> {
            let mut out = vec![0u32; ITEM_WORDS];
            for item in share(worker, WORKERS, BIG_ITEMS as u64) {
                fill(item as usize, &mut out);
                let mut message = (item as u32).to_le_bytes().to_vec();
                message.extend_from_slice(bytemuck::cast_slice(&out));
                queue.put(&message)?;
            }
            Ok(())
        })?;
    }
    queue.close(); // get returns None once every worker is gone
    let mut got = 0;
    while let Some(message) = queue.get()? {
        got += 1;
        let item = u32::from_le_bytes(message[..4].try_into()?) as usize;
        let place = results.get_mut(item * ITEM_WORDS..(item + 1) * ITEM_WORDS).context("no such item")?;
        let bytes: &mut [u8] = bytemuck::cast_slice_mut(place);
        ensure!(message.len() == 4 + bytes.len(), "a message of {} bytes", message.len());
        bytes.copy_from_slice(&message[4..]);
    }
    children.join_all()?; // names a worker that failed
    ensure!(got == BIG_ITEMS, "{got} results of {BIG_ITEMS}");
    Ok(())
}

/// Processes with shared memory made before the fork: each writes its half in place.
fn big_shared(shared: &mut Array<u32>) -> anyhow::Result<()> {
    let half = shared.len().div_ceil(WORKERS as usize);
    shared.fork_chunks(half, |worker, part| {
        let first = worker * half / ITEM_WORDS;
        part.chunks_mut(ITEM_WORDS).enumerate().for_each(|(k, out)| fill(first + k, out));
        0
    })
}
// ANCHOR_END: big

/// A digest of the big results, in order, to compare the ways of making them.
fn digest(results: &[u32]) -> u64 {
    results
        .iter()
        .enumerate()
        .fold(0u64, |d, (i, &w)| d.wrapping_mul(31).wrapping_add(u64::from(w) ^ i as u64))
}

/// What `run` returned, and how long it took.
fn timed<T>(run: impl FnOnce() -> anyhow::Result<T>) -> anyhow::Result<(T, Duration)> {
    let start = Instant::now();
    let value = run()?;
    Ok((value, start.elapsed()))
}

const START_THREAD: &str = "start and join one thread";
const START_PROCESS: &str = "start and join one process (fork)";
const START_PROGRAM: &str = "start and wait for another program (sh -c exit)";
const CPU_LOOP: &str = "CPU job: loop, 1 thread (baseline)";
const BIG_LOOP: &str = "big results: loop, 1 thread (baseline)";

// ANCHOR: measure
fn measure(args: &Args) -> anyhow::Result<()> {
    let mut bench = Bench::new(&LESSON, args, "threads or processes: start, a CPU job, big results");
    let starts = args.pick(200, 5);
    bench.run(Case::new(START_THREAD).ops(starts), || (0..starts).try_for_each(|_| start_thread()))?;
    bench.run(Case::new(START_PROCESS).ops(starts).vs(START_THREAD), || {
        (0..starts).try_for_each(|_| join_ok(fork_child(|| 0)?).map(|_| ()))
    })?;
    let programs = args.pick(50, 2);
    bench.run(Case::new(START_PROGRAM).ops(programs).vs(START_THREAD), || {
        for _ in 0..programs {
            let status = std::process::Command::new("sh").args(["-c", "exit 0"]).status()?;
            ensure!(status.success(), "sh failed: {status}");
        }
        Ok(())
    })?;

    let items = args.pick(40_000, 400);
    let expected = part_sum(0..items);
    let cpu = |name: &str| Case::new(name).ops(items).vs(CPU_LOOP);
    bench.run(Case::new(CPU_LOOP).ops(items), || checked(part_sum(0..items), expected))?;
    bench.run(cpu("CPU job: 2 threads (thread::scope)"), || {
        checked(with_threads(items, WORKERS)?, expected)
    })?;
    bench.run(cpu("CPU job: 2 processes (fork)"), || checked(with_processes(items, WORKERS)?, expected))?;
    bench.run(cpu("CPU job: Pool of 2 processes (map)"), || checked(with_pool(items, WORKERS)?, expected))?;

    let mut results = vec![0u32; BIG_ITEMS * ITEM_WORDS];
    big_loop(&mut results)?;
    let expected_digest = digest(&results);
    let bytes = (results.len() * size_of::<u32>()) as u64;
    let big = |name: &str| Case::new(name).ops(BIG_ITEMS as u64).vs(BIG_LOOP);
    let mut shared = Array::<u32>::new(results.len())?;
    bench.run_timed(Case::new(BIG_LOOP).ops(BIG_ITEMS as u64), || {
        timed_digest(&mut results, expected_digest, big_loop)
    })?;
    bench.run_timed(big("big results: 2 threads write in place"), || {
        timed_digest(&mut results, expected_digest, big_threads)
    })?;
    bench.run_timed(big("big results: 2 processes send through a Queue").bytes(bytes), || {
        timed_digest(&mut results, expected_digest, big_queue)
    })?;
    bench.run_timed(big("big results: 2 processes write shared memory"), || {
        shared.lock()?.fill(0);
        let start = Instant::now();
        big_shared(&mut shared)?;
        let time = start.elapsed();
        ensure!(digest(&shared.lock()?) == expected_digest, "the results differ");
        Ok(time)
    })?;

    // Last: rayon's threads live until the process ends, and a process with threads may not
    // fork (the Python rows are started with exec, which is safe).
    rayon::ThreadPoolBuilder::new().num_threads(WORKERS as usize).build_global()?;
    bench.run(cpu("CPU job: rayon, 2 threads"), || {
        checked((0..items).into_par_iter().map(|item| work(item, ROUNDS)).sum(), expected)
    })?;
    bench.python()?;
    bench.finish();
    Ok(())
}
// ANCHOR_END: measure

/// Start a thread that does nothing, and join it.
fn start_thread() -> anyhow::Result<()> {
    thread::scope(|s| {
        let thread = thread::Builder::new().spawn_scoped(s, || ())?;
        thread.join().map_err(|_| anyhow!("the thread panicked"))
    })
}

fn checked(sum: u64, expected: u64) -> anyhow::Result<()> {
    ensure!(sum == expected, "a sum of {sum}, not {expected}");
    Ok(())
}

/// Zero the results, time `run` making them, then check them (untimed).
fn timed_digest(
    results: &mut [u32],
    expected: u64,
    run: impl FnOnce(&mut [u32]) -> anyhow::Result<()>,
) -> anyhow::Result<Duration> {
    results.fill(0);
    let start = Instant::now();
    run(results)?;
    let time = start.elapsed();
    ensure!(digest(results) == expected, "the results differ from the loop's");
    Ok(time)
}
