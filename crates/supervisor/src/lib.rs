//! supervisor: run a program the way a reader would, under a timeout, and report everything
//! it left behind. forklore's tests use it to run every lesson and its Python twin; the
//! exercise runner can use it to run a learner's program.
//!
//! - The process that uses it becomes a *child subreaper*: any process a run leaves behind,
//!   alive or a zombie, is re-parented to it when the run's own process exits, and is seen.
//!   Every child it starts (a run, a `cargo build`) starts and ends under one lock, so what
//!   is its child after a run is that run's leftover, and only that is killed.
//! - Each run gets a `TMPDIR` and a `/dev/shm` of its own: fresh folders, the second mounted
//!   over `/dev/shm` in a private mount namespace, where the system permits one (root, or a
//!   user namespace). A file found in them afterwards is certainly the run's, and is deleted
//!   with them. Where no private namespace is permitted, what appears in the real `/dev/shm`
//!   meanwhile is reported, never deleted: it may be another program's. (`/tmp` itself is
//!   not covered over: the program, or the checkout it was built in, may live there.)
//! - The run is its own process group, so a Ctrl-C can be sent to all of it, as a terminal
//!   does, and a timeout kills all of it.
//! - [`REDACTIONS`] say what varies from run to run (pids, measured times, and what a lesson
//!   marks as varying), for comparing output with a snapshot.
//!
//! - A run can be given limits: how many processes and threads it may have at once (a pids
//!   cgroup of its own, [`Run::max_pids`]) and how many files each may open
//!   ([`Run::max_open_files`]), for testing what a program does when a fork, a thread or a
//!   pipe is refused.
//!
//! It never forks to run Rust code: it starts programs with `std::process::Command`, whose
//! only code between fork and exec is a few system calls (the mount namespace's, joining the
//! cgroup, setting the limit).

use std::collections::{BTreeSet, HashMap};
use std::ffi::CString;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use nix::mount::{MsFlags, mount};
use nix::sched::{CloneFlags, unshare};
use nix::sys::signal::{Signal, kill, killpg};
use nix::sys::wait::waitpid;
use nix::unistd::{Pid, getpid};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

pub mod stuck;

/// How long a run may take before it is killed: a debug build on a busy 2-core machine.
pub const TIMEOUT: Duration = Duration::from_secs(60);

/// How much a run may write, stdout and stderr together, before it is killed (see
/// [`Run::max_output`]).
pub const MAX_OUTPUT: usize = 16 << 20;

/// What varies from run to run, as regular expressions, and what a snapshot shows instead.
pub const REDACTIONS: [(&str, &str); 3] = [
    // A process id: `pid 4242`.
    (r"\bpid \d+", "pid [pid]"),
    // A measured duration, as plumbing::measure::duration prints it: `0.503 s`, `8.41 µs`.
    // Constants in lesson output have no decimal point ("500 ms"), so they stay.
    (r"\b\d+\.\d+ (ns|µs|ms|s)\b", "[time]"),
    // What a lesson marks as varying from run to run, when asked to (a race's outcome, an
    // interleaving): `{varies: 7 of 10}`. See plumbing::varies.
    (r"\{varies: [^}]*\}", "[varies]"),
];

/// Every child process this process starts starts and ends under this lock, so that
/// whatever is our child after a run is that run's leftover.
static ONE_CHILD_AT_A_TIME: Mutex<()> = Mutex::new(());

/// The binary `package` of the Cargo workspace at `manifest`, built once per process (dev
/// profile), under the same lock as runs: a build's processes are never taken for leftovers.
pub fn build(manifest: &Path, package: &str) -> PathBuf {
    build_bin(manifest, package, package)
}

/// [`build`], for the program `bin` of `package` (a package with several).
pub fn build_bin(manifest: &Path, package: &str, bin: &str) -> PathBuf {
    build_program(manifest, package, bin, false)
}

/// [`build_bin`], in the release profile if `release` (for timing it).
pub fn build_program(manifest: &Path, package: &str, bin: &str, release: bool) -> PathBuf {
    build_with_features(manifest, package, bin, release, "")
}

/// [`build_program`], with the package's `features` (comma-separated; none if empty).
pub fn build_with_features(
    manifest: &Path,
    package: &str,
    bin: &str,
    release: bool,
    features: &str,
) -> PathBuf {
    static BUILT: OnceLock<Mutex<HashMap<String, PathBuf>>> = OnceLock::new();
    let mut built = BUILT.get_or_init(Default::default).lock().unwrap_or_else(|e| e.into_inner());
    built
        .entry(format!("{package}/{bin}/{release}/{features}"))
        .or_insert_with(|| {
            let _turn = ONE_CHILD_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
            let mut build = escargot::CargoBuild::new().package(package).bin(bin).manifest_path(manifest);
            if release {
                build = build.release();
            }
            if !features.is_empty() {
                build = build.features(features);
            }
            let run = build.run().unwrap_or_else(|e| {
                panic!("cargo build -p {package} --bin {bin} --features '{features}' failed: {e}")
            });
            run.path().to_path_buf()
        })
        .clone()
}

