//! lesson-copy-on-write: children forked after the parent built its data read it for free.
//!
//! The parent fills 16 matrices of 500x500 f64 (32 MB) in a plain, private `Vec`, then forks
//! two workers; each sums its half of the matrices, with nothing copied or sent. Each worker
//! reads its own /proc/self/smaps_rollup before reading, after reading and after writing one
//! f64, and reports the numbers to the parent: the pages are shared until a write copies one.
//! Python's twin builds a global list before a fork-context Process or Pool, where reading
//! the list writes every float's reference count. `--measure` compares fork-inherit with
//! sending the same matrices through a queue, with 1 and 2 workers, beside Python's
//! fork-global and `Pool.map` of pickled inputs.

use std::ffi::c_void;
use std::io::{Read, Write};
use std::ptr::NonNull;
use std::sync::atomic::AtomicU32;

use anyhow::{Context, ensure};
use bytemuck::{Pod, Zeroable};
use multiproc::lock::meet;
use multiproc::proc::Children;
use multiproc::queue::Queue;
use multiproc::shm::Shared;
use nix::sys::mman::{MmapAdvise, madvise};
use nix::unistd::{SysconfVar, getpid, sysconf};
use plumbing::fault;
use plumbing::{Args, Bench, Case, Lesson, varies};

const LESSON: Lesson = Lesson {
    name: "copy-on-write",
    about: "Why fork lets children read the parent's data for free: the parent fills 16 matrices \
            of 500x500 f64 (32 MB) in a private Vec and forks two workers that sum them without \
            any copy. Each worker reports its Rss, Pss, Shared and Private memory from \
            /proc/self/smaps_rollup before reading, after reading, and after writing one f64: \
            the pages stay shared until a write copies one. --measure compares fork-inherit with \
            sending the same matrices through a queue, with 1 and 2 workers, beside Python's \
            fork-global and Pool.map.",
    python: concat!(env!("CARGO_MANIFEST_DIR"), "/python/copy_on_write.py"),
    roles: &[],
};

/// Matrices the parent builds, and their side: 16 x 500 x 500 f64 = 32000000 bytes.
const MATRICES: usize = 16;
const SIDE: usize = 500;
/// Workers in the default run, numbered from 0; each sums MATRICES / WORKERS matrices.
const WORKERS: usize = 2;
/// Thresholds for the facts the lesson checks: well above the noise (stack, heap and libc
/// pages touched here and there), well below what they tell apart. In MB, and in pages.
const NOISE_MB: u64 = 1;
const FEW_PAGES: u64 = 16;
/// The same in kB, as /proc/self/smaps_rollup counts.
const NOISE_KB: u64 = NOISE_MB * 1024;

fn main() -> std::process::ExitCode {
    LESSON.run(lesson)
}

