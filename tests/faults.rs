//! The fault matrix: a fault anywhere, never a hang. Found at run time, like the lesson
//! tests: for every lesson, and every kind of child it starts (read from its source: each
//! `Children::new("kind")` and `fork_named("kind", ...)`, `fork_child` for "child",
//! `fork_chunks`/`fork_parts` and `Pool` for "worker"):
//!
//! - `kill::<lesson>::<kind>@<stage>/<mode>`: SIGKILL to the first child of that kind (its
//!   number 0), as it starts (`start`) or as it is about to wait in one of the kit's waits
//!   (`wait`: a queue's get or put, a Value's or an Array's lock, a recv), through the kit's
//!   fault points (`FORKLORE_FAULT=kill:KIND@STAGE`), in the default run (`demo`) and in
//!   `--measure --quick --no-python` (`measure`). The lesson must end within 2 s of the
//!   kill, with status 1, its last line on stderr naming the killed process (its pid) and
//!   SIGKILL, and nothing left behind. Where no child of that kind reaches that point in
//!   that mode, the trial is ignored and says so. (Killed mid-work, holding a lock where
//!   there is one: tests/lessons.rs, `fault-kill` and `fault-panic`.)
//! - `kill-parent::<lesson>/<mode>`: SIGKILL to the lesson itself once it has a child, in the
//!   default run and in `--measure --quick` with its Python twin; and, where python3 is, once
//!   the twin runs: every process it started must die with it.
//! - `ctrl-c-python::<lesson>`: SIGINT to the process group while the Python twin of
//!   `--measure --quick` runs: everything ends, nothing is left.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use libtest_mimic::{Arguments, Completion, Failed, Trial};
use regex::Regex;
use supervisor::{Ending, Moment, Outcome, Run};

/// How long a lesson may take to end after one of its processes was killed.
const WITHIN: Duration = Duration::from_secs(2);

fn main() {
    let args = Arguments::from_args();
    let python = plumbing::python::find().is_some();
    let mut trials = Vec::new();
    for lesson in forklore::lessons() {
        for kind in kinds(&lesson) {
            for stage in ["start", "wait"] {
                for mode in ["demo", "measure"] {
                    let (l, k) = (lesson.clone(), kind.clone());
                    let name = format!("kill::{lesson}::{kind}@{stage}/{mode}");
                    trials.push(Trial::ignorable_test(name, move || kill_child(&l, &k, stage, mode)));
                }
            }
        }
        for mode in ["demo", "measure"] {
            let l = lesson.clone();
            let name = format!("kill-parent::{lesson}/{mode}");
            trials.push(Trial::test(name, move || kill_parent(&l, mode, Moment::Forked)));
        }
        let l = lesson.clone();
        let name = format!("kill-parent::{lesson}/python");
        trials.push(
            Trial::test(name, move || kill_parent(&l, "measure", Moment::NamedWithChild("python3")))
                .with_ignored_flag(!python),
        );
        let l = lesson.clone();
        trials.push(
            Trial::test(format!("ctrl-c-python::{lesson}"), move || ctrl_c_python(&l))
                .with_ignored_flag(!python),
        );
    }
    libtest_mimic::run(&args, trials).exit();
}

