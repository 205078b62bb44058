//! lesson-zero-copy: typed views over shared memory, read and written in place.
//!
//! In Python, `numpy.frombuffer(arr.get_obj())` (or, without numpy,
//! `memoryview(arr.get_obj()).cast('B').cast('d')`) turns a shared `Array`'s bytes into an
//! array of floats without copying them: every process reads and writes the same pages. This
//! lesson does the same with `multiproc::shm` and ndarray: a grid in shared memory whose rows
//! workers fill through views, and one region holding every worker's array at its own,
//! aligned, offset. `--measure` fills a million f64 per worker through a shared view, into a
//! private Vec, through a serialising channel and through a proxy process one block at a
//! time, beside the same in Python.

use std::ops::Range;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use ipc_channel::ipc;
use multiproc::proc::Children;
use multiproc::shm::{Array, cast, cast_mut};
use multiproc::wire::{recv, send};
use ndarray::ArrayView2;
use plumbing::fault;
use plumbing::{Args, Bench, Case, Lesson};

const LESSON: Lesson = Lesson {
    name: "zero-copy",
    about: "Typed views over shared memory, as numpy.frombuffer gives them in Python: a grid of \
            f64 in a shared Array whose rows child processes fill through views, nothing copied \
            or serialised, and one shared region holding every worker's array at its own offset, \
            with the alignment that f64 needs. --measure fills a million f64 per worker through \
            a shared view, into a private Vec, through a serialising channel and through a proxy \
            process one block at a time.",
    python: concat!(env!("CARGO_MANIFEST_DIR"), "/python/zero_copy.py"),
    roles: &[],
};

/// Child processes in the demonstration; numbered from 0.
const WORKERS: usize = 4;
/// Columns of the grid in section 1.
const COLS: usize = 10;
/// How many values each worker writes in sections 2 and 3: different, so offsets differ.
const LENS: [usize; WORKERS] = [3, 5, 2, 4];

fn main() -> std::process::ExitCode {
    LESSON.run(lesson)
}

/// The lesson, top to bottom (plumbing's `run` parses its options first, and reports a
/// failure in one line after stopping any child left running).
fn lesson(args: &Args) -> anyhow::Result<()> {
    plumbing::ipc::ready()?; // ipc-channel's first send must not be where it can panic
    if args.measure {
        return measure(args);
    }

    // ANCHOR: grid
    println!("1. A {WORKERS} x {COLS} grid of f64 in shared memory; each worker fills a row through a view");
    // Python: arr = Array('d', 40); grid = numpy.frombuffer(arr.get_obj()).reshape(4, 10)
    let mut array = Array::<f64>::new(WORKERS * COLS)?;
    // Each row is a part of its own, a `&mut [f64]` view: no two workers reach the same element.
    array.fork_chunks(COLS, |worker, row| {
        for (column, x) in row.iter_mut().enumerate() {
            if column == COLS / 2 {
                fault::inject(worker); // the tests make worker 1 fail here
            }
            *x = (worker * COLS + column) as f64; // writes go straight to the shared page
        }
        0
    })?;
    // The parent lays a view of its own over the same pages: what the workers wrote is there.
    // A shape over the shared values: the same bytes, seen as rows and columns.
    let values = array.lock()?;
    let grid = ArrayView2::from_shape((WORKERS, COLS), &values[..]).context("view the grid")?;
    for (worker, row) in grid.outer_iter().enumerate() {
        println!("   worker {worker} wrote row {worker}: {}", show(row.iter()));
    }
    println!("   grid[[2, 7]] = {}; the same bytes seen flat: a[27] = {}", grid[[2, 7]], values[27]);
    drop(values); // the guard holds the array's lock: let go of it (and no fork while holding one)
    // ANCHOR_END: grid

    // ANCHOR: layout
    println!("2. One region for every worker's array: each block is a u32 length, then the values");
    // A block's values start at the next multiple of 8 after its length: f64 needs it.
    let mut blocks = Vec::new();
    let mut end = 0;
    for len in LENS {
        let len_at = end; // a multiple of 8, so of 4 too: right for a u32
        let values_at = (len_at + size_of::<u32>()).next_multiple_of(align_of::<f64>());
        blocks.push(Block { len_at, values_at, len });
        end = values_at + len * size_of::<f64>();
    }
    let mut bytes = Array::<u8>::new(end)?; // zeroed bytes in shared memory
    let mut all = bytes.lock()?;
    for (worker, block) in blocks.iter().enumerate() {
        let Block { len_at, values_at, len } = *block;
        cast_mut::<u32>(&mut all, len_at, 1)?[0] = u32::try_from(len)?;
        let values_end = values_at + len * size_of::<f64>();
        println!(
            "   worker {worker}: length at byte {len_at}, {len} values at bytes {values_at}..{values_end}"
        );
    }
    let padding = blocks[0].values_at - blocks[0].len_at - size_of::<u32>();
    println!("   {end} bytes in all; the {padding} bytes after each length are padding");
    // Without the padding, worker 0's values would start right after its length.
    let unpadded = blocks[0].len_at + size_of::<u32>();
    match cast::<f64>(&all, unpadded, LENS[0]) {
        Err(refused) => println!("   an f64 view at byte {unpadded} instead: {refused}"),
        Ok(_) => bail!("an f64 view at byte {unpadded} was allowed"),
    }
    drop(all); // let go of the lock: the workers' turn
    // ANCHOR_END: layout

    // ANCHOR: offsets
    println!("3. Each worker finds its length in the region and fills its values in place");
    // Each worker's part: its block's bytes, from its length to its last value.
    let parts: Vec<Range<usize>> =
        blocks.iter().map(|b| b.len_at..b.values_at + b.len * size_of::<f64>()).collect();
    bytes.fork_parts(&parts, |worker, block| -> anyhow::Result<()> {
        let len = cast::<u32>(block, 0, 1)?[0] as usize;
        // Bounds and alignment are checked here, once; then it is a plain &mut [f64].
        let values = cast_mut::<f64>(block, blocks[worker].values_at - blocks[worker].len_at, len)?;
        for (i, x) in values.iter_mut().enumerate() {
            if i == len / 2 {
                fault::inject(worker);
            }
            *x = (worker * COLS + i) as f64;
        }
        Ok(())
    })?;
    let all = bytes.lock()?;
    for (worker, block) in blocks.iter().enumerate() {
        let values = cast::<f64>(&all, block.values_at, block.len)?;
        println!("   worker {worker} wrote at byte {}: {}", block.values_at, show(values.iter()));
    }
    // ANCHOR_END: offsets
    Ok(())
}

