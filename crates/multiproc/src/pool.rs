//! Python's `multiprocessing.Pool`: worker processes started once, fed tasks in chunks, whose
//! results come back in input order (`map`) or as they finish (`imap_unordered`). The pool
//! lesson builds it and its chapter includes this file. (The when-slower lesson measures big
//! results with a pool of its own, built on `Queue`: JSON, like pickle, would cost more than
//! the copy it measures.)
//!
//! Each worker has its own socketpair, one end in the parent and one in the worker: chunks of
//! tasks go down it and chunks of results come back up it, each a message framed by
//! [`crate::wire`] and encoded as JSON (serde_json plays pickle's part). One channel per
//! worker, not one shared queue, because then the parent knows which worker holds which
//! tasks, EOF on a socket says *which* worker died, and killing the workers turns a write
//! the parent is blocked in into an error (EPIPE) instead of a hang.
//!
//! With [`Transport::Rings`] (the fast-lane chapter), each worker gets two rings in shared
//! memory instead, tasks down and results up, and the parent waits for results on one
//! [`Bell`] that every worker rings: no system call per message while both sides are awake.
//! The parent then needs no feeder thread: it sends a chunk only when it fits whole in a
//! worker's ring, so it never blocks while a worker may be blocked on it.
//!
//! The task function is fixed when the pool starts (`fn(T) -> R`): the workers are forked
//! with it, so they already have its code. Python pickles a function by name for the same
//! reason: the worker must be able to find it.

use std::marker::PhantomData;
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail, ensure};
use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::unistd::Pid;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::proc::{ExitCode, fork_named, join, stop, try_join};
use crate::ring::{Bell, Ring, Wait};
use crate::shm::Shared;
use crate::wire::{recv, send};

// ANCHOR: pool
/// A pool of worker processes that run `fn(T) -> R` on items sent to them.
pub struct Pool<T, R> {
    workers: Vec<Worker>,
    processes: usize,
    /// Why the pool can no longer be used, once a worker has died.
    broken: Option<String>,
    /// Tasks each worker has finished, since the pool started.
    tasks_done: Vec<u64>,
    transport: Transport,
    /// With rings: what every worker rings after sending results.
    bell: Option<Shared<Bell>>,
    types: PhantomData<fn(T) -> R>,
}

// ANCHOR: transport
/// How tasks and results travel between the parent and each worker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// One socketpair per worker, messages framed by `wire`: Python's way, and the default.
    Socketpair,
    /// Two rings in shared memory per worker, tasks down and results up, each side waiting as
    /// the `Wait` says (the fast-lane chapter).
    Rings(Wait),
}
// ANCHOR_END: transport

struct Worker {
    pid: Pid,
    channel: Channel,
}

/// The parent's side of a worker's channel.
enum Channel {
    /// The parent's end of this worker's socketpair.
    Socket(UnixStream),
    /// The worker's two rings: tasks down, results up.
    Rings(Shared<(Ring, Ring)>),
}

/// A task's outcome as it travels back: its result, or the message it panicked with.
type Outcome<R> = Result<R, String>;

/// What tells a worker to exit: an empty message (Python's `None` sentinel). Not EOF: every
/// worker forked later holds a copy of the parent's end of this worker's socket.
const SENTINEL: &[u8] = b"";
/// Chunks the feeder keeps in flight per worker: one to work on, one waiting behind it.
const AHEAD: usize = 2;
/// How long shutdown waits for the workers to exit before it kills them.
const GRACE: Duration = Duration::from_millis(500);

/// Python's `os.cpu_count()`, the default number of workers: the CPUs this process may use.
pub fn cpu_count() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

impl<T: Serialize + DeserializeOwned, R: Serialize + DeserializeOwned> Pool<T, R> {
    /// Python's `Pool(processes)`: fork the workers (`None`: one per CPU).
    pub fn new(processes: Option<usize>, task: fn(T) -> R) -> anyhow::Result<Self> {
        Pool::with_initializer(processes, |_worker| {}, task)
    }

