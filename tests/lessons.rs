//! Every lesson, found at run time, checked the same way (adding a lesson edits no test):
//!
//! - `output`: the default run exits 0, leaves nothing behind, and its stdout, with pids,
//!   measured durations and what the lesson marks as varying redacted (supervisor's
//!   REDACTIONS), matches `lessons/<name>/output.snap` (insta), the file the lesson's chapter
//!   includes;
//! - `python-output`: the same for the Python twin's demo, `lessons/<name>/python/output.snap`
//!   (ignored where there is no python3);
//! - `ctrl-c`: SIGINT to the whole process group mid-run (at a section's heading, and once
//!   the lesson has a child) ends it by the signal, and leaves nothing;
//! - `options`: `--help` works; a bad option is one line on stderr and exit status 2: an
//!   unknown one, a run count out of its bounds (saying them), `--child` with a role the
//!   lesson does not have;
//! - `measure`: `--measure --quick --json` prints valid records, one per line, whose cases
//!   are the ones in the book's measured table, and leaves nothing behind;
//! - `fault-panic`, `fault-kill`, for lessons whose workers call `plumbing::fault::inject`:
//!   when worker 1 panics or is killed mid-run, the parent says which child failed and how,
//!   each in one line (no backtrace, even with RUST_BACKTRACE=1), exits non-zero, never
//!   hangs, and leaves nothing behind. (Every kind of child killed at every stage, the
//!   lesson killed, Ctrl-C in `--measure`, low limits: tests/faults.rs.)
//!
//! Review a changed snapshot with `cargo insta review` (or read the `.snap.new` beside it)
//! before accepting it; `INSTA_UPDATE=always cargo test --test lessons` rewrites them all.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use libtest_mimic::{Arguments, Failed, Trial};
use plumbing::measure::{Record, parse_records};
use supervisor::{Ending, Moment, Outcome, Run};

/// A supervised run of `program`, with its own TMPDIR and /dev/shm under the test target dir.
fn run(program: &Path, args: &[&str], env: &[(&str, &str)], ending: Ending) -> Outcome {
    let scratch = Path::new(env!("CARGO_TARGET_TMPDIR"));
    env.iter().fold(Run::new(program, scratch).args(args), |run, &(k, v)| run.env(k, v)).ending(ending).go()
}

fn binary(lesson: &str) -> PathBuf {
    forklore::lesson_binary(lesson)
}

fn main() {
    let args = Arguments::from_args();
    let mut trials = Vec::new();
    for lesson in forklore::lessons() {
        let first = trials.len();
        let l = lesson.clone();
        trials.push(Trial::test(format!("{lesson}::output"), move || output(&l)));
        let l = lesson.clone();
        let no_python = forklore::python_for(&lesson).is_none();
        trials.push(
            Trial::test(format!("{lesson}::python-output"), move || python_output(&l))
                .with_ignored_flag(no_python),
        );
        let l = lesson.clone();
        trials.push(Trial::test(format!("{lesson}::ctrl-c"), move || ctrl_c(&l)));
        let l = lesson.clone();
        trials.push(Trial::test(format!("{lesson}::options"), move || options(&l)));
        let l = lesson.clone();
        trials.push(Trial::test(format!("{lesson}::measure"), move || measure(&l)));
        let l = lesson.clone();
        trials.push(Trial::test(format!("{lesson}::trace"), move || trace(&l)));
        if injects_faults(&lesson) {
            for (fault, shows) in [("panic", "exitcode 101"), ("kill", "exitcode -9 (SIGKILL)")] {
                let l = lesson.clone();
                trials.push(Trial::test(format!("{lesson}::fault-{fault}"), move || {
                    fault_run(&l, fault, shows)
                }));
            }
        }
        if forklore::skipped(&lesson) {
            let all = trials.split_off(first).into_iter();
            trials.extend(all.map(|trial| trial.with_ignored_flag(true)));
        }
    }
    for (name, script, leak) in SELF_TESTS {
        trials.push(Trial::test(format!("hygiene-check-catches::{name}"), move || catches(script, leak)));
    }
    for private_mounts in [true, false] {
        let mode = if private_mounts { "private-mounts" } else { "no-namespace" };
        trials.push(Trial::test(format!("hygiene-check-catches::shm-segment-{mode}"), move || {
            catches_shm(private_mounts)
        }));
        trials.push(Trial::test(format!("hygiene-check-spares-other-programs::{mode}"), move || {
            spares_bystanders(private_mounts)
        }));
    }
    libtest_mimic::run(&args, trials).exit();
}

