//! A parent's waits end when a child dies: a lock a dead child holds, a slot it was to give
//! back, a message it was to send. Each test runs in a process of its own (a "scenario"),
//! forked from this binary's main thread (`harness = false`, one test thread), so that a
//! wait that never ends is seen as such: after 10 s the scenario is killed and the test
//! fails, saying it hung. The children are killed through the kit's fault points
//! (`proc::faults`), at the moment the test names. The crew's rounds are here too, at work
//! and with a worker dead.

use std::time::{Duration, Instant};

use libtest_mimic::{Arguments, Failed, Trial};
use multiproc::crew::Crew;
use multiproc::proc::faults::{self, Point};
use multiproc::proc::{ExitCode, fork_named, stop, try_join};
use multiproc::queue::Queue;
use multiproc::shm::{Array, Atomics, Value};
use nix::sys::signal::{Signal, raise};
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;

fn main() {
    let mut args = Arguments::from_args();
    args.test_threads = Some(1); // the main thread, where forking is sound
    let tests = [
        ("a-value-whose-holder-died", a_value_whose_holder_died as fn() -> anyhow::Result<()>),
        ("an-array-whose-holder-died", an_array_whose_holder_died),
        ("a-queue-whose-writer-died-mid-put", a_queue_whose_writer_died_mid_put),
        ("a-queue-whose-reader-died-mid-get", a_queue_whose_reader_died_mid_get),
        ("a-full-queue-whose-consumer-died", a_full_queue_whose_consumer_died),
        ("an-empty-queue-whose-producer-died", an_empty_queue_whose_producer_died),
        ("a-crew-at-work", a_crew_at_work),
        ("a-crew-whose-worker-died", a_crew_whose_worker_died),
    ];
    faults::set_hook(die_where_named);
    let trials = tests.into_iter().map(|(name, test)| Trial::test(name, move || in_a_process(test)));
    libtest_mimic::run(&args, trials.collect()).exit();
}

/// The fault hook: a child named `dies holding` is killed as soon as it holds one of the
/// kit's locks; one named `dies at start`, as it starts.
fn die_where_named(name: &str, at: Point) {
    let at_start = ["dies at start", "dying crew 1"];
    if matches!((name, at), ("dies holding", Point::Holding(_)))
        || at_start.contains(&name) && matches!(at, Point::Start)
    {
        let _ = raise(Signal::SIGKILL);
    }
}

/// Run `scenario` in a process of its own; fail if it fails, or if it has not ended after
/// 10 s (then it hung: it is killed, with its children, which die with it).
fn in_a_process(scenario: fn() -> anyhow::Result<()>) -> Result<(), Failed> {
    let pid = fork_named("scenario", scenario)?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        match try_join(pid)? {
            Some(ExitCode(0)) => return Ok(()),
            Some(code) => {
                return Err(format!("the scenario failed: exitcode {code} (its error is above)").into());
            }
            None => std::thread::sleep(Duration::from_millis(5)),
        }
    }
    stop(&[pid]);
    Err("the scenario hung: the parent's wait did not end when its child died".into())
}

/// The parent's wait must end with an error naming the child (its pid) and SIGKILL.
fn names_the_dead(result: anyhow::Result<()>, child: nix::unistd::Pid) -> anyhow::Result<()> {
    let error = match result {
        Ok(()) => anyhow::bail!("the wait succeeded, though the child {child} died"),
        Err(error) => format!("{error:#}"),
    };
    anyhow::ensure!(
        error.contains(&format!("pid {child}")) && error.contains("SIGKILL"),
        "the error does not name pid {child} and SIGKILL: {error}"
    );
    stop(&[child]); // it is dead: this reaps it
    Ok(())
}

/// Wait until `child` has died (a zombie, not yet reaped): so that it surely took the lock
/// before this process asks for it.
fn until_dead(child: nix::unistd::Pid) -> nix::unistd::Pid {
    let state = || {
        let stat = std::fs::read_to_string(format!("/proc/{child}/stat")).unwrap_or_default();
        stat.rsplit_once(") ").and_then(|(_, rest)| rest.chars().next())
    };
    while state() != Some('Z') {
        std::thread::yield_now();
    }
    child
}

fn a_value_whose_holder_died() -> anyhow::Result<()> {
    let value = Value::new(0u64)?;
    let child = fork_named("dies holding", || {
        let _guard = value.lock()?; // the hook kills it here
        Ok(())
    })?;
    until_dead(child);
    names_the_dead(value.lock().map(drop), child)
}

fn an_array_whose_holder_died() -> anyhow::Result<()> {
    let array = Array::<u64>::new(4)?;
    let child = fork_named("dies holding", || {
        let _guard = array.lock()?;
        Ok(())
    })?;
    until_dead(child);
    names_the_dead(array.lock().map(drop), child)
}

fn a_queue_whose_writer_died_mid_put() -> anyhow::Result<()> {
    let queue = Queue::new()?;
    let child = until_dead(fork_named("dies holding", || queue.put(b"never sent"))?);
    names_the_dead(queue.put(b"after it"), child)
}

fn a_queue_whose_reader_died_mid_get() -> anyhow::Result<()> {
    let queue = Queue::new()?;
    let child = until_dead(fork_named("dies holding", || queue.get().map(drop))?);
    names_the_dead(queue.get().map(drop), child)
}

fn a_full_queue_whose_consumer_died() -> anyhow::Result<()> {
    let queue = Queue::bounded(1)?;
    queue.put(b"fills it")?;
    let child = fork_named("dies at start", || queue.get().map(drop))?;
    names_the_dead(queue.put(b"waits for a slot"), child)
}

fn an_empty_queue_whose_producer_died() -> anyhow::Result<()> {
    let queue = Queue::new()?;
    let child = fork_named("dies at start", || queue.put(b"never sent"))?;
    names_the_dead(queue.get().map(drop), child)
}

/// Three rounds of a crew of two: after each, the parent sees what every worker wrote in it;
/// `stop` ends them all.
fn a_crew_at_work() -> anyhow::Result<()> {
    let array = Atomics::<AtomicU64>::new(2)?;
    let rounds = Atomics::<AtomicU64>::new(2)?; // each worker's own count of its rounds
    let mut crew = Crew::<2>::start(
        "worker",
        |_| (),
        |worker| {
            let round = rounds[worker].fetch_add(1, Relaxed) + 1;
            array[worker].store(10 * round + worker as u64, Relaxed);
        },
    )?;
    for round in 1..=3 {
        crew.round()?;
        let seen: Vec<u64> = array.iter().map(|x| x.load(Relaxed)).collect();
        anyhow::ensure!(seen == [10 * round, 10 * round + 1], "round {round}: the parent saw {seen:?}");
    }
    crew.stop()
}

/// A crew whose worker 1 died as it started: the round ends with an error naming it.
fn a_crew_whose_worker_died() -> anyhow::Result<()> {
    let mut crew = Crew::<2>::start("dying crew", |_| (), |_| ())?;
    let error = match crew.round() {
        Ok(_) => anyhow::bail!("the round succeeded, though a worker died"),
        Err(error) => format!("{error:#}"),
    };
    anyhow::ensure!(
        error.contains("dying crew 1") && error.contains("SIGKILL"),
        "the error does not name the dead worker and SIGKILL: {error}"
    );
    Ok(()) // dropping the crew stops worker 0, and reaps both
}