// ANCHOR: block
/// Where one worker's array lives in the region of sections 2 and 3, in bytes.
#[derive(Clone, Copy)]
struct Block {
    len_at: usize,
    values_at: usize,
    len: usize,
}
// ANCHOR_END: block

/// Whole-numbered values, two columns each: ` 0  1  2`.
fn show<'a>(values: impl Iterator<Item = &'a f64>) -> String {
    values.map(|x| format!("{x:2}")).collect::<Vec<_>>().join(" ")
}

/// Workers in `--measure`, one array each.
const MEASURE_WORKERS: usize = 2;
/// The unit of work: 4096 f64, 32 KiB. One op is one block written; a proxy request is one block.
const BLOCK: usize = 4096;
/// The case every other one is compared with.
const BASELINE: &str = "private Vec (baseline)";

// ANCHOR: measure
fn measure(args: &Args) -> anyhow::Result<()> {
    // 256 blocks: 1,048,576 f64 (8 MiB) per array.
    let n = BLOCK * args.pick(256, 4);
    let iterations = args.pick(20, 2);
    let title = format!(
        "{MEASURE_WORKERS} workers each fill an array of {n} f64, {iterations} times; \
         one op = one block of {BLOCK} f64 written"
    );
    let mut bench = Bench::new(&LESSON, args, &title);
    let ops = MEASURE_WORKERS * iterations * n / BLOCK;
    let case = |name: &str| Case::new(name).ops(ops as u64).bytes((ops * BLOCK * size_of::<f64>()) as u64);

    bench.run_timed(case(BASELINE), || private_vec(n, iterations))?;
    // Made once: the warm-up run faults their pages in, and the page cache keeps them.
    let mut arrays = shared_arrays(n)?;
    bench.run_timed(case("shared typed view").vs(BASELINE), || shared_view(&mut arrays, n, iterations))?;
    // Made for every run: each run's first iteration faults fresh pages in.
    bench.run_timed(case("shared typed view, fresh pages").vs(BASELINE), || {
        shared_view(&mut shared_arrays(n)?, n, iterations)
    })?;
    bench.run_timed(case("channel, element by element").vs(BASELINE), || channel(n, iterations))?;
    bench.run_timed(case("proxy process per block").vs(BASELINE), || proxy(n, iterations))?;
    bench.python()?;
    bench.finish();
    Ok(())
}
// ANCHOR_END: measure

// ANCHOR: fill
/// The work in every case: write `first, first + 1, ...` into `values`.
fn fill(values: &mut [f64], first: usize) {
    for (i, x) in values.iter_mut().enumerate() {
        *x = (first + i) as f64;
    }
    // The values are never read in some cases: this stops the compiler leaving out the writes.
    std::hint::black_box(values);
}

/// Iteration `it` writes `it + i` at index i: check the last iteration's first and last values.
fn check(values: &[f64], iterations: usize) -> anyhow::Result<()> {
    let last = iterations - 1;
    let expected = [last as f64, (last + values.len() - 1) as f64];
    let got = [values[0], values[values.len() - 1]];
    ensure!(got == expected, "the array ends in {got:?}, expected {expected:?}");
    Ok(())
}
// ANCHOR_END: fill

