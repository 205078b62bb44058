//! mpijob: an MPI job started the way a lesson must start one.
//!
//! - Every rank's output is read, line by line, and checked: `mpiexec` (MPICH's Hydra) can
//!   exit 0 though a rank ended early, so a rank that did not print [`FINISHED`] last failed,
//!   and the error names it with its last words.
//! - Nothing is left behind, by design: the job runs in a PID namespace of its own, whose
//!   first process is `mpiexec`. When that process dies, however it dies, the kernel kills
//!   every other process of the namespace: the launcher's proxies and every rank. And it dies
//!   with the program that started it (`PR_SET_PDEATHSIG`), so a lesson killed mid-job takes
//!   its whole job with it.
//! - Every job has a deadline. A job fails fast by itself (a rank that panics ends at once,
//!   and a rank that ends before finishing MPI is seen by the launcher, which ends the others); the
//!   deadline is the last word: when it passes, the job is killed whole and the error says so.
//! - Ranks stay at or below the CPUs this process may use, unless asked: MPICH's ranks poll
//!   for messages without sleeping, and one that waits for a CPU holds up every other.

use std::ffi::{OsStr, OsString};
use std::io::Read;
use std::os::fd::AsFd;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// What to install where MPICH is missing, in one line.
pub const INSTALL: &str =
    "this needs MPICH: apt-get install mpich libmpich-dev libclang-dev pkg-config (as root)";

/// The line a rank prints last, once it has finished MPI: a rank whose output does not end
/// with it did not finish, whatever `mpiexec` says.
pub const FINISHED: &str = "mpijob: rank finished";

/// The shell line that mounts an empty /dev/shm and then runs `mpiexec` ("$0") in place of
/// the shell, with its arguments: it stays the first process of the namespace.
const SHM_OF_ITS_OWN: &str = r#"mount -t tmpfs -o mode=1777 tmpfs /dev/shm && exec "$0" "$@""#;

/// The deadline of a job that sets none.
pub const DEADLINE: Duration = Duration::from_secs(60);

/// MPICH's `mpiexec` (Hydra), from PATH; an error that says what to install if it is missing,
/// or if the one on PATH is another MPI's.
pub fn mpiexec() -> anyhow::Result<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let Some(mpiexec) = std::env::split_paths(&path).map(|dir| dir.join("mpiexec")).find(|p| p.is_file())
    else {
        bail!("no mpiexec on PATH: {INSTALL}");
    };
    let version = Command::new(&mpiexec)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("run {} --version", mpiexec.display()))?;
    if !String::from_utf8_lossy(&version.stdout).contains("HYDRA") {
        bail!("{} is not MPICH's mpiexec (Hydra): {INSTALL}", mpiexec.display());
    }
    Ok(mpiexec)
}

/// Whether all that building and running ranks needs is here: `mpiexec` (see [`mpiexec`]),
/// and MPICH's library and headers, found by `pkg-config` (what rsmpi builds against).
pub fn installed() -> anyhow::Result<()> {
    mpiexec()?;
    let found = Command::new("pkg-config").args(["--exists", "mpich"]).status();
    if !found.is_ok_and(|status| status.success()) {
        bail!("pkg-config finds no MPICH library to build ranks with: {INSTALL}");
    }
    Ok(())
}

/// The CPUs this process may run on.
pub fn cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// An MPI job: `ranks` copies of `program`, started by `mpiexec` on this machine.
#[derive(Debug, Clone)]
pub struct Job {
    program: OsString,
    args: Vec<OsString>,
    ranks: usize,
    env: Vec<(OsString, OsString)>,
    deadline: Duration,
    oversubscribe: bool,
    hosts: Option<(hosts::Across, PathBuf)>,
}

/// What a job's ranks printed, each rank's lines in order (without [`FINISHED`]), and how
/// long the job took from start to end.
#[derive(Debug, Clone)]
pub struct Output {
    pub ranks: Vec<Vec<String>>,
    /// Lines `mpiexec` itself printed (none, when all goes well).
    pub launcher: Vec<String>,
    pub time: Duration,
}