/// Run `command` to its end and collect its output, under the same lock as runs, as
/// [`build`] does: a process started outside it (a `cargo build` in another thread) would be
/// taken for a run's leftover, and killed.
pub fn output_of(command: &mut Command) -> std::io::Result<std::process::Output> {
    let _turn = ONE_CHILD_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    command.output()
}

/// How a supervised run ends.
#[derive(Clone, Copy, Debug)]
pub enum Ending {
    /// Let it run to the end.
    Natural,
    /// As soon as a line of its stdout starts with this text, do what a terminal does on
    /// Ctrl-C: SIGINT to the whole process group. (If no such line comes, the run ends by
    /// itself, and [`Outcome::interrupted`] says it was not interrupted.)
    CtrlCAtLine(&'static str),
    /// At `moment`, the same Ctrl-C: mid-run, with children to clean up.
    CtrlCWhen(Moment),
    /// At `moment`, SIGKILL to the run's process alone: what it started must die with it.
    KillParentWhen(Moment),
    /// SIGKILL to one descendant of the run: the first named `name`, or `name` and a number
    /// (`worker` matches `worker 1`), at `stage`.
    Kill(&'static str, Stage),
}

/// A moment in a run, for [`Ending::CtrlCWhen`] and [`Ending::KillParentWhen`].
#[derive(Clone, Copy, Debug)]
pub enum Moment {
    /// The run's process has a child of its own (it has forked and not yet reaped).
    Forked,
    /// A descendant of the run is named this (the name the kernel keeps: `python3`, `worker
    /// 1`), e.g. in the Python phase of `--measure`.
    Named(&'static str),
    /// A descendant so named has a child of its own.
    NamedWithChild(&'static str),
}

/// When [`Ending::Kill`] kills.
#[derive(Clone, Copy, Debug)]
pub enum Stage {
    /// As soon as it is seen.
    Early,
    /// Once it is seen asleep in the kernel (state S: blocked in a read, a write, a wait, a
    /// lock), after it has lived a few milliseconds.
    Blocked,
}

/// The descendant an [`Ending::Kill`] killed.
#[derive(Clone, Debug)]
pub struct Killed {
    pub pid: i32,
    pub name: String,
    /// When the signal was sent.
    pub at: Instant,
}

/// One supervised run: what to start, and how.
pub struct Run<'a> {
    program: &'a Path,
    args: Vec<&'a str>,
    env: Vec<(&'a str, &'a str)>,
    ending: Ending,
    scratch: &'a Path,
    private_mounts: bool,
    stderr_mark: Option<&'a str>,
    grace: Duration,
    max_pids: Option<u32>,
    max_open_files: Option<u64>,
    timeout: Duration,
    stuck_after: Option<Duration>,
    max_output: usize,
    max_user_processes: Option<u64>,
}

/// A run that did not end by itself: every process asleep waiting for the others (stuck), or
/// still going at the timeout. Seen before anything was killed.
#[derive(Debug, Clone)]
pub struct Hang {
    /// How long it had been stuck (every process asleep, no CPU used), or had run.
    pub after: Duration,
    /// Stuck (all asleep, waiting for each other), rather than timed out.
    pub stuck: bool,
    /// Each process, where it slept and the pipe and socket ends it held; then each pipe and
    /// who held its ends (see [`stuck::report`]).
    pub report: String,
    /// The processes as seen.
    pub processes: Vec<stuck::Sleeper>,
}

/// What a run gave.
#[derive(Debug)]
pub struct Outcome {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
    /// Everything the run left behind: processes, files. Empty when it cleaned up.
    pub leftovers: Vec<String>,
    /// Whether the Ctrl-C of an ending was sent (the moment came, and the run had not ended
    /// yet), or, for [`Ending::KillParentWhen`], the SIGKILL.
    pub interrupted: bool,
    /// What an [`Ending::Kill`] killed, if the moment came.
    pub killed: Option<Killed>,
    /// If the run hung (see [`Run::stuck_after`]) or timed out: what it waited for.
    pub hang: Option<Hang>,
    /// When the run's process was reaped.
    pub ended: Instant,
    /// How long the run's process took, from its start until it was reaped.
    pub elapsed: Duration,
    /// When the first line of stderr starting with the run's [`Run::mark_stderr`] came.
    pub marked: Option<Instant>,
    /// Minor page faults of the run's processes, all of them (each process's faults count
    /// once it has been reaped, by its parent or, for one the run left, by us): the pages
    /// they touched for the first time, or copied on a write after a fork.
    pub minor_faults: u64,
}

impl Outcome {
    /// The status, leftovers and output, for a failure message.
    pub fn describe(&self) -> String {
        format!(
            "status {:?}, interrupted {}, killed {:?}, leftovers {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.status, self.interrupted, self.killed, self.leftovers, self.stdout, self.stderr
        )
    }

    /// Whether the run was ended by the Ctrl-C it was sent (SIGINT), not by finishing.
    pub fn ended_by_ctrl_c(&self) -> bool {
        self.interrupted && self.status.signal() == Some(Signal::SIGINT as i32)
    }

    /// How long the run lasted after an [`Ending::Kill`] killed one of its processes, or
    /// else after the marked line of stderr came.
    pub fn after_kill(&self) -> Option<Duration> {
        let at = self.killed.as_ref().map(|k| k.at).or(self.marked)?;
        Some(self.ended.saturating_duration_since(at))
    }
}

impl<'a> Run<'a> {
    /// Run `program`; `scratch` is a folder of the caller's where each run gets its own
    /// `tmp` and `shm` folders (deleted after the run).
    pub fn new(program: &'a Path, scratch: &'a Path) -> Run<'a> {
        Run {
            program,
            args: Vec::new(),
            env: Vec::new(),
            ending: Ending::Natural,
            scratch,
            private_mounts: true,
            stderr_mark: None,
            grace: Duration::from_secs(3),
            max_pids: None,
            max_open_files: None,
            timeout: TIMEOUT,
            stuck_after: None,
            max_output: MAX_OUTPUT,
            max_user_processes: None,
        }
    }

    /// How long, after the run's process ends, the processes it started may take to end
    /// too before they count as left behind (3 s unless set: helpers such as Python's
    /// resource tracker exit when their pipes close).
    pub fn grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }

    /// Note when a line of stderr starting with `prefix` comes (see [`Outcome::marked`]).
    pub fn mark_stderr(mut self, prefix: &'a str) -> Self {
        self.stderr_mark = Some(prefix);
        self
    }

    pub fn args(mut self, args: &[&'a str]) -> Self {
        self.args.extend_from_slice(args);
        self
    }

    pub fn env(mut self, name: &'a str, value: &'a str) -> Self {
        self.env.push((name, value));
        self
    }

    pub fn ending(mut self, ending: Ending) -> Self {
        self.ending = ending;
        self
    }

    /// At most `n` processes and threads in the run at once, its own process included: a
    /// pids cgroup of its own (see [`PidsCgroup::available`]; panics where there is none).
    pub fn max_pids(mut self, n: u32) -> Self {
        self.max_pids = Some(n);
        self
    }

    /// Kill the run if it has not ended after `timeout` ([`TIMEOUT`] unless set), and say so
    /// in [`Outcome::hang`], with what its processes were waiting for.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Kill the run once it has written more than `bytes` to stdout and stderr together
    /// ([`MAX_OUTPUT`] unless set), and say so in [`Outcome::leftovers`].
    pub fn max_output(mut self, bytes: usize) -> Self {
        self.max_output = bytes;
        self
    }

    /// Kill the run once every process of it has slept for `quiet` waiting for something (not
    /// a timed sleep) without using any CPU: it waits for itself, and nothing will wake it.
    /// [`Outcome::hang`] then says who waited where, and who held which pipe ends.
    pub fn stuck_after(mut self, quiet: Duration) -> Self {
        self.stuck_after = Some(quiet);
        self
    }

    /// At most about `n` processes in the run, so that a fork bomb is stopped: a pids cgroup
    /// where one can be made ([`Run::max_pids`]), else RLIMIT_NPROC set to the processes this
    /// user already runs plus `n` (which the kernel does not apply to root).
    pub fn contain_processes(mut self, n: u32) -> Self {
        if PidsCgroup::available().is_ok() {
            self.max_pids = Some(n);
        } else {
            use std::os::unix::fs::MetadataExt;
            // SAFETY: getuid only returns this process's real user id; it cannot fail.
            let uid = unsafe { libc::getuid() };
            let mine = std::fs::read_dir("/proc")
                .into_iter()
                .flatten()
                .filter_map(|e| e.ok())
                .filter(|e| e.file_name().to_string_lossy().parse::<u32>().is_ok())
                .filter(|e| e.metadata().is_ok_and(|m| m.uid() == uid))
                .count() as u64;
            self.max_user_processes = Some(mine + u64::from(n));
        }
        self
    }

    /// At most `n` open files in each process of the run (`ulimit -n`: RLIMIT_NOFILE).
    pub fn max_open_files(mut self, n: u64) -> Self {
        self.max_open_files = Some(n);
        self
    }

    /// Whether to try a private `/dev/shm` (the default). Without them, the run
    /// is checked as on a system that permits no mount namespace: for testing that path.
    pub fn private_mounts(mut self, try_them: bool) -> Self {
        self.private_mounts = try_them;
        self
    }

    /// Start the run, wait for it to end (or kill it at [`TIMEOUT`]), and look at what it
    /// left behind.
    pub fn go(self) -> Outcome {
        // One run at a time: leftovers are attributed to the run that just ended.
        let _turn = ONE_CHILD_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
        static SUBREAPER: OnceLock<()> = OnceLock::new();
        SUBREAPER
            .get_or_init(|| nix::sys::prctl::set_child_subreaper(true).expect("become a child subreaper"));

        let dirs = RunDirs::new(self.scratch);
        let shm_before = shm_entries(Path::new("/dev/shm"));
        let cgroup = self.max_pids.map(|n| PidsCgroup::new(n).unwrap_or_else(|why| panic!("{why}")));
        let (mut child, isolated) = self.spawn(&dirs, cgroup.as_ref());
        let group = Pid::from_raw(child.id() as i32);
        let ctrl_c = Arc::new(CtrlC { group, state: Mutex::new(RunState::default()) });
        let marker = match self.ending {
            Ending::CtrlCAtLine(prefix) => Some((prefix, Arc::clone(&ctrl_c))),
            _ => None,
        };
        let budget = Arc::new(OutputBudget {
            left: std::sync::atomic::AtomicUsize::new(self.max_output),
            group,
            flooded: AtomicBool::new(false),
        });
        let stdout = drain(child.stdout.take().expect("stdout is piped"), Arc::clone(&budget), move |line| {
            if let Some((prefix, ctrl_c)) = &marker
                && line.starts_with(prefix)
            {
                ctrl_c.interrupt();
            }
        });
        let (stderr_mark, marked) = (self.stderr_mark.map(str::to_string), Arc::new(Mutex::new(None)));
        let seen = Arc::clone(&marked);
        let stderr = drain(child.stderr.take().expect("stderr is piped"), Arc::clone(&budget), move |line| {
            let mut seen = seen.lock().unwrap_or_else(|e| e.into_inner());
            if seen.is_none() && stderr_mark.as_deref().is_some_and(|m| line.starts_with(m)) {
                *seen = Some(Instant::now());
            }
        });
        let ending = self.ending;
        let watcher = (!matches!(ending, Ending::Natural | Ending::CtrlCAtLine(_))).then(|| {
            let ctrl_c = Arc::clone(&ctrl_c);
            thread::spawn(move || ctrl_c.watch(ending))
        });

        let mut leftovers = Vec::new();
        let started = Instant::now();
        let faults_before = children_minor_faults();
        let (mut hang, mut quiet_since, mut looked) = (None, None::<(Instant, u64)>, started);
        let status = loop {
            if let Some(status) = ctrl_c.try_reap(&mut child) {
                break status;
            }
            if hang.is_none() && started.elapsed() > self.timeout {
                let processes = stuck::snapshot(group);
                let report = stuck::report(&processes);
                hang = Some(Hang { after: started.elapsed(), stuck: false, report, processes });
                leftovers.push(format!("timed out after {:?}: killed", self.timeout));
                let _ = killpg(group, Signal::SIGKILL);
            }
            if let Some(quiet) = self.stuck_after
                && hang.is_none()
                && looked.elapsed() >= Duration::from_millis(50)
            {
                looked = Instant::now();
                let processes = stuck::snapshot(group);
                match (stuck::all_waiting(&processes), quiet_since) {
                    (Some(cpu), Some((since, then))) if cpu == then => {
                        if since.elapsed() >= quiet {
                            let report = stuck::report(&processes);
                            hang = Some(Hang { after: since.elapsed(), stuck: true, report, processes });
                            let _ = killpg(group, Signal::SIGKILL);
                        }
                    }
                    (Some(cpu), _) => quiet_since = Some((Instant::now(), cpu)),
                    (None, _) => quiet_since = None,
                }
            }
            thread::sleep(Duration::from_millis(2));
        };
        if let Some(watcher) = watcher {
            watcher.join().expect("the fork watcher");
        }
        let ended = Instant::now();
        let (interrupted, killed) = {
            let state = ctrl_c.state.lock().unwrap_or_else(|e| e.into_inner());
            (state.interrupted, state.killed.clone())
        };
        // Children die with their parent (PDEATHSIG, or the Ctrl-C that reached the whole
        // group) a moment later, and helpers exit when their pipes close: give them that moment.
        leftovers.extend(leftover_processes(self.grace, interrupted));
        // Only now: a leftover process may hold the output pipes open, and it has been killed.
        let stdout = stdout.join().expect("the stdout reader");
        let stderr = stderr.join().expect("the stderr reader");
        let marked = *marked.lock().unwrap_or_else(|e| e.into_inner());
        if budget.flooded.load(Ordering::Relaxed) {
            leftovers.push(format!("flooded its output: more than {} bytes, killed", self.max_output));
        }
        leftovers.extend(dirs.leftover_files(isolated));
        if !isolated {
            for entry in shm_entries(Path::new("/dev/shm")).difference(&shm_before) {
                leftovers.push(format!(
                    "/dev/shm/{entry} appeared during the run (no private mount namespace here, so \
                     it may be another program's: not deleted)"
                ));
            }
        }
        dirs.remove();
        if let Some(cgroup) = cgroup {
            leftovers.extend(cgroup.remove());
        }
        // Every process of the run is reaped by now, ours or its parent's, each adding its
        // own and its reaped children's faults to its parent's count: ours holds them all.
        let minor_faults = children_minor_faults().saturating_sub(faults_before);
        let elapsed = ended.saturating_duration_since(started);
        Outcome {
            status,
            stdout,
            stderr,
            leftovers,
            interrupted,
            killed,
            hang,
            ended,
            elapsed,
            marked,
            minor_faults,
        }
    }

    /// Start the run in a private mount namespace if this system permits one; else plainly.
    fn spawn(&self, dirs: &RunDirs, cgroup: Option<&PidsCgroup>) -> (std::process::Child, bool) {
        static ISOLATION: OnceLock<bool> = OnceLock::new();
        if self.private_mounts && *ISOLATION.get().unwrap_or(&true) {
            match self.command(dirs, true, cgroup).spawn() {
                Ok(child) => {
                    ISOLATION.get_or_init(|| true);
                    return (child, true);
                }
                Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                    eprintln!(
                        "supervisor: no private mount namespace here ({e}): each run's TMPDIR is \
                         its own, and what appears in /dev/shm is reported, not deleted"
                    );
                    ISOLATION.get_or_init(|| false);
                }
                Err(e) => panic!("cannot start {}: {e}", self.program.display()),
            }
        }
        let child = self
            .command(dirs, false, cgroup)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", self.program.display()));
        (child, false)
    }

    fn command(&self, dirs: &RunDirs, isolated: bool, cgroup: Option<&PidsCgroup>) -> Command {
        let mut command = Command::new(self.program);
        let procs = cgroup.map(|c| c.procs.clone());
        let (max_open_files, max_user_processes) = (self.max_open_files, self.max_user_processes);
        if procs.is_some() || max_open_files.is_some() || max_user_processes.is_some() {
            // SAFETY: between fork and exec only async-signal-safe work may be done: open,
            // write and close of a path made before the fork, getpid, setrlimit; the pid is
            // written out digit by digit into a buffer on the stack, allocating nothing.
            unsafe {
                command.pre_exec(move || {
                    if let Some(procs) = &procs {
                        join_cgroup(procs)?;
                    }
                    if let Some(n) = max_open_files {
                        nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE, n, n)?;
                    }
                    if let Some(n) = max_user_processes {
                        nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_NPROC, n, n)?;
                    }
                    Ok(())
                });
            }
        }
        command
            .args(&self.args)
            .env("TMPDIR", &dirs.tmp)
            .envs(self.env.iter().copied())
            .env_remove("CARGO_TERM_COLOR")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        if isolated {
            let binds = dirs.binds();
            // SAFETY: between fork and exec only async-signal-safe work may be done: the
            // closure makes three kinds of system call (unshare, mount) on strings made
            // before the fork, and allocates nothing.
            unsafe {
                command.pre_exec(move || {
                    unshare(CloneFlags::CLONE_NEWNS)?;
                    // Our binds must not reach the namespace we came from.
                    mount(
                        None::<&std::ffi::CStr>,
                        c"/",
                        None::<&std::ffi::CStr>,
                        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
                        None::<&std::ffi::CStr>,
                    )?;
                    for (from, onto) in &binds {
                        mount(
                            Some(from.as_c_str()),
                            onto.as_c_str(),
                            None::<&std::ffi::CStr>,
                            MsFlags::MS_BIND,
                            None::<&std::ffi::CStr>,
                        )?;
                    }
                    Ok(())
                });
            }
        }
        command
    }
}

