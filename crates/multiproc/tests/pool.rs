//! multiproc::pool with real worker processes. The pool forks, so these tests run one at a time on
//! the main thread of this test binary (`harness = false`, one test thread), never in
//! libtest's threads; `fork_child` would refuse them there. Each test ends by checking that
//! no child process of this one is left, reaped or not.

use std::time::Duration;

use libtest_mimic::{Arguments, Failed, Trial};
use multiproc::pool::{Pool, Transport};
use multiproc::ring::{WORDS, Wait};
use nix::errno::Errno;
use nix::sys::signal::{Signal, kill, raise};
use nix::sys::wait::{WaitPidFlag, waitpid};
use nix::unistd::Pid;

fn main() {
    let mut args = Arguments::from_args();
    args.test_threads = Some(1); // the main thread, where forking is sound
    let tests = [
        ("map-keeps-input-order", map_keeps_input_order as fn(Transport) -> Result<(), Failed>),
        ("imap-unordered-gives-every-result-once", imap_unordered_gives_every_result_once),
        ("default-chunksize-is-pythons", default_chunksize_is_pythons),
        ("a-panicking-task-is-named-and-the-workers-live-on", a_panicking_task_is_named),
        ("a-killed-worker-breaks-the-pool-without-a-hang", a_killed_worker_breaks_the_pool),
        ("a-worker-dying-mid-map-breaks-the-pool", a_worker_dying_mid_map),
        ("big-tasks-and-results-pass-whole", big_tasks_and_results_pass_whole),
        ("close-joins-every-worker", close_joins_every_worker),
        ("drop-leaves-no-worker", drop_leaves_no_worker),
    ];
    // Every test, over each transport: the same behaviour is promised for both.
    let transports = [("socketpair", Transport::Socketpair), ("rings", Transport::Rings(Wait::ADAPTIVE))];
    let trials = transports.into_iter().flat_map(|(label, transport)| {
        tests.into_iter().map(move |(name, test)| {
            Trial::test(format!("{label}/{name}"), move || test(transport).and_then(|()| no_children_left()))
        })
    });
    libtest_mimic::run(&args, trials.collect()).exit();
}

/// A pool of `processes` workers running `task`, over `transport`.
fn pool<T, R>(processes: usize, transport: Transport, task: fn(T) -> R) -> Result<Pool<T, R>, Failed>
where
    T: serde::Serialize + serde::de::DeserializeOwned,
    R: serde::Serialize + serde::de::DeserializeOwned,
{
    Ok(Pool::with_transport(Some(processes), transport, task)?)
}

fn check(ok: bool, message: impl FnOnce() -> String) -> Result<(), Failed> {
    if ok { Ok(()) } else { Err(message().into()) }
}

/// Every child this process started has been reaped: waitpid finds none.
fn no_children_left() -> Result<(), Failed> {
    match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
        Err(Errno::ECHILD) => Ok(()),
        other => Err(format!("a child process is left behind: waitpid(-1) gave {other:?}").into()),
    }
}

/// A task whose time depends on its item, so that chunks finish out of order.
fn slow_square(x: u64) -> u64 {
    std::thread::sleep(Duration::from_micros(200 * ((7 - x % 7) % 7)));
    x * x
}

fn map_keeps_input_order(transport: Transport) -> Result<(), Failed> {
    let mut pool = pool(3, transport, slow_square)?;
    let items: Vec<u64> = (0..60).collect();
    let expected: Vec<u64> = items.iter().map(|x| x * x).collect();
    for chunksize in [Some(1), Some(7), None, Some(100)] {
        let results = pool.map(&items, chunksize)?;
        check(results == expected, || format!("map with chunksize {chunksize:?} gave {results:?}"))?;
    }
    check(pool.map(&[], None)?.is_empty(), || "map of nothing gave something".into())?;
    Ok(pool.close()?)
}

fn imap_unordered_gives_every_result_once(transport: Transport) -> Result<(), Failed> {
    let mut pool = pool(3, transport, slow_square)?;
    let items: Vec<u64> = (0..100).collect();
    let arrived = pool.imap_unordered(&items, 5)?;
    let mut sorted = arrived.clone();
    sorted.sort_unstable();
    let expected: Vec<u64> = items.iter().map(|x| x * x).collect();
    check(sorted == expected, || format!("imap_unordered lost or repeated results: {arrived:?}"))?;
    // Within a chunk, in input order: each run of 5 starts at a multiple of 5.
    let whole = arrived
        .chunks(5)
        .all(|c| c[0].isqrt() % 5 == 0 && c.windows(2).all(|w| w[0].isqrt() + 1 == w[1].isqrt()));
    check(whole, || format!("a chunk came back split or reordered: {arrived:?}"))?;
    Ok(pool.close()?)
}