impl Job {
    pub fn new(program: impl AsRef<OsStr>, ranks: usize) -> Job {
        Job {
            program: program.as_ref().to_owned(),
            args: Vec::new(),
            ranks,
            env: Vec::new(),
            deadline: DEADLINE,
            oversubscribe: false,
            hosts: None,
        }
    }

    /// Run the ranks on `hosts`, one by one in turn, over TCP between them; `launcher` is a
    /// program that calls [`hosts::launch`] when its first argument is `-x`.
    pub fn on(mut self, hosts: &hosts::Hosts, launcher: impl Into<PathBuf>) -> Job {
        self.hosts = Some((hosts.across(), launcher.into()));
        self
    }

    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Job {
        self.args.push(arg.as_ref().to_owned());
        self
    }

    pub fn args<S: AsRef<OsStr>>(self, args: impl IntoIterator<Item = S>) -> Job {
        args.into_iter().fold(self, Job::arg)
    }

    /// An environment variable for every rank.
    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Job {
        self.env.push((key.as_ref().to_owned(), value.as_ref().to_owned()));
        self
    }

    /// When the job is killed, whole, if it has not ended ([`DEADLINE`] if not set).
    pub fn deadline(mut self, deadline: Duration) -> Job {
        self.deadline = deadline;
        self
    }

    /// Allow more ranks than CPUs (they will wait for each other's CPUs: slow, on purpose).
    pub fn oversubscribe(mut self) -> Job {
        self.oversubscribe = true;
        self
    }

    // ANCHOR: command
    /// The command that starts the job: `mpiexec` as the first process of a new PID namespace
    /// (and a mount namespace with its own /proc, which MPICH's shared-memory transport
    /// reads), killed when `unshare` dies (`--kill-child`).
    fn command(&self, mpiexec: &std::path::Path) -> Command {
        let mut command = Command::new("unshare");
        command.args(["--pid", "--fork", "--kill-child"]);
        if !nix::unistd::geteuid().is_root() {
            command.arg("--map-root-user"); // namespaces in a user namespace of one's own
        }
        match &self.hosts {
            // A /dev/shm of the job's own, in its mount namespace: whatever MPI's shared memory
            // files a failing rank leaves there are gone with the namespace, when the job ends.
            None => {
                command.args(["--mount-proc", "sh", "-c", SHM_OF_ITS_OWN, "mpiexec"]).arg(mpiexec);
            }
            // mpiexec runs on the first host; the others' proxies connect back to it there.
            // (No shared memory between them, so /proc may stay the machine's: the launcher
            // finds each host's namespaces through it.)
            Some((across, launcher)) => {
                command.args(across.enter_first()).arg(mpiexec);
                command.args(["-launcher", "ssh", "-launcher-exec"]).arg(launcher);
                command.args(["-hosts", &across.addresses(), "-genv", "UCX_TLS", "tcp,self"]);
                command.args(["-genv", "UCX_NET_DEVICES", hosts::DEVICE]);
                command.env(hosts::VARIABLE, across.to_string()).env("HYDRA_LAUNCHER_AUTOFORK", "0");
            }
        }
        command.args(["-n", &self.ranks.to_string(), "-prepend-rank"]);
        command.arg(&self.program).args(&self.args);
        command.envs(self.env.iter().map(|(k, v)| (k, v)));
        command
    }
    // ANCHOR_END: command

    // ANCHOR: run
    /// Run the job to its end and return what each rank printed; an error if it failed,
    /// naming every rank that did not finish, with its last line.
    pub fn run(&self) -> anyhow::Result<Output> {
        let mpiexec = mpiexec()?;
        if self.ranks > cpus() && !self.oversubscribe {
            bail!(
                "{} ranks on {} CPUs: MPICH's ranks poll without sleeping, so keep to one rank per CPU",
                self.ranks,
                cpus()
            );
        }
        let start = Instant::now();
        let (mut child, reader) = self.spawn(&mpiexec)?;
        let text = match read_until(reader, start + self.deadline) {
            Ok(text) => text,
            Err(e) => {
                end(&mut child);
                return Err(e);
            }
        };
        let status = match wait_until(&mut child, start + self.deadline)? {
            Some(status) => status,
            None => {
                end(&mut child);
                bail!("the job's output ended, but mpiexec had not exited after {:?}: killed", self.deadline);
            }
        };
        let mut output = split(&text, self.ranks);
        output.time = start.elapsed();
        output.check(status)?;
        output.ranks.iter_mut().for_each(|lines| drop(lines.pop())); // FINISHED
        Ok(output)
    }
    // ANCHOR_END: run

