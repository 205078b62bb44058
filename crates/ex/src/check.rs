//! Checking an exercise's program, the way the tests check the lessons: as a child process
//! group under the supervisor (its own TMPDIR and /dev/shm, a timeout, everything it leaves
//! behind found), never forked inside this process. One failure at a time, the first in this
//! order, in words a learner can act on:
//!
//! 1. hang: the program must end by itself. It is stopped as soon as every one of its
//!    processes sleeps waiting for the others without using the CPU (or at the timeout), and
//!    the report says who waited where and who held which pipe ends.
//! 2. leak: it must leave nothing: no process, zombie, file or shared-memory segment.
//! 3. race: with `race_runs`, that many runs must all succeed ("17 of 20 runs right"), 2 in
//!    5 of them two at a time, for load.
//! 4. output: it must exit 0 and print what the solution prints (pids, times and what the
//!    program marks as varying redacted, as the lessons' snapshots are).
//! 5. fault: with each of `faults` (`kill:1`: worker 1 dies of SIGKILL where it calls
//!    `fault::inject`; `panic:1`: it panics there), it must end at once, with status 1, its
//!    last line saying how the worker ended (SIGKILL, or exitcode 101 for a panic), and leave
//!    nothing.
//! 6. cost (after the fault check): with `cost_ratio`, its processes may take at most that
//!    many times the page faults the reference solution's take (counted by the kernel, for
//!    every process of the run): pages touched for the first time, or copied after a fork.
//! 7. slow: with `slow_ratio`, the median of 5 runs may take at most that many times the
//!    reference solution's, timed by turns on the same machine (release builds); on fewer
//!    than 2 CPUs the check says it is inconclusive, and never fails.

use std::path::Path;
use std::time::Duration;

use regex::Regex;
use supervisor::{Outcome, REDACTIONS, Run, stuck};

use crate::manifest::{Exercise, Kind};

/// How long a run may take at most; a stuck one is stopped much sooner.
pub const TIMEOUT: Duration = Duration::from_secs(10);
/// How long every process of a run must sleep, waiting, with no CPU used, to count as stuck.
pub const STUCK: Duration = Duration::from_millis(1500);
/// What a run may print, stdout and stderr together.
pub const MAX_OUTPUT: usize = 1 << 20;
/// How many processes (and threads) a run may have at once: the most an exercise has is 65.
pub const MAX_PROCESSES: u32 = 128;

/// What a check found.
#[derive(Debug, Clone)]
pub enum Verdict {
    /// Every check passed; what the race check saw, if there was one; a note (a slow check
    /// that could not conclude here).
    Pass { race: Option<(u32, u32)>, note: Option<String> },
    /// The first check that failed, and what to tell the learner; for a hang, the hint
    /// (its index) that fits what the diagnosis found, if the exercise names one.
    Fail { kind: Kind, message: String, hint: Option<usize> },
}

impl Verdict {
    pub fn kind(&self) -> Option<Kind> {
        match self {
            Verdict::Pass { .. } => None,
            Verdict::Fail { kind, .. } => Some(*kind),
        }
    }
}

fn fail(kind: Kind, message: impl Into<String>) -> Verdict {
    Verdict::Fail { kind, message: message.into(), hint: None }
}

/// What a check runs: a build of an exercise (the learner's, the starter or the solution),
/// and what it is held to.
pub struct Subject<'a> {
    pub binary: &'a Path,
    /// The reference solution's build, for the cost check's comparison.
    pub reference: &'a Path,
    /// What the solution prints (redacted).
    pub expected: &'a str,
}

