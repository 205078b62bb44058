//! lesson-value-array: numbers in shared memory, as Python's `Value` and `Array` give them.
//!
//! `multiprocessing.Value('q', 0)` and `Array('d', n)` put numbers in memory that every
//! child shares, each with a lock; `lock=False` leaves the lock out. This lesson does the
//! same with `multiproc::shm::Value` and `multiproc::shm::Array`: a counter that children
//! add to under its lock, an array that children fill without a lock, each through its own
//! `&mut` part, and the same array with the lock taken for every element. `--measure` asks
//! why shared memory can be slower than a queue: 4 workers make 4 million random numbers
//! for the parent, through a pipe, through an Array with and without the lock, beside one
//! process filling a private `Vec`, and beside Python.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use memmap2::MmapMut;
use multiproc::crew::Crew;
use multiproc::proc::{Children, fork_child, join_all};
use multiproc::shm::{Array, Atomics, Value};
use plumbing::fault;
use plumbing::random_job::{self, FLOOR, array_unlocked, numbers, private_vec};
use plumbing::{Args, Bench, Case, Lesson};
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;

const LESSON: Lesson = Lesson {
    name: "value-array",
    about: "Numbers in shared memory, as Python's multiprocessing.Value and Array give them: a \
            counter that child processes add to under its lock, an array that children fill with \
            lock=False (each its own part: the type system instead of a lock), and the same array \
            with the lock taken for every element. --measure times 4 workers making 4 million \
            random numbers for the parent: through a pipe, through an Array with lock=True and \
            with lock=False, beside one process filling a private Vec, and beside Python.",
    python: concat!(env!("CARGO_MANIFEST_DIR"), "/python/value_array.py"),
    roles: &[],
};

/// Child processes in every section, numbered from 0: as many as the measured job has.
const WORKERS: usize = random_job::WORKERS;
/// Additions per worker in section 1.
const ADDS: i64 = 10_000;
/// Elements in the arrays of sections 2 and 3.
const LEN: usize = 40_000;
/// What the child of section 4 writes.
const MARK: u8 = 42;

fn main() -> std::process::ExitCode {
    LESSON.run(lesson)
}

/// The lesson, top to bottom (plumbing's `run` parses its options first, and reports a
/// failure in one line after stopping any child left running).
fn lesson(args: &Args) -> anyhow::Result<()> {
    if args.measure {
        return measure(args);
    }

    // ANCHOR: value
    println!("1. A shared counter: Value, and {WORKERS} workers that add 1 to it {ADDS} times each");
    // Made before the fork, mapped MAP_SHARED: every child writes to the same page.
    let counter = Value::new(0i64)?;
    let mut workers = Children::new("worker");
    for worker in 0..WORKERS {
        workers.fork(|| {
            for i in 0..ADDS {
                // Python: `with counter.get_lock(): counter.value += 1`
                let mut count = counter.lock()?;
                if i == ADDS / 2 {
                    fault::inject(worker); // the tests make worker 1 die here, holding the lock
                }
                *count += 1;
            } // each guard is dropped at the end of its turn: the lock is let go
            Ok(())
        })?;
    }
    // If a worker dies holding the lock, the others would wait for it forever:
    // join_all then kills them and says which worker failed.
    workers.join_all()?;
    println!("   joined {WORKERS} workers");
    let count = *counter.lock()?;
    println!("   final count: {count} (expected {WORKERS} x {ADDS} = {})", WORKERS as i64 * ADDS);
    ensure!(count == WORKERS as i64 * ADDS, "lost updates: the count is {count}");
    // ANCHOR_END: value

    // ANCHOR: unlocked
    println!("2. An Array with lock=False: each worker writes its own part, a[i] = i");
    let mut array = Array::<f64>::new(LEN)?;
    let part_len = LEN / WORKERS;
    // fork_chunks cuts the values as chunks_mut(part_len) does, into parts that do not
    // overlap, and forks one child per part with its part as a `&mut [f64]`: no two
    // processes can write the same element. The type system instead of a lock.
    array.fork_chunks(part_len, |worker, part| {
        let first = worker * part_len;
        for (j, x) in part.iter_mut().enumerate() {
            if j == part_len / 2 {
                fault::inject(worker); // the tests make worker 1 fail here
            }
            *x = (first + j) as f64;
        }
        0
    })?; // returns once every child is joined: only then can the parent reach the values
    show(&array.lock()?, part_len)?; // the parent sees every part: the pages are shared
    // ANCHOR_END: unlocked

    // ANCHOR: locked
    println!("3. The same with lock=True: the lock is taken for every element");
    let array = Array::<f64>::new(LEN)?;
    let mut workers = Children::new("worker");
    for worker in 0..WORKERS {
        workers.fork(|| {
            let first = worker * part_len;
            for i in first..first + part_len {
                if i == first + part_len / 2 {
                    fault::inject(worker);
                }
                // Python: `a[i] = i` on an Array made with lock=True
                array.lock()?[i] = i as f64;
            }
            Ok(())
        })?;
    }
    workers.join_all()?;
    check_sum(&array.lock()?)?;
    // ANCHOR_END: locked

    // ANCHOR: private
    println!("4. Why MAP_SHARED: a child writes {MARK} into two mappings made before the fork");
    let mut private = MmapMut::map_anon(8).context("map 8 private bytes (memmap2 map_anon)")?;
    let shared = Value::new(0u8)?;
    let child = fork_child(|| {
        private[0] = MARK; // MAP_PRIVATE: this write copies the page, for this process only
        *shared.lock()? = MARK; // MAP_SHARED: the parent's page too
        Ok(())
    })?;
    join_all(&[child])?;
    println!("   memmap2 map_anon (MAP_PRIVATE): the parent reads {}", private[0]);
    println!("   multiproc::shm::Value (memfd, MAP_SHARED): the parent reads {}", *shared.lock()?);
    // ANCHOR_END: private
    Ok(())
}

