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

For teachers:
  cargo ex grade DIR [EXERCISE...]  grade a class: each folder in DIR is one student's copy
                            of the project; writes DIR/grades.md, grades.csv, grades-details.md
  cargo ex student-copy DEST  a copy of the project for students, without the solutions
  cargo ex schedule [MINUTES]  a course plan from the exercises' minutes, in sessions of
                            MINUTES (90 if not given)

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
        ["grade", class, only @ ..] => grade(&root, &all, Path::new(class), only),
        ["student-copy", dest] => {
            let copied = ex::copy::student_copy(&root, &all, Path::new(dest))?;
            println!(
                "Wrote a student copy to {dest}: {} files, without {} (the solutions and their pages), \
                 with {} reference programs for the cost and slow checks.",
                copied.files,
                copied.left_out.len(),
                copied.references
            );
            Ok(ExitCode::SUCCESS)
        }
        ["schedule"] => schedule(&all, 90),
        ["schedule", minutes] => match minutes.parse::<u32>() {
            Ok(minutes) if minutes >= 30 => schedule(&all, minutes),
            _ => anyhow::bail!("a session is a number of minutes, 30 or more: not `{minutes}`"),
        },
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
    if !exercise.solution(root).is_file() {
        println!("This copy of the project has no solutions (your teacher made it without them): ask them.");
        return Ok(ExitCode::FAILURE);
    }
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

/// Grade the class in `class`: on every exercise, or on those named.
fn grade(root: &Path, all: &[Exercise], class: &Path, only: &[&str]) -> anyhow::Result<ExitCode> {
    let exercises: Vec<&Exercise> = if only.is_empty() {
        all.iter().collect()
    } else {
        only.iter().map(|n| find(all, n)).collect::<Result<_, _>>()?
    };
    let started = std::time::Instant::now();
    let grades = ex::grade::grade(
        root,
        class,
        all,
        &exercises,
        &root.join("target/grade"),
        &root.join("target/learn"),
        &mut |said| eprintln!("{said}"),
    )?;
    let written = [
        ("grades.md", grades.markdown()),
        ("grades.csv", grades.csv()),
        ("grades-details.md", grades.details()),
    ];
    for (file, text) in &written {
        std::fs::write(class.join(file), text).with_context(|| format!("write {file}"))?;
    }
    print!("{}", grades.markdown());
    println!(
        "\n{} students, {} exercises: {:.0} s in all (the build {:.0} s, the checks {:.0} s), on {} CPUs.",
        grades.students.len(),
        grades.exercises.len(),
        started.elapsed().as_secs_f64(),
        grades.build.as_secs_f64(),
        grades.checks.as_secs_f64(),
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    println!("Written: {} (grades.md, grades.csv, grades-details.md).", class.display());
    Ok(ExitCode::SUCCESS)
}

/// A course plan: the lessons in the book's order, each with its exercises, packed into
/// sessions of `session` minutes (a lesson's exercises stay together where they fit).
fn schedule(all: &[Exercise], session: u32) -> anyhow::Result<ExitCode> {
    let mut lessons: Vec<(&str, Vec<&Exercise>)> = Vec::new();
    for exercise in all {
        match lessons.last_mut() {
            Some((lesson, exercises)) if *lesson == exercise.lesson => exercises.push(exercise),
            _ => lessons.push((&exercise.lesson, vec![exercise])),
        }
    }
    let total: u32 = all.iter().map(|e| e.minutes).sum();
    println!("# A course in sessions of {session} minutes\n");
    println!(
        "{} exercises, {total} minutes of work in all (the estimates in exercises/*/exercises.toml), \
         plus {READING} minutes per lesson to read and run its chapter first.\n",
        all.len()
    );
    println!("| session | lesson | exercises | minutes |\n|---|---|---|---|");
    let (mut number, mut used) = (1, 0);
    for (lesson, exercises) in &lessons {
        // The chapter first, then its exercises; a part that does not fit goes to the next session.
        let mut parts: Vec<(String, u32)> =
            vec![(format!("read and run `cargo run -p lesson-{lesson}`"), READING)];
        parts.extend(exercises.iter().map(|e| (format!("`{}` ({})", e.id(), e.kind), e.minutes)));
        let mut row: Vec<String> = Vec::new();
        let mut minutes = 0;
        for (what, length) in parts {
            if used + length > session && used > 0 {
                if !row.is_empty() {
                    println!("| {number} | {lesson} | {} | {minutes} |", row.join(", "));
                }
                (number, used, minutes) = (number + 1, 0, 0);
                row.clear();
            }
            row.push(what);
            used += length;
            minutes += length;
        }
        if !row.is_empty() {
            println!("| {number} | {lesson} | {} | {minutes} |", row.join(", "));
        }
    }
    println!("\n{number} sessions. Teacher notes for each exercise are on the book's solutions pages.");
    Ok(ExitCode::SUCCESS)
}

/// Minutes to read a chapter and run its lesson, before its exercises.
const READING: u32 = 20;
