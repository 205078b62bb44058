//! Running a lesson's Python twin beside it, when a `python3` is there.

use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::PathBuf;
use std::process::{Command, Stdio};

use anyhow::{Context, bail};
use nix::sys::signal::{SigHandler, Signal, raise, signal};

use crate::measure::{Record, parse_records};

/// The Python to run: `$FORKLORE_PYTHON` if set, else `python3` from PATH; `None` if neither.
pub fn find() -> Option<PathBuf> {
    if let Some(python) = std::env::var_os("FORKLORE_PYTHON") {
        return Some(PathBuf::from(python));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join("python3")).find(|p| p.is_file())
}

/// The exit status of a twin that cannot run here, for want of a module (mpi4py), once it has
/// said so in one line on stderr.
pub const MISSING: i32 = 3;

/// Run `program --measure --json --runs N [--quick]` and read its records;
/// `Ok(None)` when there is no Python to run it with, or it lacks a module it needs.
pub fn measure(program: &str, runs: usize, quick: bool) -> anyhow::Result<Option<Vec<Record>>> {
    let Some(python) = find() else { return Ok(None) };
    let mut command = Command::new(&python);
    command.arg(program).args(["--measure", "--json", "--runs", &runs.to_string()]);
    command.env("PYTHONDONTWRITEBYTECODE", "1"); // no __pycache__ beside the lesson's source
    // SAFETY: between fork and exec only async-signal-safe work may be done: one prctl and
    // one sigaction, both async-signal-safe.
    unsafe {
        command.pre_exec(|| {
            // The twin dies with the lesson, as the lesson's own children do (and its children
            // die with it: lessonkit asks the same of every process it forks).
            nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(std::io::Error::from)?;
            // Ctrl-C is the twin's to handle: it stops its workers and cleans up (below, the
            // lesson ignores it meanwhile; an ignored signal would stay ignored across exec).
            signal(Signal::SIGINT, SigHandler::SigDfl).map_err(std::io::Error::from)?;
            Ok(())
        });
    }
    if quick {
        command.arg("--quick");
    }
    // Progress goes to our stderr as it comes; the records come back on stdout. While the
    // twin runs, Ctrl-C (which the terminal sends to both) is left to the twin, as a shell
    // does with the program it waits for: were the lesson to die first, the twin would die
    // with it (SIGKILL, above) before it had cleaned up its own workers and files.
    let output = {
        let _ctrl_c = LeaveCtrlC::to_the_child()?;
        command
            .stderr(Stdio::inherit())
            .output()
            .with_context(|| format!("run {} {program}", python.display()))?
    };
    if output.status.code() == Some(130) || output.status.signal() == Some(Signal::SIGINT as i32) {
        // The twin was interrupted and has cleaned up: now the lesson ends as Ctrl-C ends it.
        let _ = raise(Signal::SIGINT);
    }
    if output.status.code() == Some(MISSING) {
        return Ok(None); // it said on stderr what it lacks, and how to install it
    }
    if !output.status.success() {
        bail!("{} {program} --measure failed: {}", python.display(), output.status);
    }
    let records = parse_records(&String::from_utf8_lossy(&output.stdout)).map_err(anyhow::Error::msg)?;
    if let Some(r) = records.iter().find(|r| r.implementation != "python") {
        bail!("{program} printed a case that is not \"impl\": \"python\": {}", r.case);
    }
    Ok(Some(records))
}

/// Ignores SIGINT in this process while it lives; puts the previous disposition back on drop.
struct LeaveCtrlC(SigHandler);

impl LeaveCtrlC {
    fn to_the_child() -> anyhow::Result<LeaveCtrlC> {
        // SAFETY: SigIgn installs no handler of ours, so nothing can run in signal context.
        let previous = unsafe { signal(Signal::SIGINT, SigHandler::SigIgn) }.context("ignore SIGINT")?;
        Ok(LeaveCtrlC(previous))
    }
}

impl Drop for LeaveCtrlC {
    fn drop(&mut self) {
        // SAFETY: `self.0` is the disposition this process had before, put back as it was.
        let _ = unsafe { signal(Signal::SIGINT, self.0) };
    }
}
