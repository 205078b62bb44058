//! Exercise manager-proxy/dead-server: a list lives in a server process, and the parent
//! appends the numbers 1 to 100 to it through a proxy, then asks for their sum. The check
//! kills the server half-way: the proxy then gets no answers, and the program prints a wrong
//! sum and exits 0, as if all were well. Make it fail, with an error that says how the
//! server died.

use std::os::unix::net::UnixStream;

use anyhow::Context;
use multiproc::proc::{fork_named_closing, join};
use multiproc::wire::{recv, send};
use plumbing::{Args, Exercise, fault};
use serde::{Deserialize, Serialize};

const EXERCISE: Exercise = Exercise {
    lesson: "manager-proxy",
    name: "dead-server",
    about: "the parent appends to a list in a server process, which may die",
};

const NUMBERS: i64 = 100;

/// What the proxy asks the server; the server answers each with a number.
#[derive(Debug, Serialize, Deserialize)]
enum Request {
    /// Append this to the list; the answer is the list's new length.
    Append(i64),
    /// The answer is the sum of the list.
    Sum,
}

fn main() -> std::process::ExitCode {
    EXERCISE.run(exercise)
}

// ANCHOR: exercise
/// A proxy: no list, only a connection to the server.
struct Proxy<'a> {
    connection: &'a UnixStream,
}

impl Proxy<'_> {
    /// One round trip: send the request, wait for the answer; `None` if there is none.
    fn call(&self, request: &Request) -> Option<i64> {
        let mut connection = self.connection;
        send(&mut connection, &serde_json::to_vec(request).ok()?).ok()?;
        let answer = recv(&mut connection).ok()??;
        serde_json::from_slice(&answer).ok()
    }
}

fn exercise(_args: &Args) -> anyhow::Result<()> {
    let (mut client, server_end) = UnixStream::pair().context("create a socketpair")?;
    let server = fork_named_closing("server", [&mut client], move || serve(server_end))?;
    let proxy = Proxy { connection: &client };
    for number in 1..=NUMBERS {
        proxy.call(&Request::Append(number));
    }
    let sum = proxy.call(&Request::Sum).unwrap_or_default();
    drop(client); // the server sees EOF, and exits
    join(server)?; // Python: manager.shutdown()
    println!("the sum of 1 to {NUMBERS}: {sum}");
    Ok(())
}
// ANCHOR_END: exercise

/// The server, given: answer each request in turn, until EOF. Half-way, the check kills it.
fn serve(mut connection: UnixStream) -> anyhow::Result<()> {
    let mut list: Vec<i64> = Vec::new();
    while let Some(request) = recv(&mut connection).context("receive a request")? {
        let answer = match serde_json::from_slice(&request).context("read a request")? {
            Request::Append(number) => {
                list.push(number);
                list.len() as i64
            }
            Request::Sum => list.iter().sum(),
        };
        send(&mut connection, &serde_json::to_vec(&answer)?).context("send an answer")?;
        if list.len() as i64 == NUMBERS / 2 {
            fault::inject(0); // the check kills the server here: FORKLORE_FAULT=kill:0
        }
    }
    Ok(())
}