    /// Python's `Pool(processes, initializer)`: each worker first calls `initializer` with its
    /// number (0, 1, ...). Outside any `catch_unwind`: if it panics, the worker dies.
    pub fn with_initializer(
        processes: Option<usize>,
        initializer: fn(usize),
        task: fn(T) -> R,
    ) -> anyhow::Result<Self> {
        Pool::start(processes, initializer, task, Transport::Socketpair)
    }

    /// `Pool(processes)` whose tasks and results travel as `transport` says.
    pub fn with_transport(
        processes: Option<usize>,
        transport: Transport,
        task: fn(T) -> R,
    ) -> anyhow::Result<Self> {
        Pool::start(processes, |_worker| {}, task, transport)
    }

    fn start(
        processes: Option<usize>,
        initializer: fn(usize),
        task: fn(T) -> R,
        transport: Transport,
    ) -> anyhow::Result<Self> {
        let processes = processes.unwrap_or_else(cpu_count);
        ensure!(processes > 0, "a pool needs at least one worker process");
        let bell = match transport {
            Transport::Socketpair => None,
            Transport::Rings(_) => Some(Shared::<Bell>::new()?),
        };
        let mut pool = Pool {
            workers: Vec::new(),
            processes,
            broken: None,
            tasks_done: vec![0; processes],
            transport,
            bell,
            types: PhantomData,
        };
        for number in 0..processes {
            let name = format!("worker {number}");
            let worker = match (transport, &pool.bell) {
                (Transport::Rings(wait), Some(bell)) => {
                    let rings = Shared::<(Ring, Ring)>::new()?;
                    let pid =
                        fork_named(&name, || work_on_rings(number, &rings, bell, wait, initializer, task))?;
                    Worker { pid, channel: Channel::Rings(rings) }
                }
                _ => {
                    let (parent_end, worker_end) =
                        UnixStream::pair().context("create a socketpair for a worker")?;
                    let pid =
                        fork_named(&name, move || work_on_socket(number, worker_end, initializer, task))?;
                    // The closure, and with it the parent's copy of `worker_end`, is gone now:
                    // only the worker holds its end, so the parent reads EOF when it dies.
                    Worker { pid, channel: Channel::Socket(parent_end) }
                }
            };
            pool.workers.push(worker);
        }
        Ok(pool)
    }
    // ANCHOR_END: pool

    /// How many workers the pool started with.
    pub fn processes(&self) -> usize {
        self.processes
    }

    /// The workers' pids, worker 0 first; empty once the pool is broken or closed.
    pub fn pids(&self) -> Vec<Pid> {
        self.workers.iter().map(|w| w.pid).collect()
    }

    /// Tasks each worker has finished since the pool started, worker 0 first.
    pub fn tasks_done(&self) -> &[u64] {
        &self.tasks_done
    }

    // ANCHOR: chunksize
    /// Python's rule for `map`'s default chunksize: about four chunks per worker.
    pub fn default_chunksize(&self, items: usize) -> usize {
        items.div_ceil(4 * self.processes).max(1)
    }

    /// Python's `pool.map(f, items, chunksize)`: every result, in input order. `None` for
    /// the default chunksize. If a task panicked, an error naming the first such item.
    pub fn map(&mut self, items: &[T], chunksize: Option<usize>) -> anyhow::Result<Vec<R>> {
        let chunksize = chunksize.unwrap_or_else(|| self.default_chunksize(items.len()));
        let _map =
            crate::trace::span("phase", || format!("map {} items, chunksize {chunksize}", items.len()));
        let mut slots: Vec<Option<Outcome<R>>> = items.iter().map(|_| None).collect();
        self.run(items, chunksize, |first, outcomes| {
            for (i, outcome) in outcomes.into_iter().enumerate() {
                slots[first + i] = Some(outcome);
            }
        })?;
        let outcomes = slots.into_iter().map(|slot| slot.expect("every chunk came back"));
        settle(items, outcomes.enumerate())
    }

    /// Python's `pool.imap_unordered(f, items, chunksize)` (whose default chunksize is 1):
    /// every result, in the order the chunks finished; within a chunk, in input order.
    pub fn imap_unordered(&mut self, items: &[T], chunksize: usize) -> anyhow::Result<Vec<R>> {
        let mut arrived = Vec::with_capacity(items.len());
        self.run(items, chunksize, |first, outcomes| {
            arrived.extend(outcomes.into_iter().enumerate().map(|(i, outcome)| (first + i, outcome)));
        })?;
        settle(items, arrived)
    }
    // ANCHOR_END: chunksize