fn default_chunksize_is_pythons(transport: Transport) -> Result<(), Failed> {
    // Python: chunksize, extra = divmod(len, 4 * processes); if extra: chunksize += 1
    for (processes, items, expected) in [(4, 1000, 63), (2, 1000, 125), (4, 5, 1), (4, 0, 1)] {
        let pool = pool::<u64, u64>(processes, transport, |x| x)?;
        let got = pool.default_chunksize(items);
        check(got == expected, || format!("{items} items on {processes} workers: chunksize {got}"))?;
        pool.close()?;
    }
    Ok(())
}

fn unlucky(x: u64) -> u64 {
    if x == 13 {
        panic!("13 is unlucky");
    }
    x
}

fn a_panicking_task_is_named(transport: Transport) -> Result<(), Failed> {
    let mut pool = pool(2, transport, unlucky)?;
    let pids = pool.pids();
    let items: Vec<u64> = (1..=20).collect();
    let error = pool.map(&items, Some(3)).err().ok_or("map over a panicking task succeeded")?.to_string();
    check(error == "the task panicked on item 13 (index 12): 13 is unlucky", || error.clone())?;
    check(pool.map(&[1, 2, 3], None)? == [1, 2, 3], || "the pool did not work after a panic".into())?;
    check(pool.pids() == pids, || "the workers were replaced after a caught panic".into())?;
    Ok(pool.close()?)
}

fn a_killed_worker_breaks_the_pool(transport: Transport) -> Result<(), Failed> {
    let mut pool = pool(2, transport, |x: u64| x + 1)?;
    let victim = pool.pids()[1];
    kill(victim, Signal::SIGKILL)?;
    let error =
        pool.map(&(0..100).collect::<Vec<_>>(), Some(1)).err().ok_or("map on a dead worker succeeded")?;
    let error = error.to_string();
    check(
        error.contains("pool is broken")
            && error.contains(&format!("worker 1 (pid {victim}) failed with exitcode -9 (SIGKILL)"))
            && error.ends_with("stopped the 1 still running"),
        || error.clone(),
    )?;
    let again = pool.map(&[1], None).err().ok_or("a broken pool ran a task")?.to_string();
    check(again == error, || format!("the second error differs: {again}"))?;
    check(pool.pids().is_empty(), || "a broken pool still lists workers".into())?;
    Ok(())
}

/// A task that kills its own worker on one item: the worker dies with tasks in flight.
fn die_on_13(x: u64) -> u64 {
    if x == 13 {
        let _ = raise(Signal::SIGKILL);
    }
    x
}

fn a_worker_dying_mid_map(transport: Transport) -> Result<(), Failed> {
    let mut pool = pool(2, transport, die_on_13)?;
    let items: Vec<u64> = (0..1000).collect();
    let error = pool.map(&items, Some(2)).err().ok_or("map with a dying worker succeeded")?.to_string();
    check(error.contains("pool is broken") && error.contains("exitcode -9 (SIGKILL)"), || error.clone())?;
    Ok(())
}

/// Tasks and results longer than a ring (and than a socket's buffer): they go in pieces.
fn big_tasks_and_results_pass_whole(transport: Transport) -> Result<(), Failed> {
    let mut pool = pool(2, transport, |text: String| text.repeat(3))?;
    let items: Vec<String> = (0..12).map(|i| format!("{i:>5}").repeat(WORDS * 8 / 5 * (i % 4))).collect();
    let expected: Vec<String> = items.iter().map(|t| t.repeat(3)).collect();
    for chunksize in [Some(1), Some(5)] {
        let results = pool.map(&items, chunksize)?;
        check(results == expected, || format!("big items with chunksize {chunksize:?} came back changed"))?;
    }
    Ok(pool.close()?)
}

fn close_joins_every_worker(transport: Transport) -> Result<(), Failed> {
    let mut pool = pool(3, transport, |x: u64| x)?;
    pool.map(&[1, 2, 3], None)?;
    let pids = pool.pids();
    pool.close()?;
    for pid in pids {
        // Reaped: not our child any more.
        check(waitpid(pid, Some(WaitPidFlag::WNOHANG)) == Err(Errno::ECHILD), || {
            format!("{pid} not reaped")
        })?;
    }
    Ok(())
}

fn drop_leaves_no_worker(transport: Transport) -> Result<(), Failed> {
    let mut pool = pool(2, transport, |x: u64| x)?;
    pool.map(&[1], None)?;
    drop(pool);
    Ok(())
}