/// The hygiene check itself, tested: each script leaves one thing behind, and it must be found.
const SELF_TESTS: [(&str, &str, &str); 2] = [
    ("orphan", "sleep 30 & exit 0", "left a process running"),
    ("temp-file", "touch \"$TMPDIR/forgotten\"", "forgotten"),
];

/// A segment left in /dev/shm is found, with or without a private /dev/shm. (Without one,
/// the file is really in /dev/shm: this test made it, so this test deletes it.)
fn catches_shm(private_mounts: bool) -> Result<(), Failed> {
    let name = format!("forklore-selftest-{}-{private_mounts}", std::process::id());
    let script = format!("touch /dev/shm/{name}");
    let scratch = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let sh = Path::new("/bin/sh");
    let result = Run::new(sh, scratch).args(&["-c", &script]).private_mounts(private_mounts).go();
    let _ = std::fs::remove_file(Path::new("/dev/shm").join(&name));
    check(result.leftovers.iter().any(|l| l.contains(&format!("/dev/shm/{name}"))), || {
        format!("the hygiene check missed /dev/shm/{name}: {}", result.describe())
    })
}

/// What the check finds in the real /dev/shm, it never deletes: it may be another program's.
/// Without a private /dev/shm, a segment that appears while the run lasts is reported and
/// left where it is (the run itself makes one here, under the one-run-at-a-time lock, so no
/// other run sees it). With one, the real /dev/shm is out of the run's sight: a segment made
/// there is neither reported nor touched. Either way, this test made it and deletes it.
fn spares_bystanders(private_mounts: bool) -> Result<(), Failed> {
    let name = format!("forklore-bystander-{}-{private_mounts}", std::process::id());
    let bystander = Path::new("/dev/shm").join(&name);
    let script = if private_mounts {
        std::fs::write(&bystander, b"another program's")?;
        "sleep 0.1".to_string()
    } else {
        format!("touch /dev/shm/{name}; sleep 0.1")
    };
    let scratch = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let sh = Path::new("/bin/sh");
    let result = Run::new(sh, scratch).args(&["-c", &script]).private_mounts(private_mounts).go();
    let spared = bystander.exists();
    let _ = std::fs::remove_file(&bystander);
    let reported = result.leftovers.iter().any(|l| l.contains(&name));
    check(spared && reported != private_mounts, || {
        format!(
            "/dev/shm/{name} was {}, and {}reported: {}",
            if spared { "spared" } else { "DELETED" },
            if reported { "" } else { "not " },
            result.describe()
        )
    })
}

fn catches(script: &str, leak: &str) -> Result<(), Failed> {
    let result = run(Path::new("/bin/sh"), &["-c", script], &[], Ending::Natural);
    check(result.leftovers.iter().any(|l| l.contains(leak)), || {
        format!("the hygiene check missed {leak:?}: {}", result.describe())
    })
}

fn check(ok: bool, message: impl FnOnce() -> String) -> Result<(), Failed> {
    if ok { Ok(()) } else { Err(message().into()) }
}

fn output(lesson: &str) -> Result<(), Failed> {
    let result = run(&binary(lesson), &[], &[(plumbing::varies::VARIABLE, "1")], Ending::Natural);
    check(result.status.success() && result.leftovers.is_empty(), || {
        format!("lesson-{lesson} should exit 0 and leave nothing: {}", result.describe())
    })?;
    let features = forklore::features_option(lesson);
    let transcript = format!("$ cargo run -p lesson-{lesson}{features}\n{}", result.stdout);
    snapshot(&forklore::root().join("lessons").join(lesson), &transcript);
    Ok(())
}

