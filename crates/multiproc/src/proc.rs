//! Starting and joining child processes, the way Python's `Process` does it.
//!
//! The spawn-join lesson does these steps by hand first, then uses these helpers; its
//! chapter includes this file's anchored parts. Later lessons start children with them.

use std::fmt;
use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::panic::AssertUnwindSafe;
use std::process::Command;

use anyhow::Context;
use linux_futex::{Futex, Shared};
use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::prctl;
use nix::sys::signal::Signal;
use nix::sys::wait::{Id, WaitPidFlag, WaitStatus, waitid, waitpid};
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
                say(&format!("child pid {}: {error:#}", getpid()));
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
// ANCHOR: fork_child_signature
pub fn fork_child<R: ChildExit>(work: impl FnOnce() -> R) -> anyhow::Result<Pid> {
    fork_named("child", work)
}
// ANCHOR_END: fork_child_signature

/// [`fork_child`], with a name for the child (Python's `Process(name=...)`): what goes wrong
/// with it is reported under that name.
pub fn fork_named<R: ChildExit>(name: &str, work: impl FnOnce() -> R) -> anyhow::Result<Pid> {
    may_fork()?;
    // Output still in the buffer would be copied into the child and printed twice.
    std::io::stdout().flush().context("flush stdout before fork")?;
    let (parent, asked) = (getpid(), crate::trace::clock()); // --trace: when we asked
    // SAFETY: may_fork found this thread alone in its process, so the child's copy of memory
    // is consistent (no other thread was half-way through changing it, holding a lock the
    // child could never get), and in the child only code this thread runs exists. It also
    // found no guard or part of shared memory alive here, so the child copies no plain
    // reference that another process may write through (see crate::shm).
    match unsafe { fork() }.with_context(|| format!("fork the {name}"))? {
        ForkResult::Parent { child } => {
            watched::add(child, name)?; // see `wait_ready`: its death ends this process's waits
            Ok(child)
        }
        ForkResult::Child => {
            // If the parent dies, the kernel kills this child too: no orphans. The parent
            // may already have died before this line; then its pid is gone from getppid.
            if prctl::set_pdeathsig(Signal::SIGKILL).is_err() || getppid() != parent {
                exit_now(1);
            }
            watched::forget_all(); // the parent's other children are not this process's
            FORKED.store(true, std::sync::atomic::Ordering::Relaxed);
            // Its name, as `ps` and /proc show it (the kernel keeps 15 bytes).
            if let Ok(name) = std::ffi::CString::new(name.bytes().take(15).collect::<Vec<u8>>()) {
                let _ = prctl::set_name(&name);
            }
            crate::trace::started(name, asked); // its track in a --trace timeline
            faults::started(name);
            // A panic prints one line, as Python prints a target's exception (no backtrace).
            std::panic::set_hook(Box::new(|panic| {
                say(&format!("child pid {} {}", getpid(), panic_line(panic)))
            }));
            // A panic must not unwind out of here: the parent's code is in this copy too.
            let running = crate::trace::span("run", || name.to_string());
            let code = std::panic::catch_unwind(AssertUnwindSafe(|| work().exit_code())).unwrap_or(101);
            drop(running);
            crate::trace::instant("exited", &format!("exitcode {code}"));
            let _ = std::io::stdout().flush();
            // _exit, not exit: this copy must not run the parent's exit handlers.
            exit_now(code)
        }
    }
}

/// Wait for a child to end and return its exit code: Python's `join()` then `exitcode`.
pub fn join(child: Pid) -> anyhow::Result<ExitCode> {
    watched::reap(child, true)?.with_context(|| format!("child {child} had not ended"))
}

