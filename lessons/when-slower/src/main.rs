//! lesson-when-slower: why is my multiprocessing slower than one process? A cost model.
//!
//! A job of items, each a few milliseconds of arithmetic making a large result (an image),
//! as Python's `Pool(2).map(make, range(n))` runs it. The demo makes 16 items in one
//! process, then in two workers that put their results on a Queue, then in two workers that
//! write them straight into shared memory, then in a pool of two, checks that all four
//! agree, and times each against the loop (in about a second). `--measure` times the same
//! job with more items: one process, a pool, workers with a Queue, shared memory, results
//! cut down to checksums, 2 and 4 workers; beside the cost model's own parameters (start a
//! process, send a small message, move 1 MiB, move one result, compute one item), the
//! model's predictions, and Python.

use std::ops::Range;
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use multiproc::crew::Crew;
use multiproc::proc::{Children, fork_child, join_all};
use multiproc::queue::Queue;
use multiproc::shm::{self, Array, Atomics};
use plumbing::fault;
use plumbing::measure::{duration, times};
use plumbing::varies::varies;
use plumbing::{Args, Bench, Case, Lesson};
use std::sync::atomic::AtomicU32;
use std::sync::atomic::Ordering::Relaxed;

const LESSON: Lesson = Lesson {
    name: "when-slower",
    about: "Why is my multiprocessing slower than one process? A job of items, each a few \
            milliseconds of arithmetic making a large result (an image), made in one process, by \
            two workers that put their results on a Queue, by two workers that write them \
            straight into shared memory, and by a pool of two; the checksums agree, and each is \
            timed against the loop. --measure times the job with more items (a pool, workers \
            with a Queue, shared memory, checksums only, 2 and 4 workers) beside the cost \
            model's parameters (start a process, a small message, move 1 MiB, move one result, \
            compute one item), its predictions, and Python.",
    python: concat!(env!("CARGO_MANIFEST_DIR"), "/python/when_slower.py"),
    roles: &[],
};

/// The demo's job: items, and each item's image: CHANNELS x SIDE x SIDE f32 pixels (3 MiB,
/// the size `--measure` uses too; fewer items).
const ITEMS: usize = 16;
const CHANNELS: usize = 3;
const SIDE: usize = 512;
const PIXELS: usize = CHANNELS * SIDE * SIDE;
/// Worker processes in sections 2 and 3, numbered from 0.
const WORKERS: usize = 2;
/// Steps of arithmetic per pixel: what makes a full-size item cost a few milliseconds.
const ROUNDS: usize = 16;

fn main() -> std::process::ExitCode {
    LESSON.run(lesson)
}

