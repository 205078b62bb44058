//! lesson-manager-proxy: shared objects that live in a server process, reached through proxies.
//!
//! Python's `multiprocessing.Manager()` starts a server process that owns the shared
//! objects; `manager.list()` and `manager.dict()` hand out proxies, and every method call on
//! a proxy is a request to that server and a wait for its answer. This lesson builds the same:
//! `Manager::start` forks a server that owns a list of (name, score) records and a dict, with
//! one socketpair per client process; a proxy's `append`, `len`, `snapshot`, `get` and `set`
//! are requests and responses serialised with serde_json and framed with `multiproc::wire`. It runs
//! the classic example (one child appends, another prints), a dict, four workers appending at
//! once, a clean shutdown, and a server that dies. `--measure` asks why Manager is slow.

use std::collections::HashMap;
use std::io::{self, ErrorKind, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail, ensure};
use multiproc::proc::{Children, ExitCode, fork_child, fork_named_closing, join, join_ok};
use multiproc::shm::Array;
use multiproc::wire::{recv, send};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use plumbing::fault;
use plumbing::{Args, Bench, Case, Lesson};
use serde::{Deserialize, Serialize};

const LESSON: Lesson = Lesson {
    name: "manager-proxy",
    about: "Shared objects in a server process, as Python's multiprocessing.Manager() gives them: \
            Manager::start forks a server that owns a list and a dict; each client process talks \
            to it through a proxy whose every method is a request and a response over a \
            socketpair (serde_json, length-framed). The classic example, a dict, four workers \
            appending at once, shutdown, and a server that dies. --measure times a proxy call \
            beside the raw round trip under it, a shared-memory write, 1, 2 and 4 clients \
            against one server, and Python's Manager.",
    python: concat!(env!("CARGO_MANIFEST_DIR"), "/python/manager_proxy.py"),
    roles: &[],
};