    fn spawn(&self, mpiexec: &std::path::Path) -> anyhow::Result<(Child, std::fs::File)> {
        let (read, write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).context("make a pipe")?;
        let mut command = self.command(mpiexec);
        command.stdin(Stdio::null()).stdout(write.try_clone()?).stderr(write);
        // SAFETY: between fork and exec only async-signal-safe work may be done: one prctl.
        unsafe {
            command.pre_exec(|| {
                // The job dies with the program that started it: `unshare` by this signal,
                // then `mpiexec` by its own (--kill-child), then every rank with the namespace.
                nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(std::io::Error::from)
            });
        }
        let child = command.spawn().context("start unshare (util-linux) to start mpiexec")?;
        drop(command); // it holds the pipe's write ends: the reader sees its end when the job's close
        Ok((child, std::fs::File::from(read)))
    }
}

/// Kill the job, whole, and return once every process of it is gone. `mpiexec`, the first
/// process of the job's PID namespace, dies of SIGKILL; the kernel then kills every other
/// process of the namespace, and only once they are all gone does `mpiexec` end, and
/// `unshare`, which waits for it, with it.
fn end(child: &mut Child) {
    let unshare = Pid::from_raw(child.id() as i32);
    let mpiexec = children_of(unshare);
    // None yet (`unshare` has not forked): no process of the job exists, so `unshare` goes
    // instead; a child it forks meanwhile dies with it (--kill-child), and its namespace.
    for pid in if mpiexec.is_empty() { vec![unshare] } else { mpiexec } {
        let _ = kill(pid, Signal::SIGKILL);
    }
    let _ = child.wait();
}

/// The children of `parent` (from /proc: each process's fourth field is its parent).
fn children_of(parent: Pid) -> Vec<Pid> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    let parent = parent.as_raw().to_string();
    entries
        .filter_map(|entry| {
            let pid: i32 = entry.ok()?.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let (_, after_name) = stat.rsplit_once(") ")?;
            (after_name.split(' ').nth(1)? == parent).then_some(Pid::from_raw(pid))
        })
        .collect()
}