/// The lesson, top to bottom (plumbing's `run` parses its options first, and reports a
/// failure in one line after stopping any child left running).
fn lesson(args: &Args) -> anyhow::Result<()> {
    if args.measure {
        return measure(args);
    }

    // ANCHOR: serial
    let kib = PIXELS * size_of::<f32>() / 1024;
    println!(
        "1. The job: {ITEMS} items, each an image of {CHANNELS}x{SIDE}x{SIDE} f32 ({kib} KiB), made in this process"
    );
    let mut images = vec![1f32; ITEMS * PIXELS]; // written, so its pages exist before the clock starts
    let start = Instant::now();
    for (item, image) in images.chunks_mut(PIXELS).enumerate() {
        make(item, image);
    }
    let alone = start.elapsed();
    let expected = checksum(&images, PIXELS);
    println!("   made {ITEMS} items in {}; checksum {expected:#018x}", varies(duration(alone.as_secs_f64())));
    // ANCHOR_END: serial

    // ANCHOR: queue
    let mine = share(0, WORKERS, ITEMS).len(); // worker 0's share: as many as any worker's
    println!("2. {WORKERS} worker processes make up to {mine} items each and put every image on a Queue");
    images.fill(0.0);
    let start = Instant::now();
    // ANCHOR: fork_workers
    let mut results = Queue::new()?; // made before the fork: every worker inherits its pipe
    let mut workers = Children::new("worker");
    for worker in 0..WORKERS {
        workers.fork(|| send_images(worker, WORKERS, ITEMS, PIXELS, &results))?;
    }
    // ANCHOR_END: fork_workers
    results.close(); // the parent puts nothing: get sees EOF once every worker is gone
    let got = receive_images(&results, ITEMS, PIXELS, &mut images)?; // get before join
    workers.join_all()?;
    let queued = start.elapsed();
    ensure!(got == ITEMS, "got {got} of {ITEMS} images");
    println!("   the parent got {got} images ({} KiB through the pipe) and joined the workers", got * kib);
    let sum = checksum(&images, PIXELS);
    println!("   checksum {sum:#018x}, the same as one process's: {}", sum == expected);
    ensure!(sum == expected, "the images that came through the queue differ");
    println!(
        "   in {}: {} the loop's time",
        varies(duration(queued.as_secs_f64())),
        varies(times(queued, alone))
    );
    // ANCHOR_END: queue

    // ANCHOR: shm
    println!("3. {WORKERS} worker processes write their images straight into shared memory");
    // Made before the fork, mapped MAP_SHARED: the workers write into the pages the parent reads.
    let mut shared = Array::<f32>::new(ITEMS * PIXELS)?;
    shared.lock()?.fill(0.0); // as in section 1: the pages exist before the clock starts
    let start = Instant::now();
    let per_worker = ITEMS.div_ceil(WORKERS);
    // Each worker gets its own part, `&mut`: item i lives at offset i x the image's size.
    shared.fork_chunks(per_worker * PIXELS, |worker, part| {
        write_images(worker, worker * per_worker, part, PIXELS)
    })?;
    let in_place = start.elapsed();
    println!("   joined the workers: {ITEMS} images ({} KiB) in place, 0 bytes through a pipe", ITEMS * kib);
    let sum = checksum(&shared.lock()?, PIXELS);
    println!("   checksum {sum:#018x}, the same as one process's: {}", sum == expected);
    ensure!(sum == expected, "the images in shared memory differ");
    println!(
        "   in {}: {} the loop's time",
        varies(duration(in_place.as_secs_f64())),
        varies(times(in_place, alone))
    );
    // ANCHOR_END: shm

    // ANCHOR: demo_pool
    println!(
        "4. A pool of {WORKERS} worker processes, as Python's Pool({WORKERS}).map: a task out, an image back"
    );
    images.fill(0.0);
    let start = Instant::now();
    pool_map(WORKERS, PIXELS, &mut images)?;
    let pooled = start.elapsed();
    let sum = checksum(&images, PIXELS);
    println!("   checksum {sum:#018x}, the same as one process's: {}", sum == expected);
    ensure!(sum == expected, "the images that came through the pool differ");
    println!(
        "   in {}: {} the loop's time",
        varies(duration(pooled.as_secs_f64())),
        varies(times(pooled, alone))
    );
    let slower = |time: Duration| varies(if time > alone { "slower" } else { "faster" });
    println!(
        "   against the loop, on this machine: the pool {}, the Queue {}, shared memory {}",
        slower(pooled),
        slower(queued),
        slower(in_place)
    );
    // ANCHOR_END: demo_pool
    Ok(())
}

// ANCHOR: make
/// One item of the job, a stand-in for real work on an image (decode, filter, resize): each
/// pixel starts from a hash of its place and goes through ROUNDS steps of arithmetic.
fn make(item: usize, image: &mut [f32]) {
    make_from(item, 0, image);
}

/// The pixels of an item from pixel number `first` on (all of them, from 0).
fn make_from(item: usize, first: usize, pixels: &mut [f32]) {
    for (p, pixel) in (first..).zip(pixels.iter_mut()) {
        let mut h = (p as u32 ^ (item as u32).wrapping_mul(0x9E37_79B9)).wrapping_mul(0x85EB_CA6B);
        h ^= h >> 15;
        let mut x = 0.1 + 0.8 * (h >> 8) as f32 / (1 << 24) as f32; // in [0.1, 0.9)
        for _ in 0..ROUNDS {
            x = 3.9 * x * (1.0 - x); // the logistic map: stays between 0 and 1
        }
        *pixel = x;
    }
}