/// The kinds of child a lesson starts, from its source.
fn kinds(lesson: &str) -> BTreeSet<String> {
    let source = std::fs::read_to_string(forklore::root().join("lessons").join(lesson).join("src/main.rs"))
        .expect("read the lesson's source");
    let named = Regex::new(r#"(?:Children::new|fork_named(?:_closing)?)\("([^"]+)""#).unwrap();
    let mut kinds: BTreeSet<String> = named.captures_iter(&source).map(|c| c[1].to_string()).collect();
    if Regex::new(r"\bfork_child(?:_closing)?\(").unwrap().is_match(&source) {
        kinds.insert("child".into());
    }
    if Regex::new(r"\b(?:fork_chunks|fork_parts|Pool::)").unwrap().is_match(&source) {
        kinds.insert("worker".into());
    }
    kinds
}

fn run(lesson: &str, mode: &str, ending: Ending, fault: Option<&str>) -> Outcome {
    // A process that should die with its parent dies at once (PDEATHSIG): a short grace.
    let grace = if matches!(ending, Ending::KillParentWhen(_)) {
        Duration::from_millis(300)
    } else {
        Duration::from_secs(3)
    };
    let binary = forklore::lesson_binary(lesson);
    let scratch = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let args: &[&str] = match mode {
        "demo" => &[],
        "measure" => &["--measure", "--quick", "--no-python"],
        _ => &["--measure", "--quick"], // "python": with the twin
    };
    let run =
        Run::new(&binary, scratch).args(args).ending(ending).mark_stderr("fault: killing ").grace(grace);
    match fault {
        Some(spec) => run.env(plumbing::fault::VARIABLE, spec).go(),
        None => run.go(),
    }
}

fn check(ok: bool, message: impl FnOnce() -> String) -> Result<(), Failed> {
    if ok { Ok(()) } else { Err(message().into()) }
}

fn kill_child(lesson: &str, kind: &str, stage: &str, mode: &str) -> Result<Completion, Failed> {
    let spec = format!("kill:{kind}@{stage}");
    let outcome = run(lesson, mode, Ending::Natural, Some(&spec));
    let marker = Regex::new(r"fault: killing .* \(pid (\d+)\) at ").unwrap();
    let Some(victim) = marker.captures(&outcome.stderr).map(|c| c[1].to_string()) else {
        check(outcome.status.success() && outcome.leftovers.is_empty(), || {
            format!("nothing was killed ({spec}), yet the run failed: {}", outcome.describe())
        })?;
        return Ok(Completion::ignored_with(format!("no {kind} reaches its {stage} point in {mode}")));
    };
    let after = outcome.after_kill().unwrap_or_default();
    let last = outcome.stderr.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("");
    check(
        after <= WITHIN
            && outcome.status.code() == Some(1)
            && last.contains(&format!("pid {victim}"))
            && last.contains("SIGKILL")
            && !outcome.stderr.contains("thread '")
            && outcome.leftovers.is_empty(),
        || {
            format!(
                "{kind} (pid {victim}) killed at {stage}: the lesson should end within {WITHIN:?} (it took \
                 {after:?}), with status 1 and a last line naming pid {victim} and SIGKILL, leaving nothing: {}",
                outcome.describe()
            )
        },
    )?;
    Ok(Completion::Completed)
}

fn kill_parent(lesson: &str, mode: &str, moment: Moment) -> Result<(), Failed> {
    let mode = if matches!(moment, Moment::Forked) { mode } else { "python" };
    let outcome = if mode == "python" {
        // The real twin would die of EPIPE at its next line of output anyway; this one sits
        // silent for seconds, with a child of its own, as a twin deep in a long case does.
        // Only their parent-death signals can end them in time.
        let binary = forklore::lesson_binary(lesson);
        let scratch = Path::new(env!("CARGO_TARGET_TMPDIR"));
        let python = lingering_twin(scratch)?;
        Run::new(&binary, scratch)
            .args(&["--measure", "--quick"])
            .env("FORKLORE_PYTHON", &python)
            .ending(Ending::KillParentWhen(moment))
            .grace(Duration::from_millis(300))
            .go()
    } else {
        run(lesson, mode, Ending::KillParentWhen(moment), None)
    };
    check(outcome.interrupted && outcome.leftovers.is_empty(), || {
        format!(
            "SIGKILL to lesson-{lesson} ({mode}, {moment:?}): everything it started must die with it: {}",
            outcome.describe()
        )
    })
}

fn ctrl_c_python(lesson: &str) -> Result<(), Failed> {
    let outcome = run(lesson, "python", Ending::CtrlCWhen(Moment::NamedWithChild("python3")), None);
    check(outcome.interrupted && outcome.leftovers.is_empty() && outcome.after_kill().is_none(), || {
        format!(
            "Ctrl-C in lesson-{lesson}'s Python phase must end everything, leaving nothing: {}",
            outcome.describe()
        )
    })
}

/// A stand-in for a lesson's Python twin: it imports lessonkit (as every twin does), forks a
/// child, and both sleep, printing nothing. Written into `scratch`; its path, for
/// `FORKLORE_PYTHON`.
fn lingering_twin(scratch: &Path) -> Result<String, Failed> {
    use std::os::unix::fs::PermissionsExt;
    let kit = forklore::root().join("crates/plumbing/python");
    let path = scratch.join("lingering-python-twin");
    let script = format!(
        "#!/bin/sh\n# A Python twin that lingers (tests/faults.rs).\n\
         exec python3 -c 'import sys, os, time; sys.path.insert(0, \"{}\"); import lessonkit; os.fork(); time.sleep(5)'\n",
        kit.display()
    );
    std::fs::create_dir_all(scratch)?;
    std::fs::write(&path, script)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
    Ok(path.to_string_lossy().into_owned())
}
