//! Starting and joining child processes, the way Python's `Process` does it.
//!
//! The spawn-join lesson does these steps by hand first, then uses these helpers; its
//! chapter includes this file's anchored parts. Later lessons start children with them.

use std::fmt;
use std::io::Write;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::panic::AssertUnwindSafe;
use std::process::Command;

use anyhow::Context;
use nix::sys::prctl;
use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{ForkResult, Pid, fork, getpid, getppid};

// ANCHOR: exitcode
/// Python's `Process.exitcode`: the status the child exited with, or minus the number of
/// the signal that killed it (`-9` for SIGKILL).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExitCode(pub i32);

impl ExitCode {
    /// Read a status from `waitpid`: a normal exit, or death by a signal.
    pub fn of(status: WaitStatus) -> ExitCode {
        match status {
            WaitStatus::Exited(_, code) => ExitCode(code),
            WaitStatus::Signaled(_, signal, _core_dumped) => ExitCode(-(signal as i32)),
            other => panic!("waitpid without WUNTRACED/WCONTINUED reports exits only, got {other:?}"),
        }
    }
}

impl fmt::Display for ExitCode {
    /// `3`, or `-9 (SIGKILL)`: the number Python shows, and the signal's name.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match Signal::try_from(-self.0) {
            Ok(signal) if self.0 < 0 => write!(f, "{} ({signal})", self.0),
            _ => write!(f, "{}", self.0),
        }
    }
}
// ANCHOR_END: exitcode

impl From<std::process::ExitStatus> for ExitCode {
    fn from(status: std::process::ExitStatus) -> ExitCode {
        match (status.code(), status.signal()) {
            (Some(code), _) => ExitCode(code),
            (None, Some(signal)) => ExitCode(-signal),
            (None, None) => unreachable!("a waited-for child either exited or was killed"),
        }
    }
}

// ANCHOR: child_exit
/// What a child's work may return: an exit code, or a `Result` that becomes 0, or 1 after
/// the error is printed on stderr (as Python prints a target's exception and exits 1).
pub trait ChildExit {
    fn exit_code(self) -> i32;
}

impl ChildExit for i32 {
    fn exit_code(self) -> i32 {
        self
    }
}

impl ChildExit for anyhow::Result<()> {
    fn exit_code(self) -> i32 {
        match self {
            Ok(()) => 0,
            Err(error) => {
                eprintln!("child pid {}: {error:#}", getpid());
                1
            }
        }
    }
}
// ANCHOR_END: child_exit

// ANCHOR: fork_child
/// Fork. The child runs `work` and exits with the code it returns (see [`ChildExit`]; 101
/// if it panics); it never returns from here. The parent gets the child's pid.
///
/// Call it from the main thread of a single-threaded program: only the calling thread
/// exists in the child, and the child dies with the thread that forked it.
pub fn fork_child<R: ChildExit>(work: impl FnOnce() -> R) -> anyhow::Result<Pid> {
    // Output still in the buffer would be copied into the child and printed twice.
    std::io::stdout().flush().context("flush stdout before fork")?;
    let parent = getpid();
    // SAFETY: the caller is single-threaded, so the child's copy of memory is consistent.
    match unsafe { fork() }.context("fork a child")? {
        ForkResult::Parent { child } => Ok(child),
        ForkResult::Child => {
            // If the parent dies, the kernel kills this child too: no orphans. The parent
            // may already have died before this line; then its pid is gone from getppid.
            if prctl::set_pdeathsig(Signal::SIGKILL).is_err() || getppid() != parent {
                exit_now(1);
            }
            // A panic must not unwind out of here: the parent's code is in this copy too.
            let code = std::panic::catch_unwind(AssertUnwindSafe(|| work().exit_code())).unwrap_or(101);
            let _ = std::io::stdout().flush();
            // _exit, not exit: this copy must not run the parent's exit handlers.
            exit_now(code)
        }
    }
}

/// Wait for a child to end and return its exit code: Python's `join()` then `exitcode`.
pub fn join(child: Pid) -> anyhow::Result<ExitCode> {
    let status = waitpid(child, None).with_context(|| format!("wait for child {child}"))?;
    Ok(ExitCode::of(status))
}
// ANCHOR_END: fork_child

