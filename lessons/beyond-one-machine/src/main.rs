//! lesson-beyond-one-machine: when one machine is not enough, MPI. The same program starts
//! as several processes, its ranks, on one machine or on many, and they talk by messages.
//!
//! Every lesson so far ends at the edge of one machine: a pipe, shared memory, a pool's
//! workers all live on one kernel. MPI, the engine of the world's clusters, starts a program
//! as N processes (its ranks) on as many machines as it is given, and gives them messages:
//! point to point (a Pipe), scatter and gather (a Pool.map in chunks), reductions (a shared
//! Value, without the lock), barriers (the lessons' start gate). This lesson is in two parts.
//! The conductor (`lesson`, below) is a plain program: it starts each job with `mpiexec`
//! (through the kit, `mpijob`) and prints what every rank said, rank by rank. The ranks
//! (`mod rank`) are this same program, started by `mpiexec` with `--child rank`: MPI code,
//! through rsmpi, built with the `mpi` feature. `--measure` times the pool's job on 1 and
//! 2 ranks, chunked and one item at a time, and a ping-pong over shared memory and over
//! TCP, beside mpi4py.

use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use mpijob::{Job, JobFailed, Output};
use plumbing::measure::duration;
use plumbing::varies::varies;
use plumbing::{Args, Bench, Case, Lesson};

const LESSON: Lesson = Lesson {
    name: "beyond-one-machine",
    about: "Beyond one machine: MPI. Start ranks with mpiexec, send and receive (a Pipe), scatter \
            and gather (Pool.map in chunks), reduce (a Value without its lock), a barrier; the \
            pool's job chunked and one item at a time on 1 and 2 ranks; a ping-pong over shared \
            memory and over TCP; a rank that panics or is killed ends the whole job. Needs MPICH, \
            and the mpi feature: cargo run -p lesson-beyond-one-machine --features mpi.",
    python: concat!(env!("CARGO_MANIFEST_DIR"), "/python/beyond_one_machine.py"),
    roles: &["rank"],
};

/// Ranks per job: one per CPU of a 2-CPU machine (see `mpijob`: more would crawl).
const RANKS: usize = 2;
/// Items of the pool's job in the demo (squares, as in the pool lesson).
const ITEMS: u64 = 10_000;
/// Round trips of the demo's ping-pong.
const TRIPS: u64 = 10_000;
/// What makes MPICH's ranks talk over TCP although they share a machine: its transport
/// (UCX) may use only TCP, and the loopback to itself; no shared memory.
const OVER_TCP: [(&str, &str); 1] = [("UCX_TLS", "tcp,self")];

/// How long a job may take before the kit kills it, whole. Each takes a second or two at most;
/// but `mpiexec` waits forever when it cannot start a rank (under a process limit, say).
const DEADLINE: Duration = Duration::from_secs(10);

fn main() -> std::process::ExitCode {
    LESSON.run(lesson)
}

