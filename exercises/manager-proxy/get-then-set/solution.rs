//! Exercise manager-proxy/get-then-set: a counter lives in a server process, and four
//! workers each add 1 to it 1,000 times, each through a proxy of its own, the way Python's
//! `counter.value += 1` does on a Manager's Value: a get, then a set. The count comes out
//! short, by a different amount on every run. Make every addition count, with no lock.

use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;

use anyhow::{Context, ensure};
use multiproc::proc::{Children, fork_named_closing, join_ok};
use multiproc::wire::{recv, send};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use plumbing::{Args, Exercise};
use serde::{Deserialize, Serialize};

const EXERCISE: Exercise = Exercise {
    lesson: "manager-proxy",
    name: "get-then-set",
    about: "four workers add to a counter that lives in a server process",
};

const WORKERS: i64 = 4;
const ADDS: i64 = 1_000;

fn main() -> std::process::ExitCode {
    EXERCISE.run(exercise)
}

// ANCHOR: exercise
/// What a proxy asks the server.
#[derive(Debug, Serialize, Deserialize)]
enum Request {
    /// The counter's value.
    Get,
    /// Set the counter to this value.
    Set(i64),
    /// Add this to the counter: the read and the write in one request.
    Add(i64),
}

/// What the server does with a request. It answers with the counter's value afterwards.
fn handle(request: Request, counter: &mut i64) -> i64 {
    match request {
        Request::Get => {}
        Request::Set(value) => *counter = value,
        Request::Add(n) => *counter += n, // no other request can come between
    }
    *counter
}

/// Add 1 to the counter, through `proxy`: Python's `counter.value += 1`.
fn add_one(proxy: Proxy) -> anyhow::Result<()> {
    // One round trip: the server serves one request at a time, so it adds for each worker
    // in turn. A get, then a set, are two requests, and others can come between them.
    proxy.call(Request::Add(1))?;
    Ok(())
}
// ANCHOR_END: exercise

fn exercise(_args: &Args) -> anyhow::Result<()> {
    // One socketpair per client: 0 is the parent's, 1 to 4 the workers'.
    let (mut clients, mut server_ends) = (Vec::new(), Vec::new());
    for _ in 0..=WORKERS {
        let (client, server_end) = UnixStream::pair().context("create a socketpair")?;
        clients.push(client);
        server_ends.push(server_end);
    }
    let server = fork_named_closing("server", &mut clients, move || serve(server_ends))?;
    let mut workers = Children::new("worker");
    for client in &clients[1..] {
        let proxy = Proxy { connection: client };
        workers.fork(move || -> anyhow::Result<()> {
            for _ in 0..ADDS {
                add_one(proxy)?;
            }
            Ok(())
        })?;
    }
    workers.join_all()?;
    let count = Proxy { connection: &clients[0] }.call(Request::Get)?;
    drop(clients); // the server sees EOF on every connection, and exits
    join_ok(server)?;
    println!("count: {count} (expected {})", WORKERS * ADDS);
    ensure!(count == WORKERS * ADDS, "lost {} additions", WORKERS * ADDS - count);
    Ok(())
}

/// A proxy, given: it holds no counter, only a connection to the server.
#[derive(Clone, Copy)]
struct Proxy<'a> {
    connection: &'a UnixStream,
}

impl Proxy<'_> {
    /// One round trip: send the request, wait for the server's answer.
    fn call(&self, request: Request) -> anyhow::Result<i64> {
        let mut connection = self.connection;
        send(&mut connection, &serde_json::to_vec(&request)?).context("send a request")?;
        let answer = recv(&mut connection).context("receive an answer")?.context("the server is gone")?;
        serde_json::from_slice(&answer).context("read an answer")
    }
}

/// The server, given: wait until a connection has a request (poll), answer it, one request
/// at a time, whoever sent it. A connection at EOF is done; once all are, exit.
fn serve(mut connections: Vec<UnixStream>) -> anyhow::Result<()> {
    let mut counter = 0;
    while !connections.is_empty() {
        let mut fds: Vec<PollFd> =
            connections.iter().map(|c| PollFd::new(c.as_fd(), PollFlags::POLLIN)).collect();
        poll(&mut fds, PollTimeout::NONE).context("poll the connections")?;
        let ready: Vec<bool> = fds.iter().map(|fd| fd.any().unwrap_or(false)).collect();
        let mut open = Vec::new();
        for (mut connection, ready) in connections.into_iter().zip(ready) {
            if ready {
                let Some(request) = recv(&mut connection).context("receive a request")? else {
                    continue; // EOF: this connection is done
                };
                let answer =
                    handle(serde_json::from_slice(&request).context("read a request")?, &mut counter);
                send(&mut connection, &serde_json::to_vec(&answer)?).context("send an answer")?;
            }
            open.push(connection);
        }
        connections = open;
    }
    Ok(())
}