/// Connections to the server: 0 is the parent's, 1 to 4 are for child processes.
const CONNECTIONS: usize = 5;
/// Workers appending at once in section 4, numbered from 0.
const WORKERS: usize = 4;
/// Records each worker appends in section 4.
const APPENDS: u32 = 50;
/// The list the server starts with: the classic example's records.
const SEEDS: [(&str, u32); 3] = [("Sam", 10), ("Adam", 9), ("Kevin", 9)];

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
    println!("1. Manager::start: a server process that owns the list and the dict");
    let seeds: Vec<Record> = SEEDS.iter().map(|&(name, score)| (name.to_string(), score)).collect();
    let manager = Manager::start(&seeds, CONNECTIONS)?;
    println!("   started the server, pid {}, with {CONNECTIONS} connections to it", manager.server);
    let proxy = manager.proxy(0); // the parent's own connection: the parent is a client too
    println!("   len() from the parent: {}", proxy.len()?);
    // ANCHOR_END: start

    // ANCHOR: classic
    println!("2. One child appends a record; after it is joined, another prints them all");
    let child = fork_child(|| {
        manager.proxy(1).append(("Jeff".to_string(), 8))?;
        println!("   child: appended Jeff 8");
        Ok(())
    })?;
    println!("   joined the appending child, pid {child}: exitcode {}", join_ok(child)?);
    let child = fork_child(|| {
        // One request brings a copy of the whole list: Python's `records[:]`.
        for (name, score) in manager.proxy(2).snapshot()? {
            println!("   child: Name: {name}, Score: {score}");
        }
        Ok(())
    })?;
    println!("   joined the printing child, pid {child}: exitcode {}", join_ok(child)?);
    // ANCHOR_END: classic

    // ANCHOR: dict
    println!("3. A dict: the parent sets a key, a child gets it and sets it, the parent gets it");
    proxy.set("round", 1)?;
    println!("   parent: set(\"round\", 1)");
    let child = fork_child(|| {
        let scores = manager.proxy(1);
        println!("   child: get(\"round\") = {:?}", scores.get("round")?);
        scores.set("round", 2)?;
        println!("   child: set(\"round\", 2)");
        println!("   child: get(\"missing\") = {:?}", scores.get("missing")?);
        Ok(())
    })?;
    println!("   joined the child, pid {child}: exitcode {}", join_ok(child)?);
    println!("   parent: get(\"round\") = {:?}", proxy.get("round")?);
    // ANCHOR_END: dict

    // ANCHOR: workers
    println!("4. {WORKERS} workers append {APPENDS} records each, at once");
    let before = proxy.len()?;
    let mut workers = Children::new("worker");
    for worker in 0..WORKERS {
        // Each worker has a connection of its own: two processes writing requests into
        // one socket would mix their bytes, and take each other's responses.
        let proxy = manager.proxy(1 + worker);
        workers.fork(move || {
            for i in 0..APPENDS {
                if i == APPENDS / 2 {
                    fault::inject(worker); // the tests make worker 1 fail here
                }
                proxy.append((format!("worker {worker}"), i))?;
            }
            Ok(())
        })?;
    }
    // A worker that fails: join_all kills the others and returns the error; `?` returns it
    // from main, and dropping the Manager on the way out shuts the server down.
    workers.join_all()?;
    println!("   joined {WORKERS} workers");
    let all = proxy.snapshot()?;
    println!("   snapshot(): {} records ({before} before, plus {WORKERS} x {APPENDS})", all.len());
    ensure!(all.len() == before + WORKERS * APPENDS as usize, "the server lost an append");
    // Which worker's request the server took first varies from run to run; what each worker
    // sent arrives whole and in order, because the server takes one request at a time.
    for worker in 0..WORKERS {
        let name = format!("worker {worker}");
        let scores: Vec<u32> = all.iter().filter(|(n, _)| *n == name).map(|&(_, s)| s).collect();
        let in_order = scores.iter().copied().eq(0..APPENDS);
        println!("   {name}: {} records, in the order it sent them: {in_order}", scores.len());
        ensure!(in_order, "{name}'s records are missing or out of order");
    }
    // ANCHOR_END: workers

    // ANCHOR: shutdown
    println!("5. Shutdown: close the parent's connections; the server sees EOF and exits");
    let server = manager.server;
    println!("   joined the server, pid {server}: exitcode {}", manager.shutdown()?);
    // ANCHOR_END: shutdown

    // ANCHOR: dies
    println!("6. The server dies: the next call is an error, not a hang");
    let doomed = Manager::start(&seeds, 1)?;
    let proxy = doomed.proxy(0);
    println!("   a new server, pid {}; len(): {}", doomed.server, proxy.len()?);
    kill(doomed.server, Signal::SIGKILL).context("kill the server")?;
    println!("   killed the server with SIGKILL");
    match proxy.len() {
        Ok(n) => bail!("a killed server answered: {n}"),
        Err(error) => println!("   len(): error: {error:#}"),
    }
    let server = doomed.server;
    println!("   joined the server, pid {server}: exitcode {}", doomed.shutdown()?);
    // ANCHOR_END: dies

    // ANCHOR: copies
    println!("7. What a proxy returns is a copy of its own: changing it changes nothing in the server");
    let manager = Manager::start(&seeds, 1)?;
    println!("   a fresh server, pid {}", manager.server);
    let proxy = manager.proxy(0);
    let mut records: Vec<Record> = proxy.snapshot()?; // the server's list, copied into ours
    records.push(("Nobody".to_string(), 0));
    println!("   pushed a record onto the snapshot: {} here, {} in the server", records.len(), proxy.len()?);
    proxy.set("round", 1)?;
    let mut round: i64 = proxy.get("round")?.context("round was just set")?;
    round += 1;
    println!("   round += 1 on what get returned: {round} here, {:?} in the server", proxy.get("round")?);
    proxy.set("round", round)?; // a request: the only way to change the server's value
    println!("   after set(\"round\", {round}): {:?} in the server", proxy.get("round")?);
    let server = manager.server;
    println!("   joined the server, pid {server}: exitcode {}", manager.shutdown()?);
    // ANCHOR_END: copies
    Ok(())
}

// ANCHOR: messages
/// One record in the list: Python's `('Sam', 10)`.
type Record = (String, u32);

/// What a proxy asks the server: one variant per method.
#[derive(Debug, Serialize, Deserialize)]
enum Request {
    Append(Record),
    Len,
    Snapshot,
    Get(String),
    Set(String, i64),
}