/// The Python twin's demonstration, as its chapter's "In Python" section shows it: the same
/// checks and redactions as the Rust lesson's. (Ignored, and shown so, where there is no
/// python3.)
fn python_output(lesson: &str) -> Result<(), Failed> {
    let python = forklore::python_for(lesson).ok_or("no python3 (or no mpi4py) for this twin")?;
    let twin = forklore::python_twin(lesson);
    let twin_arg = twin.to_string_lossy();
    // No __pycache__ folders in the lessons' source tree (the "spawn" child imports the twin).
    let env = [(plumbing::varies::VARIABLE, "1"), ("PYTHONDONTWRITEBYTECODE", "1")];
    let result = run(&python, &[&twin_arg], &env, Ending::Natural);
    check(result.status.success() && result.leftovers.is_empty(), || {
        format!("python3 {} should exit 0 and leave nothing: {}", twin.display(), result.describe())
    })?;
    let shown = twin.strip_prefix(forklore::root()).unwrap_or(&twin);
    let transcript = format!("$ python3 {}\n{}", shown.display(), result.stdout);
    snapshot(twin.parent().ok_or("a twin in no folder")?, &transcript);
    Ok(())
}

/// Compare `transcript`, redacted, with `output.snap` in `folder`.
fn snapshot(folder: &Path, transcript: &str) {
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path(folder);
    settings.set_prepend_module_to_snapshot(false);
    settings.set_omit_expression(true);
    for (pattern, replacement) in supervisor::REDACTIONS {
        settings.add_filter(pattern, replacement);
    }
    settings.bind(|| insta::assert_snapshot!("output", transcript));
}

fn ctrl_c(lesson: &str) -> Result<(), Failed> {
    // Right after the first and the second section's headings, and as soon as the lesson
    // has a child: mid-run. The run must end by the interrupt, not by finishing, and leave
    // nothing. A fork is short (some lessons' children live for a millisecond), so the
    // watcher may miss every one: then the run says nothing about Ctrl-C, and is run again.
    for ending in [Ending::CtrlCAtLine("1. "), Ending::CtrlCAtLine("2. "), Ending::CtrlCWhen(Moment::Forked)]
    {
        let mut result = run(&binary(lesson), &[], &[], ending);
        for _ in 0..4 {
            if result.interrupted || !matches!(ending, Ending::CtrlCWhen(Moment::Forked)) {
                break;
            }
            result = run(&binary(lesson), &[], &[], ending);
        }
        check(result.ended_by_ctrl_c() && result.leftovers.is_empty(), || {
            format!(
                "Ctrl-C ({ending:?}): lesson-{lesson} should die of SIGINT, mid-run, and leave nothing: {}",
                result.describe()
            )
        })?;
    }
    Ok(())
}

/// `--trace FILE`: the lesson still runs as it does without it; the file is one JSON
/// document of trace events; its processes are this run's (the first the lesson itself, a
/// child of this test; each other one a child of a traced process), each named, each with
/// its "started"; every span of a thread ends, after it began, in order (nested); every
/// message received has its arrow, from inside a span that sent it. With
/// worker 1 killed mid-run (where the lesson injects faults), the same holds, and the spans
/// the killed worker left open are ended as "killed": what it wrote before it died is there.
/// spawn-join's child started by exec is in its trace too. Each of the book's timelines of
/// the lesson finds its part in such a run.
fn trace(lesson: &str) -> Result<(), Failed> {
    let file = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("trace-{lesson}.json"));
    let path = file.to_string_lossy();
    let _ = fs::remove_file(&file);
    let traced =
        run(&binary(lesson), &["--trace", &path], &[("FORKLORE_MARK_VARYING", "1")], Ending::Natural);
    check(traced.status.success() && traced.leftovers.is_empty(), || {
        format!("with --trace the lesson should run as without: {}", traced.describe())
    })?;
    check_trace(&file, false)?;
    // The book's timelines of this lesson (`cargo xtask timelines`) find their parts in a run
    // like this one (a --measure one at --quick sizes, for a timeline of a measured case).
    for scenario in forklore::TIMELINES.iter().filter(|s| s.lesson == lesson) {
        let measured = file.with_extension("measure.json");
        let document = if scenario.args.is_empty() {
            fs::read_to_string(&file)?
        } else {
            let path = measured.to_string_lossy();
            let args: Vec<&str> =
                scenario.args.iter().copied().chain(["--quick", "--trace", &path]).collect();
            let traced = run(&binary(lesson), &args, &[], Ending::Natural);
            check(traced.status.success() && traced.leftovers.is_empty(), || {
                format!("--measure with --trace should run as without: {}", traced.describe())
            })?;
            check_trace(&measured, false)?;
            fs::read_to_string(&measured)?
        };
        let _ = fs::remove_file(&measured);
        let document: serde_json::Value = serde_json::from_str(&document)?;
        let part = forklore::timeline::window(&document, scenario.window)
            .map_err(|e| format!("timeline {}: {e}", scenario.name))?;
        let timeline = forklore::timeline::from_trace(&document, part, "")?;
        check(timeline.tracks.len() >= 2, || {
            format!("timeline {}: {} tracks, not a parent and a child", scenario.name, timeline.tracks.len())
        })?;
    }
    if lesson == "spawn-join" {
        // Its child started by exec (spawn_self) joins the trace through FORKLORE_TRACE.
        let text = fs::read_to_string(&file)?;
        check(text.contains("\"greet alice\""), || {
            "the child spawn_self started is not in the trace".into()
        })?;
    }
    if injects_faults(lesson) {
        let env = [(plumbing::fault::VARIABLE, "kill:1")];
        let killed = run(&binary(lesson), &["--trace", &path], &env, Ending::Natural);
        check(!killed.status.success() && killed.leftovers.is_empty(), || {
            format!(
                "with worker 1 killed and --trace, the lesson should fail and leave nothing: {}",
                killed.describe()
            )
        })?;
        check_trace(&file, true)?;
    }
    let _ = fs::remove_file(&file);
    Ok(())
}