/// The lesson, top to bottom: the conductor's side. Each section is one MPI job.
fn lesson(args: &Args) -> anyhow::Result<()> {
    if let Some(what) = &args.child {
        return rank::run(&what[1..]); // started by mpiexec: one rank of a job
    }
    mpijob::installed()?;
    if !cfg!(feature = "mpi") {
        bail!("built without MPI: run it with cargo run -p lesson-beyond-one-machine --features mpi");
    }
    if args.measure {
        return measure(args);
    }

    // ANCHOR: ranks
    println!("1. Ranks: mpiexec -n {RANKS} starts this program {RANKS} times; each copy is a rank");
    show(&job(RANKS, &["hello"])?);
    println!("   one program, started {RANKS} times: what each copy does depends on its rank");
    // ANCHOR_END: ranks

    println!("2. Send and receive, like a Pipe: rank 0 sends, rank 1 answers");
    show(&job(RANKS, &["pipe"])?);

    println!("3. Scatter and gather, like Pool.map in chunks: the squares of 1..=8");
    show(&job(RANKS, &["scatter"])?);

    println!("4. A reduction, like a Value with its lock; a barrier, like the start gate");
    show(&job(RANKS, &["reduce"])?);

    // ANCHOR: map
    println!("5. The pool's job on ranks: the squares of 0..{ITEMS}, chunked and one item at a time");
    let mut per_task = Vec::new();
    for (how, ranks) in [("chunked", 1), ("chunked", 2), ("single", 1), ("single", 2)] {
        let output = job(ranks, &["map", how, &ITEMS.to_string()])?;
        let (sum, time) = sum_and_time(&output)?;
        let messages = if how == "chunked" { 1 } else { ITEMS / ranks as u64 };
        println!(
            "   {how:>7}, {ranks} rank{}: sum {sum}; {messages} scatter and gather each; {}/task",
            if ranks == 1 { " " } else { "s" },
            varies(duration(time.as_secs_f64() / ITEMS as f64))
        );
        per_task.push(time);
    }
    let slower = per_task[3] > per_task[1];
    println!("   one item at a time costs more per task than chunked, on {RANKS} ranks: {slower}");
    ensure!(slower, "one item at a time was not slower than chunks");
    // ANCHOR_END: map

    // ANCHOR: transport
    println!("6. The transport: a ping-pong of 8 bytes, {TRIPS} round trips between 2 ranks");
    let shared = round_trip(job(RANKS, &["pingpong", &TRIPS.to_string()])?)?;
    println!("   over shared memory (MPICH's default on one machine): {}", varies(duration(shared)));
    let tcp = round_trip(job_with(RANKS, &["pingpong", &TRIPS.to_string()], &OVER_TCP)?)?;
    println!(
        "   over TCP ({}): {}",
        OVER_TCP.map(|(k, v)| format!("{k}={v}")).join(" "),
        varies(duration(tcp))
    );
    println!("   TCP costs more than shared memory: {}", tcp > shared);
    ensure!(tcp > shared, "TCP was not slower than shared memory");
    // ANCHOR_END: transport

    // ANCHOR: failure
    println!("7. A rank that fails ends the whole job, at once");
    for how in ["panic", "kill"] {
        let start = Instant::now();
        let Err(error) = job(RANKS, &["fail", how]) else { bail!("the job went on without rank 1") };
        println!("   rank 1 ({how}):");
        show_error(&error);
        let soon = start.elapsed() < Duration::from_secs(1);
        println!("   the job ended within a second: {soon}");
        ensure!(soon, "the job took {:?} to end", start.elapsed());
    }
    // ANCHOR_END: failure
    Ok(())
}

// ANCHOR: job
/// A job of `ranks` copies of this program, each a rank playing `what`.
fn job(ranks: usize, what: &[&str]) -> anyhow::Result<Output> {
    job_with(ranks, what, &[])
}

/// [`job`], with environment variables for every rank (MPICH's and UCX's settings).
fn job_with(ranks: usize, what: &[&str], env: &[(&str, &str)]) -> anyhow::Result<Output> {
    let me = std::env::current_exe().context("find this program")?;
    let job = Job::new(me, ranks).args(["--child", "rank"]).args(what).deadline(DEADLINE);
    env.iter().fold(job, |job, (key, value)| job.env(key, value)).run()
}

/// Print what the ranks said, step by step: every rank's first line, then every rank's second,
/// and so on (each line starts with its rank: the ranks say so).
fn show(output: &Output) {
    let steps = output.ranks.iter().map(Vec::len).max().unwrap_or(0);
    for step in 0..steps {
        output.ranks.iter().filter_map(|lines| lines.get(step)).for_each(|line| println!("   {line}"));
    }
}
// ANCHOR_END: job

/// A failed job: mpiexec's status (which failing process reported first decides it), then
/// what each rank that did not finish said last, each cut at spaces into lines of 96 columns.
fn show_error(error: &anyhow::Error) {
    let Some(failed) = error.downcast_ref::<JobFailed>() else { return println!("      {error:#}") };
    println!("      the MPI job failed ({})", varies(&failed.how));
    for said in &failed.said {
        let mut line = String::from("     ");
        for word in said.split(' ') {
            if line.len() + 1 + word.len() > 96 {
                println!("{line}");
                line = String::from("      ");
            }
            line.push(' ');
            line.push_str(word);
        }
        println!("{line}");
    }
}