/// [`join`] a child that must succeed: its exit code, 0, or an error that names it and says
/// how it ended. (Python: `p.join()`, then `assert p.exitcode == 0`.)
pub fn join_ok(child: Pid) -> anyhow::Result<ExitCode> {
    join_all(&[child]).map(|()| ExitCode(0))
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
    // A thread just joined has returned its result, but may not have left the kernel's count
    // yet (its last steps of exit come after the join's wake-up): look again, for a moment,
    // before refusing. A thread that is still running is refused after those looks.
    let mut threads = thread_count().context("count this process's threads (/proc/self/stat)")?;
    for _ in 0..JOINED_THREAD_LOOKS {
        if threads == 1 {
            break;
        }
        std::thread::yield_now();
        threads = thread_count().context("count this process's threads (/proc/self/stat)")?;
    }
    anyhow::ensure!(
        threads == 1,
        "cannot fork: this process has {threads} threads, and a child would hold only a copy of one, \
         in memory the others may be changing; fork before starting threads"
    );
    Ok(())
}

/// How many times [`may_fork`] looks again at a count of threads above one (each look a
/// read of /proc/self/stat, some microseconds) before it refuses.
const JOINED_THREAD_LOOKS: usize = 1000;

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
pub fn panic_line(panic: &std::panic::PanicHookInfo) -> String {
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

/// Places where a test may make a child fail on purpose: as it starts, each time it is
/// about to wait in one of the kit's waits (a queue's `get` or `put`, a lock, a `recv`), and
/// each time it has just taken one of the kit's locks (a Value's, an Array's, a queue's). A
/// test harness sets the hook (plumbing does, when `FORKLORE_FAULT` asks for it); without
/// one, these places do nothing.
pub mod faults {
    use std::sync::{Mutex, OnceLock, PoisonError};

    /// Where a child is: just started, about to wait for what the string says, or holding
    /// the lock it names.
    #[derive(Clone, Copy, Debug)]
    pub enum Point<'a> {
        Start,
        Wait(&'a str),
        Holding(&'a str),
    }

    static HOOK: OnceLock<fn(&str, Point)> = OnceLock::new();
    /// This process's name, if the kit forked it ("worker 1"); empty in the parent.
    static NAME: Mutex<String> = Mutex::new(String::new());

    /// Call `hook` with this process's name at every fault point (once per process).
    pub fn set_hook(hook: fn(&str, Point)) {
        let _ = HOOK.set(hook);
    }

    pub(super) fn started(name: &str) {
        *NAME.lock().unwrap_or_else(PoisonError::into_inner) = name.to_string();
        point(Point::Start);
    }

    /// A child about to wait for `what`.
    pub(crate) fn waiting(what: &str) {
        point(Point::Wait(what));
    }

    /// A child that has just taken `lock`.
    pub(crate) fn holding(lock: &str) {
        point(Point::Holding(lock));
    }

    fn point(at: Point) {
        if let Some(hook) = HOOK.get() {
            let name = NAME.lock().unwrap_or_else(PoisonError::into_inner).clone();
            if !name.is_empty() {
                hook(&name, at);
            }
        }
    }
}

/// Write `line` to stderr in one `write`: lines from several processes never run into each
/// other (a write of up to 4 KiB to a pipe lands whole). If this process left a line of
/// stderr unfinished ([`line_open`]), the line starts on a new one.
pub fn say(line: &str) {
    let mut text = String::with_capacity(line.len() + 2);
    if LINE_OPEN.swap(false, std::sync::atomic::Ordering::Relaxed) {
        text.push('\n');
    }
    text.push_str(line);
    text.push('\n');
    let _ = std::io::stderr().write_all(text.as_bytes());
}

/// Whether this process has written the start of a line to stderr and not yet its end.
static LINE_OPEN: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Say that this process has left a line of stderr unfinished (`measuring ...` while a case
/// runs), or has finished it. Its children, forked meanwhile, know it too.
pub fn line_open(open: bool) {
    LINE_OPEN.store(open, std::sync::atomic::Ordering::Relaxed);
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
    fork_named_closing("child", ends, work)
}

/// [`fork_child_closing`], with a name for the child, as [`fork_named`].
pub fn fork_named_closing<'a, E: AsFd + 'a, R: ChildExit>(
    name: &str,
    ends: impl IntoIterator<Item = &'a mut E>,
    work: impl FnOnce() -> R,
) -> anyhow::Result<Pid> {
    let fds: Vec<RawFd> = ends.into_iter().map(|end| end.as_fd().as_raw_fd()).collect();
    fork_named(name, move || {
        for fd in fds {
            if let Err(e) = nix::unistd::close(fd) {
                say(&format!("child pid {}: close the child's copy of the parent's end {fd}: {e}", getpid()));
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

// ANCHOR: children
/// Children of one kind, forked and joined together: `Children::new("worker")`, then
/// `fork` for each (they are "worker 0", "worker 1", ...), then `join_all`. If the set is
/// dropped first (an error returned early, a panic), the children still running are killed
/// and reaped: none is left behind.
pub struct Children {
    name: String,
    pids: Vec<Pid>,
}

impl Children {
    pub fn new(name: &str) -> Children {
        Children { name: name.to_string(), pids: Vec::new() }
    }

    /// Fork the next one of them, running `work` (see [`fork_child`]).
    pub fn fork<R: ChildExit>(&mut self, work: impl FnOnce() -> R) -> anyhow::Result<Pid> {
        let pid = fork_named(&format!("{} {}", self.name, self.pids.len()), work)?;
        self.pids.push(pid);
        Ok(pid)
    }

    /// Fork the next one, closing `ends` in it first (see [`fork_child_closing`]).
    pub fn fork_closing<'a, E: AsFd + 'a, R: ChildExit>(
        &mut self,
        ends: impl IntoIterator<Item = &'a mut E>,
        work: impl FnOnce() -> R,
    ) -> anyhow::Result<Pid> {
        let pid = fork_named_closing(&format!("{} {}", self.name, self.pids.len()), ends, work)?;
        self.pids.push(pid);
        Ok(pid)
    }

    /// Their pids, in the order they were forked.
    pub fn pids(&self) -> &[Pid] {
        &self.pids
    }

    /// Wait for all of them; if one fails, stop the others ([`join_all`]).
    pub fn join_all(mut self) -> anyhow::Result<()> {
        join_all(&std::mem::take(&mut self.pids))
    }

    /// Wait for each, in order, and return their exit codes, whatever they are.
    pub fn join_each(mut self) -> anyhow::Result<Vec<ExitCode>> {
        std::mem::take(&mut self.pids).into_iter().map(join).collect()
    }
}

impl Drop for Children {
    fn drop(&mut self) {
        stop(&self.pids);
    }
}
// ANCHOR_END: children

// ANCHOR: join_all
/// Wait for every one of `children`. If one fails, the others may wait forever for what it
/// will never do (let go of a lock, send a message): kill them, reap them, and return an
/// error that says which child failed and how. Never a hang, never a process left behind:
/// when it returns, every one of `children` has ended and been reaped.
///
/// It waits on each child's pidfd (see [`wait_ready`]), so it reaps only `children`, never
/// another child of this process.
pub fn join_all(children: &[Pid]) -> anyhow::Result<()> {
    let names: Vec<String> = children.iter().map(|&pid| watched::name_of(pid)).collect();
    let mut running = children.to_vec();
    while !running.is_empty() {
        let (pid, code) = match watched::reap_any(&running) {
            Ok(ended) => ended,
            Err(e) => {
                stop(&running);
                return Err(e).context("wait for the children");
            }
        };
        running.retain(|&p| p != pid);
        if code != ExitCode(0) {
            stop(&running);
            let name = children.iter().position(|&p| p == pid).map_or("a child", |i| names[i].as_str());
            anyhow::bail!(
                "{name} (pid {pid}) failed with exitcode {code}; stopped the {} still running",
                running.len()
            );
        }
    }
    Ok(())
}
// ANCHOR_END: join_all

/// Kill `children` and reap them: for children that can no longer finish (a sibling died,
/// and they wait for what it will never do). The signal goes through each child's pidfd, so
/// it reaches that process or none: never another that was given its pid after it was
/// reaped. Children this process has already reaped, or did not fork with this module,
/// are left alone.
pub fn stop(children: &[Pid]) {
    for &child in children {
        watched::kill(child);
    }
    for &child in children {
        let _ = watched::reap_stopped(child);
    }
}

/// [`stop`] every child this process forked and has not reaped: for a parent about to
/// end with an error, so that it leaves nothing behind.
pub fn stop_all() {
    stop(&watched::all());
}

// ANCHOR: wait_ready
/// Wait until `fd` is ready for `events` (`POLLIN`: something to read, or EOF; `POLLOUT`:
/// room to write), unless one of this process's children dies first, abnormally: then an
/// error that names it. Python's `Queue.get()` in a parent whose producer was killed waits
/// forever: the parent holds a write end of the pipe itself, so no EOF can come. Here the
/// wait ends, because it waits on the children too: each child's pidfd (a file descriptor
/// that refers to that process) becomes readable when it ends.
///
/// A child that exits with 0 has finished its work; the wait goes on. Returns whether there
/// were children to watch (a process without any waits plainly).
pub fn wait_ready(fd: BorrowedFd, events: PollFlags, waiting_for: &str) -> anyhow::Result<bool> {
    let _waiting = crate::trace::span("wait", || format!("waiting for {waiting_for}"));
    let mut known = watched::lock();
    let mut any = false;
    loop {
        let running: Vec<&watched::Known> = known.iter().filter(|k| k.ended.is_none()).collect();
        if running.is_empty() {
            return Ok(any);
        }
        any = true;
        let mut fds = vec![PollFd::new(fd, events)];
        fds.extend(running.iter().map(|k| PollFd::new(k.pidfd.as_fd(), PollFlags::POLLIN)));
        match poll(&mut fds, PollTimeout::NONE) {
            Err(Errno::EINTR) => continue,
            other => other.context("wait for a channel and the children (poll)")?,
        };
        if fds[0].any().unwrap_or(false) {
            return Ok(true);
        }
        let ended: Vec<Pid> =
            (1..fds.len()).filter(|&i| fds[i].any().unwrap_or(false)).map(|i| running[i - 1].pid).collect();
        drop(fds);
        fail_if_one_died(&mut known, ended, waiting_for)?;
    }
}
// ANCHOR_END: wait_ready

/// An error if one of `pids` (children whose pidfds were seen readable) ended abnormally.
fn fail_if_one_died(known: &mut [watched::Known], pids: Vec<Pid>, waiting_for: &str) -> anyhow::Result<()> {
    for pid in pids {
        let code = watched::peek(known, pid)?;
        if code != Some(ExitCode(0)) {
            let name = known.iter().find(|k| k.pid == pid).map_or("child".into(), |k| k.name.clone());
            let how = code.map_or("ended".to_string(), |c| format!("ended with exitcode {c}"));
            anyhow::bail!("{name} (pid {pid}) {how} while this process waited for {waiting_for}");
        }
    }
    Ok(())
}

/// How long a process with children sleeps on a futex before it looks at them again.
const LOOK_AGAIN: std::time::Duration = std::time::Duration::from_millis(20);

/// Sleep while `futex` holds `expected`, as a lock or a semaphore does (one futex wait: it
/// may end early, so the caller looks at the word again and loops), unless one of this
/// process's children has died abnormally: then an error naming it. A lock that child held,
/// or a slot it was to give back, would stay taken forever.
///
/// The kernel cannot sleep on a futex and a pidfd at once. So a process with children
/// sleeps at most 20 ms at a time and looks at its children between sleeps; one without
/// children sleeps until the word changes, as a plain futex wait does.
pub fn wait_futex(futex: &Futex<Shared>, expected: u32, waiting_for: &str) -> anyhow::Result<()> {
    let _waiting = crate::trace::span("wait", || format!("waiting for {waiting_for}"));
    if !fail_if_a_child_died(waiting_for)? {
        let _ = futex.wait(expected); // no children: ends when the word changes, or spuriously
        return Ok(());
    }
    let _ = futex.wait_for(expected, LOOK_AGAIN);
    Ok(())
}

/// An error naming a child of this process that has ended abnormally, if one has; else
/// whether any child is still running. A wait that no system call can end when a child dies
/// (a futex, or a loop that spins in user space on shared memory) calls it now and then.
pub fn fail_if_a_child_died(waiting_for: &str) -> anyhow::Result<bool> {
    let mut known = watched::lock();
    let running: Vec<Pid> = known.iter().filter(|k| k.ended.is_none()).map(|k| k.pid).collect();
    if running.is_empty() {
        return Ok(false);
    }
    let ended: Vec<Pid> = {
        let mut fds: Vec<PollFd> = known
            .iter()
            .filter(|k| k.ended.is_none())
            .map(|k| PollFd::new(k.pidfd.as_fd(), PollFlags::POLLIN))
            .collect();
        match poll(&mut fds, PollTimeout::ZERO) {
            Err(Errno::EINTR) => Vec::new(),
            other => {
                other.context("look at the children (poll)")?;
                (0..fds.len()).filter(|&i| fds[i].any().unwrap_or(false)).map(|i| running[i]).collect()
            }
        }
    };
    fail_if_one_died(&mut known, ended, waiting_for)?;
    Ok(true)
}

/// Set in a child the kit forked: its parent's death ends it (PDEATHSIG), so a wait of its
/// for what the parent (or a sibling the parent watches) will do cannot outlive them.
static FORKED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// For a wait on shared memory that only this process and its relatives map (a ring made
/// before fork): an error if a child of this process died abnormally, or if no one is left
/// who could end the wait: none of its children runs (one that exited 0 without a word
/// counts too), it has no other thread, and it is no child of the kit's (whose parent, or a
/// sibling the parent watches, may yet write: if the parent dies, so does this process).
/// Else whether any child is running, which a sleeping wait must look at again.
pub fn fail_if_no_one_can_answer(waiting_for: &str) -> anyhow::Result<bool> {
    let running = fail_if_a_child_died(waiting_for)?;
    if !running && !FORKED.load(std::sync::atomic::Ordering::Relaxed) && thread_count()? == 1 {
        anyhow::bail!("nothing can end this wait for {waiting_for}: no child runs, nor another thread");
    }
    Ok(running)
}

/// Sleep while `futex` holds `expected`, for a word only this process's relatives change
/// (see [`fail_if_no_one_can_answer`]): at most 20 ms at a time while it has children to
/// look at, else until the word changes (in a child: or until its parent's death ends it).
pub fn wait_futex_answer(futex: &Futex<Shared>, expected: u32, waiting_for: &str) -> anyhow::Result<()> {
    let _waiting = crate::trace::span("wait", || format!("waiting for {waiting_for}"));
    if fail_if_no_one_can_answer(waiting_for)? {
        let _ = futex.wait_for(expected, LOOK_AGAIN);
    } else {
        let _ = futex.wait(expected);
    }
    Ok(())
}

/// The child of this process that most recently ended abnormally, reaped or not, and a
/// description of it (`worker 1 (pid 4242) ended with exitcode -9 (SIGKILL)`): for an error
/// message that names the child behind the trouble.
///
/// A child that is dying is given up to `grace` to finish: its pipes and sockets close (and
/// its parent may notice) a moment before the kernel can report how it ended.
pub fn last_failure(grace: std::time::Duration) -> Option<(Pid, String)> {
    let mut known = watched::lock();
    if watched::deaths().is_empty() {
        // None seen yet: one may be dying now.
        let mut fds: Vec<PollFd> = known
            .iter()
            .filter(|k| k.ended.is_none())
            .map(|k| PollFd::new(k.pidfd.as_fd(), PollFlags::POLLIN))
            .collect();
        if !fds.is_empty() {
            let millis = u16::try_from(grace.as_millis()).unwrap_or(u16::MAX);
            let _ = poll(&mut fds, PollTimeout::from(millis));
        }
    }
    let pids: Vec<Pid> = known.iter().map(|k| k.pid).collect();
    for pid in pids {
        let _ = watched::peek(&mut known, pid); // an unreaped child's end is noticed now
    }
    drop(known);
    let deaths = watched::deaths();
    deaths.last().map(|(pid, name, code)| (*pid, format!("{name} (pid {pid}) ended with exitcode {code}")))
}

/// How many children this process forked with this module and has not reaped.
pub fn unreaped() -> usize {
    let mut known = watched::lock();
    let pids: Vec<Pid> = known.iter().map(|k| k.pid).collect();
    for pid in pids {
        let _ = watched::peek(&mut known, pid); // a child reaped elsewhere is seen so
    }
    known.retain(|k| !k.gone);
    known.len()
}

/// Reap `child` if it has ended: its exit code, or `None` if it is still running. Python's
/// `p.is_alive()` underneath, and what `join` does without waiting.
pub fn try_join(child: Pid) -> anyhow::Result<Option<ExitCode>> {
    watched::reap(child, false)
}

// ANCHOR: join_timeout
/// Python's `p.join(timeout)`, then `p.exitcode`: wait at most `timeout` for `child` to end.
/// Its exit code (it is reaped), or `None` if it is still running when the time is up. The
/// wait sleeps on the child's pidfd, which becomes readable the moment the child ends.
pub fn join_timeout(child: Pid, timeout: std::time::Duration) -> anyhow::Result<Option<ExitCode>> {
    let _waiting = crate::trace::span("wait", || {
        format!("waiting for child {child} to end (join, at most {} ms)", timeout.as_millis())
    });
    let pidfd = watched::pidfd(child)?;
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let millis = u16::try_from(left.as_micros().div_ceil(1000)).unwrap_or(u16::MAX);
        let mut fds = [PollFd::new(pidfd.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::from(millis)) {
            Err(Errno::EINTR) => continue,
            other => other.context("wait for a child with a timeout (poll on its pidfd)")?,
        };
        if fds[0].any().unwrap_or(false) || left.is_zero() {
            return try_join(child);
        }
    }
}
// ANCHOR_END: join_timeout

/// This process's children, as the kit forked them: each with its name and a pidfd, a file
/// descriptor that refers to that one process (Linux 5.3 and later), so that waiting for it,
/// and killing it, can never reach another process given its pid after it is reaped.
mod watched {
    use std::os::fd::{FromRawFd, OwnedFd};
    use std::sync::{Mutex, MutexGuard, PoisonError};

    use super::*;

    pub(super) struct Known {
        pub(super) pid: Pid,
        pub(super) name: String,
        pub(super) pidfd: OwnedFd,
        /// Seen ended (and not reaped yet), with this code.
        pub(super) ended: Option<ExitCode>,
        /// Reaped by someone else (a plain `waitpid`): nothing left to wait for or stop.
        pub(super) gone: bool,
        /// Killed by this process (`stop`): how it ends is no failure of its own.
        pub(super) stopped: bool,
    }

    static KNOWN: Mutex<Vec<Known>> = Mutex::new(Vec::new());

    /// Children seen ending abnormally, in the order seen (kept after they are reaped).
    static DEATHS: Mutex<Vec<(Pid, String, ExitCode)>> = Mutex::new(Vec::new());

    fn died(k: &Known, code: ExitCode) {
        let mut deaths = DEATHS.lock().unwrap_or_else(PoisonError::into_inner);
        if code != ExitCode(0) && !k.stopped && !deaths.iter().any(|(pid, ..)| *pid == k.pid) {
            deaths.push((k.pid, k.name.clone(), code));
        }
    }

    pub(super) fn deaths() -> Vec<(Pid, String, ExitCode)> {
        DEATHS.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    pub(super) fn lock() -> MutexGuard<'static, Vec<Known>> {
        KNOWN.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Just forked `pid`: open its pidfd. If that fails, the child is killed and reaped at
    /// once (by pid: it is ours and unreaped, so the pid is still its own).
    pub(super) fn add(pid: Pid, name: &str) -> anyhow::Result<()> {
        // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid.as_raw(), 0) };
        if fd < 0 {
            let error = std::io::Error::last_os_error();
            let _ = nix::sys::signal::kill(pid, Signal::SIGKILL);
            let _ = waitpid(pid, None);
            return Err(error).with_context(|| format!("open a pidfd for the {name} (Linux 5.3 or later)"));
        }
        // SAFETY: the kernel just returned this descriptor, and nothing else owns it.
        let pidfd = unsafe { OwnedFd::from_raw_fd(fd as RawFd) };
        lock().push(Known { pid, name: name.to_string(), pidfd, ended: None, gone: false, stopped: false });
        Ok(())
    }

    /// A pidfd of `pid`'s own (a duplicate), to wait on without holding the list's lock.
    pub(super) fn pidfd(pid: Pid) -> anyhow::Result<OwnedFd> {
        let known = lock();
        let k = known
            .iter()
            .find(|k| k.pid == pid)
            .with_context(|| format!("{pid} is not a child of the kit's"))?;
        k.pidfd.try_clone().with_context(|| format!("duplicate the pidfd of the {}", k.name))
    }

    /// In a new child: the parent's children are not this process's (their pidfds close).
    pub(super) fn forget_all() {
        lock().clear();
        DEATHS.lock().unwrap_or_else(PoisonError::into_inner).clear();
    }

    pub(super) fn all() -> Vec<Pid> {
        lock().iter().map(|k| k.pid).collect()
    }

    pub(super) fn name_of(pid: Pid) -> String {
        lock().iter().find(|k| k.pid == pid).map_or_else(|| "child".to_string(), |k| k.name.clone())
    }

    /// SIGKILL through the pidfd: that process, or nobody. Its death is this process's doing,
    /// not a failure to report (one it had already died of is noted first).
    pub(super) fn kill(pid: Pid) {
        let mut known = lock();
        let _ = peek(&mut known, pid);
        if let Some(k) = known.iter_mut().find(|k| k.pid == pid) {
            k.stopped = true;
            let null = std::ptr::null::<libc::siginfo_t>();
            // SAFETY: pidfd_send_signal takes a pidfd we own, a signal, no siginfo (null is
            // allowed) and flags 0; it only sends the signal.
            unsafe {
                libc::syscall(libc::SYS_pidfd_send_signal, k.pidfd.as_raw_fd(), libc::SIGKILL, null, 0)
            };
        }
    }

    /// Whether `pid` has ended, and how, without reaping it (WNOWAIT); remembered.
    pub(super) fn peek(known: &mut [Known], pid: Pid) -> anyhow::Result<Option<ExitCode>> {
        let Some(k) = known.iter_mut().find(|k| k.pid == pid) else { return Ok(None) };
        if k.ended.is_none() {
            let flags = WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT;
            match waitid(Id::PIDFd(k.pidfd.as_fd()), flags) {
                Ok(WaitStatus::StillAlive) => {}
                Ok(status) => {
                    let code = ExitCode::of(status);
                    died(k, code);
                    k.ended = Some(code);
                }
                Err(Errno::ECHILD) => {
                    k.gone = true; // reaped behind our back
                    k.ended = Some(ExitCode(0));
                }
                Err(e) => return Err(e).with_context(|| format!("look at {}", k.name)),
            }
        }
        Ok(k.ended)
    }

    /// Reap `pid` if it has ended (waiting for it if `block`): its exit code, which the
    /// caller now knows (so `last_failure` no longer reports it). A child this module does
    /// not know (forked otherwise) is reaped by pid, as before pidfds.
    pub(super) fn reap(pid: Pid, block: bool) -> anyhow::Result<Option<ExitCode>> {
        let _joining =
            block.then(|| crate::trace::span("wait", || format!("waiting for child {pid} to end (join)")));
        let code = wait_and_reap(pid, block)?;
        if code.is_some() {
            DEATHS.lock().unwrap_or_else(PoisonError::into_inner).retain(|(p, ..)| *p != pid);
        }
        Ok(code)
    }

    /// Reap `pid`, just stopped by this process, waiting for it; how it died stays on record.
    pub(super) fn reap_stopped(pid: Pid) -> anyhow::Result<Option<ExitCode>> {
        wait_and_reap(pid, true)
    }

    fn wait_and_reap(pid: Pid, block: bool) -> anyhow::Result<Option<ExitCode>> {
        let mut flags = WaitPidFlag::WEXITED;
        if !block {
            flags |= WaitPidFlag::WNOHANG;
        }
        let mut known = lock();
        let Some(at) = known.iter().position(|k| k.pid == pid) else {
            let status = loop {
                match waitpid(pid, (!block).then_some(WaitPidFlag::WNOHANG)) {
                    Err(Errno::EINTR) => continue,
                    other => break other.with_context(|| format!("wait for child {pid}"))?,
                }
            };
            return Ok((status != WaitStatus::StillAlive).then(|| ExitCode::of(status)));
        };
        let status = loop {
            match waitid(Id::PIDFd(known[at].pidfd.as_fd()), flags) {
                Err(Errno::EINTR) => continue,
                Err(Errno::ECHILD) => break None, // reaped behind our back
                other => break Some(other.with_context(|| format!("wait for {}", known[at].name))?),
            }
        };
        match status {
            Some(WaitStatus::StillAlive) => Ok(None),
            Some(status) => {
                let code = ExitCode::of(status);
                died(&known[at], code);
                known.remove(at);
                Ok(Some(code))
            }
            None => {
                let k = known.remove(at);
                anyhow::bail!("{} (pid {pid}) was reaped elsewhere: its exit code is lost", k.name)
            }
        }
    }

    /// Wait until one of `pids` ends; reap it: which, and how. If another child of this
    /// process ends abnormally meanwhile, an error naming it: `pids` may be waiting for it.
    pub(super) fn reap_any(pids: &[Pid]) -> anyhow::Result<(Pid, ExitCode)> {
        let _joining = crate::trace::span("wait", || format!("waiting for one of {pids:?} to end (join)"));
        loop {
            let ready: Vec<Pid> = {
                let known = lock();
                let watched: Vec<&Known> =
                    known.iter().filter(|k| k.ended.is_none() || pids.contains(&k.pid)).collect();
                anyhow::ensure!(
                    watched.iter().any(|k| pids.contains(&k.pid)),
                    "none of {pids:?} is a child this process forked"
                );
                let mut fds: Vec<PollFd> =
                    watched.iter().map(|k| PollFd::new(k.pidfd.as_fd(), PollFlags::POLLIN)).collect();
                match poll(&mut fds, PollTimeout::NONE) {
                    Err(Errno::EINTR) => continue,
                    other => other.context("wait for the children (poll their pidfds)")?,
                };
                (0..fds.len()).filter(|&i| fds[i].any().unwrap_or(false)).map(|i| watched[i].pid).collect()
            };
            for pid in ready {
                if pids.contains(&pid) {
                    if let Some(code) = wait_and_reap(pid, false)? {
                        return Ok((pid, code));
                    }
                } else {
                    let mut known = lock();
                    if let Some(code) = peek(&mut known, pid)?
                        && code != ExitCode(0)
                    {
                        let name =
                            known.iter().find(|k| k.pid == pid).map_or("child".into(), |k| k.name.clone());
                        anyhow::bail!(
                            "{name} (pid {pid}) ended with exitcode {code}, which the others may be waiting for"
                        );
                    }
                }
            }
        }
    }
}

// ANCHOR: spawn_self
/// This same program, to be started as a child with `--child ROLE ARGS...`: Python's
/// "spawn" start method, which runs a fresh interpreter instead of copying this one.
pub fn spawn_self(role: &[&str]) -> anyhow::Result<Command> {
    let exe = std::env::current_exe().context("find this program's executable")?;
    let mut command = Command::new(exe);
    command.arg("--child").args(role);
    crate::trace::pass_to(&mut command); // under --trace, its events join this run's timeline
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