    // ANCHOR: run
    /// Send `items` to the workers in chunks and hand each chunk of outcomes to `take`, with
    /// the index of its first item. A helper thread feeds the tasks while this thread reads
    /// the results: done in one thread, writing all tasks before reading any result
    /// deadlocks once the workers' result messages fill the sockets (each side blocked in
    /// `write`, waiting for the other to read). The thread only ever lives inside this call.
    fn run(
        &mut self,
        items: &[T],
        chunksize: usize,
        mut take: impl FnMut(usize, Vec<Outcome<R>>),
    ) -> anyhow::Result<()> {
        if let Some(why) = &self.broken {
            bail!("{why}");
        }
        ensure!(chunksize > 0, "chunksize must be at least 1");
        // Encoded up front, so that an item that cannot be encoded fails before anything is sent.
        let tasks = items
            .chunks(chunksize)
            .enumerate()
            .map(|(chunk, part)| serde_json::to_vec(&(chunk, part)))
            .collect::<Result<Vec<_>, _>>()
            .context("encode the tasks as JSON")?;
        if let Transport::Rings(wait) = self.transport {
            let failed = self.run_on_rings(&tasks, chunksize, wait, &mut take).err();
            return self.break_if(failed);
        }
        let workers = &self.workers;
        let tasks_done = &mut self.tasks_done;
        let failed = std::thread::scope(|scope| {
            let (finished, finished_rx) = mpsc::channel();
            // A thread can fail to start (a process limit): an error, not a panic.
            let feeder = std::thread::Builder::new()
                .name("pool feeder".into())
                .spawn_scoped(scope, || feed(workers, &tasks, finished_rx))
                .context("start the pool's feeder thread")?;
            let read = read_results(workers, tasks.len(), chunksize, finished, tasks_done, &mut take);
            // On failure, kill every worker before joining the feeder: a write it is blocked in
            // then fails with EPIPE, so the join cannot hang.
            let failed = read.err().map(|failure| broken(workers, failure));
            let _ = feeder.join(); // its errors come from the dead worker that `failed` names
            anyhow::Ok(failed)
        })?;
        if let Some(why) = failed {
            self.workers.clear(); // every worker has been reaped
            self.broken = Some(why.clone());
            bail!(why);
        }
        Ok(())
    }
    // ANCHOR_END: run

    /// After a failure: the pool is broken (every worker stopped and reaped), and says why.
    fn break_if(&mut self, failed: Option<Failure>) -> anyhow::Result<()> {
        let Some(failure) = failed else { return Ok(()) };
        let why = broken(&self.workers, failure);
        self.workers.clear();
        self.broken = Some(why.clone());
        bail!(why)
    }

    // ANCHOR: run_on_rings
    /// `run` over rings, in this one thread. It sends a chunk only when the chunk fits whole
    /// in a worker's ring (`try_send`), so it never blocks while a worker may be blocked on
    /// it; a chunk bigger than a ring goes to a worker with nothing in flight, which is
    /// reading its ring and takes it as it comes. Then it waits on the bell for results.
    fn run_on_rings(
        &mut self,
        tasks: &[Vec<u8>],
        chunksize: usize,
        wait: Wait,
        take: &mut impl FnMut(usize, Vec<Outcome<R>>),
    ) -> Result<(), Failure> {
        let (workers, tasks_done) = (&self.workers, &mut self.tasks_done);
        let bell = self.bell.as_deref().context("a pool on rings has a bell").map_err(Failure::Other)?;
        let mut in_flight = vec![0; workers.len()];
        let (mut sent, mut received, mut message) = (0, 0, Vec::new());
        while received < tasks.len() {
            while sent < tasks.len() {
                let worker = (0..workers.len()).min_by_key(|&w| in_flight[w]).unwrap_or(0);
                if in_flight[worker] >= AHEAD {
                    break; // every worker has enough to do: read results first
                }
                let down = &workers[worker].rings().0;
                if !down.try_send(&tasks[sent]) {
                    if in_flight[worker] > 0 {
                        break; // no room in its ring: read results first
                    }
                    // Longer than the ring itself. The worker has answered every chunk it had,
                    // so it is waiting for this one, and reads it as it comes.
                    down.send(&tasks[sent], wait).map_err(|e| died(workers, e))?;
                }
                in_flight[worker] += 1;
                sent += 1;
            }
            let any_results = || workers.iter().any(|w| !w.rings().1.is_empty());
            bell.wait_until(any_results, wait, "results from the workers").map_err(|e| died(workers, e))?;
            for (worker, w) in workers.iter().enumerate() {
                while !w.rings().1.is_empty() {
                    w.rings().1.recv_into(&mut message, wait).map_err(|e| died(workers, e))?;
                    let (chunk, outcomes) = decode(&message)?;
                    tasks_done[worker] += outcomes.len() as u64;
                    take(chunk * chunksize, outcomes);
                    (received, in_flight[worker]) = (received + 1, in_flight[worker] - 1);
                }
            }
        }
        Ok(())
    }
    // ANCHOR_END: run_on_rings
}