/// Check `subject`, a build of `exercise`. `scratch` holds each run's own folders.
pub fn check(exercise: &Exercise, subject: &Subject, scratch: &Path) -> Verdict {
    let (binary, expected) = (subject.binary, subject.expected);
    let outcome = run(binary, scratch, None);
    if let Some(verdict) = hang_or_leak(exercise, &outcome, "") {
        return verdict;
    }
    let mut race = None;
    if let Some(runs) = exercise.race_runs {
        let right = race_runs(exercise, binary, scratch, runs, &outcome);
        match right {
            Err(verdict) => return verdict,
            Ok(right) => race = Some((right, runs)),
        }
    }
    if !outcome.status.success() {
        return fail(
            Kind::Output,
            format!("it exited with {}: {}", status(&outcome), last_line(&outcome.stderr)),
        );
    }
    let got = redact(&outcome.stdout);
    if got != expected {
        return fail(Kind::Output, difference(expected, &got));
    }
    for fault in &exercise.faults {
        if let Some(verdict) = survives(exercise, binary, scratch, fault) {
            return verdict;
        }
    }
    if let Some(ratio) = exercise.cost_ratio {
        let reference = run(subject.reference, scratch, None).minor_faults;
        let mine = outcome.minor_faults;
        if mine as f64 > ratio * reference as f64 {
            return fail(
                Kind::Cost,
                format!(
                    "its processes took {mine} page faults, the reference solution's {reference}: at most \
                     {ratio} times as many pass. A page fault is a page of memory touched for the first \
                     time, or copied because a process wrote to a page it shares since a fork"
                ),
            );
        }
    }
    let mut note = None;
    if let Some(ratio) = exercise.slow_ratio {
        match slow(exercise, subject, scratch, ratio) {
            Ok(said) => note = said,
            Err(verdict) => return verdict,
        }
    }
    Verdict::Pass { race, note }
}

/// Runs each of the slow check times, alternating with the reference's.
const TIMED_RUNS: usize = 5;

/// The slow check: the median of [`TIMED_RUNS`] runs against the reference's, alternating so
/// that both see the same machine. A note instead of a verdict on fewer than 2 CPUs, where a
/// program with two processes at work cannot show what it would gain.
fn slow(
    exercise: &Exercise,
    subject: &Subject,
    scratch: &Path,
    ratio: f64,
) -> Result<Option<String>, Verdict> {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    if cpus < 2 {
        return Ok(Some(format!("the speed check is inconclusive here: {cpus} CPU, and it needs 2")));
    }
    let (mut mine, mut theirs) = (Vec::new(), Vec::new());
    for _ in 0..TIMED_RUNS {
        theirs.push(run(subject.reference, scratch, None).elapsed.as_secs_f64());
        let outcome = run(subject.binary, scratch, None);
        if let Some(verdict) = hang_or_leak(exercise, &outcome, " (on a timed run)") {
            return Err(verdict);
        }
        mine.push(outcome.elapsed.as_secs_f64());
    }
    let median = |times: &mut Vec<f64>| {
        times.sort_by(f64::total_cmp);
        times[times.len() / 2]
    };
    let (mine, theirs) = (median(&mut mine), median(&mut theirs));
    if mine > ratio * theirs {
        return Err(fail(
            Kind::Slow,
            format!(
                "it took {:.0} ms (the median of {TIMED_RUNS} runs), the reference solution {:.0} ms on \
                 this machine, run by turns: {:.1} times as long, and at most {ratio} times passes",
                mine * 1e3,
                theirs * 1e3,
                mine / theirs
            ),
        ));
    }
    Ok(None)
}

fn run(binary: &Path, scratch: &Path, fault: Option<&str>) -> Outcome {
    // Contained: a fork bomb meets a process limit, a flood of output is stopped at 1 MiB.
    let run = Run::new(binary, scratch)
        .env("FORKLORE_MARK_VARYING", "1")
        .env("RUST_BACKTRACE", "0")
        .timeout(TIMEOUT)
        .stuck_after(STUCK)
        .grace(Duration::from_millis(500))
        .max_output(MAX_OUTPUT)
        .contain_processes(MAX_PROCESSES);
    match fault {
        Some(spec) => run.env("FORKLORE_FAULT", spec).go(),
        None => run.go(),
    }
}