fn check_trace(file: &Path, killed: bool) -> Result<(), Failed> {
    let text = fs::read_to_string(file)?;
    let document: serde_json::Value = serde_json::from_str(&text).map_err(|e| format!("not JSON: {e}"))?;
    let events = document["traceEvents"].as_array().ok_or("no traceEvents array")?;
    let mut parents = std::collections::BTreeMap::new();
    for event in events.iter().filter(|e| e["ph"] == "M") {
        let (pid, ppid) = (event["pid"].as_i64().unwrap_or(0), event["args"]["ppid"].as_i64().unwrap_or(0));
        parents.insert(pid, ppid);
    }
    let me = i64::from(std::process::id());
    let roots: Vec<i64> = parents.iter().filter(|(_, ppid)| **ppid == me).map(|(pid, _)| *pid).collect();
    check(roots.len() == 1, || {
        format!("one traced process should be the lesson, a child of this test: {parents:?}")
    })?;
    for (pid, ppid) in &parents {
        check(*ppid == me || parents.contains_key(ppid), || {
            format!("pid {pid} is not a child of a traced process (its parent: {ppid}): not this run's")
        })?;
    }
    // Spans nest within each thread (a pool's parent sends from a thread of its own).
    // Per thread: the spans begun and not yet ended (when, what kind), and the last time seen.
    type Open = (Vec<(f64, String)>, f64);
    let mut stacks: std::collections::BTreeMap<(i64, i64), Open> = Default::default();
    let mut spans: Vec<((i64, i64), f64, f64, String)> = Vec::new();
    let mut started_pids = BTreeSet::new();
    let is_flow = |e: &&serde_json::Value| e["ph"] == "s" || e["ph"] == "f";
    for event in events.iter().filter(|e| e["ph"] != "M" && !is_flow(e)) {
        let pid = event["pid"].as_i64().unwrap_or(0);
        let tid = event["tid"].as_i64().unwrap_or(pid);
        check(parents.contains_key(&pid), || format!("an event of pid {pid}, which has no name: {event}"))?;
        let ts = event["ts"].as_f64().ok_or_else(|| format!("an event without a time: {event}"))?;
        let (stack, last) = stacks.entry((pid, tid)).or_insert((Vec::new(), 0.0));
        check(ts >= *last, || format!("pid {pid}: time goes back at {event}"))?;
        *last = ts;
        match event["ph"].as_str() {
            Some("B") => stack.push((ts, event["cat"].as_str().unwrap_or("").to_string())),
            Some("E") => {
                let (begin, cat) =
                    stack.pop().ok_or_else(|| format!("pid {pid}: a span ends that never began: {event}"))?;
                spans.push(((pid, tid), begin, ts, cat));
            }
            Some("i") if event["name"] == "started" => {
                started_pids.insert(pid);
            }
            _ => {}
        }
    }
    for ((pid, tid), (stack, _)) in &stacks {
        check(stack.is_empty(), || format!("pid {pid} (thread {tid}): {} spans never end", stack.len()))?;
    }
    for pid in parents.keys() {
        check(started_pids.contains(pid), || format!("pid {pid}: no \"started\""))?;
    }
    // The arrows: each message's flow starts inside a span sending it and ends inside a span
    // receiving it, later; and every message received has its arrow.
    let mut flows: std::collections::BTreeMap<i64, Vec<&serde_json::Value>> = Default::default();
    for event in events.iter().filter(is_flow) {
        flows.entry(event["id"].as_i64().ok_or("a flow without an id")?).or_default().push(event);
    }
    let inside = |e: &serde_json::Value, kind: &str| {
        let key = (e["pid"].as_i64().unwrap_or(0), e["tid"].as_i64().unwrap_or(0));
        let ts = e["ts"].as_f64().unwrap_or(0.0);
        spans.iter().any(|(k, a, b, cat)| *k == key && cat == kind && (*a..=*b).contains(&ts))
    };
    for (id, ends) in &flows {
        let [s, f] = ends[..] else {
            return Err(format!("flow {id}: {} ends, not a start and an end", ends.len()).into());
        };
        check(s["ph"] == "s" && f["ph"] == "f" && f["bp"] == "e", || format!("flow {id}: {s} then {f}"))?;
        check(inside(s, "send") && inside(f, "recv"), || {
            format!("flow {id} does not go from a send to a receive: {s} {f}")
        })?;
        check(s["ts"].as_f64() < f["ts"].as_f64(), || format!("flow {id} is received before it is sent"))?;
    }
    let received = events.iter().filter(|e| e["ph"] == "E" && e["args"]["message"].is_string()).count();
    check(killed || flows.len() == received, || {
        format!("{received} messages received, but {} arrows from their senders", flows.len())
    })?;
    let ended_killed = events.iter().any(|e| e["ph"] == "E" && e["args"]["ended"] == "killed");
    check(!killed || ended_killed, || {
        "worker 1 was killed mid-run, yet no span of it ended as killed".into()
    })?;
    Ok(())
}