impl Worker {
    /// The parent's end of this worker's socketpair (only on a pool over socketpairs).
    fn socket(&self) -> &UnixStream {
        match &self.channel {
            Channel::Socket(socket) => socket,
            Channel::Rings(_) => unreachable!("a worker on rings in a pool over socketpairs"),
        }
    }

    /// This worker's rings (only called on a pool whose transport is rings).
    fn rings(&self) -> &(Ring, Ring) {
        match &self.channel {
            Channel::Rings(rings) => rings,
            Channel::Socket(_) => unreachable!("a socket worker in a pool on rings"),
        }
    }
}

/// A wait on a ring failed: if a worker has ended, that is why.
fn died(workers: &[Worker], error: anyhow::Error) -> Failure {
    for (i, worker) in workers.iter().enumerate() {
        if let Ok(Some(code)) = try_join(worker.pid) {
            return Failure::Ended(i, code);
        }
    }
    Failure::Other(error)
}

/// A chunk of outcomes, as a worker encoded it.
fn decode<R: DeserializeOwned>(message: &[u8]) -> Result<(usize, Vec<Outcome<R>>), Failure> {
    serde_json::from_slice(message).context("decode results").map_err(Failure::Other)
}

// ANCHOR: feed
/// The feeder thread: send each chunk to the worker with the fewest in flight, at most
/// `AHEAD` each, and wait for the reader's word that a worker finished one when all are full.
fn feed(workers: &[Worker], tasks: &[Vec<u8>], finished: mpsc::Receiver<usize>) -> anyhow::Result<()> {
    let mut in_flight = vec![0; workers.len()];
    for task in tasks {
        while let Ok(worker) = finished.try_recv() {
            in_flight[worker] -= 1;
        }
        let least_busy =
            |in_flight: &[usize]| (0..in_flight.len()).min_by_key(|&w| in_flight[w]).unwrap_or(0);
        let mut worker = least_busy(&in_flight);
        while in_flight[worker] >= AHEAD {
            // The reader has stopped (a worker died): nothing more to send.
            let Ok(done) = finished.recv() else { return Ok(()) };
            in_flight[done] -= 1;
            worker = least_busy(&in_flight);
        }
        send(&mut workers[worker].socket(), task)
            .with_context(|| format!("send tasks to worker {worker}"))?;
        in_flight[worker] += 1;
    }
    Ok(())
}
// ANCHOR_END: feed

/// Why reading results stopped early.
enum Failure {
    /// EOF (or a cut message) on this worker's socket: it died.
    Died(usize),
    /// This worker ended (seen by a wait on a ring), with this exit code; it has been reaped.
    Ended(usize, ExitCode),
    Other(anyhow::Error),
}

