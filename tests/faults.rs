//! The fault matrix: a fault anywhere, never a hang. Found at run time, like the lesson
//! tests: for every lesson, and every kind of child it starts (read from its source: each
//! `Children::new("kind")` and `fork_named("kind", ...)`, `fork_child` for "child",
//! `fork_chunks`/`fork_parts` and `Pool` for "worker"; not spawn-join's "victim", which
//! the lesson kills itself, as Python's `p.kill()` does, nor its "forgotten", which the kit
//! stops on purpose when the program that forgot it ends):
//!
//! - `kill::<lesson>::<kind>@<stage>/<mode>`: SIGKILL to the first child of that kind (its
//!   number 0), in the default run (`demo`) and in `--measure --quick --no-python`
//!   (`measure`), at one of four stages. Three come from the kit's fault points
//!   (`FORKLORE_FAULT=kill:KIND@STAGE`): `start`, as it starts; `wait`, as it is about to
//!   wait in one of the kit's waits (a queue's get or put, a Value's or an Array's lock, a
//!   recv); `holding`, as soon as it holds one of the kit's locks (a Value's, an Array's, a
//!   queue's readers' or writers' lock: the others that want it would wait forever). The
//!   fourth, `blocked`, is a kill from outside, once the child is seen asleep in the kernel
//!   (in a read, a write, a wait, a lock). The lesson must end within 2 s of the kill, with
//!   status 1, its last line on stderr naming the killed process (its kind and its pid) and
//!   SIGKILL, and nothing left behind. Where no child of that kind reaches that stage in that mode, the
//!   trial is ignored and says so. (Killed mid-work, holding a lock of the lesson's own:
//!   tests/lessons.rs, `fault-kill` and `fault-panic`.)
//! - `kill-parent::<lesson>/<mode>`: SIGKILL to the lesson itself once it has a child, in the
//!   default run and in `--measure --quick` with its Python twin; and, where python3 is, once
//!   the twin runs: every process it started must die with it.
//! - `ctrl-c-measure::<lesson>`: SIGINT to the process group once `--measure --quick
//!   --no-python` has forked (the demo's Ctrl-C is in tests/lessons.rs); and
//!   `ctrl-c-python::<lesson>`, while the Python twin of `--measure --quick` runs: everything
//!   ends, nothing is left.
//! - `limits::<lesson>::<limit>/<mode>`: the lesson under a process limit (a pids cgroup)
//!   and under a file-descriptor limit (`ulimit -n`), each set to every value from "not even
//!   one child" up to the first that lets it finish: each run that cannot finish must fail
//!   with status 1 and whole lines, no panic, and leave nothing behind.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use libtest_mimic::{Arguments, Completion, Failed, Trial};
use regex::Regex;
use supervisor::{Ending, Moment, Outcome, Run, Stage};

/// How long a lesson may take to end after one of its processes was killed.
const WITHIN: Duration = Duration::from_secs(2);