// ANCHOR: show
/// The parent's view, after joining: who wrote which part.
fn show(values: &[f64], part_len: usize) -> anyhow::Result<()> {
    for (worker, part) in values.chunks(part_len).enumerate() {
        let (first, last) = (worker * part_len, (worker + 1) * part_len - 1);
        println!(
            "   worker {worker} wrote a[{first}..={last}]: {}, {}, ..., {}",
            part[0],
            part[1],
            part[part_len - 1]
        );
    }
    check_sum(values)
}

/// The sum of all values, which the parent can only get right if it sees every write.
fn check_sum(values: &[f64]) -> anyhow::Result<()> {
    let sum: f64 = values.iter().sum();
    let expected = (LEN * (LEN - 1) / 2) as f64; // 0 + 1 + ... + (LEN - 1)
    println!("   sum of all {LEN} values: {sum} (expected {expected})");
    ensure!(sum == expected, "the parent does not see what the workers wrote");
    Ok(())
}
// ANCHOR_END: show

// ANCHOR: measure
fn measure(args: &Args) -> anyhow::Result<()> {
    let mut bench = Bench::new(&LESSON, args, "4 workers make 4 million random f64 for the parent");
    let per_worker = args.pick(1_000_000, 10_000);
    let case = |name: &str| Case::new(name).ops((WORKERS * per_worker) as u64);
    let vs_floor = |name: &str| case(name).vs(FLOOR);

    // The numbers, the floor and the lock=False case are plumbing::random_job's: the queue
    // lesson measures the same job. Every case must give the parent the floor's sum.
    let mut mine = Vec::new();
    let (_, expected) = private_vec(&mut mine, per_worker)?;
    let checked = |run| random_job::checked(run, expected);
    bench.run_timed(case(FLOOR), || checked(private_vec(&mut mine, per_worker)))?;
    bench.run_timed(vs_floor("private Vecs, 4 workers (no sharing)"), || private_vecs(per_worker))?;
    bench.run_timed(vs_floor("pipe to the parent, 4 workers"), || checked(pipe_to_parent(per_worker)))?;
    bench.run_timed(vs_floor("Array lock=True, 4 workers"), || checked(array_locked(per_worker)))?;
    bench.run_timed(vs_floor("Array lock=False, 4 workers"), || checked(array_unlocked(per_worker)))?;
    // The same, as a long-running program would: workers forked once, pages faulted in once.
    let array = Atomics::<AtomicU64>::new(WORKERS * per_worker)?;
    let mut crew = start_crew(&array, per_worker)?;
    let case = vs_floor("Array lock=False, 4 long-lived workers, populated");
    bench.run_counted(case, || {
        let round = crew.round()?; // when it returns, every worker's stores are seen here
        let sum = array.iter().map(|x| f64::from_bits(x.load(Relaxed))).sum();
        Ok((checked(Ok((round.time, sum)))?, round.faults))
    })?;
    crew.stop()?;

    bench.python()?;
    bench.finish();
    Ok(())
}
// ANCHOR_END: measure

