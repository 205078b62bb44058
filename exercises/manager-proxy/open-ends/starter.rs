//! Exercise manager-proxy/open-ends: a server process owns a list of numbers, as a Manager's
//! list lives in its server, and three workers each append 10 numbers to it, each through a
//! socketpair of its own. Once every client has gone (EOF on every connection), the server
//! sends the parent a report on a pipe and exits. The parent joins the workers, then waits
//! for the report. The program never ends. Make it end.

use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;

use anyhow::Context;
use multiproc::proc::{Children, fork_named_closing, join_ok};
use multiproc::wire::{recv, send};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use plumbing::{Args, Exercise};

const EXERCISE: Exercise = Exercise {
    lesson: "manager-proxy",
    name: "open-ends",
    about: "three workers append to a list that lives in a server process",
};

const WORKERS: i64 = 3;
const EACH: i64 = 10;

fn main() -> std::process::ExitCode {
    EXERCISE.run(exercise)
}

// ANCHOR: exercise
fn exercise(_args: &Args) -> anyhow::Result<()> {
    // One socketpair per worker: the clients' ends stay here, the server gets the others.
    let (mut clients, mut server_ends) = (Vec::new(), Vec::new());
    for _ in 0..WORKERS {
        let (client, server_end) = UnixStream::pair().context("create a socketpair")?;
        clients.push(client);
        server_ends.push(server_end);
    }
    let (mut report, report_end) = std::io::pipe().context("create a pipe for the report")?;
    // The server closes its copies of the clients' ends; its own ends go with it (`move`).
    let server = fork_named_closing("server", &mut clients, move || serve(server_ends, report_end))?;
    let mut workers = Children::new("worker");
    for (worker, client) in (0..).zip(&clients) {
        workers.fork(move || -> anyhow::Result<()> {
            for i in 0..EACH {
                append(client, worker * EACH + i)?;
            }
            Ok(())
        })?;
    }
    workers.join_all()?;
    println!("parent: joined {WORKERS} workers");
    let said = recv(&mut report)?.context("the server ended without a report")?;
    println!("parent: the server reports {}", String::from_utf8_lossy(&said));
    println!("parent: joined the server: exitcode {}", join_ok(server)?);
    Ok(())
}
// ANCHOR_END: exercise

/// The proxy's one method, given: send a number to append, wait for the list's new length.
fn append(mut connection: &UnixStream, number: i64) -> anyhow::Result<usize> {
    send(&mut connection, &serde_json::to_vec(&number)?).context("send a request")?;
    let answer = recv(&mut connection).context("receive an answer")?.context("the server is gone")?;
    serde_json::from_slice(&answer).context("read an answer")
}

/// The server, given: wait until a connection has a request (poll), answer it, one at a
/// time. A connection at EOF (every copy of the client's end closed) is done; once all are,
/// send what the list holds on `report`, and exit.
fn serve(mut connections: Vec<UnixStream>, mut report: std::io::PipeWriter) -> anyhow::Result<()> {
    let mut list: Vec<i64> = Vec::new();
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
                list.push(serde_json::from_slice(&request).context("read a request")?);
                send(&mut connection, &serde_json::to_vec(&list.len())?).context("send an answer")?;
            }
            open.push(connection);
        }
        connections = open;
    }
    let sum: i64 = list.iter().sum();
    let said = format!("{} numbers, sum {sum}, once every client had gone", list.len());
    send(&mut report, said.as_bytes()).context("send the report")
}