/// Rank 0's last line of a map job: `sum S seconds T`.
fn sum_and_time(output: &Output) -> anyhow::Result<(u64, Duration)> {
    let last = output.ranks[0].last().context("rank 0 said nothing")?;
    let words: Vec<&str> = last.split(' ').collect();
    let ["sum", sum, "seconds", seconds] = words[..] else { bail!("rank 0 said {last:?}") };
    Ok((sum.parse()?, Duration::from_secs_f64(seconds.parse()?)))
}

/// Rank 0's last line of a ping-pong job: `round trip T` (seconds).
fn round_trip(output: Output) -> anyhow::Result<f64> {
    let last = output.ranks[0].last().context("rank 0 said nothing")?;
    let seconds = last.strip_prefix("round trip ").with_context(|| format!("rank 0 said {last:?}"))?;
    Ok(seconds.parse()?)
}

// ANCHOR: measure
fn measure(args: &Args) -> anyhow::Result<()> {
    let mut bench = Bench::new(&LESSON, args, "the pool's job and a ping-pong, on MPI ranks");
    let items = args.pick(1_000_000u64, 1_000);
    let trips = args.pick(100_000u64, 1_000);
    let tasks = |name: &str| Case::new(name).ops(items);

    // The floor: the same squares in one loop, here, from a Vec into a Vec (as the ranks do).
    let floor = "serial loop, square (floor)";
    let inputs: Vec<u64> = (0..items).collect();
    let expected = expected_sum(items);
    bench.run_timed(tasks(floor), || {
        let start = Instant::now();
        let squares: Vec<u64> = std::hint::black_box(&inputs).iter().map(|&x| square(x)).collect();
        let time = start.elapsed();
        ensure!(squares.iter().sum::<u64>() == expected, "the loop went wrong");
        Ok(time)
    })?;
    // Each run is one job: rank 0 times the map, after a first untimed one (connections,
    // page faults) and a barrier, and says how long it took.
    for (how, name) in
        [("chunked", "scatter + gather, chunked"), ("single", "scatter + gather, one item each")]
    {
        for ranks in [1, 2] {
            let case = tasks(&format!("{name}, {ranks} rank{}", if ranks == 1 { "" } else { "s" })).vs(floor);
            bench.run_timed(case, || {
                let (sum, time) = sum_and_time(&job(ranks, &["map", how, &items.to_string(), "warm"])?)?;
                ensure!(sum == expected, "the ranks' sum is wrong");
                Ok(time)
            })?;
        }
    }
    let shared = "round trip, 2 ranks, shared memory";
    for (name, env) in [(shared, &[][..]), ("round trip, 2 ranks, TCP", &OVER_TCP[..])] {
        let case = Case::new(name).ops(trips);
        let case = if name == shared { case } else { case.vs(shared) };
        bench.run_timed(case, || {
            let seconds = round_trip(job_with(RANKS, &["pingpong", &trips.to_string()], env)?)?;
            Ok(Duration::from_secs_f64(seconds * trips as f64))
        })?;
    }
    bench.python()?;
    bench.finish();
    Ok(())
}
// ANCHOR_END: measure

/// The pool lesson's task.
fn square(x: u64) -> u64 {
    x * x
}

/// The sum of the squares of 0..n.
fn expected_sum(n: u64) -> u64 {
    (0..n).map(square).sum()
}

/// The ranks: what this program does when `mpiexec` starts it (`--child rank WHAT...`).
#[cfg(feature = "mpi")]
mod rank {
    use anyhow::{Context, bail, ensure};
    use mpi::collective::SystemOperation;
    use mpi::topology::SimpleCommunicator;
    use mpi::traits::*;
    use nix::sys::signal::{Signal, raise};
    use plumbing::varies::varies;

    use super::square;

    pub fn run(what: &[String]) -> anyhow::Result<()> {
        // ANCHOR: start
        let universe = mpijob::rank::start()?; // MPI_Init; a panic from here on ends the job
        let world = universe.world(); // every rank of the job: its size, and this one's rank
        // ANCHOR_END: start
        let what: Vec<&str> = what.iter().map(String::as_str).collect();
        match what[..] {
            ["hello"] => hello(&world)?,
            ["pipe"] => pipe(&world)?,
            ["scatter"] => scatter(&world),
            ["reduce"] => reduce(&world),
            ["map", how, items] => map(&world, how, items.parse()?, false)?,
            ["map", how, items, "warm"] => map(&world, how, items.parse()?, true)?,
            ["pingpong", trips] => ping_pong(&world, trips.parse()?),
            ["fail", how] => fail(&world, how),
            _ => bail!("no such rank role: {what:?}"),
        }
        mpijob::rank::finish(universe); // MPI_Finalize, then the rank's last line
        Ok(())
    }