/// The lesson, top to bottom (plumbing's `run` parses its options first, and reports a
/// failure in one line after stopping any child left running).
fn lesson(args: &Args) -> anyhow::Result<()> {
    if args.measure {
        return measure(args);
    }

    // ANCHOR: build
    let bytes = MATRICES * SIDE * SIDE * size_of::<f64>();
    let matrices_kb = (bytes / 1024) as u64;
    println!("1. The parent fills {MATRICES} matrices of {SIDE}x{SIDE} f64 ({bytes} bytes) in a private Vec");
    let empty = Memory::of_self()?;
    let mut matrices = vec![0.0f64; MATRICES * SIDE * SIDE];
    no_huge_pages(&matrices)?;
    fill(&mut matrices, SIDE);
    let built = Memory::of_self()?;
    println!("   parent pid {} before filling: {}", getpid(), empty.show());
    println!("   parent pid {} after filling:  {}", getpid(), built.show());
    // Every page was written, so every page is in memory, the parent's alone.
    ensure!(built.rss >= empty.rss + matrices_kb, "the parent's Rss did not grow by the matrices' size");
    println!("   Rss grew by at least {matrices_kb} kB: every page of the matrices is in memory");
    // ANCHOR_END: build

    // ANCHOR: fork
    println!("2. {WORKERS} workers forked after that; each sums its share, then writes one f64");
    let per_worker = MATRICES / WORKERS;
    // Two meeting points in shared memory (multiproc::lock::meet): every worker has started, every
    // worker has measured. The counts a worker reads are its whole process's, and other
    // processes change them: a page only the workers still share becomes one worker's
    // private page when the other exits. So none measures before all are forked, and none
    // exits before all have measured.
    let meetings = Shared::<(AtomicU32, AtomicU32)>::new()?;
    let (started, measured) = &*meetings;
    let (mut workers, mut reports) = (Children::new("worker"), Vec::new());
    for (worker, share) in matrices.chunks_mut(per_worker * SIDE * SIDE).enumerate() {
        let (reader, mut writer) = std::io::pipe().context("create a pipe for a worker's report")?;
        // The child's memory is the parent's: `share` points into the same physical pages,
        // mapped read-only in both processes until one of them writes.
        workers.fork(move || -> anyhow::Result<()> {
            meet(started, WORKERS as u32);
            let report = work(worker, share)?;
            meet(measured, WORKERS as u32);
            writer.write_all(bytemuck::bytes_of(&report)).context("send the report to the parent")
        })?;
        reports.push(reader);
    }
    // A report is smaller than the pipe's buffer: a worker can write it and exit before the
    // parent reads. If a worker dies, join_all says which and stops the other.
    let pids = workers.pids().to_vec();
    workers.join_all()?;
    // ANCHOR_END: fork

    // ANCHOR: reports
    let mut total = 0.0;
    for (worker, reader) in reports.iter_mut().enumerate() {
        let mut report = Report::zeroed();
        reader.read_exact(bytemuck::bytes_of_mut(&mut report)).context("read a worker's report")?;
        let (first, last) = (worker * per_worker, (worker + 1) * per_worker - 1);
        let pid = pids[worker];
        println!("   worker {worker} (pid {pid}) summed matrices {first}..={last}: {}", report.sum);
        println!("      before reading          {}", report.before.show());
        println!("      after reading its share {}", report.after_reading.show());
        println!("      after writing one f64   {}", report.after_writing.show());
        check(&report, matrices_kb)?;
        total += report.sum;
    }
    // What check() found true in every worker:
    let noise = format!("{NOISE_MB} MB");
    println!("   in every worker, before reading: Rss counts all {matrices_kb} kB of the matrices,");
    println!("      yet Private_Dirty is under {noise}: the pages are the parent's, mapped in by fork");
    println!("   in every worker, Pss is at most Rss minus half the matrices: a page that N processes");
    println!("      map counts 1/N in each");
    println!("   in every worker, after reading: Private_Dirty grew by less than {noise}: the pages are");
    println!("      shared, not copied");
    println!("   in every worker, after writing one f64: Private_Dirty grew by at least one page and");
    println!("      by less than {FEW_PAGES}: one page was copied, for that worker alone");
    // ANCHOR_END: reports

    // ANCHOR: parent
    println!("3. The parent's view, after the workers are gone");
    let after = Memory::of_self()?;
    println!("   parent pid {} now:            {}", getpid(), after.show());
    ensure!(after.rss.abs_diff(built.rss) < NOISE_KB, "the parent's Rss changed while the workers read");
    println!(
        "   Rss changed by less than {noise} since filling: the workers' reading cost the parent nothing"
    );
    let expected: f64 = matrices.iter().sum();
    ensure!(total == expected, "the workers' sums add up to {total}, the parent's to {expected}");
    println!("   the workers' sums add up to {total}, the parent's own sum: {expected}");
    // Each worker wrote -1 into the first element of its share: in its own copy of the page.
    let firsts: Vec<f64> = (0..WORKERS).map(|w| matrices[w * per_worker * SIDE * SIDE]).collect();
    ensure!(firsts.iter().all(|&x| x >= 0.0), "a worker's write reached the parent");
    println!("   the first element of each share is still {firsts:?}: the workers wrote their own copies");
    // ANCHOR_END: parent
    Ok(())
}

// ANCHOR: work
/// One worker: sum its share of the matrices, reading /proc/self/smaps_rollup before and
/// after, then write one f64 and read it once more.
fn work(worker: usize, share: &mut [f64]) -> anyhow::Result<Report> {
    let before = Memory::of_self()?;
    let mut sum = 0.0;
    let count = share.len() / (SIDE * SIDE);
    for (i, matrix) in share.chunks(SIDE * SIDE).enumerate() {
        if i == count / 2 {
            fault::inject(worker); // the tests make worker 1 fail here, half-way through
        }
        sum += matrix.iter().sum::<f64>(); // reading: no page is copied
    }
    let after_reading = Memory::of_self()?;
    share[0] = -1.0; // one write: the kernel copies the one page it lands on, for this process
    let after_writing = Memory::of_self()?;
    Ok(Report { sum, before, after_reading, after_writing })
}
// ANCHOR_END: work

