//! `cargo ex`: the exercises, one at a time. Your copy of each is in `learn/`; edit it, and
//! `cargo ex` checks it the way the project's tests check the lessons.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use anyhow::Context;
use ex::learn::{Learn, State};
use ex::{Exercise, Verdict};

const HELP: &str = "\
cargo ex: the exercises, one at a time, checked on your machine.

  cargo ex                  check the next exercise you have not solved (in the book's order)
  cargo ex LESSON/NAME      check that exercise (NAME alone works if no other has it)
  cargo ex watch [EXERCISE] check again every time you save, until you press Ctrl-C
  cargo ex hint [EXERCISE]  the next hint, from a nudge to nearly the answer
  cargo ex list             every exercise, and where you stand
  cargo ex solution [EXERCISE]  the reference solution and how yours differs (once yours passes)
  cargo ex reset EXERCISE   start that exercise again from its starter
  cargo ex help             this

Your copy of an exercise is learn/LESSON/NAME.rs, made from its starter the first time you
check it; learn/ is yours (git ignores it). A check builds your copy and runs it as the tests
run the lessons: it must end by itself, leave nothing behind, print what is expected, and, for
some exercises, be right on every one of many runs or survive a worker that dies.
";

fn main() -> ExitCode {
    // As other command-line tools: `cargo ex list | head` ends quietly when `head` does.
    // SAFETY: SIG_DFL installs no handler of ours; nothing else in this program has set one.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("cargo ex: {error:#}");
            ExitCode::from(2)
        }
    }
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().expect("the checkout")
}

fn run(args: &[String]) -> anyhow::Result<ExitCode> {
    let root = root();
    let all = ex::manifest::all(&root)?;
    let learn = Learn::new(&root);
    let words: Vec<&str> = args.iter().map(String::as_str).collect();
    match words.as_slice() {
        [] => match all.iter().find(|e| learn.state(e) != State::Solved) {
            Some(next) => check_one(&root, &learn, &all, next),
            None => {
                println!(
                    "Every exercise passes: {} of {}. `cargo ex list` shows them.",
                    all.len(),
                    all.len()
                );
                Ok(ExitCode::SUCCESS)
            }
        },
        ["help" | "-h" | "--help"] => {
            print!("{HELP}");
            Ok(ExitCode::SUCCESS)
        }
        ["list"] => {
            list(&learn, &all);
            Ok(ExitCode::SUCCESS)
        }
        ["hint"] => hint(&learn, current(&learn, &all)?),
        ["hint", name] => hint(&learn, find(&all, name)?),
        ["solution"] => solution(&root, &learn, &all, current(&learn, &all)?),
        ["solution", name] => solution(&root, &learn, &all, find(&all, name)?),
        ["reset", name] => {
            let exercise = find(&all, name)?;
            learn.reset(exercise)?;
            println!("{} is back to its starter: {}", exercise.id(), shown(&root, &learn.copy(exercise)));
            Ok(ExitCode::SUCCESS)
        }
        ["watch"] => watch(&root, &learn, &all, None),
        ["watch", name] => watch(&root, &learn, &all, Some(find(&all, name)?)),
        [name] => check_one(&root, &learn, &all, find(&all, name)?),
        _ => anyhow::bail!("unknown command `{}` (try `cargo ex help`)", args.join(" ")),
    }
}

/// The exercise `name` names: `lesson/name`, or a name only one lesson has.
fn find<'a>(all: &'a [Exercise], name: &str) -> anyhow::Result<&'a Exercise> {
    let named: Vec<&Exercise> = all.iter().filter(|e| e.id() == name || e.name == name).collect();
    match named.as_slice() {
        [one] => Ok(one),
        [] => {
            let mut near: Vec<(f64, String)> = all
                .iter()
                .map(|e| {
                    (strsim::jaro_winkler(name, &e.id()).max(strsim::jaro_winkler(name, &e.name)), e.id())
                })
                .collect();
            near.sort_by(|a, b| b.0.total_cmp(&a.0));
            let names: Vec<String> = near.into_iter().take(3).map(|(_, id)| id).collect();
            anyhow::bail!(
                "no exercise `{name}`; the closest: {} (`cargo ex list` shows them all)",
                names.join(", ")
            )
        }
        many => anyhow::bail!(
            "`{name}` is in several lessons: {}",
            many.iter().map(|e| e.id()).collect::<Vec<_>>().join(", ")
        ),
    }
}