/// A checksum of the images in order: each image's pixel bits added up, weighted by its item
/// number, so that a missing, changed or misplaced image changes it.
fn checksum(images: &[f32], pixels: usize) -> u64 {
    images
        .chunks(pixels)
        .enumerate()
        .map(|(item, image)| weighted(item, image_sum(image)))
        .fold(0, u64::wrapping_add)
}

fn image_sum(image: &[f32]) -> u64 {
    image.iter().map(|x| u64::from(x.to_bits())).fold(0, u64::wrapping_add)
}

fn weighted(item: usize, sum: u64) -> u64 {
    sum.wrapping_mul(item as u64 + 1)
}
// ANCHOR_END: make

// ANCHOR: send
/// The items worker `worker` of `workers` makes: a contiguous share, as `Pool.map` chunks.
fn share(worker: usize, workers: usize, items: usize) -> Range<usize> {
    let per_worker = items.div_ceil(workers);
    (worker * per_worker).min(items)..((worker + 1) * per_worker).min(items)
}

/// A worker with a Queue: make each of its items, and put it as one message, the item's
/// number and then the image's bytes (bytemuck: the f32s as they are, no conversion).
fn send_images(
    worker: usize,
    workers: usize,
    items: usize,
    pixels: usize,
    results: &Queue,
) -> anyhow::Result<()> {
    let mine = share(worker, workers, items);
    let mut image = vec![0f32; pixels];
    let mut message = Vec::with_capacity(4 + pixels * size_of::<f32>());
    for item in mine.clone() {
        if item == mine.start + mine.len() / 2 {
            fault::inject(worker); // the tests make worker 1 fail here, half-way
        }
        make(item, &mut image);
        results.put(image_message(item, &image, &mut message))?;
    }
    Ok(())
}

fn image_message<'a>(item: usize, image: &[f32], message: &'a mut Vec<u8>) -> &'a [u8] {
    message.clear();
    message.extend_from_slice(&(item as u32).to_le_bytes());
    message.extend_from_slice(bytemuck::cast_slice(image));
    message
}

// ANCHOR: get_loop
/// The parent: get `items` images and copy each to its place. Returns how many came; fewer
/// than `items` if every worker is gone first (join_all then says which one failed).
fn receive_images(results: &Queue, items: usize, pixels: usize, images: &mut [f32]) -> anyhow::Result<usize> {
    let mut got = 0;
    while got < items {
        let Some(message) = results.get()? else { break };
        place(&message, pixels, images)?;
        got += 1;
    }
    Ok(got)
}
// ANCHOR_END: get_loop

/// Copy one image message into its place: byte by byte, since a message's bytes need not be
/// aligned for f32, but the place is (viewed as bytes, it always fits).
fn place(message: &[u8], pixels: usize, images: &mut [f32]) -> anyhow::Result<()> {
    let item = u32::from_le_bytes(message.get(..4).context("a message too short")?.try_into()?) as usize;
    let place = images.get_mut(item * pixels..(item + 1) * pixels).context("an item out of range")?;
    let bytes: &mut [u8] = bytemuck::cast_slice_mut(place);
    ensure!(message.len() == 4 + bytes.len(), "an image message of {} bytes", message.len());
    bytes.copy_from_slice(&message[4..]);
    Ok(())
}
// ANCHOR_END: send

// ANCHOR: write
/// A worker with shared memory: make each of its items right where the parent will read it.
fn write_images(worker: usize, first: usize, part: &mut [f32], pixels: usize) -> i32 {
    let count = part.len() / pixels;
    for (k, image) in part.chunks_mut(pixels).enumerate() {
        if k == count / 2 {
            fault::inject(worker); // the tests make worker 1 fail here, half-way
        }
        make(first + k, image);
    }
    0
}
// ANCHOR_END: write

/// The cost model's parameters, each measured alone.
const COMPUTE: &str = "model: compute one item";
const START: &str = "model: start one process";
const MESSAGE: &str = "model: small message round trip";
const MOVE: &str = "model: move 1 MiB through a Queue";
const TOUCH: &str = "model: map 1 MiB of shared memory in a new process";
const RESULT: &str = "model: move one result from 2 workers";
/// The baseline: the whole job in one process.
const SERIAL: &str = "serial loop, 1 process (baseline)";
const MIB: usize = 1 << 20;
/// The side of a measured image (CHANNELS x side x side f32): 3 MiB, or 12 KiB with --quick.
const FULL_SIDE: usize = 512;
const QUICK_SIDE: usize = 32;
/// Workers in the measured pool and shared-memory cases; the others have WORKERS.
const MEASURED_WORKERS: &[usize] = &[2, 4];

