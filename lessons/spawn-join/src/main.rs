//! lesson-spawn-join: start a child process, wait for it, and read how it ended.
//!
//! Python's `Process(target=f, args=(...))`, `start()`, `join()`, `pid`, `is_alive()`,
//! `kill()`, `terminate()` and `exitcode`, with real processes: first fork and waitpid by
//! hand, then multiproc's `fork_child` and `join` (Python's "fork" start method), and the
//! program re-executing itself (Python's "spawn" start method).

use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use multiproc::proc::{ExitCode, exit_now, fork_child, fork_named, join, spawn_self};
use nix::errno::Errno;
use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{ForkResult, Pid, fork, getpid, pause};
use plumbing::{Args, Bench, Case, Lesson};

const LESSON: Lesson = Lesson {
    name: "spawn-join",
    about: "Start child processes and wait for them, as Python's Process does with start(), join(), \
            is_alive() and exitcode: fork by hand, then with multiproc's helpers, then by running this \
            program again (the \"spawn\" start method); kill and terminate a child; read exit codes; \
            see two sleeping children finish together; and see what becomes of a child nobody \
            joined when the program ends.",
    python: concat!(env!("CARGO_MANIFEST_DIR"), "/python/spawn_join.py"),
    roles: &["greet", "noop", "forget-a-child"],
};

/// How long each child of section 5 sleeps.
const NAP: Duration = Duration::from_millis(500);
/// How long the child of section 6 that nobody joins would sleep.
const FORGOTTEN_NAP: Duration = Duration::from_secs(10);

/// The measured baseline: the bare system calls under every other case.
const FLOOR: &str = "fork+_exit+waitpid (floor)";

fn main() -> std::process::ExitCode {
    LESSON.run(lesson)
}