    // ANCHOR: hello
    /// Who am I: my rank, the job's size, my process, who started me, and where I run.
    fn hello(world: &SimpleCommunicator) -> anyhow::Result<()> {
        let (rank, size) = (world.rank(), world.size());
        let stat = std::fs::read_to_string("/proc/self/stat")?; // "pid (name) state ppid ..."
        let parent = stat.rsplit_once(") ").and_then(|(_, rest)| rest.split(' ').nth(1)).context("ppid")?;
        let parent_name = std::fs::read_to_string(format!("/proc/{parent}/comm"))?;
        let host = mpi::environment::processor_name()?;
        println!(
            "rank {rank} of {size}: pid {}, started by {}, on host {}",
            varies(std::process::id()),
            parent_name.trim(),
            varies(host)
        );
        Ok(())
    }
    // ANCHOR_END: hello

    // ANCHOR: rank_pipe
    /// Rank 0 sends a message to rank 1, which answers: a Pipe's send and recv, between ranks.
    fn pipe(world: &SimpleCommunicator) -> anyhow::Result<()> {
        let (zero, one) = (world.process_at_rank(0), world.process_at_rank(1));
        if world.rank() == 0 {
            one.send(&b"ping"[..]);
            let (answer, _status) = one.receive_vec::<u8>();
            println!("rank 0 sent \"ping\" to rank 1, and received {:?}", String::from_utf8(answer)?);
        } else if world.rank() == 1 {
            let (message, status) = zero.receive_vec::<u8>();
            ensure!(message == b"ping", "rank 1 received {message:?}");
            zero.send(&b"pong"[..]);
            println!("rank 1 received \"ping\" from rank {}, and answered \"pong\"", status.source_rank());
        }
        Ok(())
    }
    // ANCHOR_END: rank_pipe

    // ANCHOR: rank_scatter
    /// The root (rank 0) scatters 1..=8 in equal chunks, one to each rank, itself included;
    /// each squares its chunk; the root gathers the results, in rank order.
    fn scatter(world: &SimpleCommunicator) {
        let root = world.process_at_rank(0);
        let items: Vec<u64> = (1..=8).collect();
        let mut mine = vec![0u64; items.len() / world.size() as usize];
        if world.rank() == 0 {
            root.scatter_into_root(&items[..], &mut mine[..]);
        } else {
            root.scatter_into(&mut mine[..]);
        }
        let squares: Vec<u64> = mine.iter().map(|&x| square(x)).collect();
        println!("rank {} squared {mine:?}", world.rank());
        if world.rank() == 0 {
            let mut all = vec![0u64; items.len()];
            root.gather_into_root(&squares[..], &mut all[..]);
            println!("rank 0 gathered {all:?}, in order");
        } else {
            root.gather_into(&squares[..]);
        }
    }
    // ANCHOR_END: rank_scatter

    // ANCHOR: rank_reduce
    /// Every rank counts 1000 of its own; a reduction sums the counts at the root. No rank
    /// touches another's count, so nothing needs a lock and no update is lost. Then a
    /// barrier: no rank leaves it before every rank has reached it.
    fn reduce(world: &SimpleCommunicator) {
        let counted: u64 = (0..1000).map(|_| 1).sum();
        println!("rank {} counted {counted}, in memory of its own", world.rank());
        let root = world.process_at_rank(0);
        if world.rank() == 0 {
            let mut total = 0u64;
            root.reduce_into_root(&counted, &mut total, SystemOperation::sum());
            println!("rank 0: reduce(sum) of every rank's count: {total}, no lock, none lost");
        } else {
            root.reduce_into(&counted, SystemOperation::sum());
        }
        world.barrier();
        let mut arrived = 0u64;
        world.all_reduce_into(&1u64, &mut arrived, SystemOperation::sum());
        println!(
            "rank {}: past the barrier, which {arrived} of {} ranks reached",
            world.rank(),
            world.size()
        );
    }
    // ANCHOR_END: rank_reduce