fn options(lesson: &str) -> Result<(), Failed> {
    let help = run(&binary(lesson), &["--help"], &[], Ending::Natural);
    check(
        help.status.success() && help.stdout.contains("Usage:") && help.stdout.contains("--measure"),
        || format!("--help should print usage and exit 0: {}", help.describe()),
    )?;
    // (The options, and what a refusal must say: a run count out of bounds names the bounds.)
    let bounds = format!("from 1 to {}", plumbing::cli::MAX_RUNS);
    let refused: [(&[&str], &str); 9] = [
        (&["--bogus"], ""),
        (&["--json"], ""),
        (&["--measure", "--runs"], ""),
        (&["--measure", "--runs", "0"], &bounds),
        (&["--measure", "--runs", "101"], &bounds),
        (&["--measure", "--runs", "1000000000000"], &bounds),
        (&["--measure", "--runs", "18446744073709551615"], &bounds),
        (&["--child", "bogus"], "--child"),
        (&["--child"], ""),
    ];
    // The Python twin refuses a bad option the same way: one line, status 2.
    if let Some(python) = forklore::python_for(lesson) {
        let twin = forklore::python_twin(lesson).to_string_lossy().into_owned();
        let result = run(&python, &[&twin, "--bogus"], &[], Ending::Natural);
        check(
            result.status.code() == Some(2)
                && result.stdout.is_empty()
                && result.stderr.lines().count() == 1
                && result.stderr.contains("--bogus")
                && result.leftovers.is_empty(),
            || {
                format!(
                    "the Python twin, given --bogus, should say so in one line and exit 2: {}",
                    result.describe()
                )
            },
        )?;
    }
    for (bad, says) in refused {
        let result = run(&binary(lesson), bad, &[], Ending::Natural);
        check(
            result.status.code() == Some(2)
                && result.stdout.is_empty()
                && result.stderr.lines().count() == 1
                && result.stderr.starts_with(&format!("lesson-{lesson}: "))
                && result.stderr.contains(says)
                && result.leftovers.is_empty(),
            || {
                format!(
                    "{bad:?} should give one line on stderr (saying {says:?}) and exit 2: {}",
                    result.describe()
                )
            },
        )?;
    }
    Ok(())
}

