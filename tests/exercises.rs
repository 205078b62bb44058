//! Every exercise, found at run time (`exercises/<lesson>/exercises.toml`), proven both ways
//! with the same checks `cargo ex` runs on a learner's copy (crates/ex):
//!
//! - `<lesson>/<name>/starter-fails-as-declared`: the pristine starter fails, and the first
//!   check it fails is its declared kind. A race starter must be wrong on at least half of
//!   its runs (checked twice before it counts as not racing, so it cannot flake).
//! - `<lesson>/<name>/solution-passes`: the reference solution passes every check, a race
//!   solution on every run. Its output is `expected.out`: if that is missing or differs, the
//!   test writes `expected.out.new` to read and rename.
//! - `<lesson>/<name>/is-complete`: a task, a hint or more, minutes, a why; both programs
//!   declared in the lesson's `exercises/<lesson>/Cargo.toml`; the starter's and solution's
//!   files exist.
//!
//! - `book-pages-are-current`: each chapter's Exercises section and each solutions page are
//!   what `cargo xtask exercises` makes of the manifests; each chapter with exercises
//!   includes its section, and SUMMARY.md lists its solutions page under it.
//!
//! - `grading-a-class`: `cargo ex grade`'s code grades a generated class of 10 on three
//!   exercises (an output, a race, a hang), and every cell is what the student's work must
//!   give: passed, the declared kind of a starter, does not build, not started; a student who
//!   changed the checks in their own copy is graded by the pristine ones.
//!
//! The programs are the workspace's own builds: clippy and rustfmt check them with the rest
//! of the code (.ci/run). A learner's copies in `learn/` are never built or checked here.

use std::path::Path;

use ex::{Exercise, Kind, Verdict};
use libtest_mimic::{Arguments, Failed, Trial};

fn main() {
    let args = Arguments::from_args();
    let root = forklore::root();
    let all = ex::manifest::all(root).expect("read the exercises");
    let mut trials = vec![Trial::test("book-pages-are-current", {
        let all = all.clone();
        move || book_pages_are_current(&all)
    })];
    let student_copy = ex::manifest::is_student_copy(root);
    if student_copy {
        println!(
            "A student copy ({}): no solutions to prove or grade with, only the starters.",
            ex::manifest::STUDENT_COPY
        );
    } else {
        let all = all.clone();
        trials.push(Trial::test("grading-a-class", move || grading_a_class(&all)));
    }
    for exercise in all {
        let id = exercise.id();
        let e = exercise.clone();
        trials.push(Trial::test(format!("{id}/starter-fails-as-declared"), move || starter_fails(&e)));
        let e = exercise.clone();
        if !student_copy {
            trials.push(Trial::test(format!("{id}/solution-passes"), move || solution_passes(&e)));
        }
        let e = exercise.clone();
        trials.push(Trial::test(format!("{id}/is-complete"), move || is_complete(&e)));
    }
    libtest_mimic::run(&args, trials).exit();
}

fn binary(exercise: &Exercise, solution: bool) -> std::path::PathBuf {
    let prebuilt = exercise.prebuilt_reference(forklore::root());
    if solution && ex::manifest::is_student_copy(forklore::root()) && prebuilt.is_file() {
        return prebuilt; // the teacher built it: the source is not in a student copy
    }
    let solution = solution && !ex::manifest::is_student_copy(forklore::root());
    let bin = if solution { format!("{}-solution", exercise.bin()) } else { exercise.bin() };
    // A speed check times release builds, as `cargo ex` does.
    let release = exercise.slow_ratio.is_some();
    supervisor::build_program(&forklore::root().join("Cargo.toml"), &exercise.package(), &bin, release)
}

fn scratch() -> &'static Path {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
}

fn expected(exercise: &Exercise) -> String {
    std::fs::read_to_string(exercise.expected(forklore::root())).unwrap_or_default()
}