    // ANCHOR: rank_map
    /// The squares of 0..items: `chunked`, one scatter of equal chunks and one gather (Pool.map
    /// with chunks); `single`, a scatter and a gather of one item per rank for every round
    /// (chunksize 1). Rank 0 says the sum, and the seconds it took after a barrier.
    fn map(world: &SimpleCommunicator, how: &str, items: u64, warm: bool) -> anyhow::Result<()> {
        let size = world.size() as u64;
        ensure!(items.is_multiple_of(size), "{items} items do not split into {size} equal chunks");
        let root = world.process_at_rank(0);
        let is_root = world.rank() == 0;
        let inputs: Vec<u64> = if is_root { (0..items).collect() } else { Vec::new() };
        let mut results = vec![0u64; if is_root { items as usize } else { 0 }];
        // One scatter, the squares, one gather: `count` items for each rank.
        let step = |inputs: &[u64], results: &mut [u64], count: usize| {
            let mut mine = vec![0u64; count];
            if is_root {
                root.scatter_into_root(inputs, &mut mine[..]);
            } else {
                root.scatter_into(&mut mine[..]);
            }
            let squares: Vec<u64> = mine.iter().map(|&x| square(x)).collect();
            if is_root {
                root.gather_into_root(&squares[..], results);
            } else {
                root.gather_into(&squares[..]);
            }
        };
        let mut once = || match how {
            "chunked" => {
                step(&inputs, &mut results, (items / size) as usize);
                Ok(())
            }
            "single" => {
                let (round, n) = (size as usize, (items / size) as usize);
                for r in 0..n {
                    let (ins, outs) = if is_root {
                        (&inputs[r * round..][..round], &mut results[r * round..][..round])
                    } else {
                        (&[][..], &mut [][..])
                    };
                    step(ins, outs, 1);
                }
                Ok(())
            }
            _ => bail!("map: chunked or single, not {how}"),
        };
        if warm {
            once()?; // untimed: connections made, pages faulted in
        }
        world.barrier();
        let start = mpi::time();
        once()?;
        let seconds = mpi::time() - start;
        if is_root {
            println!("sum {} seconds {seconds}", results.iter().sum::<u64>());
        }
        Ok(())
    }
    // ANCHOR_END: rank_map

    // ANCHOR: rank_pingpong
    /// Rank 0 sends 8 bytes to rank 1 and waits for them back, `trips` times (after 100 to
    /// warm up); it says the mean round trip, in seconds.
    fn ping_pong(world: &SimpleCommunicator, trips: u64) {
        if world.rank() > 1 {
            return; // only ranks 0 and 1 play
        }
        let mut message = [0u8; 8];
        let other = world.process_at_rank(1 - world.rank());
        let mut start = 0.0;
        for trip in 0..100 + trips {
            if trip == 100 {
                start = mpi::time();
            }
            if world.rank() == 0 {
                other.send(&message[..]);
                other.receive_into(&mut message[..]);
            } else {
                other.receive_into(&mut message[..]);
                other.send(&message[..]);
            }
        }
        if world.rank() == 0 {
            println!("round trip {}", (mpi::time() - start) / trips as f64);
        }
    }
    // ANCHOR_END: rank_pingpong

    // ANCHOR: rank_fail
    /// Rank 0 waits for a message from rank 1, which panics (or is killed) instead.
    fn fail(world: &SimpleCommunicator, how: &str) {
        if world.rank() == 1 {
            match how {
                "panic" => panic!("rank 1 panics on purpose"),
                _ => drop(raise(Signal::SIGKILL)), // dies at once, as if killed from outside
            }
        }
        let (_, _): (u64, _) = world.process_at_rank(1).receive();
    }
    // ANCHOR_END: rank_fail
}

/// Without the `mpi` feature there are no ranks: the conductor says so before it starts any.
#[cfg(not(feature = "mpi"))]
mod rank {
    pub fn run(_: &[String]) -> anyhow::Result<()> {
        anyhow::bail!("built without MPI: run it with cargo run -p lesson-beyond-one-machine --features mpi")
    }
}