// ANCHOR: measure
fn measure(args: &Args) -> anyhow::Result<()> {
    let mut bench =
        Bench::new(&LESSON, args, "a job of big items: one process, a pool, a Queue, shared memory");
    // Huge pages would make F 512 times smaller, where the kernel gives them to shared memory.
    let huge = std::fs::read_to_string(SHMEM_HUGE_PAGES).unwrap_or_else(|e| format!("unknown ({e})"));
    bench.note(&format!("huge pages for shared memory here: {} ({SHMEM_HUGE_PAGES})", huge.trim()));
    let items = args.pick(32, 4);
    let side = args.pick(FULL_SIDE, QUICK_SIDE);
    let pixels = CHANNELS * side * side;
    let bytes = (items * pixels * size_of::<f32>()) as u64;

    // The cost model's parameters, each alone.
    let mut image = vec![0f32; pixels];
    bench.run(Case::new(COMPUTE).ops(4), || {
        (0..4).for_each(|item| make(item, &mut image));
        Ok(())
    })?;
    let starts = args.pick(50, 4);
    bench.run(Case::new(START).ops(starts as u64), || start_processes(starts))?;
    let trips = args.pick(5000, 50);
    bench.run_timed(Case::new(MESSAGE).ops(trips as u64), || round_trips(trips))?;
    let mibs = args.pick(64, 2);
    bench.run_timed(Case::new(MOVE).ops(mibs as u64).bytes((mibs * MIB) as u64), || move_mibs(mibs))?;
    let results = args.pick(16, 4);
    let case = Case::new(RESULT).ops(results as u64).bytes((results * pixels * size_of::<f32>()) as u64);
    bench.run_timed(case, || move_results(WORKERS, results, pixels))?;
    let mut region = Array::<u8>::new(mibs * MIB)?;
    region.lock()?.fill(0); // the pages exist; a new process must map them
    bench.run(Case::new(TOUCH).ops(mibs as u64).bytes((mibs * MIB) as u64), || touch_mibs(&mut region))?;

    // The job, every way. Each run's result is checked against one process's, untimed.
    let mut images = vec![0f32; items * pixels];
    serial(&mut images, pixels)?;
    let expected = checksum(&images, pixels);
    let job = |name: &str| Case::new(name).ops(items as u64).vs(SERIAL);
    bench.run_timed(Case::new(SERIAL).ops(items as u64), || {
        timed_checked(&mut images, pixels, expected, |images| serial(images, pixels))
    })?;
    for &workers in MEASURED_WORKERS {
        let case = job(&format!("Pool map, big results, {workers} workers")).bytes(bytes);
        bench.run_timed(case, || {
            timed_checked(&mut images, pixels, expected, |images| pool_map(workers, pixels, images))
        })?;
    }
    let case = job(&format!("chunks + Queue, big results, {WORKERS} workers")).bytes(bytes);
    bench.run_timed(case, || {
        timed_checked(&mut images, pixels, expected, |images| chunks_queue(WORKERS, pixels, images))
    })?;
    let mut shared = Array::<f32>::new(items * pixels)?;
    for (workers, populated) in MEASURED_WORKERS.iter().map(|&w| (w, false)).chain([(WORKERS, true)]) {
        let populate = if populated { ", populated" } else { "" };
        bench.run_timed(job(&format!("chunks + shared memory{populate}, {workers} workers")), || {
            shared.lock()?.fill(0.0);
            let start = Instant::now();
            chunks_shm(workers, pixels, &mut shared, populated)?;
            let time = start.elapsed();
            ensure!(checksum(&shared.lock()?, pixels) == expected, "the images differ from one process's");
            Ok(time)
        })?;
    }
    bench.run_timed(job(&format!("chunks + Queue, checksums only, {WORKERS} workers")), || {
        let start = Instant::now();
        let sum = chunks_checksums(WORKERS, items, pixels)?;
        let time = start.elapsed();
        ensure!(sum == expected, "the checksums differ");
        Ok(time)
    })?;

    // The shared-memory way as a long-running program does it: no start, no page faults.
    let images = Atomics::<AtomicU32>::new(items * pixels)?;
    let mut crew = start_crew(&images, items, pixels)?;
    let mut read_back = vec![0f32; items * pixels]; // the parent's copy, for the check
    let case = job(&format!("chunks + shared memory, {WORKERS} long-lived workers, populated"));
    bench.run_counted(case, || {
        let round = crew.round()?; // when it returns, every worker's stores are seen here
        read_back.iter_mut().zip(images.iter()).for_each(|(x, bits)| *x = f32::from_bits(bits.load(Relaxed)));
        ensure!(checksum(&read_back, pixels) == expected, "the images differ from one process's");
        Ok((round.time, round.faults))
    })?;
    crew.stop()?;

    // ANCHOR: predict
    // What the cost model predicts for the main case and for shared memory, per item, from
    // the model rows above: the first form is the one that leaves a cost out, the second
    // adds it (moving, as the job moves, sets the pace when it is the slower stage).
    let image_mib = (pixels * size_of::<f32>()) as f64 / MIB as f64;
    let (w, n) = (WORKERS as f64, items as f64);
    let cpus = WORKERS.min(std::thread::available_parallelism().map_or(1, |n| n.get())) as f64;
    let queue = format!("chunks + Queue, big results, {WORKERS} workers");
    bench.predict(job(&format!("predicted, overlapping: {queue}")), |row| {
        Ok(w * row(START)? / n + row(COMPUTE)? / cpus + image_mib * row(MOVE)? + row(MESSAGE)?)
    })?;
    bench.predict(job(&format!("predicted, bottleneck: {queue}")), |row| {
        Ok(w * row(START)? / n + (row(COMPUTE)? / cpus).max(row(RESULT)?))
    })?;
    bench.predict(job(&format!("predicted: chunks + shared memory, {WORKERS} workers")), |row| {
        Ok(w * row(START)? / n + (row(COMPUTE)? + image_mib * row(TOUCH)?) / cpus)
    })?;
    // ANCHOR_END: predict

    bench.python()?;
    bench.finish();
    Ok(())
}