/// What the server answers, one response per request.
#[derive(Debug, Serialize, Deserialize)]
enum Response {
    Done,
    Len(usize),
    Records(Vec<Record>),
    Value(Option<i64>),
}
// ANCHOR_END: messages

// ANCHOR: manager
/// Python's `Manager()`: a server process that owns the shared list and dict, and this
/// process's ends of one connection per client process.
struct Manager {
    server: Pid,
    /// The clients' ends of the socketpairs, made before any client is forked, so every
    /// client inherits them. The server holds the other ends.
    connections: Vec<UnixStream>,
    /// The server's exit code, once it has been joined.
    exitcode: Option<ExitCode>,
}

impl Manager {
    /// Fork the server, with `records` as its list, and `clients` connections to it.
    fn start(records: &[Record], clients: usize) -> anyhow::Result<Manager> {
        let (mut connections, mut server_ends) = (Vec::new(), Vec::new());
        for _ in 0..clients {
            let (client_end, server_end) = UnixStream::pair().context("create a socketpair")?;
            connections.push(client_end);
            server_ends.push(server_end);
        }
        let records = records.to_vec(); // fork copies it into the server: Python pickles it
        // The server closes its copies of the clients' ends first, or it would never see EOF.
        let server = fork_named_closing("server", &mut connections, move || serve(server_ends, records))?;
        // The server's ends went with the `move` closure: only the server holds them now.
        Ok(Manager { server, connections, exitcode: None })
    }

    /// A proxy on connection `i`. One process per connection at a time.
    fn proxy(&self, i: usize) -> Proxy<'_> {
        Proxy { connection: &self.connections[i] }
    }

    /// Python's `manager.shutdown()`: close this process's ends, and wait for the server,
    /// which exits once every copy of every client's end is closed.
    fn shutdown(mut self) -> anyhow::Result<ExitCode> {
        self.stop()
    }

    fn stop(&mut self) -> anyhow::Result<ExitCode> {
        self.connections.clear(); // dropping a UnixStream closes it
        if let Some(code) = self.exitcode {
            return Ok(code);
        }
        let code = join(self.server).context("join the manager's server")?;
        self.exitcode = Some(code);
        Ok(code)
    }
}

impl Drop for Manager {
    /// The end of Python's `with Manager() as manager:`, also when an error returns early:
    /// no server is left behind.
    fn drop(&mut self) {
        self.connections.clear();
        if self.exitcode.is_none() {
            // An early return. If the error was the server's death, join_ok keeps how it
            // died on record, and the lesson's error line names it (plumbing's LESSON.run).
            let _ = join_ok(self.server);
        }
    }
}
// ANCHOR_END: manager

// ANCHOR: proxy
/// Python's `ListProxy` and `DictProxy` in one: it holds no data, only a connection. Every
/// method is a request to the server and a wait for its response.
#[derive(Clone, Copy)]
struct Proxy<'a> {
    connection: &'a UnixStream,
}