fn starter_fails(exercise: &Exercise) -> Result<(), Failed> {
    let (starter, reference, expected) =
        (binary(exercise, false), binary(exercise, true), expected(exercise));
    let subject = ex::check::Subject { binary: &starter, reference: &reference, expected: &expected };
    let mut verdict = ex::check(exercise, &subject, scratch());
    if exercise.kind == Kind::Race && !races_clearly(&verdict) {
        verdict = ex::check(exercise, &subject, scratch()); // once more
    }
    match &verdict {
        // A hang's diagnosis picks the hint the exercise names for what it finds.
        Verdict::Fail { kind: Kind::Hang, hint: None, message }
            if exercise.kind == Kind::Hang && !exercise.diagnosis.is_empty() =>
        {
            return Err(format!(
                "the hang of {} found nothing its diagnosis ({:?}) names a hint for:\n{message}",
                exercise.id(),
                exercise.diagnosis
            )
            .into());
        }
        Verdict::Fail { kind, .. } if *kind == exercise.kind => {}
        other => {
            return Err(format!(
                "the starter of {} should fail its {} check first; the checks gave: {other:?}",
                exercise.id(),
                exercise.kind
            )
            .into());
        }
    }
    if exercise.kind == Kind::Race && !races_clearly(&verdict) {
        return Err(format!("the race starter of {} was right too often: {verdict:?}", exercise.id()).into());
    }
    Ok(())
}

/// A race verdict with at most half of the runs right.
fn races_clearly(verdict: &Verdict) -> bool {
    let Verdict::Fail { kind: Kind::Race, message, .. } = verdict else { return false };
    let numbers: Vec<u32> = message.split_whitespace().take(3).filter_map(|w| w.parse().ok()).collect();
    matches!(numbers.as_slice(), [right, runs] if right * 2 <= *runs)
}

fn solution_passes(exercise: &Exercise) -> Result<(), Failed> {
    let root = forklore::root();
    let solution = binary(exercise, true);
    // Its output first: `expected.out` is what it prints, redacted.
    let outcome = supervisor::Run::new(&solution, scratch()).env("FORKLORE_MARK_VARYING", "1").go();
    let printed = ex::check::redact(&outcome.stdout);
    let path = exercise.expected(root);
    if std::fs::read_to_string(&path).ok().as_deref() != Some(printed.as_str()) {
        let new = path.with_extension("out.new");
        std::fs::write(&new, &printed)?;
        return Err(format!(
            "{} is missing or differs from what the solution prints: read {} and rename it",
            path.display(),
            new.display()
        )
        .into());
    }
    let subject = ex::check::Subject { binary: &solution, reference: &solution, expected: &printed };
    match ex::check(exercise, &subject, scratch()) {
        Verdict::Pass { .. } => Ok(()),
        failed => {
            Err(format!("the solution of {} should pass every check: {failed:?}", exercise.id()).into())
        }
    }
}

fn is_complete(exercise: &Exercise) -> Result<(), Failed> {
    let root = forklore::root();
    let mut missing = Vec::new();
    if exercise.task.trim().is_empty() || exercise.why.trim().is_empty() || exercise.title.trim().is_empty() {
        missing.push("a title, a task and a why".to_string());
    }
    if exercise.hints.is_empty() || exercise.hints.len() > 3 {
        missing.push(format!("1 to 3 hints (it has {})", exercise.hints.len()));
    }
    if exercise.minutes == 0 {
        missing.push("its minutes".into());
    }
    if exercise.kind == Kind::Race && exercise.race_runs.is_none() {
        missing.push("race_runs, for a race".into());
    }
    if exercise.kind == Kind::Hang && exercise.diagnosis.is_empty() {
        missing.push("diagnosis, for a hang: which hint fits what the report finds".into());
    }
    if exercise.kind == Kind::Fault && exercise.faults.is_empty() {
        missing.push("faults, for a fault".into());
    }
    if exercise.kind == Kind::Cost && exercise.cost_ratio.is_none() {
        missing.push("cost_ratio, for a cost".into());
    }
    if exercise.kind == Kind::Slow && exercise.slow_ratio.is_none() {
        missing.push("slow_ratio, for a slow".into());
    }
    // A student copy has no solutions; the cost and slow checks run the teacher's build of it.
    let student_copy = ex::manifest::is_student_copy(root);
    let needs_reference = exercise.cost_ratio.is_some() || exercise.slow_ratio.is_some();
    let mut files = vec![exercise.starter(root)];
    files.push(if !student_copy { exercise.solution(root) } else { exercise.prebuilt_reference(root) });
    for file in files.into_iter().filter(|f| !student_copy || needs_reference || f.ends_with("starter.rs")) {
        if !file.is_file() {
            missing.push(format!("{}", file.display()));
        }
    }
    let package = root.join("exercises").join(&exercise.lesson).join("Cargo.toml");
    let manifest = std::fs::read_to_string(&package).unwrap_or_default();
    let mut programs = vec![(exercise.bin(), format!("{}/starter.rs", exercise.name))];
    if !student_copy {
        programs.push((format!("{}-solution", exercise.bin()), format!("{}/solution.rs", exercise.name)));
    }
    for (bin, file) in programs {
        let declared = format!("name = \"{bin}\"\npath = \"{file}\"");
        if !manifest.contains(&declared) {
            missing.push(format!("[[bin]] {declared:?} in {}", package.display()));
        }
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(format!("{} lacks: {}", exercise.id(), missing.join("; ")).into())
    }
}