// ANCHOR: private_vec
fn private_vec(n: usize, iterations: usize) -> anyhow::Result<Duration> {
    let start = Instant::now();
    let mut workers = Children::new("worker");
    for _ in 0..MEASURE_WORKERS {
        workers.fork(move || -> anyhow::Result<()> {
            let mut values = vec![0.0; n]; // this worker's own memory: nobody else sees it
            for it in 0..iterations {
                fill(&mut values, it);
            }
            check(&values, iterations)
        })?;
    }
    workers.join_all()?;
    Ok(start.elapsed())
}
// ANCHOR_END: private_vec

// ANCHOR: shared_view
/// One shared Array with `n` f64 for each worker: Python's `Array('d', n)`, one per worker.
fn shared_arrays(n: usize) -> anyhow::Result<Array<f64>> {
    Array::<f64>::new(MEASURE_WORKERS * n)
}

fn shared_view(arrays: &mut Array<f64>, n: usize, iterations: usize) -> anyhow::Result<Duration> {
    let start = Instant::now();
    // Each worker's `values`: the typed view, a &mut [f64] over its own n shared f64.
    arrays.fork_chunks(n, |_worker, values| {
        for it in 0..iterations {
            fill(values, it); // the same code as the private Vec, on other pages
        }
        0
    })?;
    let elapsed = start.elapsed();
    // Nothing was sent: the parent reads the workers' values where they wrote them.
    for values in arrays.lock()?.chunks(n) {
        check(values, iterations)?;
    }
    Ok(elapsed)
}
// ANCHOR_END: shared_view

// ANCHOR: channel
fn channel(n: usize, iterations: usize) -> anyhow::Result<Duration> {
    let mut channels = Vec::new();
    for _ in 0..MEASURE_WORKERS {
        channels.push(ipc::channel::<Vec<f64>>().context("create an ipc-channel")?);
    }
    let start = Instant::now();
    let (mut workers, mut receivers) = (Children::new("worker"), Vec::new());
    for (tx, rx) in channels {
        workers.fork(move || -> anyhow::Result<()> {
            for it in 0..iterations {
                let mut values = vec![0.0; n];
                fill(&mut values, it);
                // serde hands postcard one f64 at a time: 8 bytes each, into a buffer.
                tx.send(values).context("send the array")?;
            }
            Ok(())
        })?;
        receivers.push(rx);
    }
    let mut last = Vec::new();
    for _ in 0..iterations {
        for rx in &receivers {
            last = rx.recv().context("receive an array")?; // and back, one f64 at a time
        }
    }
    workers.join_all()?;
    let elapsed = start.elapsed();
    check(&last, iterations)?;
    Ok(elapsed)
}
// ANCHOR_END: channel

// ANCHOR: proxy
fn proxy(n: usize, iterations: usize) -> anyhow::Result<Duration> {
    let start = Instant::now();
    let (mut proxies, mut workers) = (Children::new("proxy"), Children::new("worker"));
    for _ in 0..MEASURE_WORKERS {
        let (mut worker_end, proxy_end) = UnixStream::pair().context("create a socketpair")?;
        // The proxy owns the array; the worker only ever holds one block of it.
        proxies.fork(move || serve(proxy_end, n, iterations))?;
        workers.fork(move || -> anyhow::Result<()> {
            let mut block = vec![0.0; BLOCK];
            let mut request = Vec::with_capacity(size_of::<u64>() + BLOCK * size_of::<f64>());
            for it in 0..iterations {
                for first in (0..n).step_by(BLOCK) {
                    let block = &mut block[..BLOCK.min(n - first)];
                    fill(block, it + first);
                    // The request: where the block goes, then its bytes as they are.
                    request.clear();
                    request.extend_from_slice(&(first as u64).to_le_bytes());
                    request.extend_from_slice(bytemuck::cast_slice(block));
                    send(&mut worker_end, &request).context("send a block to the proxy")?;
                    // Wait for the reply: a round trip per block, as a Manager proxy does.
                    recv(&mut worker_end).context("receive the reply")?.context("the proxy left")?;
                }
            }
            Ok(())
        })?;
    }
    // A proxy that dies ends its worker's wait (EOF), and a worker that dies ends its proxy's.
    workers.join_all()?;
    proxies.join_all()?;
    Ok(start.elapsed())
}

/// The proxy's side: store each block where the request says, reply, check at the end.
fn serve(mut end: UnixStream, n: usize, iterations: usize) -> anyhow::Result<()> {
    let mut array = vec![0.0f64; n];
    for _ in 0..iterations * n.div_ceil(BLOCK) {
        let request = recv(&mut end).context("receive a block")?.context("the worker left")?;
        let (first, bytes) = request.split_at(size_of::<u64>());
        let first = u64::from_le_bytes(first.try_into()?) as usize;
        let len = bytes.len() / size_of::<f64>();
        let target = array.get_mut(first..first + len).context("a block past the end")?;
        // Copy the bytes in: the message's buffer need not be aligned for f64, the array is.
        bytemuck::cast_slice_mut::<f64, u8>(target).copy_from_slice(bytes);
        send(&mut end, b"").context("reply to the worker")?;
    }
    check(&array, iterations)
}
// ANCHOR_END: proxy