/// What this machine allows of transparent huge pages for shared memory ([the one in use]).
const SHMEM_HUGE_PAGES: &str = "/sys/kernel/mm/transparent_hugepage/shmem_enabled";

/// Pixels a long-lived worker makes at a time before it stores them in shared memory.
const BLOCK: usize = 1024;

// ANCHOR: crew
/// The shared-memory way with a crew of workers forked once and kept: each makes its share of
/// the images straight into `images`, one shared array (of atomics: the parent reads it while
/// the workers live), whose pages it faulted in once, as it started. A round is one job.
fn start_crew(images: &Atomics<AtomicU32>, items: usize, pixels: usize) -> anyhow::Result<Crew<WORKERS>> {
    Crew::start(
        "worker",
        |worker| {
            let mine = share(worker, WORKERS, items); // once, as it starts
            _ = images.populate(mine.start * pixels..mine.end * pixels);
        },
        |worker| {
            // every round: made in registers and cache, as fast as `make` is, a block at a
            // time; then published, a store per pixel (SIMD cannot store atomics)
            let mut block = [0f32; BLOCK];
            for item in share(worker, WORKERS, items) {
                let image = &images[item * pixels..][..pixels];
                for (first, out) in (0..).step_by(BLOCK).zip(image.chunks(BLOCK)) {
                    let block = &mut block[..out.len()];
                    make_from(item, first, block);
                    out.iter().zip(block).for_each(|(word, x)| word.store(x.to_bits(), Relaxed));
                }
            }
        },
    )
}
// ANCHOR_END: crew

