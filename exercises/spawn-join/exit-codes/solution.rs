//! Exercise spawn-join/exit-codes: the parent runs three children, one that succeeds, one
//! that exits with 3, and one killed by SIGKILL, and prints each one's exit code the way
//! Python's `Process.exitcode` shows it: 0, 3, and -9 for a child killed by signal 9. The
//! killed child shows as 0. Print -9 (SIGKILL) for it.

use std::os::unix::process::ExitStatusExt;
use std::process::{Command, ExitStatus};

use anyhow::Context;
use plumbing::{Args, Exercise};

const EXERCISE: Exercise = Exercise {
    lesson: "spawn-join",
    name: "exit-codes",
    about: "three children end in three ways; the parent prints their exit codes as Python does",
};

fn main() -> std::process::ExitCode {
    EXERCISE.run(exercise)
}

// ANCHOR: exercise
/// Python's `Process.exitcode` of a child that ended with `status`, as text.
fn exitcode(status: ExitStatus) -> String {
    // An exit code, or else the signal that ended it (Unix only: ExitStatusExt).
    match (status.code(), status.signal()) {
        (Some(code), _) => code.to_string(),
        (None, Some(9)) => "-9 (SIGKILL)".to_string(),
        (None, Some(signal)) => format!("-{signal}"),
        (None, None) => "unknown".to_string(),
    }
}

fn exercise(_args: &Args) -> anyhow::Result<()> {
    for script in ["exit 0", "exit 3", "kill -9 $$"] {
        let status = Command::new("sh").args(["-c", script]).status().context("run sh")?;
        println!("sh -c '{script}': exitcode {}", exitcode(status));
    }
    Ok(())
}
// ANCHOR_END: exercise
