//! Running a lesson binary the way a reader would, and checking that it cleaned up.
//!
//! Lessons fork; tests never do (DESIGN.md): they run the built binaries. This test
//! process makes itself a *child subreaper*, so any process a lesson leaves behind, alive
//! or a zombie, is re-parented to us when the lesson exits, and we can see it.

#![allow(dead_code)] // each test binary uses a different part of this module

use std::collections::{BTreeSet, HashMap};
use std::io::Read;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::{Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, killpg};
use nix::sys::wait::waitpid;
use nix::unistd::{Pid, getpid};

/// How long a lesson may run in a debug build on a busy 2-core machine.
pub const TIMEOUT: Duration = Duration::from_secs(60);

/// Every child process this test process starts (a lesson run, a `cargo build`) starts and
/// ends under this lock, so that whatever is our child after a run is that run's leftover.
static ONE_CHILD_AT_A_TIME: Mutex<()> = Mutex::new(());

/// The built binary of `lesson-<name>`, built once per test process (dev profile).
pub fn binary(lesson: &str) -> PathBuf {
    static BUILT: OnceLock<Mutex<HashMap<String, PathBuf>>> = OnceLock::new();
    let mut built = BUILT.get_or_init(Default::default).lock().unwrap_or_else(|e| e.into_inner());
    built
        .entry(lesson.to_string())
        .or_insert_with(|| {
            let package = format!("lesson-{lesson}");
            let _turn = ONE_CHILD_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
            let run = escargot::CargoBuild::new()
                .package(&package)
                .bin(&package)
                .manifest_path(forklore::root().join("Cargo.toml"))
                .run()
                .unwrap_or_else(|e| panic!("cargo build -p {package} failed: {e}"));
            run.path().to_path_buf()
        })
        .clone()
}

/// What one supervised run gave.
pub struct Run {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
    /// Everything the run left behind: processes, files. Empty when it cleaned up.
    pub leftovers: Vec<String>,
}

impl Run {
    /// `lesson-x: exit status 0, 0 leftovers` for failure messages, with stderr.
    pub fn describe(&self) -> String {
        format!(
            "status {:?}, leftovers {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.status, self.leftovers, self.stdout, self.stderr
        )
    }
}

/// How a supervised run ends.
pub enum Ending {
    /// Let it run to the end.
    Natural,
    /// After this long, do what a terminal does on Ctrl-C: SIGINT to the whole process group.
    CtrlCAfter(Duration),
}

/// Run `binary args` with a fresh, empty TMPDIR, under a timeout, in its own process group;
/// then list what it left behind: child processes (re-parented to us), files in its
/// TMPDIR, new entries in /dev/shm.
pub fn run(binary: &Path, args: &[&str], ending: Ending) -> Run {
    run_with_env(binary, args, &[], ending)
}

/// [`run`], with these environment variables set.
pub fn run_with_env(binary: &Path, args: &[&str], env: &[(&str, &str)], ending: Ending) -> Run {
    // One run at a time: leftovers are attributed to the run that just ended.
    let _turn = ONE_CHILD_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    static SUBREAPER: OnceLock<()> = OnceLock::new();
    SUBREAPER.get_or_init(|| nix::sys::prctl::set_child_subreaper(true).expect("become a child subreaper"));

    let tmp = fresh_tmpdir();
    let shm_before = shm_entries();
    let mut child = Command::new(binary)
        .args(args)
        .env("TMPDIR", &tmp)
        .envs(env.iter().copied())
        .env_remove("CARGO_TERM_COLOR")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
    let group = Pid::from_raw(child.id() as i32);
    let stdout = drain(child.stdout.take().unwrap());
    let stderr = drain(child.stderr.take().unwrap());

    let mut leftovers = Vec::new();
    let started = Instant::now();
    let mut interrupted = false;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the lesson") {
            break status;
        }
        if let Ending::CtrlCAfter(after) = ending
            && !interrupted
            && started.elapsed() >= after
        {
            let _ = killpg(group, Signal::SIGINT);
            interrupted = true;
        }
        if started.elapsed() > TIMEOUT {
            leftovers.push(format!("timed out after {TIMEOUT:?}: killed"));
            let _ = killpg(group, Signal::SIGKILL);
        }
        thread::sleep(Duration::from_millis(5));
    };
    // Children die with their parent (PDEATHSIG, or the Ctrl-C that reached the whole
    // group) a moment later, and helpers exit when their pipes close: give them that moment.
    leftovers.extend(leftover_processes(Duration::from_secs(3), interrupted));
    // Only now: a leftover process may hold the output pipes open, and it has been killed.
    let stdout = stdout.join().unwrap();
    let stderr = stderr.join().unwrap();
    leftovers.extend(leftover_files(&tmp));
    for entry in shm_entries().difference(&shm_before) {
        leftovers.push(format!("left /dev/shm/{entry}"));
        let _ = std::fs::remove_file(Path::new("/dev/shm").join(entry));
    }
    let _ = std::fs::remove_dir_all(&tmp);
    Run { status, stdout, stderr, leftovers }
}

fn drain(mut pipe: impl Read + Send + 'static) -> thread::JoinHandle<String> {
    thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

fn fresh_tmpdir() -> PathBuf {
    static COUNT: Mutex<u32> = Mutex::new(0);
    let mut n = COUNT.lock().unwrap_or_else(|e| e.into_inner());
    *n += 1;
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("run-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create a TMPDIR for the run");
    dir
}

fn leftover_files(tmp: &Path) -> Vec<String> {
    std::fs::read_dir(tmp)
        .map(|entries| {
            entries.filter_map(|e| e.ok()).map(|e| format!("left {}", e.path().display())).collect()
        })
        .unwrap_or_default()
}

fn shm_entries() -> BTreeSet<String> {
    std::fs::read_dir("/dev/shm")
        .map(|entries| {
            entries.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect()
        })
        .unwrap_or_default()
}

/// One of our children, from /proc. After a lesson exits, every child of ours is something
/// it left behind (re-parented to us, the subreaper).
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

/// What the run left: a process still running after `grace` is an orphan. A zombie of a
/// lesson binary is a child the lesson never waited for (unless the run was interrupted:
/// then parent and children die together). A zombie of another program is a helper that
/// exited by itself just after its parent, like Python's resource tracker: not a leak.
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
                } else if !interrupted && child.comm.starts_with("lesson-") {
                    found.push(format!(
                        "left a zombie (never waited for): pid {} ({})",
                        child.pid, child.comm
                    ));
                }
                let _ = nix::sys::signal::kill(child.pid, Signal::SIGKILL);
                let _ = waitpid(child.pid, None);
            }
            return found;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// True if the run ended by SIGINT, or exited on its own (it may have finished first).
pub fn ended_by_ctrl_c_or_itself(status: &ExitStatus) -> bool {
    status.signal() == Some(Signal::SIGINT as i32) || status.code().is_some()
}