/// Zero the images, time `run` filling them, then check them (untimed).
fn timed_checked(
    images: &mut [f32],
    pixels: usize,
    expected: u64,
    run: impl FnOnce(&mut [f32]) -> anyhow::Result<()>,
) -> anyhow::Result<Duration> {
    images.fill(0.0);
    let start = Instant::now();
    run(images)?;
    let time = start.elapsed();
    ensure!(checksum(images, pixels) == expected, "the images differ from one process's");
    Ok(time)
}
// ANCHOR_END: measure

// ANCHOR: serial_job
/// The baseline: every item, one after another, in this process.
fn serial(images: &mut [f32], pixels: usize) -> anyhow::Result<()> {
    images.chunks_mut(pixels).enumerate().for_each(|(item, image)| make(item, image));
    Ok(())
}
// ANCHOR_END: serial_job

// ANCHOR: pool
/// Python's `Pool(workers).map(make, range(items))`: workers that live for the whole job, get
/// one task (an item number) at a time from one queue, and put each image on another.
fn pool_map(workers: usize, pixels: usize, images: &mut [f32]) -> anyhow::Result<()> {
    let items = images.len() / pixels;
    let tasks = Queue::new()?;
    let mut results = Queue::new()?;
    let mut pool = Children::new("pool worker");
    for _ in 0..workers {
        pool.fork(|| pool_worker(&tasks, &results, pixels))?;
    }
    results.close();
    // Keep a few tasks ahead of the results, never all of them: a parent that writes every
    // task before reading a result can fill both pipes, and then it and its workers wait
    // for each other forever.
    let task = |item: usize| tasks.put(&(item as u32).to_le_bytes());
    let mut sent = items.min(2 * workers);
    (0..sent).try_for_each(task)?;
    let mut got = 0;
    while got < items {
        // A worker that died would leave this loop waiting forever for its image (the others
        // only wait for tasks), but a parent's `get` also ends when a child of its dies.
        let message = results.get()?.context("every worker ended early")?;
        place(&message, pixels, images)?;
        got += 1;
        if sent < items {
            task(sent)?;
            sent += 1;
        }
    }
    for _ in 0..workers {
        tasks.put(STOP)?; // one sentinel per worker
    }
    pool.join_all()?;
    ensure!(got == items, "got {got} of {items} images");
    Ok(())
}

/// A pool worker: get a task, make the item, put the image; until the sentinel.
fn pool_worker(tasks: &Queue, results: &Queue, pixels: usize) -> anyhow::Result<()> {
    let mut image = vec![0f32; pixels];
    let mut message = Vec::new();
    while let Some(task) = tasks.get()? {
        if task == STOP {
            break;
        }
        let item = u32::from_le_bytes(task[..].try_into().context("a task is an item number")?) as usize;
        make(item, &mut image);
        results.put(image_message(item, &image, &mut message))?;
    }
    Ok(())
}

/// What tells a pool worker to stop: an empty message.
const STOP: &[u8] = b"";
// ANCHOR_END: pool

// ANCHOR: chunks
/// Workers with a Queue, as in section 2: each makes its share and puts every image.
fn chunks_queue(workers: usize, pixels: usize, images: &mut [f32]) -> anyhow::Result<()> {
    let items = images.len() / pixels;
    let mut results = Queue::new()?;
    let mut pids = Children::new("worker");
    for worker in 0..workers {
        pids.fork(|| send_images(worker, workers, items, pixels, &results))?;
    }
    results.close();
    let got = receive_images(&results, items, pixels, images)?;
    pids.join_all()?;
    ensure!(got == items, "got {got} of {items} images");
    Ok(())
}

/// Workers with shared memory, as in section 3: each writes its share in place; populated,
/// each first faults in its share's pages in one call (`shm::populate`), not one per page.
fn chunks_shm(workers: usize, pixels: usize, images: &mut Array<f32>, populated: bool) -> anyhow::Result<()> {
    let per_worker = (images.len() / pixels).div_ceil(workers);
    images.fork_chunks(per_worker * pixels, |worker, part| {
        if populated {
            shm::populate(part);
        }
        write_images(worker, worker * per_worker, part, pixels)
    })
}