// ANCHOR: read_results
/// The parent's thread: wait until any worker has results (`poll`), read them, and tell the
/// feeder which worker is free again, until all `chunks` are back.
fn read_results<R: DeserializeOwned>(
    workers: &[Worker],
    chunks: usize,
    chunksize: usize,
    finished: mpsc::Sender<usize>,
    tasks_done: &mut [u64],
    take: &mut impl FnMut(usize, Vec<Outcome<R>>),
) -> Result<(), Failure> {
    let mut received = 0;
    while received < chunks {
        let mut fds: Vec<PollFd> =
            workers.iter().map(|w| PollFd::new(w.socket().as_fd(), PollFlags::POLLIN)).collect();
        match poll(&mut fds, PollTimeout::NONE) {
            Err(Errno::EINTR) => continue,
            other => other.context("wait for results (poll)").map_err(Failure::Other)?,
        };
        let ready: Vec<usize> =
            (0..fds.len()).filter(|&w| fds[w].revents().is_some_and(|r| !r.is_empty())).collect();
        for worker in ready {
            // EOF: the worker's end is closed, and only the worker held it. It died.
            let Ok(Some(message)) = recv(&mut workers[worker].socket()) else {
                return Err(Failure::Died(worker));
            };
            let (chunk, outcomes) = decode(&message)?;
            tasks_done[worker] += outcomes.len() as u64;
            take(chunk * chunksize, outcomes);
            received += 1;
            let _ = finished.send(worker); // the feeder may be done already
        }
    }
    Ok(())
}
// ANCHOR_END: read_results

// ANCHOR: broken
/// A worker died (or results could not be read): like `join_all`, reap it, kill and reap the
/// others, and say which one died and how. Python's ProcessPoolExecutor calls this state
/// "broken" (BrokenProcessPool); its `Pool` would wait forever for the lost tasks.
fn broken(workers: &[Worker], failure: Failure) -> String {
    let mut running: Vec<Pid> = workers.iter().map(|w| w.pid).collect();
    let died = |i: usize, code: String| {
        let pid = workers[i].pid;
        format!("a worker process died: pool is broken: worker {i} (pid {pid}) failed with exitcode {code}")
    };
    let what = match failure {
        Failure::Died(i) => {
            running.retain(|&p| p != workers[i].pid);
            died(i, join(workers[i].pid).map_or_else(|e| format!("unknown ({e})"), |code| code.to_string()))
        }
        Failure::Ended(i, code) => {
            running.retain(|&p| p != workers[i].pid);
            died(i, code.to_string())
        }
        Failure::Other(error) => format!("pool is broken: {error:#}"),
    };
    stop(&running);
    format!("{what}; stopped the {} still running", running.len())
}
// ANCHOR_END: broken

// ANCHOR: work
/// A worker's whole life: run the initializer, then take chunks of tasks (`next`) until the
/// sentinel, and send back each chunk's outcomes (`reply`). A task that panics is caught
/// and reported, and the worker goes on.
fn work<T: DeserializeOwned, R: Serialize>(
    number: usize,
    initializer: fn(usize),
    task: fn(T) -> R,
    mut next: impl FnMut() -> anyhow::Result<Vec<u8>>,
    mut reply: impl FnMut(&[u8]) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    initializer(number);
    loop {
        let message = next()?;
        if message == SENTINEL {
            return Ok(());
        }
        let (chunk, items): (usize, Vec<T>) = serde_json::from_slice(&message).context("decode tasks")?;
        let outcomes: Vec<Outcome<R>> = items
            .into_iter()
            .map(|item| catch_unwind(AssertUnwindSafe(|| task(item))).map_err(panic_message))
            .collect();
        let encoded = serde_json::to_vec(&(chunk, outcomes)).context("encode results")?;
        reply(&encoded)?;
    }
}

/// A worker on a socketpair. EOF means the parent is gone: the worker ends, as at the sentinel.
fn work_on_socket<T: DeserializeOwned, R: Serialize>(
    number: usize,
    socket: UnixStream,
    initializer: fn(usize),
    task: fn(T) -> R,
) -> anyhow::Result<()> {
    let next = || Ok(recv(&mut &socket).context("read tasks")?.unwrap_or_default());
    let reply = |results: &[u8]| send(&mut &socket, results).context("send results");
    work(number, initializer, task, next, reply)
}

/// A worker on rings: results go up, and the bell rings for the parent as they do.
fn work_on_rings<T: DeserializeOwned, R: Serialize>(
    number: usize,
    (down, up): &(Ring, Ring),
    bell: &Bell,
    wait: Wait,
    initializer: fn(usize),
    task: fn(T) -> R,
) -> anyhow::Result<()> {
    let next = || down.recv(wait).context("read tasks");
    let reply = |results: &[u8]| up.send_ringing(results, wait, Some(bell)).context("send results");
    work(number, initializer, task, next, reply)
}
// ANCHOR_END: work