/// A run's own folders, under the caller's scratch folder.
struct RunDirs {
    root: PathBuf,
    tmp: PathBuf,
    shm: PathBuf,
}

impl RunDirs {
    fn new(scratch: &Path) -> RunDirs {
        static COUNT: AtomicU32 = AtomicU32::new(0);
        let n = COUNT.fetch_add(1, Ordering::Relaxed);
        let root = scratch.join(format!("run-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root); // a folder of ours, from an earlier process
        let (tmp, shm) = (root.join("tmp"), root.join("shm"));
        for dir in [&tmp, &shm] {
            std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
        }
        RunDirs { root, tmp, shm }
    }

    /// What to mount over what in the run's namespace, as C strings made before the fork.
    fn binds(&self) -> Vec<(CString, CString)> {
        let c = |p: &Path| CString::new(p.as_os_str().as_bytes()).expect("a path without NUL");
        let mut binds = Vec::new();
        if Path::new("/dev/shm").is_dir() {
            binds.push((c(&self.shm), c(Path::new("/dev/shm"))));
        }
        binds
    }

    /// Files left in the run's own folders: certainly the run's.
    fn leftover_files(&self, isolated: bool) -> Vec<String> {
        let mut found: Vec<String> = Vec::new();
        let mut look = |dir: &Path, shown_as: &str| {
            for entry in std::fs::read_dir(dir).into_iter().flatten().filter_map(|e| e.ok()) {
                found.push(format!("left {shown_as}/{}", entry.file_name().to_string_lossy()));
            }
        };
        look(&self.tmp, "$TMPDIR");
        if isolated {
            look(&self.shm, "/dev/shm");
        }
        found
    }

    fn remove(self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// Sends a run its Ctrl-C at the right moment, from whichever thread sees the moment come,
/// and never after the run's process has been reaped (its group id could then be another's).
struct CtrlC {
    group: Pid,
    state: Mutex<RunState>,
}

#[derive(Default)]
struct RunState {
    reaped: bool,
    interrupted: bool,
    killed: Option<Killed>,
}

impl CtrlC {
    /// SIGINT to the whole group, as a terminal does, once; not if the run is over.
    fn interrupt(&self) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if !state.reaped && !state.interrupted {
            let _ = killpg(self.group, Signal::SIGINT);
            state.interrupted = true;
        }
    }

    /// Reap the run's process if it has ended, under the same lock as `interrupt`.
    fn try_reap(&self, child: &mut std::process::Child) -> Option<ExitStatus> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let status = child.try_wait().expect("wait for the run")?;
        state.reaped = true;
        Some(status)
    }

    /// Watch the run's processes for the moment `ending` waits for, looking as often as the
    /// machine lets a thread look, and act then (once).
    fn watch(&self, ending: Ending) {
        let mut seen: HashMap<i32, Instant> = HashMap::new();
        loop {
            let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
            if state.reaped {
                return;
            }
            let came = |moment: Moment| match moment {
                Moment::Forked => has_children(self.group),
                Moment::Named(name) => descendants(self.group).iter().any(|d| d.comm == name),
                Moment::NamedWithChild(name) => descendants(self.group)
                    .iter()
                    .any(|d| d.comm == name && has_children(Pid::from_raw(d.pid))),
            };
            match ending {
                Ending::CtrlCWhen(moment) if came(moment) => {
                    drop(state);
                    return self.interrupt();
                }
                Ending::KillParentWhen(moment) if came(moment) => {
                    // Not reaped (checked under the lock): the pid is still the run's.
                    let _ = kill(self.group, Signal::SIGKILL);
                    state.interrupted = true;
                    return;
                }
                Ending::Kill(name, stage) => {
                    for d in descendants(self.group) {
                        if !(d.comm == name || d.comm.strip_prefix(name).is_some_and(|n| n.starts_with(' ')))
                        {
                            continue;
                        }
                        let first = *seen.entry(d.pid).or_insert_with(Instant::now);
                        let now = match stage {
                            Stage::Early => d.state != 'Z',
                            Stage::Blocked => d.state == 'S' && first.elapsed() >= Duration::from_millis(1),
                        };
                        if now && kill_exactly(&d) {
                            state.killed = Some(Killed { pid: d.pid, name: d.comm, at: Instant::now() });
                            return;
                        }
                    }
                }
                _ => {}
            }
            drop(state);
            thread::yield_now();
        }
    }
}

/// A pids cgroup of a run's own: at most `pids.max` processes and threads in it at once.
/// Made fresh for each run, under this process's pid, and removed after it (only it).
pub struct PidsCgroup {
    dir: PathBuf,
    /// `cgroup.procs` in it, as a C string made before any fork.
    procs: CString,
}

impl PidsCgroup {
    /// Where pids cgroups can be made here (cgroup v1's pids hierarchy, or v2's unified one
    /// with the pids controller), or why not: one line, saying what it needs.
    /// Probed once per process: runs are set up from several test threads at once, and two
    /// probes at one moment would otherwise take the same name.
    pub fn available() -> Result<PathBuf, String> {
        static FOUND: OnceLock<Result<PathBuf, String>> = OnceLock::new();
        FOUND.get_or_init(PidsCgroup::probe).clone()
    }

    fn probe() -> Result<PathBuf, String> {
        let v1 = Path::new("/sys/fs/cgroup/pids");
        let v2 = Path::new("/sys/fs/cgroup");
        let root = if v1.join("cgroup.procs").exists() {
            v1
        } else if std::fs::read_to_string(v2.join("cgroup.controllers")).is_ok_and(|c| c.contains("pids")) {
            // The controller must be on for the groups made under the root.
            let control = v2.join("cgroup.subtree_control");
            if !std::fs::read_to_string(&control).is_ok_and(|c| c.contains("pids")) {
                let _ = std::fs::write(&control, "+pids");
            }
            v2
        } else {
            return Err("no pids cgroup controller here (/sys/fs/cgroup/pids or cgroup v2 with pids)".into());
        };
        let probe = root.join(format!("forklore-probe-{}", std::process::id()));
        match std::fs::create_dir(&probe) {
            Ok(()) => {
                let has_max = probe.join("pids.max").exists();
                let _ = std::fs::remove_dir(&probe);
                if has_max {
                    Ok(root.to_path_buf())
                } else {
                    Err(format!("{} has no pids.max in its groups", root.display()))
                }
            }
            Err(e) => Err(format!("cannot make a cgroup in {} ({e}): run as root", root.display())),
        }
    }

    fn new(max: u32) -> Result<PidsCgroup, String> {
        static COUNT: AtomicU32 = AtomicU32::new(0);
        let root = PidsCgroup::available()?;
        let n = COUNT.fetch_add(1, Ordering::Relaxed);
        let dir = root.join(format!("forklore-run-{}-{n}", std::process::id()));
        let made =
            std::fs::create_dir(&dir).and_then(|()| std::fs::write(dir.join("pids.max"), max.to_string()));
        made.map_err(|e| format!("make the run's pids cgroup {}: {e}", dir.display()))?;
        let procs =
            CString::new(dir.join("cgroup.procs").as_os_str().as_bytes()).expect("a path without NUL");
        Ok(PidsCgroup { dir, procs })
    }

    /// Remove the group (the run's processes are gone by now): what is left, if it cannot be.
    fn remove(self) -> Option<String> {
        for _ in 0..100 {
            if std::fs::remove_dir(&self.dir).is_ok() {
                return None;
            }
            thread::sleep(Duration::from_millis(10)); // the last ones are still being reaped
        }
        Some(format!("the run's cgroup {} still has processes", self.dir.display()))
    }
}

/// Put the calling process into the cgroup whose `cgroup.procs` is `procs`: for the code
/// between fork and exec, so async-signal-safe only (no allocation, no formatting).
fn join_cgroup(procs: &CString) -> std::io::Result<()> {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    let mut pid = getpid().as_raw() as u32;
    loop {
        at -= 1;
        digits[at] = b'0' + (pid % 10) as u8;
        pid /= 10;
        if pid == 0 {
            break;
        }
    }
    // SAFETY: open, write and close are async-signal-safe; `procs` is a valid C string, and
    // `digits[at..]` lies within the buffer.
    unsafe {
        let fd = libc::open(procs.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let wrote = libc::write(fd, digits[at..].as_ptr().cast(), digits.len() - at);
        let error = std::io::Error::last_os_error();
        libc::close(fd);
        if wrote < 0 {
            return Err(error);
        }
    }
    Ok(())
}

/// The minor page faults of every child this process has reaped so far, and of theirs.
fn children_minor_faults() -> u64 {
    nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_CHILDREN)
        .map_or(0, |usage| usage.minor_page_faults().max(0) as u64)
}

/// A process under the run's own, from /proc.
struct Descendant {
    pid: i32,
    comm: String,
    state: char,
    /// Its start time (clock ticks after boot): with the pid, it names the process.
    started: u64,
    /// Already on its way out (exiting by itself): a SIGKILL now would change nothing.
    exiting: bool,
}

/// The kernel's flag for a process that has begun to exit (include/linux/sched.h).
const PF_EXITING: u64 = 0x4;

/// Every process descended from `root` now: children, their children, and so on (of every
/// thread: a Python pool's handler thread starts workers).
fn descendants(root: Pid) -> Vec<Descendant> {
    let mut found = Vec::new();
    let mut todo = vec![root.as_raw()];
    while let Some(pid) = todo.pop() {
        let tasks =
            std::fs::read_dir(format!("/proc/{pid}/task")).into_iter().flatten().filter_map(|e| e.ok());
        for task in tasks {
            let Ok(children) = std::fs::read_to_string(task.path().join("children")) else { continue };
            for child in children.split_whitespace().filter_map(|c| c.parse::<i32>().ok()) {
                if let Some(d) = describe(child) {
                    found.push(d);
                }
                todo.push(child);
            }
        }
    }
    found
}

fn describe(pid: i32) -> Option<Descendant> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (open, close) = (stat.find('(')?, stat.rfind(')')?);
    let comm = stat[open + 1..close].to_string();
    let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
    let state = fields.first()?.chars().next()?;
    let started = fields.get(19)?.parse().ok()?; // field 22 of the whole line
    let flags: u64 = fields.get(6)?.parse().ok()?; // field 9: the kernel's PF_* flags
    Some(Descendant { pid, comm, state, started, exiting: flags & PF_EXITING != 0 })
}

/// SIGKILL to `d` and to no other process: through a pidfd, opened and then checked to
/// refer to the process seen (same pid, same start time), so a pid given meanwhile to
/// another process is never signalled.
fn kill_exactly(d: &Descendant) -> bool {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, d.pid, 0) };
    if fd < 0 {
        return false;
    }
    // SAFETY: the kernel just returned this descriptor, and nothing else owns it.
    let pidfd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    // Still the process seen, and not exiting by itself already (a kill that comes too late
    // to change how it ends is no kill).
    if describe(d.pid).is_none_or(|now| now.started != d.started || now.exiting) {
        return false;
    }
    let null = std::ptr::null::<libc::siginfo_t>();
    // SAFETY: pidfd_send_signal takes a pidfd we own, a signal, no siginfo (null is allowed)
    // and flags 0; it only sends the signal.
    let sent =
        unsafe { libc::syscall(libc::SYS_pidfd_send_signal, pidfd.as_raw_fd(), libc::SIGKILL, null, 0) };
    sent == 0 && died_of_sigkill(d)
}