// ANCHOR: check
/// What always holds, whatever the exact numbers of this run: checked before it is printed.
fn check(report: &Report, matrices_kb: u64) -> anyhow::Result<()> {
    let page_kb = page_size()? as u64 / 1024;
    let Report { before, after_reading: read, after_writing: wrote, .. } = report;
    ensure!(before.rss >= matrices_kb, "a worker's Rss does not count the matrices");
    ensure!(before.private_dirty < NOISE_KB, "a worker started with its own copy of the matrices");
    ensure!(before.pss <= before.rss - matrices_kb / 2, "a worker's Pss counts the shared pages in full");
    ensure!(read.private_dirty < before.private_dirty + NOISE_KB, "reading copied the pages");
    let grew = wrote.private_dirty.saturating_sub(read.private_dirty);
    ensure!((page_kb..FEW_PAGES * page_kb).contains(&grew), "writing one f64 made {grew} kB private");
    Ok(())
}
// ANCHOR_END: check

// ANCHOR: memory
/// A process's memory, in kB, as /proc/<pid>/smaps_rollup sums it over all its mappings.
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
struct Memory {
    /// Resident: every page mapped into this process, shared or not.
    rss: u64,
    /// Proportional: each page divided by the number of processes that map it.
    pss: u64,
    /// Pages mapped by other processes too (clean: unchanged since read from a file).
    shared_clean: u64,
    shared_dirty: u64,
    /// Pages only this process maps.
    private_clean: u64,
    private_dirty: u64,
}

impl Memory {
    fn of_self() -> anyhow::Result<Memory> {
        let text =
            std::fs::read_to_string("/proc/self/smaps_rollup").context("read /proc/self/smaps_rollup")?;
        let field = |name: &str| -> anyhow::Result<u64> {
            let line = text.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(':'));
            let kb = line.and_then(|v| v.trim().strip_suffix(" kB")?.trim().parse().ok());
            kb.with_context(|| format!("no \"{name}: N kB\" line in /proc/self/smaps_rollup"))
        };
        Ok(Memory {
            rss: field("Rss")?,
            pss: field("Pss")?,
            shared_clean: field("Shared_Clean")?,
            shared_dirty: field("Shared_Dirty")?,
            private_clean: field("Private_Clean")?,
            private_dirty: field("Private_Dirty")?,
        })
    }

    /// The numbers, which vary a little from run to run (`varies` marks them for the tests).
    fn show(&self) -> String {
        let Memory { rss, pss, shared_clean, shared_dirty, private_clean, private_dirty } = self;
        let numbers = format!(
            "Rss {rss}, Pss {pss}, Shared_Clean {shared_clean}, Shared_Dirty {shared_dirty}, \
             Private_Clean {private_clean}, Private_Dirty {private_dirty}"
        );
        format!("{} kB", varies(numbers))
    }
}

/// What a worker sends the parent: its sum and its memory at three moments.
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
struct Report {
    sum: f64,
    before: Memory,
    after_reading: Memory,
    after_writing: Memory,
}
// ANCHOR_END: memory

// ANCHOR: no_huge_pages
/// Ask for 4 kB pages for the matrices. With transparent huge pages set to `always`, the
/// kernel may back them with 2 MB pages, and then one write could make a whole 2 MB
/// private (older kernels copy the huge page): the lesson is about the page, so it fixes it.
fn no_huge_pages(values: &[f64]) -> anyhow::Result<()> {
    let page = page_size()?;
    let start = (values.as_ptr() as usize).next_multiple_of(page);
    let end = (values.as_ptr() as usize + size_of_val(values)) / page * page;
    let Some(addr) = NonNull::new(start as *mut c_void) else { return Ok(()) };
    // SAFETY: [start, end) lies inside the Vec's own memory, whole pages; NOHUGEPAGE changes
    // how the kernel backs them, never their contents.
    unsafe { madvise(addr, end.saturating_sub(start), MmapAdvise::MADV_NOHUGEPAGE) }
        .context("madvise(MADV_NOHUGEPAGE) the matrices")
}

fn page_size() -> anyhow::Result<usize> {
    let size = sysconf(SysconfVar::PAGE_SIZE).context("sysconf(PAGE_SIZE)")?;
    Ok(size.context("the page size is unknown")? as usize)
}
// ANCHOR_END: no_huge_pages

// ANCHOR: fill
/// Deterministic values: small whole numbers, so that any sum of them is exact in f64,
/// whatever the order of the additions.
fn fill(matrices: &mut [f64], side: usize) {
    for (m, matrix) in matrices.chunks_mut(side * side).enumerate() {
        for (i, x) in matrix.iter_mut().enumerate() {
            let (row, column) = (i / side, i % side);
            *x = ((m + row * column) % 10) as f64;
        }
    }
}
// ANCHOR_END: fill