/// The lesson, top to bottom (plumbing's `run` parses its options first, and reports a
/// failure in one line after stopping any child left running).
fn lesson(args: &Args) -> anyhow::Result<()> {
    // ANCHOR: child_role
    // Started again by spawn_self as `--child ROLE ARGS...`: play that role and end.
    if let Some(role) = &args.child {
        return child(role);
    }
    // ANCHOR_END: child_role
    if args.measure {
        return measure(args);
    }

    // ANCHOR: fork
    println!("1. fork: the child starts as a copy of this process");
    // Anything still in stdout's buffer would be copied into the child and printed twice.
    std::io::stdout().flush().context("flush stdout before fork")?;
    // SAFETY: this program has one thread, so the child's copy of memory is consistent.
    match unsafe { fork() }.context("fork a child")? {
        ForkResult::Child => {
            // Only the child runs this branch. It must end here, with _exit: returning
            // would run the parent's code below a second time, in the child.
            let code = if greet("bob").is_ok() { 0 } else { 1 };
            exit_now(code)
        }
        ForkResult::Parent { child } => {
            // join(): block until the child has ended, and read how it ended.
            let status = waitpid(child, None).context("wait for the child")?;
            let code = ExitCode::of(status);
            println!("   parent: joined child pid {child}, exitcode {code}");
            ensure!(code == ExitCode(0), "the child that greets (pid {child}) ended with exitcode {code}");
        }
    }
    // ANCHOR_END: fork
    // From here on: multiproc::proc::fork_child and join are the steps above, plus safety
    // nets: it refuses to fork where the child could not be sound, a panic in the child never
    // unwinds into the parent's code, and the child dies if the parent does (PDEATHSIG).

    // ANCHOR: spawn
    println!("2. spawn: the child is this program, started again");
    // A fresh process runs this program from the top, with `--child greet alice`.
    let mut child = spawn_self(&["greet", "alice"])?.spawn().context("start this program as a child")?;
    let status = child.wait().context("wait for the child")?;
    let code = ExitCode::from(status);
    println!("   parent: joined child pid {}, exitcode {code}", child.id());
    ensure!(code == ExitCode(0), "the spawned child (pid {}) ended with exitcode {code}", child.id());
    // ANCHOR_END: spawn

    // ANCHOR: is_alive
    println!("3. is_alive, kill and terminate");
    // This child waits forever, so it is surely alive when we ask. ("victim": it is here to
    // be killed.)
    let child = fork_named("victim", wait_forever)?;
    let mut exitcode = None; // Python's p.exitcode: None until we know how the child ended
    let alive = is_alive(child, &mut exitcode)?;
    println!("   child pid {child} waits forever: is_alive {alive}");
    ensure!(alive, "the child (pid {child}) that waits forever ended with exitcode {exitcode:?}");
    kill(child, Signal::SIGKILL).context("kill the child")?; // p.kill()
    let code = join(child)?;
    exitcode = Some(code);
    println!("   after kill and join: exitcode {code}, is_alive {}", is_alive(child, &mut exitcode)?);
    // join reaped the child, so the kernel has forgotten it: only the code we kept is left.
    match waitpid(child, Some(WaitPidFlag::WNOHANG)) {
        Err(Errno::ECHILD) => println!("   waitpid on it again: ECHILD, no such child any more"),
        other => anyhow::bail!("waitpid on a reaped child gave {other:?}, not ECHILD"),
    }

    let child = fork_named("victim", wait_forever)?;
    kill(child, Signal::SIGTERM).context("terminate the child")?; // p.terminate()
    let code = join(child)?;
    println!("   child pid {child} after terminate and join: exitcode {code}");
    ensure!(code == ExitCode(-15), "the terminated child (pid {child}) ended with exitcode {code}");
    // ANCHOR_END: is_alive

    // ANCHOR: exit_codes
    println!("4. exit codes");
    let child = fork_child(|| 3)?; // sys.exit(3)
    let code = join(child)?;
    println!("   a child that returns 3: exitcode {code}");
    ensure!(code == ExitCode(3), "the child (pid {child}) that returns 3 ended with exitcode {code}");
    // fork_child catches the panic, prints one line about it on stderr (where Python prints
    // the traceback), and exits with 101.
    let child = fork_child(|| -> i32 { panic!("the child gave up") })?;
    let code = join(child)?;
    println!("   a child that panics: exitcode {code}");
    ensure!(code == ExitCode(101), "the child (pid {child}) that panics ended with exitcode {code}");
    // ANCHOR_END: exit_codes

    // ANCHOR: two_sleepers
    println!("5. two children that each sleep {} ms", NAP.as_millis());
    let nap = || {
        std::thread::sleep(NAP);
        0
    };
    let start = Instant::now();
    // Start both before joining either: they sleep at the same time. (fork_named is
    // fork_child with a name, Python's Process(name=...): errors say which sleeper.)
    let first = fork_named("first sleeper", nap)?;
    let second = fork_named("second sleeper", nap)?;
    let first_code = join(first)?;
    let second_code = join(second)?;
    let took = start.elapsed();
    println!("   exitcodes {first_code} and {second_code}");
    ensure!(first_code == ExitCode(0), "the first sleeper (pid {first}) ended with exitcode {first_code}");
    ensure!(
        second_code == ExitCode(0),
        "the second sleeper (pid {second}) ended with exitcode {second_code}"
    );
    println!("   both joined after {}", plumbing::measure::duration(took.as_secs_f64()));
    // ANCHOR_END: two_sleepers

    // ANCHOR: at_exit
    println!("6. the end of the program: a child nobody joined");
    // A fresh copy of this program forks a child that would sleep 10 s, and returns from
    // `lesson` without joining it (the role "forget-a-child", below).
    let start = Instant::now();
    let run = spawn_self(&["forget-a-child"])?.output().context("run this program as a child")?;
    let (took, code) = (start.elapsed(), ExitCode::from(run.status));
    let last_words = String::from_utf8_lossy(&run.stderr);
    println!(
        "   the program exited with exitcode {code} after {}",
        plumbing::measure::duration(took.as_secs_f64())
    );
    println!("   it said: {}", last_words.trim());
    ensure!(
        code == ExitCode(1) && took < FORGOTTEN_NAP / 2,
        "the program that forgot its child ended with exitcode {code} after {took:?}"
    );
    println!("   its child was stopped, not waited for: the kit treats a forgotten child as a bug");
    // ANCHOR_END: at_exit
    Ok(())
}

