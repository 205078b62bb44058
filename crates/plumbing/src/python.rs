//! Running a lesson's Python twin beside it, when a `python3` is there.

use std::path::PathBuf;
use std::process::{Command, Stdio};

use anyhow::{Context, bail};

use crate::measure::{Record, parse_records};

/// The Python to run: `$FORKLORE_PYTHON` if set, else `python3` from PATH; `None` if neither.
pub fn find() -> Option<PathBuf> {
    if let Some(python) = std::env::var_os("FORKLORE_PYTHON") {
        return Some(PathBuf::from(python));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join("python3")).find(|p| p.is_file())
}

/// Run `program --measure --json --runs N [--quick]` and read its records;
/// `Ok(None)` when there is no Python to run it with.
pub fn measure(program: &str, runs: usize, quick: bool) -> anyhow::Result<Option<Vec<Record>>> {
    let Some(python) = find() else { return Ok(None) };
    let mut command = Command::new(&python);
    command.arg(program).args(["--measure", "--json", "--runs", &runs.to_string()]);
    command.env("PYTHONDONTWRITEBYTECODE", "1"); // no __pycache__ beside the lesson's source
    if quick {
        command.arg("--quick");
    }
    // Progress goes to our stderr as it comes; the records come back on stdout.
    let output = command
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("run {} {program}", python.display()))?;
    if !output.status.success() {
        bail!("{} {program} --measure failed: {}", python.display(), output.status);
    }
    let records = parse_records(&String::from_utf8_lossy(&output.stdout)).map_err(anyhow::Error::msg)?;
    if let Some(r) = records.iter().find(|r| r.implementation != "python") {
        bail!("{program} printed a case that is not \"impl\": \"python\": {}", r.case);
    }
    Ok(Some(records))
}