/// End this process now with `code`, without flushing buffers, running destructors or
/// exit handlers: in a forked child those belong to the parent's copy. (`_exit(2)`)
pub fn exit_now(code: i32) -> ! {
    // SAFETY: _exit has no preconditions; it ends the process and never returns.
    unsafe { libc::_exit(code) }
}

// ANCHOR: join_all
/// Wait for every one of `children`. If one fails, the others may wait forever for what it
/// will never do (let go of a lock, send a message): kill them, reap them, and return an
/// error that says which child failed and how. Never a hang, never a process left behind.
///
/// It reaps any child that ends (`waitpid(-1)`), so start no others before calling it.
pub fn join_all(children: &[Pid]) -> anyhow::Result<()> {
    let mut running = children.to_vec();
    while !running.is_empty() {
        let status = waitpid(Pid::from_raw(-1), None).context("wait for the children")?;
        let Some(pid) = status.pid() else { continue };
        running.retain(|&p| p != pid);
        let code = ExitCode::of(status);
        if code != ExitCode(0) {
            stop(&running);
            let which = match children.iter().position(|&p| p == pid) {
                Some(i) => format!("child {i} of {}", children.len()),
                None => "a child started elsewhere".to_string(), // reaped by waitpid(-1)
            };
            anyhow::bail!(
                "{which} (pid {pid}) failed with exitcode {code}; stopped the {} still running",
                running.len()
            );
        }
    }
    Ok(())
}
// ANCHOR_END: join_all

/// Kill `children` and reap them: for children that can no longer finish (a sibling died,
/// and they wait for what it will never do). Errors are ignored: one may have just exited.
pub fn stop(children: &[Pid]) {
    for &child in children {
        let _ = kill(child, Signal::SIGKILL);
    }
    for &child in children {
        let _ = waitpid(child, None);
    }
}

/// For a parent waiting on a channel that `children` feed, while none of them should have
/// ended yet: if one has, kill and reap the others and say which ended and how. (Waiting
/// on, a dead child's missing message would keep the parent waiting forever.)
pub fn check_alive(children: &[Pid]) -> anyhow::Result<()> {
    for (i, &pid) in children.iter().enumerate() {
        let status =
            waitpid(pid, Some(WaitPidFlag::WNOHANG)).with_context(|| format!("check child {pid}"))?;
        if status != WaitStatus::StillAlive {
            let others: Vec<Pid> = children.iter().copied().filter(|&p| p != pid).collect();
            stop(&others);
            anyhow::bail!(
                "child {i} of {} (pid {pid}) ended early with exitcode {}; stopped the others",
                children.len(),
                ExitCode::of(status)
            );
        }
    }
    Ok(())
}

// ANCHOR: spawn_self
/// This same program, to be started as a child with `--child ROLE ARGS...`: Python's
/// "spawn" start method, which runs a fresh interpreter instead of copying this one.
pub fn spawn_self(role: &[&str]) -> anyhow::Result<Command> {
    let exe = std::env::current_exe().context("find this program's executable")?;
    let mut command = Command::new(exe);
    command.arg("--child").args(role);
    // SAFETY: prctl is async-signal-safe, as code between fork and exec must be.
    unsafe {
        command.pre_exec(|| {
            // As in fork_child: the child dies with its parent, never left behind.
            prctl::set_pdeathsig(Signal::SIGKILL).map_err(std::io::Error::from)
        });
    }
    Ok(command)
}
// ANCHOR_END: spawn_self

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_read_like_python() {
        let pid = Pid::from_raw(1);
        assert_eq!(ExitCode::of(WaitStatus::Exited(pid, 3)).to_string(), "3");
        let killed = WaitStatus::Signaled(pid, Signal::SIGKILL, false);
        assert_eq!(ExitCode::of(killed).to_string(), "-9 (SIGKILL)");
        assert_eq!(ExitCode::from(std::process::ExitStatus::from_raw(15)).to_string(), "-15 (SIGTERM)");
        assert_eq!(ExitCode::from(std::process::ExitStatus::from_raw(3 << 8)), ExitCode(3));
    }
}