/// The hang or the leak of one run, if any. `during` says what the run was ("with worker 1
/// killed").
fn hang_or_leak(exercise: &Exercise, outcome: &Outcome, during: &str) -> Option<Verdict> {
    if let Some(hang) = &outcome.hang {
        // The first finding the exercise has a hint for picks it.
        let hint = stuck::diagnose(&hang.processes)
            .iter()
            .find_map(|finding| exercise.diagnosis.get(finding.key))
            .map(|number| number - 1);
        let what = if hang.stuck {
            format!(
                "it never ended{during}: after {:.1} s, every process of it was asleep, waiting, and none used the CPU.\n\
                 What each waited for, and who held which pipe ends:\n{}",
                hang.after.as_secs_f64(),
                hang.report
            )
        } else {
            format!("it was still running{during} after {TIMEOUT:?}. Its processes then:\n{}", hang.report)
        };
        return Some(Verdict::Fail { kind: Kind::Hang, message: what, hint });
    }
    if let Some(flood) = outcome.leftovers.iter().find(|l| l.starts_with("flooded")) {
        return Some(fail(
            Kind::Output,
            format!("it {flood}{during}: does it print in a loop that never ends?"),
        ));
    }
    if !outcome.leftovers.is_empty() {
        return Some(fail(
            Kind::Leak,
            format!("it left something behind{during}:\n  {}", outcome.leftovers.join("\n  ")),
        ));
    }
    None
}

/// `runs` runs (the first is `first`): how many succeeded, or a hang or leak that one of them
/// had. 2 in 5 of them two at a time, for load: a shell starts two copies at once and
/// says how each ended (the supervisor runs one program at a time, and the shell is it). Not
/// a CPU hog beside them: a hog turns every `yield_now` of a program into a lost time slice
/// (the lock-race chapter measures it), and a correct program that yields in a loop crawls;
/// a second copy of the program yields back.
fn race_runs(
    exercise: &Exercise,
    binary: &Path,
    scratch: &Path,
    runs: u32,
    first: &Outcome,
) -> Result<u32, Verdict> {
    let mut right = u32::from(first.status.success());
    let mut wrong_said = (!first.status.success()).then(|| last_line(&first.stderr));
    let mut done = 1;
    let pairs = (runs - 1) / 4;
    for pair in 0..(runs - 1 - pairs) {
        let together = pair < pairs;
        let outcome = if together { run_two(binary, scratch) } else { run(binary, scratch, None) };
        let during = if together { " (on a later run, two at once)" } else { " (on a later run)" };
        if let Some(verdict) = hang_or_leak(exercise, &outcome, during) {
            return Err(verdict);
        }
        let ended_well: Vec<bool> = if together {
            // The shell's one line: how each copy ended.
            outcome.stdout.split_whitespace().map(|code| code == "0").collect()
        } else {
            vec![outcome.status.success()]
        };
        for well in &ended_well {
            done += 1;
            if *well {
                right += 1;
            } else if wrong_said.is_none() {
                wrong_said = Some(last_line(&outcome.stderr));
            }
        }
        if ended_well.len() != if together { 2 } else { 1 } {
            return Err(fail(
                Kind::Race,
                format!("a run two at a time ended badly: {}", last_line(&outcome.stderr)),
            ));
        }
    }
    debug_assert_eq!(done, runs);
    if right < runs {
        let said = wrong_said.unwrap_or_default();
        return Err(fail(Kind::Race, format!("{right} of {runs} runs right; a wrong one said: {said}")));
    }
    Ok(right)
}

/// Two copies of `binary` at once, under a shell that waits for both and prints their exit
/// statuses on one line (their own output goes to /dev/null, their errors to stderr).
fn run_two(binary: &Path, scratch: &Path) -> Outcome {
    const BOTH: &str =
        r#""$0" >/dev/null & a=$!; "$0" >/dev/null & b=$!; wait "$a"; x=$?; wait "$b"; echo "$x $?""#;
    let program = binary.to_string_lossy();
    Run::new(Path::new("/bin/sh"), scratch)
        .args(&["-c", BOTH, &program])
        .env("RUST_BACKTRACE", "0")
        .timeout(TIMEOUT)
        .stuck_after(STUCK)
        .grace(Duration::from_millis(500))
        .max_output(MAX_OUTPUT)
        .contain_processes(2 * MAX_PROCESSES)
        .go()
}