/// Whether the SIGKILL took: the process ended by it, not by exiting just before it came
/// (its exit status, kept in /proc while it is a zombie). Gone already (reaped): taken.
fn died_of_sigkill(d: &Descendant) -> bool {
    let deadline = Instant::now() + Duration::from_secs(1);
    while Instant::now() < deadline {
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{}/stat", d.pid)) else { return true };
        let Some((_, rest)) = stat.rsplit_once(')') else { return true };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        if fields.get(19).and_then(|s| s.parse::<u64>().ok()) != Some(d.started) {
            return true; // reaped, and its pid given to another process
        }
        if fields.first() == Some(&"Z") {
            // Field 52 of the whole line: the status waitpid would report.
            let status: i32 = fields.get(49).and_then(|s| s.parse().ok()).unwrap_or(0);
            return status & 0x7f == libc::SIGKILL;
        }
        thread::yield_now();
    }
    true
}

/// How much output a run may write, stdout and stderr together, before it is stopped.
struct OutputBudget {
    left: std::sync::atomic::AtomicUsize,
    /// The run's process group, killed when the budget runs out.
    group: Pid,
    flooded: AtomicBool,
}

impl OutputBudget {
    /// Take `n` bytes from the budget; false (and the run killed) once it is spent.
    fn take(&self, n: usize) -> bool {
        let before = self.left.fetch_sub(n.min(self.left.load(Ordering::Relaxed)), Ordering::Relaxed);
        if before < n {
            if !self.flooded.swap(true, Ordering::Relaxed) {
                let _ = killpg(self.group, Signal::SIGKILL);
            }
            return false;
        }
        true
    }
}