// ANCHOR: crew
/// Array lock=False the way a long-running program does it: a crew of 4 workers forked once
/// and kept, each writing its part of `array` in every round. The array holds atomics, since
/// the parent reads it while the workers live (`Array::fork_parts` hands out plain parts only
/// until they end). Each worker faults its part's pages in once, as it starts; every round
/// after that writes into pages already mapped.
fn start_crew(array: &Atomics<AtomicU64>, per_worker: usize) -> anyhow::Result<Crew<WORKERS>> {
    let part = |worker: usize| worker * per_worker..(worker + 1) * per_worker;
    Crew::start(
        "worker",
        |worker| _ = array.populate(part(worker)), // once, as it starts
        |worker| {
            // every round
            for (x, number) in array[part(worker)].iter().zip(numbers(worker, per_worker)) {
                x.store(number.to_bits(), Relaxed);
            }
        },
    )
}
// ANCHOR_END: crew

// ANCHOR: private_vecs
/// The work in 4 processes, each into memory of its own, and nothing sent: the price of
/// starting the workers and of their fresh pages, without any sharing.
fn private_vecs(per_worker: usize) -> anyhow::Result<Duration> {
    let start = Instant::now();
    let mut workers = Children::new("worker");
    for worker in 0..WORKERS {
        workers.fork(move || {
            let mine: Vec<f64> = numbers(worker, per_worker).collect();
            std::hint::black_box(mine); // keep the compiler from skipping the work
            0
        })?;
    }
    workers.join_all()?;
    Ok(start.elapsed())
}
// ANCHOR_END: private_vecs

// ANCHOR: pipe
fn pipe_to_parent(per_worker: usize) -> anyhow::Result<(Duration, f64)> {
    let start = Instant::now();
    let (mut workers, mut readers) = (Children::new("worker"), Vec::new());
    for worker in 0..WORKERS {
        let (reader, mut writer) = std::io::pipe().context("create a pipe")?;
        workers.fork(move || {
            let mine: Vec<f64> = numbers(worker, per_worker).collect();
            // The f64s as the bytes they are (bytemuck checks the cast): no serialising.
            writer.write_all(bytemuck::cast_slice(&mine)).context("send the numbers")
        })?;
        readers.push(reader);
    }
    // Read before joining: a worker cannot exit until its last bytes are out of the pipe.
    let mut all = vec![0.0f64; WORKERS * per_worker];
    for (reader, part) in readers.iter_mut().zip(all.chunks_mut(per_worker)) {
        reader.read_exact(bytemuck::cast_slice_mut(part)).context("receive a worker's numbers")?;
    }
    workers.join_all()?;
    let time = start.elapsed();
    Ok((time, all.iter().sum()))
}
// ANCHOR_END: pipe

// ANCHOR: array_locked
fn array_locked(per_worker: usize) -> anyhow::Result<(Duration, f64)> {
    let start = Instant::now();
    let array = Array::<f64>::new(WORKERS * per_worker)?;
    let mut workers = Children::new("worker");
    for worker in 0..WORKERS {
        workers.fork(|| {
            let first = worker * per_worker;
            for (i, x) in (first..).zip(numbers(worker, per_worker)) {
                array.lock()?[i] = x; // its own index range, but through the one lock
            }
            Ok(())
        })?;
    }
    workers.join_all()?;
    let time = start.elapsed();
    let sum = array.lock()?.iter().sum();
    Ok((time, sum))
}
// ANCHOR_END: array_locked