/// One run with `FORKLORE_FAULT=spec`: `None` if it failed as it should.
fn survives(exercise: &Exercise, binary: &Path, scratch: &Path, spec: &str) -> Option<Verdict> {
    let what = match spec.split_once(':') {
        Some(("kill", worker)) => format!("with worker {worker} killed (SIGKILL) at its fault point"),
        Some(("panic", worker)) => format!("with worker {worker} panicking at its fault point"),
        _ => format!("with FORKLORE_FAULT={spec}"),
    };
    let outcome = run(binary, scratch, Some(spec));
    if let Some(Verdict::Fail { message, hint, .. }) = hang_or_leak(exercise, &outcome, &format!(" {what}")) {
        return Some(Verdict::Fail { kind: Kind::Fault, message, hint });
    }
    let last = last_line(&outcome.stderr);
    // How the kit shows the end of a killed child, and of one that panicked.
    let says = if spec.starts_with("kill") { "SIGKILL" } else { "101" };
    if outcome.status.code() != Some(1) || !last.contains(says) {
        return Some(fail(
            Kind::Fault,
            format!(
                "{what}, it should end with status 1 and a last line that says {says} and which \
                 worker: it exited with {}, saying: {last}",
                status(&outcome)
            ),
        ));
    }
    None
}

/// Stdout as the checks compare it: pids, measured times and marked values redacted.
pub fn redact(stdout: &str) -> String {
    let mut text = stdout.to_string();
    for (pattern, replacement) in REDACTIONS {
        text = Regex::new(pattern).expect("a valid redaction").replace_all(&text, replacement).into_owned();
    }
    text
}

fn status(outcome: &Outcome) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (outcome.status.code(), outcome.status.signal()) {
        (Some(code), _) => format!("status {code}"),
        (None, Some(signal)) => format!("signal {signal}"),
        _ => format!("{:?}", outcome.status),
    }
}

fn last_line(text: &str) -> String {
    text.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("(nothing on stderr)").to_string()
}

/// The first line where `got` differs from `expected`, for a learner.
fn difference(expected: &str, got: &str) -> String {
    let (mut want, mut have) = (expected.lines(), got.lines());
    for line in 1.. {
        match (want.next(), have.next()) {
            (Some(w), Some(h)) if w == h => continue,
            (Some(w), Some(h)) => {
                return format!("its output differs at line {line}:\n  expected: {w}\n  printed:  {h}");
            }
            (Some(w), None) => {
                return format!("its output stops before line {line}, which should be:\n  {w}");
            }
            (None, Some(h)) => return format!("it prints more than expected, from line {line}:\n  {h}"),
            (None, None) => break,
        }
    }
    "its output differs in white space".into()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two at a time reports how each copy ended, in the order the race check reads.
    #[test]
    fn two_at_a_time_says_how_each_ended() {
        let scratch = std::env::temp_dir().join(format!("forklore-ex-unit-{}", std::process::id()));
        std::fs::create_dir_all(&scratch).expect("a scratch folder of our own");
        let both_fail = run_two(Path::new("/bin/false"), &scratch);
        let both_pass = run_two(Path::new("/bin/true"), &scratch);
        std::fs::remove_dir_all(&scratch).expect("remove our scratch folder");
        assert_eq!(both_fail.stdout.trim(), "1 1", "{both_fail:?}");
        assert_eq!(both_pass.stdout.trim(), "0 0", "{both_pass:?}");
        assert!(both_fail.leftovers.is_empty() && both_pass.leftovers.is_empty());
    }
}