impl Proxy<'_> {
    fn append(&self, record: Record) -> anyhow::Result<()> {
        match self.call(&Request::Append(record))? {
            Response::Done => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    fn len(&self) -> anyhow::Result<usize> {
        match self.call(&Request::Len)? {
            Response::Len(n) => Ok(n),
            other => Err(unexpected(other)),
        }
    }

    fn snapshot(&self) -> anyhow::Result<Vec<Record>> {
        match self.call(&Request::Snapshot)? {
            Response::Records(records) => Ok(records),
            other => Err(unexpected(other)),
        }
    }

    fn get(&self, key: &str) -> anyhow::Result<Option<i64>> {
        match self.call(&Request::Get(key.to_string()))? {
            Response::Value(value) => Ok(value),
            other => Err(unexpected(other)),
        }
    }

    fn set(&self, key: &str, value: i64) -> anyhow::Result<()> {
        match self.call(&Request::Set(key.to_string(), value))? {
            Response::Done => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    /// One round trip: serialise the request, send it, wait for the response, deserialise it.
    fn call(&self, request: &Request) -> anyhow::Result<Response> {
        let bytes = serde_json::to_vec(request).context("serialise a request")?;
        let mut connection = self.connection;
        let answer = send(&mut connection, &bytes).and_then(|()| recv(&mut connection));
        match answer {
            Ok(Some(bytes)) => serde_json::from_slice(&bytes).context("deserialise a response"),
            // EOF: every copy of the server's end is closed, so the server is gone.
            Ok(None) => Err(anyhow!("the manager's server process is gone: connection closed")),
            // Or the send found no reader, or the server died with our request unread.
            Err(e) if peer_gone(&e) => {
                Err(anyhow!("the manager's server process is gone: connection closed"))
            }
            Err(e) => Err(e).context("talk to the manager's server"),
        }
    }
}

/// Whether an I/O error means that the process at the other end has gone away.
fn peer_gone(error: &io::Error) -> bool {
    matches!(error.kind(), ErrorKind::BrokenPipe | ErrorKind::ConnectionReset | ErrorKind::UnexpectedEof)
}

fn unexpected(response: Response) -> anyhow::Error {
    anyhow!("the server answered with {response:?}, which does not fit the request")
}
// ANCHOR_END: proxy

// ANCHOR: serve
/// The server: wait until some client has sent a request, answer it, repeat. It takes one
/// request at a time, whoever sent it: the list needs no lock, and every client waits its
/// turn. It returns once every connection has reached EOF: no client is left.
fn serve(mut connections: Vec<UnixStream>, mut records: Vec<Record>) -> anyhow::Result<()> {
    let mut dict = HashMap::new();
    while !connections.is_empty() {
        // poll: sleep until at least one connection has a request, or has reached EOF.
        let mut fds: Vec<PollFd> =
            connections.iter().map(|c| PollFd::new(c.as_fd(), PollFlags::POLLIN)).collect();
        poll(&mut fds, PollTimeout::NONE).context("poll the clients' connections")?;
        let ready: Vec<bool> = fds.iter().map(|fd| fd.any().unwrap_or(false)).collect();
        let mut open = vec![true; connections.len()];
        for (i, mut connection) in connections.iter().enumerate().filter(|&(i, _)| ready[i]) {
            let request = match recv(&mut connection) {
                Ok(Some(bytes)) => serde_json::from_slice(&bytes).context("deserialise a request")?,
                Ok(None) => {
                    open[i] = false; // EOF: no process holds this client's end any more
                    continue;
                }
                Err(e) if peer_gone(&e) => {
                    open[i] = false; // a client killed half-way through sending
                    continue;
                }
                Err(e) => return Err(e).context("receive a request"),
            };
            let response = serde_json::to_vec(&handle(request, &mut records, &mut dict))
                .context("serialise a response")?;
            match send(&mut connection, &response) {
                Ok(()) => {}
                Err(e) if peer_gone(&e) => open[i] = false,
                Err(e) => return Err(e).context("send a response"),
            }
        }
        let mut still_open = open.into_iter();
        connections.retain(|_| still_open.next() == Some(true));
    }
    Ok(())
}

/// What each request does to the server's objects: plain Rust on plain data.
fn handle(request: Request, records: &mut Vec<Record>, dict: &mut HashMap<String, i64>) -> Response {
    match request {
        Request::Append(record) => {
            records.push(record);
            Response::Done
        }
        Request::Len => Response::Len(records.len()),
        Request::Snapshot => Response::Records(records.clone()),
        Request::Get(key) => Response::Value(dict.get(&key).copied()),
        Request::Set(key, value) => {
            dict.insert(key, value);
            Response::Done
        }
    }
}
// ANCHOR_END: serve

/// The floor: a request and a response of this many bytes, not serialised.
const RAW: usize = 32;
const FLOOR: &str = "raw round trip, socketpair (floor)";
const ONE_CLIENT: &str = "append, 1 client process";

// ANCHOR: measure
fn measure(args: &Args) -> anyhow::Result<()> {
    let mut bench = Bench::new(&LESSON, args, "one call on a shared object that lives in another process");
    let calls = args.pick(20_000, 200);
    let case = |name: &str| Case::new(name).ops(calls as u64);

    bench.run_timed(case(FLOOR), || raw_round_trips(calls))?;
    bench.run_timed(case("proxy append").vs(FLOOR), || {
        timed_calls(calls, |proxy, i| proxy.append(("Jeff".to_string(), i)))
    })?;
    bench.run_timed(case("proxy get").vs(FLOOR), || {
        timed_calls(calls, |proxy, _| proxy.get("round").map(drop))
    })?;
    bench.run_timed(case("proxy set").vs(FLOOR), || {
        timed_calls(calls, |proxy, i| proxy.set("round", i.into()))
    })?;
    let writes = args.pick(1_000_000, 1_000);
    bench.run_timed(Case::new("shared memory write, Array lock=True").ops(writes).vs(FLOOR), || {
        shared_writes(writes)
    })?;

    // The same number of appends in all, from 1, 2 and 4 client processes at once.
    for clients in [1, 2, 4] {
        let name =
            if clients == 1 { ONE_CLIENT.to_string() } else { format!("append, {clients} client processes") };
        let case = if clients == 1 { case(&name).vs(FLOOR) } else { case(&name).vs(ONE_CLIENT) };
        bench.run_timed(case, || clients_append(clients, calls / clients as u32))?;
    }

    bench.python()?;
    bench.finish();
    Ok(())
}
// ANCHOR_END: measure

// ANCHOR: floor
/// The floor: the same socketpair, a child that echoes fixed-size messages: no framing, no
/// serialising, no poll. What any request and response between two processes costs.
fn raw_round_trips(trips: u32) -> anyhow::Result<Duration> {
    let (mut ours, theirs) = UnixStream::pair().context("create a socketpair")?;
    let echo = fork_child(move || {
        let mut theirs = theirs;
        let mut message = [0u8; RAW];
        for _ in 0..trips {
            theirs.read_exact(&mut message).context("read a request")?;
            theirs.write_all(&message).context("write the response")?;
        }
        Ok(())
    })?;
    let mut message = [b'x'; RAW];
    let start = Instant::now();
    for _ in 0..trips {
        ours.write_all(&message).context("write a request")?;
        ours.read_exact(&mut message).context("read the response")?;
    }
    let elapsed = start.elapsed();
    join_ok(echo)?;
    Ok(elapsed)
}
// ANCHOR_END: floor

// ANCHOR: timed_calls
/// `calls` proxy calls from this process to a fresh server; the server's start is not timed.
fn timed_calls(calls: u32, call: impl Fn(Proxy, u32) -> anyhow::Result<()>) -> anyhow::Result<Duration> {
    let manager = Manager::start(&[], 1)?;
    let proxy = manager.proxy(0);
    proxy.set("round", 0)?;
    let start = Instant::now();
    for i in 0..calls {
        call(proxy, i)?;
    }
    let elapsed = start.elapsed();
    ensure!(manager.shutdown()? == ExitCode(0), "the server failed");
    Ok(elapsed)
}

/// A write to shared memory, under its lock: no other process is involved at all.
fn shared_writes(writes: u64) -> anyhow::Result<Duration> {
    let array = Array::<u64>::new(1024)?;
    let start = Instant::now();
    for i in 0..writes {
        array.lock()?[i as usize % 1024] = i;
    }
    Ok(start.elapsed())
}

/// `clients` processes append `each` records at once, each through its own connection.
fn clients_append(clients: usize, each: u32) -> anyhow::Result<Duration> {
    let manager = Manager::start(&[], clients + 1)?; // + 1: the parent's, to check the count
    let start = Instant::now();
    let mut workers = Children::new("worker");
    for client in 0..clients {
        let proxy = manager.proxy(1 + client);
        workers.fork(move || {
            for i in 0..each {
                proxy.append((format!("client {client}"), i))?;
            }
            Ok(())
        })?;
    }
    workers.join_all()?;
    let elapsed = start.elapsed();
    let count = manager.proxy(0).len()?;
    ensure!(count == clients * each as usize, "the server holds {count} records");
    ensure!(manager.shutdown()? == ExitCode(0), "the server failed");
    Ok(elapsed)
}
// ANCHOR_END: timed_calls