/// Read a pipe to its end, a chunk at a time, calling `on_line` with each line as it comes
/// (for markers), and keeping what fits in `budget`. Never a line longer than a chunk in
/// memory beyond the budget: a program that floods its output is stopped, not buffered.
fn drain(
    pipe: impl Read + Send + 'static,
    budget: Arc<OutputBudget>,
    mut on_line: impl FnMut(&str) + Send + 'static,
) -> thread::JoinHandle<String> {
    thread::spawn(move || {
        let (mut text, mut pipe, mut chunk) = (Vec::new(), pipe, vec![0u8; 64 * 1024]);
        let mut line_start = 0;
        loop {
            let n = match pipe.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            };
            if !budget.take(n) {
                continue; // keep reading to the end (the run is being killed), keep nothing more
            }
            text.extend_from_slice(&chunk[..n]);
            while let Some(at) = text[line_start..].iter().position(|&b| b == b'\n') {
                on_line(&String::from_utf8_lossy(&text[line_start..line_start + at + 1]));
                line_start += at + 1;
            }
        }
        if line_start < text.len() {
            on_line(&String::from_utf8_lossy(&text[line_start..]));
        }
        String::from_utf8_lossy(&text).into_owned()
    })
}

/// Whether `pid` (its main thread) has children now.
fn has_children(pid: Pid) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).is_ok_and(|c| !c.trim().is_empty())
}