fn book_pages_are_current(all: &[Exercise]) -> Result<(), Failed> {
    let root = forklore::root();
    let mut problems = Vec::new();
    for (path, text) in ex::book::pages(root, all) {
        if std::fs::read_to_string(&path).ok().as_deref() != Some(text.as_str()) {
            problems.push(format!("{} is not what `cargo xtask exercises` writes: run it", path.display()));
        }
    }
    let summary = std::fs::read_to_string(root.join("book/src/SUMMARY.md"))?;
    let mut lessons: Vec<&str> = all.iter().map(|e| e.lesson.as_str()).collect();
    lessons.dedup();
    for lesson in lessons {
        let chapter = std::fs::read_to_string(root.join("book/src").join(format!("{lesson}.md")))?;
        if !chapter.contains(&format!("{{{{#include exercises/{lesson}.md}}}}")) {
            problems.push(format!("{lesson}.md does not include exercises/{lesson}.md (at its end)"));
        }
        let entry = format!(
            "]({lesson}.md)\n  - [{}]({})",
            ex::book::solutions_title(lesson),
            ex::book::solutions_file(lesson)
        );
        if !ex::manifest::is_student_copy(root) && !summary.contains(&entry) {
            problems
                .push(format!("SUMMARY.md does not list the solutions page under {lesson}.md: {entry:?}"));
        }
    }
    if problems.is_empty() { Ok(()) } else { Err(problems.join("\n").into()) }
}

fn grading_a_class(all: &[Exercise]) -> Result<(), Failed> {
    let root = forklore::root();
    let chosen = ["pipe/framing", "value-array/lost-updates", "pipe/never-eof"];
    let exercises: Vec<&Exercise> = chosen
        .iter()
        .map(|id| all.iter().find(|e| e.id() == *id).ok_or_else(|| format!("no exercise {id}")))
        .collect::<Result<_, _>>()?;
    let place = scratch().join("grading");
    let class = place.join("class");
    let _ = std::fs::remove_dir_all(&class);
    let works = ex::grade::make_class(root, &exercises, &class, 10)?;
    let grades = ex::grade::grade(
        root,
        &class,
        all,
        &exercises,
        &place.join("work"),
        &root.join("target/learn"),
        &mut |_| {},
    )?;
    let mut wrong = Vec::new();
    for ((student, cells), works) in grades.students.iter().zip(&works) {
        for ((cell, work), exercise) in cells.iter().zip(works).zip(&exercises) {
            if !cell.short().starts_with(&work.expected(exercise)) {
                wrong.push(format!("{student} {}: {cell:?}, for {work:?}", exercise.id()));
            }
        }
    }
    if grades.students.len() != 10 || !wrong.is_empty() {
        return Err(
            format!("{} students graded; wrong cells:\n{}", grades.students.len(), wrong.join("\n")).into()
        );
    }
    let table = grades.markdown();
    if !table.contains("| student-02 |") || grades.csv().lines().count() != 11 {
        return Err(format!("the tables lack rows:\n{table}").into());
    }
    Ok(())
}
