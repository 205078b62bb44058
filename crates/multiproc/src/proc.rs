//! Starting and joining child processes, the way Python's `Process` does it.
//!
//! The spawn-join lesson does these steps by hand first, then uses these helpers; its
//! chapter includes this file's anchored parts. Later lessons start children with them.

use std::fmt;
use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::panic::AssertUnwindSafe;
use std::process::Command;

use anyhow::Context;
use nix::errno::Errno;
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
/// if it panics, after one line on stderr); it never returns from here. The parent gets the
/// child's pid.
///
/// Refused, with an error and no fork, where the child could not be sound (see
/// [`may_fork`]): while this process has other threads, or holds a guard or a part of
/// shared memory.
pub fn fork_child<R: ChildExit>(work: impl FnOnce() -> R) -> anyhow::Result<Pid> {
    may_fork()?;
    // Output still in the buffer would be copied into the child and printed twice.
    std::io::stdout().flush().context("flush stdout before fork")?;
    let parent = getpid();
    // SAFETY: may_fork found this thread alone in its process, so the child's copy of memory
    // is consistent (no other thread was half-way through changing it, holding a lock the
    // child could never get), and in the child only code this thread runs exists. It also
    // found no guard or part of shared memory alive here, so the child copies no plain
    // reference that another process may write through (see crate::shm).
    match unsafe { fork() }.context("fork a child")? {
        ForkResult::Parent { child } => Ok(child),
        ForkResult::Child => {
            // If the parent dies, the kernel kills this child too: no orphans. The parent
            // may already have died before this line; then its pid is gone from getppid.
            if prctl::set_pdeathsig(Signal::SIGKILL).is_err() || getppid() != parent {
                exit_now(1);
            }
            // A panic prints one line, as Python prints a target's exception (no backtrace).
            std::panic::set_hook(Box::new(|panic| eprintln!("child pid {} {}", getpid(), one_line(panic))));
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

// ANCHOR: may_fork
/// Whether this process may fork now; if not, why. [`fork_child`] asks first.
///
/// - Only the calling thread is copied into a child. Another thread may be half-way through
///   changing memory, or hold a lock (the memory allocator's, say), which the child would
///   find half-changed, or taken forever. (nix's `fork` is an `unsafe fn` for this reason.)
/// - A [`crate::shm::Guard`] or a part from [`crate::shm::Array::fork_parts`] is a plain
///   reference into shared memory that only this process may use. A child would get a copy
///   of it, and two processes would write through it at once.
pub fn may_fork() -> anyhow::Result<()> {
    anyhow::ensure!(
        !crate::shm::held_here(),
        "cannot fork while this process holds a guard (or a part) of shared memory: the child would \
         get a copy, and two processes would use it; drop the guard before forking"
    );
    let threads = thread_count().context("count this process's threads (/proc/self/stat)")?;
    anyhow::ensure!(
        threads == 1,
        "cannot fork: this process has {threads} threads, and a child would hold only a copy of one, \
         in memory the others may be changing; fork before starting threads"
    );
    Ok(())
}

/// How many threads this process has: field 20 of /proc/self/stat.
pub fn thread_count() -> anyhow::Result<usize> {
    let stat = std::fs::read_to_string("/proc/self/stat")?;
    // pid (comm) state ... : the name may hold spaces and parentheses; count after the last ')'.
    let after_name = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
    let field = after_name.split_whitespace().nth(17).context("a short /proc/self/stat")?;
    Ok(field.parse()?)
}
// ANCHOR_END: may_fork

/// A panic's message and place on one line: `panicked: the child gave up (src/main.rs:9:5)`.
fn one_line(panic: &std::panic::PanicHookInfo) -> String {
    let payload = panic.payload();
    let message = match (payload.downcast_ref::<&str>(), payload.downcast_ref::<String>()) {
        (Some(text), _) => text.to_string(),
        (_, Some(text)) => text.clone(),
        _ => "a panic without a message".to_string(),
    };
    match panic.location() {
        Some(at) => format!("panicked: {message} ({}:{}:{})", at.file(), at.line(), at.column()),
        None => format!("panicked: {message}"),
    }
}

// ANCHOR: fork_child_closing
/// [`fork_child`], and in the child, first close `ends`: this process's ends of channels
/// (pipes, sockets) that the child must not hold. A reader sees EOF only once every copy of
/// the write end is closed, the child's copy included (the pipe chapter).
///
/// Closing them by number in the child is sound, though the objects that own them live on
/// in the child's copy of memory: they are borrowed `&mut` for this call, so `work` cannot
/// use them, and the child runs `work` and exits, never returning to the code that owns
/// them: nothing in the child uses or closes those numbers again.
pub fn fork_child_closing<'a, E: AsFd + 'a, R: ChildExit>(
    ends: impl IntoIterator<Item = &'a mut E>,
    work: impl FnOnce() -> R,
) -> anyhow::Result<Pid> {
    let fds: Vec<RawFd> = ends.into_iter().map(|end| end.as_fd().as_raw_fd()).collect();
    fork_child(move || {
        for fd in fds {
            if let Err(e) = nix::unistd::close(fd) {
                eprintln!("child pid {}: close the child's copy of the parent's end {fd}: {e}", getpid());
                return 1;
            }
        }
        work().exit_code()
    })
}
// ANCHOR_END: fork_child_closing

/// End this process now with `code`, without flushing buffers, running destructors or
/// exit handlers: in a forked child those belong to the parent's copy. (`_exit(2)`)
pub fn exit_now(code: i32) -> ! {
    // SAFETY: _exit has no preconditions; it ends the process and never returns.
    unsafe { libc::_exit(code) }
}

// ANCHOR: join_all
/// Wait for every one of `children`. If one fails, the others may wait forever for what it
/// will never do (let go of a lock, send a message): kill them, reap them, and return an
/// error that says which child failed and how. Never a hang, never a process left behind:
/// when it returns, every one of `children` has ended and been reaped.
///
/// It reaps any child that ends (`waitpid(-1)`), so start no others before calling it.
pub fn join_all(children: &[Pid]) -> anyhow::Result<()> {
    let mut running = children.to_vec();
    while !running.is_empty() {
        let status = match waitpid(Pid::from_raw(-1), None) {
            Ok(status) => status,
            Err(Errno::EINTR) => continue,
            Err(e) => {
                stop(&running);
                return Err(e).context("wait for the children");
            }
        };
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
/// and they wait for what it will never do). Each must be a child not reaped yet (its pid
/// is then still ours: no other process can have it). Errors are ignored: one may have
/// just exited.
pub fn stop(children: &[Pid]) {
    for &child in children {
        let _ = kill(child, Signal::SIGKILL);
    }
    for &child in children {
        while waitpid(child, None) == Err(Errno::EINTR) {}
    }
}

/// Children not reaped yet: stopped (killed and reaped) if this is dropped before
/// [`Children::join_all`], on an early return or a panic. For a parent that must not go on
/// while any of them lives.
pub(crate) struct Children(Vec<Pid>);

impl Children {
    pub(crate) fn new() -> Children {
        Children(Vec::new())
    }

    pub(crate) fn push(&mut self, child: Pid) {
        self.0.push(child);
    }

    /// [`join_all`]: every one ended and reaped, whatever it returns.
    pub(crate) fn join_all(mut self) -> anyhow::Result<()> {
        let children = std::mem::take(&mut self.0);
        join_all(&children)
    }
}

impl Drop for Children {
    fn drop(&mut self) {
        stop(&self.0);
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