/// The same job with small results: each worker puts an item's number and its image's sum,
/// 12 bytes, instead of the image. The parent gets the checksum, not the images.
fn chunks_checksums(workers: usize, items: usize, pixels: usize) -> anyhow::Result<u64> {
    let mut results = Queue::new()?;
    let mut pids = Children::new("worker");
    for worker in 0..workers {
        pids.fork(|| -> anyhow::Result<()> {
            let mut image = vec![0f32; pixels];
            for item in share(worker, workers, items) {
                make(item, &mut image);
                let mut message = (item as u32).to_le_bytes().to_vec();
                message.extend_from_slice(&image_sum(&image).to_le_bytes());
                results.put(&message)?;
            }
            Ok(())
        })?;
    }
    results.close();
    let mut sum = 0u64;
    for _ in 0..items {
        let Some(message) = results.get()? else { break };
        ensure!(message.len() == 12, "a checksum message of {} bytes", message.len());
        let item = u32::from_le_bytes(message[..4].try_into()?) as usize;
        sum = sum.wrapping_add(weighted(item, u64::from_le_bytes(message[4..].try_into()?)));
    }
    pids.join_all()?;
    Ok(sum)
}
// ANCHOR_END: chunks

// ANCHOR: model
/// Start `count` children that exit at once, one after another, joining each.
fn start_processes(count: usize) -> anyhow::Result<()> {
    for _ in 0..count {
        join_all(&[fork_child(|| 0)?])?;
    }
    Ok(())
}

/// A child echoes `count` small messages: each one is a task out and a result back.
fn round_trips(count: usize) -> anyhow::Result<Duration> {
    let (there, back) = (Queue::new()?, Queue::new()?);
    let child = fork_child(|| -> anyhow::Result<()> {
        for _ in 0..count {
            back.put(&there.get()?.context("the parent stopped early")?)?;
        }
        Ok(())
    })?;
    let start = Instant::now();
    for i in 0..count {
        there.put(&(i as u32).to_le_bytes())?;
        back.get()?.context("the child stopped early")?;
    }
    let time = start.elapsed();
    join_all(&[child])?;
    Ok(time)
}

/// A child puts `count` messages of 1 MiB on a Queue; the parent gets them.
fn move_mibs(count: usize) -> anyhow::Result<Duration> {
    let queue = Queue::new()?;
    let child = fork_child(|| -> anyhow::Result<()> {
        let message = vec![1u8; MIB];
        (0..count).try_for_each(|_| queue.put(&message))
    })?;
    let start = Instant::now();
    for _ in 0..count {
        let message = queue.get()?.context("the child stopped early")?;
        ensure!(message.len() == MIB, "a message of {} bytes", message.len());
    }
    let time = start.elapsed();
    join_all(&[child])?;
    Ok(time)
}

/// `workers` children put `count` images between them, computing nothing; the parent gets
/// each and copies it into place, as in the job. (The time includes the forks, small beside
/// the images.)
fn move_results(workers: usize, count: usize, pixels: usize) -> anyhow::Result<Duration> {
    let mut images = vec![1f32; count * pixels]; // written, so its pages exist before the clock starts
    let start = Instant::now();
    let mut results = Queue::new()?;
    let mut senders = Children::new("worker");
    for worker in 0..workers {
        senders.fork(|| -> anyhow::Result<()> {
            let (image, mut message) = (vec![0.5f32; pixels], Vec::new());
            let mut mine = share(worker, workers, count);
            mine.try_for_each(|item| results.put(image_message(item, &image, &mut message)))
        })?;
    }
    results.close();
    let got = receive_images(&results, count, pixels, &mut images)?;
    senders.join_all()?;
    let time = start.elapsed();
    ensure!(got == count, "got {got} of {count} images");
    Ok(time)
}

/// A new process writes one byte in every page of shared memory that exists already: its
/// page table starts empty, so each page is a page fault. (The time includes one fork and
/// join, small beside thousands of faults.)
fn touch_mibs(region: &mut Array<u8>) -> anyhow::Result<()> {
    region.fork_chunks(region.len(), |_, pages| {
        pages.iter_mut().step_by(PAGE).for_each(|byte| *byte = 1);
        0
    })
}

/// The size of a page: what the kernel maps at each page fault.
const PAGE: usize = 4096;
// ANCHOR_END: model
