//! two-hosts: the lesson's ranks on two hosts, made on this machine: two network namespaces,
//! each with its own host name, joined by a veth pair (mpijob::hosts). The job crosses the
//! cable over TCP, and the cable's byte counters show it. Needs root, to make namespaces:
//!
//!     cargo build -p lesson-beyond-one-machine --features mpi
//!     sudo target/debug/two-hosts
//!
//! It is also its own launcher: `mpiexec` calls it as `two-hosts -x HOST COMMAND...` in place
//! of ssh, and it runs COMMAND on HOST.

use std::process::ExitCode;

use anyhow::Context;
use mpijob::Job;
use mpijob::hosts::{self, Hosts};

/// Round trips of the ping-pong between the two hosts.
const TRIPS: u64 = 10_000;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let outcome = match args.first().map(String::as_str) {
        Some("-x") => hosts::launch(&args).map(|never| match never {}),
        None => two_hosts(),
        Some(_) => {
            eprintln!("two-hosts: takes no arguments (run it as root: sudo target/debug/two-hosts)");
            return ExitCode::from(2);
        }
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("two-hosts: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn two_hosts() -> anyhow::Result<()> {
    // ANCHOR: hosts
    let hosts = Hosts::two()?; // two namespaces and a veth pair, gone when `hosts` is
    let [a, b] = hosts.names();
    println!("two hosts on this machine, {a} and {b}, joined by a virtual cable (a veth pair)");
    let me = std::env::current_exe().context("find this program")?;
    let lesson = me.with_file_name("lesson-beyond-one-machine");
    // The lesson's own ranks, one on each host; this program is mpiexec's launcher (-x).
    let job = |what: &[&str]| Job::new(&lesson, 2).args(["--child", "rank"]).args(what).on(&hosts, &me).run();
    for line in job(&["hello"])?.ranks.iter().flatten() {
        println!("   {line}");
    }
    let (sent, received) = hosts.bytes()?;
    let output = job(&["pingpong", &TRIPS.to_string()])?;
    let (sent, received) = (hosts.bytes()?.0 - sent, hosts.bytes()?.1 - received);
    println!("a ping-pong of 8 bytes, {TRIPS} round trips from {a} to {b} over TCP:");
    println!("   round trip {:.2} µs", round_trip(&output)? * 1e6);
    println!("   through {a}'s end of the cable meanwhile: {sent} bytes sent, {received} received");
    // ANCHOR_END: hosts

    // The same ping-pong between mpi4py's ranks (the Python twin's), where python3 has mpi4py.
    let Some(library_path) = mpi4py_library_path() else {
        println!("mpi4py: not found (pip install mpi4py), so no Python ranks");
        return Ok(());
    };
    let twin = concat!(env!("CARGO_MANIFEST_DIR"), "/python/beyond_one_machine.py");
    let job = Job::new("python3", 2).args([twin, "--rank", "pingpong", &TRIPS.to_string()]);
    let output = job.arg("buffers").env("LD_LIBRARY_PATH", library_path).on(&hosts, &me).run()?;
    println!("   the same between mpi4py's ranks (buffers): round trip {:.2} µs", round_trip(&output)? * 1e6);
    Ok(())
}

/// Rank 0's last line of a ping-pong job, `round trip SECONDS`: the seconds.
fn round_trip(output: &mpijob::Output) -> anyhow::Result<f64> {
    let last = output.ranks[0].last().context("rank 0 said nothing")?;
    Ok(last.strip_prefix("round trip ").with_context(|| format!("rank 0 said {last:?}"))?.parse()?)
}

/// Where mpi4py's ranks find the MPI library (the twins' kit makes a link where needed:
/// crates/plumbing/python/mpijob.py); `None` without python3 or mpi4py.
fn mpi4py_library_path() -> Option<String> {
    let kit = concat!(env!("CARGO_MANIFEST_DIR"), "/../../crates/plumbing/python");
    let script = format!(
        "import sys; sys.path.insert(0, {kit:?}); import mpi4py, mpijob; print(mpijob.library_path())"
    );
    let output = std::process::Command::new("python3").args(["-c", &script]).output().ok()?;
    output.status.success().then(|| String::from_utf8_lossy(&output.stdout).trim().to_string())
}