/// The baseline: the same sums, in the parent, with no other process.
const SERIAL: &str = "serial sum in the parent (floor)";

// ANCHOR: measure
fn measure(args: &Args) -> anyhow::Result<()> {
    let (count, side) = args.pick((MATRICES, SIDE), (4, 100));
    let title = format!("sum {count} matrices of {side}x{side} f64 that the parent built");
    let mut bench = Bench::new(&LESSON, args, &title);
    let mut matrices = vec![0.0f64; count * side * side];
    fill(&mut matrices, side);
    let expected: f64 = matrices.iter().sum();
    let bytes = size_of_val(&matrices[..]) as u64;
    let checked = |sum: f64| {
        ensure!(sum == expected, "got {sum}, expected {expected}");
        Ok(())
    };

    bench.run(Case::new(SERIAL).ops(count as u64), || checked(matrices.iter().sum()))?;
    for workers in [1, 2] {
        let case = Case::new(&format!("fork-inherit, {}", plural(workers))).ops(count as u64).vs(SERIAL);
        bench.run(case, || checked(fork_inherit(&matrices, side, workers)?))?;
    }
    for workers in [1, 2] {
        let case = Case::new(&format!("send through a queue, {}", plural(workers)));
        let case = case.ops(count as u64).bytes(bytes).vs(SERIAL);
        bench.run(case, || checked(through_queue(&matrices, side, workers)?))?;
    }
    bench.python()?;
    bench.finish();
    Ok(())
}
// ANCHOR_END: measure

fn plural(workers: usize) -> String {
    if workers == 1 { "1 worker".to_string() } else { format!("{workers} workers") }
}

// ANCHOR: fork_inherit
/// Fork the workers after the matrices exist: each sums its share where it lies, and only
/// its sum (8 bytes) comes back.
fn fork_inherit(matrices: &[f64], side: usize, workers: usize) -> anyhow::Result<f64> {
    let per_worker = matrices.len() / workers;
    let (mut children, mut readers) = (Children::new("worker"), Vec::new());
    for share in matrices.chunks(per_worker) {
        let (reader, mut writer) = std::io::pipe().context("create a pipe")?;
        children.fork(move || -> anyhow::Result<()> {
            let sum: f64 = share.chunks(side * side).map(|m| m.iter().sum::<f64>()).sum();
            writer.write_all(&sum.to_le_bytes()).context("send the sum")
        })?;
        readers.push(reader);
    }
    children.join_all()?;
    let mut total = 0.0;
    for reader in &mut readers {
        let mut sum = [0u8; 8];
        reader.read_exact(&mut sum).context("read a worker's sum")?;
        total += f64::from_le_bytes(sum);
    }
    Ok(total)
}
// ANCHOR_END: fork_inherit

// ANCHOR: through_queue
/// What a pool's channels cost: the same workers, forked the same way, but each matrix goes
/// to them as bytes through a queue (Pool.map pickles each input and sends it), and they
/// sum their own copy of it.
fn through_queue(matrices: &[f64], side: usize, workers: usize) -> anyhow::Result<f64> {
    let (tasks, results) = (Queue::new()?, Queue::new()?);
    let mut children = Children::new("worker");
    for _ in 0..workers {
        children.fork(|| -> anyhow::Result<()> {
            let mut sum = 0.0f64;
            // An empty message is the sentinel: no more matrices.
            while let Some(message) = tasks.get()?.filter(|m| !m.is_empty()) {
                // "Unpickle": copy the bytes into f64s of the worker's own (aligned for f64).
                let mut matrix = vec![0.0f64; message.len() / size_of::<f64>()];
                bytemuck::cast_slice_mut(&mut matrix).copy_from_slice(&message);
                sum += matrix.iter().sum::<f64>();
            }
            results.put(&sum.to_le_bytes())
        })?;
    }
    for matrix in matrices.chunks(side * side) {
        tasks.put(bytemuck::cast_slice(matrix))?; // the f64s as their bytes: "pickle"
    }
    for _ in 0..workers {
        tasks.put(&[])?;
    }
    let mut total = 0.0;
    for _ in 0..workers {
        let sum = results.get()?.context("a worker ended without its sum")?;
        total += f64::from_le_bytes(sum.as_slice().try_into().context("a sum is 8 bytes")?);
    }
    children.join_all()?;
    Ok(total)
}
// ANCHOR_END: through_queue