// ANCHOR: greet
/// What the children do in sections 1 and 2: say hello, from their own pid.
fn greet(name: &str) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "   hello {name} from the child, pid {}", getpid())?;
    // A forked child ends with _exit, which does not flush: flush now.
    out.flush()
}
// ANCHOR_END: greet

// ANCHOR: wait_forever
/// The child of section 3: it ends only when a signal ends it.
fn wait_forever() -> i32 {
    loop {
        pause(); // sleep until a signal arrives
    }
}
// ANCHOR_END: wait_forever

// ANCHOR: child
/// The child's side of "spawn": this program, started again with `--child ROLE ARGS...`.
fn child(role: &[String]) -> anyhow::Result<()> {
    let role: Vec<&str> = role.iter().map(String::as_str).collect();
    match role.as_slice() {
        ["greet", name] => greet(name).context("print the greeting"),
        ["noop"] => Ok(()),
        ["forget-a-child"] => {
            fork_named("forgotten", || {
                std::thread::sleep(FORGOTTEN_NAP);
                0
            })?;
            Ok(()) // and no join: the kit stops the child, and says so
        }
        _ => anyhow::bail!("unknown child role {role:?}"),
    }
}
// ANCHOR_END: child

// ANCHOR: is_alive_fn
/// Python's `is_alive()`. `exitcode` is what we know of how the child ended (Python's
/// `p.exitcode`); once it is known the child is gone. Otherwise ask the kernel without
/// waiting (WNOHANG); if the child has ended, that call reaps it, so keep its code.
fn is_alive(child: Pid, exitcode: &mut Option<ExitCode>) -> anyhow::Result<bool> {
    if exitcode.is_none() {
        match waitpid(child, Some(WaitPidFlag::WNOHANG)).context("ask whether the child is alive")? {
            WaitStatus::StillAlive => {}
            ended => *exitcode = Some(ExitCode::of(ended)),
        }
    }
    Ok(exitcode.is_none())
}
// ANCHOR_END: is_alive_fn

// ANCHOR: measure
/// Start and join many children, three ways, and Python's two start methods.
fn measure(args: &Args) -> anyhow::Result<()> {
    let mut bench = Bench::new(&LESSON, args, "start and join one child process");
    let forks = args.pick(2000, 20);
    let spawns = args.pick(200, 5);

    bench.run(Case::new(FLOOR).ops(forks), || {
        for _ in 0..forks {
            // SAFETY: single-threaded, and the child only calls _exit.
            match unsafe { fork() }.context("fork a child")? {
                ForkResult::Child => exit_now(0),
                ForkResult::Parent { child } => {
                    waitpid(child, None).context("wait for the child")?;
                }
            }
        }
        Ok(())
    })?;

    bench.run(Case::new("fork_child+join").ops(forks).vs(FLOOR), || {
        for _ in 0..forks {
            let child = fork_child(|| 0)?;
            let code = join(child)?;
            anyhow::ensure!(code == ExitCode(0), "child pid {child} exited with {code}");
        }
        Ok(())
    })?;

    bench.run(Case::new("spawn_self+wait (re-exec)").ops(spawns).vs(FLOOR), || {
        for _ in 0..spawns {
            let status = spawn_self(&["noop"])?.status().context("run this program as a child")?;
            anyhow::ensure!(status.success(), "a child exited with {}", ExitCode::from(status));
        }
        Ok(())
    })?;

    bench.python()?;
    bench.finish();
    Ok(())
}
// ANCHOR_END: measure