fn shm_entries(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect()
        })
        .unwrap_or_default()
}

/// One of our children, from /proc. After a run's process exits, every child of ours is
/// something the run left behind (re-parented to us, the subreaper).
struct Orphan {
    pid: Pid,
    state: char,
    /// The program's name, as the kernel keeps it (15 bytes at most): kept for zombies too.
    comm: String,
}

fn our_children() -> Vec<Orphan> {
    let me = getpid().as_raw();
    let mut children = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else { return children };
    for entry in entries.filter_map(|e| e.ok()) {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else { continue };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else { continue };
        // pid (comm) state ppid ...: comm may hold spaces and parentheses; split at the last ')'.
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else { continue };
        let comm = stat[open + 1..close].to_string();
        let mut fields = stat[close + 1..].split_whitespace();
        let state = fields.next().and_then(|s| s.chars().next()).unwrap_or('?');
        let ppid: i32 = fields.next().and_then(|s| s.parse().ok()).unwrap_or(0);
        if ppid == me {
            children.push(Orphan { pid: Pid::from_raw(pid), state, comm });
        }
    }
    children
}

/// What the run left: a process still running after `grace` is an orphan. A zombie is a
/// child the run never waited for (unless the run was interrupted: then parent and children
/// die together), except a Python helper that exited by itself just after its parent, like
/// the resource tracker: not a leak.
/// Every one of them is the run's (our child, under the one-run lock): killed and reaped.
fn leftover_processes(grace: Duration, interrupted: bool) -> Vec<String> {
    let deadline = Instant::now() + grace;
    loop {
        let children = our_children();
        let running = children.iter().any(|c| c.state != 'Z');
        if !running || Instant::now() >= deadline {
            let mut found = Vec::new();
            for child in &children {
                if child.state != 'Z' {
                    found.push(format!("left a process running: pid {} ({})", child.pid, child.comm));
                } else if !interrupted && !child.comm.starts_with("python") {
                    found.push(format!(
                        "left a zombie (never waited for): pid {} ({})",
                        child.pid, child.comm
                    ));
                }
                let _ = kill(child.pid, Signal::SIGKILL);
                let _ = waitpid(child.pid, None);
            }
            return found;
        }
        thread::sleep(Duration::from_millis(20));
    }
}