/// The exercise the learner works on: the last one checked, else the next unsolved one.
fn current<'a>(learn: &Learn, all: &'a [Exercise]) -> anyhow::Result<&'a Exercise> {
    if let Some(id) = learn.current()
        && let Some(exercise) = all.iter().find(|e| e.id() == id)
    {
        return Ok(exercise);
    }
    all.iter().find(|e| learn.state(e) != State::Solved).context("every exercise passes: name one")
}

fn shown(root: &Path, path: &Path) -> String {
    path.strip_prefix(root).unwrap_or(path).display().to_string()
}

fn introduce(root: &Path, learn: &Learn, exercise: &Exercise) {
    println!("{} — {} ({}, about {} min)", exercise.id(), exercise.title, exercise.kind, exercise.minutes);
    for line in exercise.task.trim().lines() {
        println!("  {line}");
    }
    println!("Your copy: {}", shown(root, &learn.copy(exercise)));
}

/// Check the learner's copy of `exercise`, and say what to do next.
fn check_one(root: &Path, learn: &Learn, all: &[Exercise], exercise: &Exercise) -> anyhow::Result<ExitCode> {
    let made = learn.start(exercise)?;
    learn.set_current(exercise)?;
    introduce(root, learn, exercise);
    if made {
        println!(
            "(made from the starter just now: open it, and run `cargo ex` again when you have changed it)"
        );
    }
    let verdict = check_copy(root, learn, all, exercise)?;
    report(learn, exercise, &verdict)?;
    Ok(if matches!(verdict, Verdict::Pass { .. }) { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

fn check_copy(root: &Path, learn: &Learn, all: &[Exercise], exercise: &Exercise) -> anyhow::Result<Verdict> {
    println!("Building it...");
    let (binary, reference) = match learn.build(exercise, all)? {
        Ok(built) => built,
        Err(compiler) => {
            return Ok(Verdict::Fail {
                kind: ex::Kind::Build,
                message: format!("it does not build:\n{compiler}"),
                hint: None,
            });
        }
    };
    println!("Checking it...");
    let expected = std::fs::read_to_string(exercise.expected(root))
        .with_context(|| format!("read {}", exercise.expected(root).display()))?;
    let scratch = root.join("target/learn/runs");
    let subject = ex::check::Subject { binary: &binary, reference: &reference, expected: &expected };
    Ok(ex::check(exercise, &subject, &scratch))
}

fn report(learn: &Learn, exercise: &Exercise, verdict: &Verdict) -> anyhow::Result<()> {
    match verdict {
        Verdict::Pass { race, note } => {
            learn.set_state(exercise, State::Solved)?;
            let race =
                race.map(|(right, runs)| format!(" ({right} of {runs} runs right)")).unwrap_or_default();
            println!("\n✓ {} passes every check{race}.", exercise.id());
            if let Some(note) = note {
                println!("(Note: {note}.)");
            }
            println!("Why it works:");
            for line in exercise.why.trim().lines() {
                println!("  {line}");
            }
            println!(
                "`cargo ex solution` shows the reference solution; `cargo ex` goes on to the next exercise."
            );
        }
        Verdict::Fail { kind, message, hint } => {
            learn.set_state(exercise, State::Attempted)?;
            println!("\n✗ {kind}: {message}");
            match hint {
                // What the hang's diagnosis found picks the hint.
                Some(index) => {
                    learn.saw_hint(exercise, *index)?;
                    println!(
                        "What it found fits hint {} of {}:\n  {}",
                        index + 1,
                        exercise.hints.len(),
                        exercise.hints[*index]
                    );
                }
                None => println!("`cargo ex hint` gives a hint ({} in all).", exercise.hints.len()),
            }
        }
    }
    Ok(())
}

fn list(learn: &Learn, all: &[Exercise]) {
    let mut lesson = "";
    let solved = all.iter().filter(|e| learn.state(e) == State::Solved).count();
    println!("{solved} of {} exercises solved.", all.len());
    for exercise in all {
        if exercise.lesson != lesson {
            lesson = &exercise.lesson;
            println!("\n{lesson}");
        }
        let state = match learn.state(exercise) {
            State::Solved => "solved     ",
            State::Attempted => "attempted  ",
            State::NotStarted => "not started",
        };
        println!(
            "  {state}  {:<32} {:<7} {:>3} min  {}",
            exercise.id(),
            exercise.kind,
            exercise.minutes,
            exercise.title
        );
    }
}

fn hint(learn: &Learn, exercise: &Exercise) -> anyhow::Result<ExitCode> {
    let index = learn.next_hint(exercise)?;
    println!("{} — hint {} of {}:", exercise.id(), index + 1, exercise.hints.len());
    println!("  {}", exercise.hints[index]);
    Ok(ExitCode::SUCCESS)
}

fn solution(root: &Path, learn: &Learn, all: &[Exercise], exercise: &Exercise) -> anyhow::Result<ExitCode> {
    if learn.state(exercise) != State::Solved {
        // Solved means it passed; check again, in case it was solved before a `reset`.
        if !matches!(check_copy(root, learn, all, exercise)?, Verdict::Pass { .. }) {
            println!(
                "The solution waits until yours passes: `cargo ex {}` says what is left.",
                exercise.id()
            );
            return Ok(ExitCode::FAILURE);
        }
        learn.set_state(exercise, State::Solved)?;
    }
    let reference = std::fs::read_to_string(exercise.solution(root))?;
    let yours = std::fs::read_to_string(learn.copy(exercise))?;
    println!("The reference solution, {}:\n", shown(root, &exercise.solution(root)));
    print!("{reference}");
    if yours == reference {
        println!("\nYours is the same, to the letter.");
    } else {
        let diff = similar::TextDiff::from_lines(&yours, &reference);
        println!("\nHow it differs from yours (- yours, + the reference):\n");
        print!("{}", diff.unified_diff().context_radius(2).header("yours", "reference"));
    }
    Ok(ExitCode::SUCCESS)
}

/// Check `exercise` (or the next unsolved one) every time its copy changes; when it passes,
/// go on to the next.
fn watch(root: &Path, learn: &Learn, all: &[Exercise], named: Option<&Exercise>) -> anyhow::Result<ExitCode> {
    let mut exercise = match named {
        Some(exercise) => exercise,
        None => match all.iter().find(|e| learn.state(e) != State::Solved) {
            Some(next) => next,
            None => return run(&[]),
        },
    };
    loop {
        check_one(root, learn, all, exercise)?;
        if learn.state(exercise) == State::Solved {
            match all.iter().find(|e| learn.state(e) != State::Solved) {
                Some(next) => {
                    exercise = next;
                    learn.start(exercise)?;
                    println!(
                        "\nNext: {} (edit {}; Ctrl-C to stop)",
                        exercise.id(),
                        shown(root, &learn.copy(exercise))
                    );
                }
                None => {
                    println!("\nThat was the last one: every exercise passes.");
                    return Ok(ExitCode::SUCCESS);
                }
            }
        }
        println!("\nWatching {} for changes (Ctrl-C to stop)...", shown(root, &learn.copy(exercise)));
        let copy = learn.copy(exercise);
        let seen = modified(&copy);
        while modified(&copy) == seen {
            std::thread::sleep(Duration::from_millis(300));
        }
        println!();
    }
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}