/// Everything the job writes, until every process of it has closed the pipe; an error if the
/// deadline passes first.
fn read_until(mut reader: std::fs::File, deadline: Instant) -> anyhow::Result<String> {
    let mut text = Vec::new();
    let mut buffer = [0u8; 64 * 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            bail!("the job did not end within its deadline: killed, with every rank");
        }
        let millis = PollTimeout::from(left.as_millis().min(1000) as u16);
        let mut fds = [PollFd::new(reader.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, millis) {
            Ok(0) | Err(nix::errno::Errno::EINTR) => continue,
            Ok(_) => {}
            Err(e) => return Err(e).context("wait for the job's output (poll)"),
        }
        match reader.read(&mut buffer) {
            Ok(0) => return Ok(String::from_utf8_lossy(&text).into_owned()),
            Ok(n) => text.extend_from_slice(&buffer[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e).context("read the job's output"),
        }
    }
}

/// `unshare`'s exit status, once it has exited; `None` if the deadline passes first.
fn wait_until(child: &mut Child, deadline: Instant) -> anyhow::Result<Option<ExitStatus>> {
    loop {
        if let Some(status) = child.try_wait().context("wait for mpiexec")? {
            return Ok(Some(status));
        }
        if Instant::now() >= deadline {
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Sort the job's lines by rank (`-prepend-rank` writes `[R] ` before each).
fn split(text: &str, ranks: usize) -> Output {
    let mut output = Output { ranks: vec![Vec::new(); ranks], launcher: Vec::new(), time: Duration::ZERO };
    for line in text.lines() {
        let rank = line
            .strip_prefix('[')
            .and_then(|rest| rest.split_once("] "))
            .and_then(|(rank, rest)| Some((rank.parse::<usize>().ok().filter(|&r| r < ranks)?, rest)));
        match rank {
            Some((rank, rest)) => output.ranks[rank].push(rest.to_string()),
            None => output.launcher.push(line.to_string()),
        }
    }
    output
}

impl Output {
    /// An error unless every rank finished (its last line [`FINISHED`]) and the job exited 0.
    fn check(&self, status: ExitStatus) -> anyhow::Result<()> {
        let unfinished: Vec<String> = (self.ranks.iter().enumerate())
            .filter(|(_, lines)| lines.last().map(String::as_str) != Some(FINISHED))
            .map(|(rank, lines)| match lines.last() {
                Some(last) => format!("rank {rank} did not finish; its last line: {last}"),
                None => format!("rank {rank} did not finish, and printed nothing"),
            })
            .collect();
        if unfinished.is_empty() && status.success() {
            return Ok(());
        }
        let how = match (status.code(), status.signal()) {
            (Some(code), _) => format!("exit status {code}"),
            (None, Some(signal)) => format!("killed by signal {signal}"),
            (None, None) => format!("{status}"),
        };
        // The ranks' own last words say what went wrong; where none failed, mpiexec's do.
        let said = match unfinished.is_empty() {
            true => self.launcher.iter().filter(|l| !l.trim().is_empty()).take(3).cloned().collect(),
            false => unfinished,
        };
        Err(JobFailed { how, said }.into())
    }
}

/// How a job failed: `mpiexec`'s exit status (which of the failing processes reported first
/// decides it: a panic's 101, a kill's 9, or 255), and what each rank that did not finish said
/// last (or, if every rank finished, what `mpiexec` said).
#[derive(Debug, Clone)]
pub struct JobFailed {
    pub how: String,
    pub said: Vec<String>,
}

impl std::fmt::Display for JobFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the MPI job failed ({}): {}", self.how, self.said.join("; "))
    }
}

impl std::error::Error for JobFailed {}

pub mod hosts;

/// The rank side: what every rank of ours does as it starts and as it ends. Built only with
/// the `mpi` feature, against the system's MPICH.
#[cfg(feature = "mpi")]
pub mod rank {
    use mpi::environment::Universe;

    // ANCHOR: rank
    /// Start MPI in this rank. A panic anywhere in it from now on ends the whole job: without
    /// that, the panicking rank would unwind into `MPI_Finalize` and wait there forever for
    /// peers that are themselves waiting for its messages.
    pub fn start() -> anyhow::Result<Universe> {
        let universe = mpi::initialize().ok_or_else(|| anyhow::anyhow!("MPI was started already"))?;
        std::panic::set_hook(Box::new(|info| {
            // The panic's message, in one write: `mpiexec` marks each piece of a rank's
            // output with its rank, and the default hook writes a line in several pieces.
            // No backtrace: the message says where.
            let message = format!("{info}\n");
            let _ = std::io::Write::write_all(&mut std::io::stderr(), message.as_bytes());
            // Then end this process at once, without unwinding into MPI_Finalize. The
            // launcher's proxy reads what the rank wrote up to its end, and then sees a rank
            // that ended without finishing MPI: it kills every other rank of the job. (So
            // would MPI_Abort, but then the launcher kills the ranks as soon as it hears of
            // it, and may drop their last words unread: seen, twice in a hundred runs.)
            // SAFETY: _exit has no precondition: it ends this process on the spot, running no
            // destructor and no atexit handler, whatever its other threads are doing.
            unsafe { libc::_exit(101) }
        }));
        Ok(universe)
    }

    /// End MPI in this rank, then say so on the rank's last line (see [`crate::FINISHED`]).
    pub fn finish(universe: Universe) {
        drop(universe); // MPI_Finalize: waits for every rank to get here
        let _ = std::panic::take_hook(); // a panic from here on is this process's alone
        println!("{}", crate::FINISHED);
    }
    // ANCHOR_END: rank
}