fn main() {
    let args = Arguments::from_args();
    let mut trials = Vec::new();
    for lesson in forklore::lessons() {
        let (first, python) = (trials.len(), forklore::python_for(&lesson).is_some());
        for kind in kinds(&lesson) {
            for stage in ["start", "wait", "holding", "blocked"] {
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
        trials.push(Trial::test(format!("ctrl-c-measure::{lesson}"), move || ctrl_c_measure(&l)));
        let l = lesson.clone();
        trials.push(
            Trial::test(format!("ctrl-c-python::{lesson}"), move || ctrl_c_python(&l))
                .with_ignored_flag(!python),
        );
        for limit in [Limit::Pids, Limit::OpenFiles] {
            for mode in ["demo", "measure"] {
                let l = lesson.clone();
                let name = format!("limits::{lesson}::{}/{mode}", limit.name());
                trials.push(Trial::test(name, move || under_limits(&l, limit, mode)));
            }
        }
        if forklore::skipped(&lesson) {
            let all = trials.split_off(first).into_iter();
            trials.extend(all.map(|trial| trial.with_ignored_flag(true)));
        }
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
    kinds.remove("victim"); // spawn-join kills its victims itself, and expects them killed
    kinds.remove("forgotten"); // and its program that forgets a child has it stopped, on purpose
    kinds
}

/// What [`under_limits`] limits.
#[derive(Clone, Copy, Debug)]
enum Limit {
    /// Processes and threads at once, the lesson's own process included (a pids cgroup).
    Pids,
    /// Open files in each process (`ulimit -n`).
    OpenFiles,
}

impl Limit {
    fn name(self) -> &'static str {
        match self {
            Limit::Pids => "pids",
            Limit::OpenFiles => "open-files",
        }
    }

    /// The lowest value tried, and one that every lesson surely runs with.
    fn range(self) -> (u64, u64) {
        match self {
            Limit::Pids => (1, 64), // 1: not even one child
            // 4: stdin, stdout, stderr, and the one the dynamic loader needs to start the program
            Limit::OpenFiles => (4, 256),
        }
    }
}

/// The lesson under `limit`, set to the lowest value, then bisected up to the first value
/// that lets it finish: every run that cannot finish (the lowest, the one just below, and
/// those between that the search tries) must end with status 1, whole lines on stderr and
/// the last one the lesson's own (`lesson-NAME: ...`, saying what was refused), no panic, and
/// nothing left behind: no process, zombie, segment or file.
fn under_limits(lesson: &str, limit: Limit, mode: &str) -> Result<(), Failed> {
    if matches!(limit, Limit::Pids)
        && let Err(why) = supervisor::PidsCgroup::available()
    {
        // In CI nothing is skipped: there, a machine without a pids cgroup is a failure.
        return if std::env::var_os("CI").is_some() {
            Err(format!("CI must test process limits, and cannot here: {why}").into())
        } else {
            eprintln!("limits::{lesson}::pids: skipped: {why}");
            Ok(())
        };
    }
    let binary = forklore::lesson_binary(lesson);
    let scratch = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let args: &[&str] = if mode == "demo" { &[] } else { &["--measure", "--quick", "--no-python"] };
    let limited = |n: u64| {
        let run = Run::new(&binary, scratch).args(args);
        match limit {
            Limit::Pids => run.max_pids(n as u32).go(),
            Limit::OpenFiles => run.max_open_files(n).go(),
        }
    };
    // The lines about panics of the run that finishes: panics the lesson shows on purpose.
    let pid = Regex::new(r"\bpid \d+").unwrap();
    let panics = |stderr: &str| -> BTreeSet<String> {
        stderr
            .lines()
            .filter(|l| l.contains("panicked"))
            .map(|l| pid.replace_all(l, "pid _").into_owned())
            .collect()
    };
    let (lowest, surely) = limit.range();
    let finished = limited(surely);
    check(finished.status.success() && finished.leftovers.is_empty(), || {
        format!("lesson-{lesson} ({mode}) fails even with {} {surely}: {}", limit.name(), finished.describe())
    })?;
    let on_purpose = panics(&finished.stderr);
    let try_with = |n: u64| -> Result<bool, Failed> {
        let outcome = limited(n);
        if outcome.status.success() && outcome.leftovers.is_empty() {
            return Ok(true);
        }
        let last = outcome.stderr.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("");
        check(
            outcome.status.code() == Some(1)
                && last.starts_with(&format!("lesson-{lesson}: "))
                && panics(&outcome.stderr).is_subset(&on_purpose)
                && !outcome.stderr.contains("thread '")
                && !outcome.stderr.contains("measuring lesson-")
                && outcome.leftovers.is_empty(),
            || {
                format!(
                    "lesson-{lesson} ({mode}) with {} limited to {n}: it must end with status 1, its own \
                     last line and no panic, leaving nothing: {}",
                    limit.name(),
                    outcome.describe()
                )
            },
        )?;
        Ok(false)
    };
    if try_with(lowest)? {
        return Ok(()); // it needs no more than the lowest: nothing can be refused
    }
    // The first value that lets it finish is in (failing, finishing].
    let (mut failing, mut finishing) = (lowest, surely);
    while finishing - failing > 1 {
        let middle = failing + (finishing - failing) / 2;
        if try_with(middle)? {
            finishing = middle;
        } else {
            failing = middle;
        }
    }
    Ok(())
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
    let (outcome, victim) = if stage == "blocked" {
        // From outside: the supervisor kills the first `kind` it sees asleep in the kernel.
        let name: &'static str = Box::leak(kind.to_string().into_boxed_str());
        let outcome = run(lesson, mode, Ending::Kill(name, Stage::Blocked), None);
        let victim = outcome.killed.as_ref().map(|k| k.pid.to_string());
        (outcome, victim)
    } else {
        let spec = format!("kill:{kind}@{stage}");
        let outcome = run(lesson, mode, Ending::Natural, Some(&spec));
        let marker = Regex::new(r"fault: killing .* \(pid (\d+)\) at ").unwrap();
        let victim = marker.captures(&outcome.stderr).map(|c| c[1].to_string());
        (outcome, victim)
    };
    let Some(victim) = victim else {
        check(outcome.status.success() && outcome.leftovers.is_empty(), || {
            format!("nothing was killed ({kind}@{stage}), yet the run failed: {}", outcome.describe())
        })?;
        return Ok(Completion::ignored_with(format!("no {kind} reaches the {stage} stage in {mode}")));
    };
    let after = outcome.after_kill().unwrap_or_default();
    let last = outcome.stderr.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("");
    check(
        after <= WITHIN
            && outcome.status.code() == Some(1)
            && last.contains(&format!("pid {victim}"))
            && last.contains(kind)
            && last.contains("SIGKILL")
            && !outcome.stderr.contains("thread '")
            && outcome.leftovers.is_empty(),
        || {
            format!(
                "{kind} (pid {victim}) killed at {stage}: the lesson should end within {WITHIN:?} (it took \
                 {after:?}), with status 1 and a last line naming the {kind}, pid {victim} and SIGKILL, leaving nothing: {}",
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

fn ctrl_c_measure(lesson: &str) -> Result<(), Failed> {
    let outcome = run(lesson, "measure", Ending::CtrlCWhen(Moment::Forked), None);
    check(outcome.ended_by_ctrl_c() && outcome.leftovers.is_empty(), || {
        format!(
            "Ctrl-C in lesson-{lesson}'s --measure, once it has forked, must end everything, leaving nothing: {}",
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