/// Whether the lesson's workers can be made to fail on purpose (see plumbing::fault).
fn injects_faults(lesson: &str) -> bool {
    let main = forklore::root().join("lessons").join(lesson).join("src/main.rs");
    std::fs::read_to_string(main).is_ok_and(|source| source.contains("fault::inject("))
}

fn fault_run(lesson: &str, fault: &str, shows: &str) -> Result<(), Failed> {
    let spec = format!("{fault}:1");
    // A reader's RUST_BACKTRACE=1 must not pour a backtrace into the lesson's output: a
    // worker's panic is one line, "child pid N panicked: ...", and so is the parent's error.
    let env = [(plumbing::fault::VARIABLE, spec.as_str()), ("RUST_BACKTRACE", "1")];
    let result = run(&binary(lesson), &[], &env, Ending::Natural);
    let panic_line = result.stderr.lines().any(|l| l.starts_with("child pid ") && l.contains(" panicked: "));
    check(
        result.status.code().is_some_and(|c| c != 0)
            && result.stderr.contains(" 1 (pid ")
            && result.stderr.contains(shows)
            && (fault != "panic" || panic_line)
            && !result.stderr.contains("thread '")
            && !result.stderr.to_lowercase().contains("backtrace")
            && result.leftovers.is_empty(),
        || {
            format!(
                "with worker 1 failing ({spec}), the lesson should say so, exit non-zero and leave nothing: {}",
                result.describe()
            )
        },
    )
}

fn measure(lesson: &str) -> Result<(), Failed> {
    let result = run(&binary(lesson), &["--measure", "--quick", "--json"], &[], Ending::Natural);
    check(result.status.success() && result.leftovers.is_empty(), || {
        format!("--measure --quick --json should exit 0 and leave nothing: {}", result.describe())
    })?;
    let records = parse_records(&result.stdout)?;
    check(!records.is_empty(), || "--measure --json printed no records".into())?;
    let names: Vec<&str> = records.iter().map(|r| r.case.as_str()).collect();
    for r in &records {
        check(r.lesson == lesson && ["rust", "python"].contains(&r.implementation.as_str()), || {
            format!("a record names the wrong lesson or impl: {r:?}")
        })?;
        check(r.ops > 0 && r.runs > 0 && r.min_s <= r.median_s && r.median_s <= r.max_s, || {
            format!("a record's numbers do not add up: {r:?}")
        })?;
        check(r.baseline.as_deref().is_none_or(|b| names.contains(&b)), || {
            format!("case {:?} is compared with a case that was not measured: {:?}", r.case, r.baseline)
        })?;
    }
    check(names.iter().collect::<BTreeSet<_>>().len() == names.len(), || {
        format!("duplicate cases: {names:?}")
    })?;
    let python_ran = records.iter().any(|r| r.implementation == "python");
    check(python_ran || forklore::python_for(lesson).is_none(), || {
        "python3 is here, but --measure ran no Python case".into()
    })?;

    // The book's table must hold the cases this command measures: regenerating it with
    // `cargo xtask measure` may change numbers, machine and date, nothing else.
    let path = forklore::measured(lesson, "jsonl");
    let committed = std::fs::read_to_string(&path)
        .map_err(|e| format!("{}: {e}; run `cargo xtask measure {lesson}`", path.display()))?;
    let committed = parse_records(&committed)?;
    let key = |r: &Record| (r.case.clone(), r.implementation.clone(), r.baseline.clone(), r.bytes.is_some());
    let now: BTreeSet<_> =
        records.iter().filter(|r| python_ran || r.implementation == "rust").map(key).collect();
    let book: BTreeSet<_> =
        committed.iter().filter(|r| python_ran || r.implementation == "rust").map(key).collect();
    check(now == book, || {
        format!(
            "{} is stale: its cases differ from what --measure measures now; run `cargo xtask measure {lesson}`\n\
             now:  {now:?}\nbook: {book:?}",
            path.display()
        )
    })
}
