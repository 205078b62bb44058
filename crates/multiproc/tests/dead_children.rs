//! A parent's waits end when a child dies: a lock a dead child holds, a slot it was to give
//! back, a message it was to send. Each test runs in a process of its own (a "scenario"),
//! forked from this binary's main thread (`harness = false`, one test thread), so that a
//! wait that never ends is seen as such: after 10 s the scenario is killed and the test
//! fails, saying it hung. The children are killed through the kit's fault points
//! (`proc::faults`), at the moment the test names.

use std::time::{Duration, Instant};

use libtest_mimic::{Arguments, Failed, Trial};
use multiproc::proc::faults::{self, Point};
use multiproc::proc::{ExitCode, fork_named, stop, try_join};
use multiproc::queue::Queue;
use multiproc::shm::{Array, Value};
use nix::sys::signal::{Signal, raise};

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
    ];
    faults::set_hook(die_where_named);
    let trials = tests.into_iter().map(|(name, test)| Trial::test(name, move || in_a_process(test)));
    libtest_mimic::run(&args, trials.collect()).exit();
}

/// The fault hook: a child named `dies holding` is killed as soon as it holds one of the
/// kit's locks; one named `dies at start`, as it starts.
fn die_where_named(name: &str, at: Point) {
    if matches!((name, at), ("dies holding", Point::Holding(_)) | ("dies at start", Point::Start)) {
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