/// The text a panic was raised with (`panic!("...")` gives a `&str` or a `String`).
fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    match (payload.downcast_ref::<&str>(), payload.downcast_ref::<String>()) {
        (Some(text), _) => text.to_string(),
        (_, Some(text)) => text.clone(),
        _ => "a panic without a message".to_string(),
    }
}

/// Results in the order given, or an error naming the first item whose task panicked.
fn settle<T: Serialize, R>(
    items: &[T],
    outcomes: impl IntoIterator<Item = (usize, Outcome<R>)>,
) -> anyhow::Result<Vec<R>> {
    outcomes
        .into_iter()
        .map(|(i, outcome)| {
            outcome.map_err(|panic| {
                let item = serde_json::to_string(&items[i]).unwrap_or_else(|_| "?".to_string());
                anyhow!("the task panicked on item {item} (index {i}): {panic}")
            })
        })
        .collect()
}

// ANCHOR: shutdown
impl<T, R> Pool<T, R> {
    /// Python's `pool.close(); pool.join()`: a sentinel to each worker, then wait for them
    /// all. An error if one did not exit with 0 (or had to be killed).
    pub fn close(mut self) -> anyhow::Result<()> {
        self.shutdown()
    }

    /// Sentinels, then up to `GRACE` for the workers to exit; then kill the stragglers (a
    /// worker busy with a long task) and reap them.
    fn shutdown(&mut self) -> anyhow::Result<()> {
        let workers = std::mem::take(&mut self.workers);
        for worker in &workers {
            // A dead worker cannot read it: fine. A ring with no room gets none (the worker
            // is stuck or dead, and is killed after the grace).
            let _ = match &worker.channel {
                Channel::Socket(socket) => send(&mut &*socket, SENTINEL).is_ok(),
                Channel::Rings(rings) => rings.0.try_send(SENTINEL),
            };
        }
        let mut codes: Vec<Option<ExitCode>> = vec![None; workers.len()];
        let deadline = Instant::now() + GRACE;
        while codes.contains(&None) && Instant::now() < deadline {
            for (code, worker) in codes.iter_mut().zip(&workers).filter(|(code, _)| code.is_none()) {
                match try_join(worker.pid) {
                    Ok(None) => {}
                    Ok(Some(ended)) => *code = Some(ended),
                    Err(_) => *code = Some(ExitCode(-1)), // not our child any more
                }
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        let stragglers: Vec<Pid> =
            codes.iter().zip(&workers).filter(|(code, _)| code.is_none()).map(|(_, w)| w.pid).collect();
        stop(&stragglers);
        for (i, (code, worker)) in codes.iter().zip(&workers).enumerate() {
            let (n, pid) = (workers.len(), worker.pid);
            match code {
                Some(ExitCode(0)) => {}
                Some(code) => bail!("worker {i} of {n} (pid {pid}) ended with exitcode {code} at shutdown"),
                None => {
                    bail!("worker {i} of {n} (pid {pid}) was still busy {GRACE:?} after its sentinel: killed")
                }
            }
        }
        Ok(())
    }
}

impl<T, R> Drop for Pool<T, R> {
    /// Python's `with Pool() as pool:` ends with `terminate()`; this is gentler: the same
    /// shutdown as `close`, so no worker is ever left behind.
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}
// ANCHOR_END: shutdown

#[cfg(test)]
mod tests {
    use super::*;

    // Tests here never fork (the harness has threads): tests/pool.rs starts real workers.
    #[test]
    fn a_panicking_task_is_named() {
        let items = [1u64, 13, 2];
        let outcomes = vec![(0, Ok(1u64)), (1, Err("13 is unlucky".to_string())), (2, Ok(4))];
        let error = settle(&items, outcomes).unwrap_err().to_string();
        assert_eq!(error, "the task panicked on item 13 (index 1): 13 is unlucky");
        assert_eq!(panic_message(Box::new(String::from("boom"))), "boom");
    }
}
