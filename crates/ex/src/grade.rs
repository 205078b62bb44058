//! Grading a class (`cargo ex grade <dir>`): each folder in `<dir>` is one student's copy of
//! the project, and their work is its `learn/<lesson>/<name>.rs` files. Only those files are
//! read: they are copied into a scratch workspace of the grader's own, beside the grader's
//! pristine manifests, expected outputs and reference solutions, so whatever else a student
//! changed (a check, an expected output, a manifest) counts for nothing. Every program of the
//! class is built by one cargo run with one target dir (`--keep-going`: a program that does
//! not build is one cell, not the end of the grading), then checked one at a time by the
//! same checks as `cargo ex`, under the same timeout, output cap and process limit.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::check::{Subject, Verdict};
use crate::manifest::{Exercise, Kind};

/// One student's result on one exercise.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cell {
    /// Every check passed; for a race, how many runs were right of how many.
    Passed { race: Option<(u32, u32)> },
    /// The first check that failed, and what it said.
    Failed { kind: Kind, message: String },
    /// The compiler's first errors.
    DoesNotBuild(String),
    /// No `learn/<lesson>/<name>.rs` in the student's copy.
    NotStarted,
}

impl Cell {
    /// The cell as the tables show it: `passed`, `hang`, `race: 7 of 20`, `does not build`.
    pub fn short(&self) -> String {
        match self {
            Cell::Passed { .. } => "passed".into(),
            Cell::Failed { kind: Kind::Race, message } => {
                let numbers: Vec<&str> = message.split_whitespace().take(3).collect();
                match numbers.as_slice() {
                    [right, "of", runs] => format!("race: {right} of {runs}"),
                    _ => "race".into(),
                }
            }
            Cell::Failed { kind, .. } => kind.to_string(),
            Cell::DoesNotBuild(_) => "does not build".into(),
            Cell::NotStarted => "not started".into(),
        }
    }
}

/// A class's grades: a row per student, a column per exercise.
#[derive(Debug)]
pub struct Grades {
    pub exercises: Vec<String>,
    pub students: Vec<(String, Vec<Cell>)>,
    /// How long the one build took, and the checks.
    pub build: Duration,
    pub checks: Duration,
}

/// The students of `class`: its folders, by name.
pub fn students(class: &Path) -> anyhow::Result<Vec<(String, PathBuf)>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(class).with_context(|| format!("read {}", class.display()))? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            found.push((entry.file_name().to_string_lossy().into_owned(), entry.path()));
        }
    }
    found.sort();
    if found.is_empty() {
        bail!("{} has no folders: each student's copy of the project is one folder in it", class.display());
    }
    Ok(found)
}

/// Grade every student in `class` on `exercises` (of `all`), from the checkout at `root`.
/// `work` is the scratch workspace (emptied first), `target` the cargo target dir, `said`
/// hears what is going on.
pub fn grade(
    root: &Path,
    class: &Path,
    all: &[Exercise],
    exercises: &[&Exercise],
    work: &Path,
    target: &Path,
    said: &mut dyn FnMut(&str),
) -> anyhow::Result<Grades> {
    let students = students(class)?;
    // Only the students' exercise sources, copied in: src/<k>/<lesson>/<name>.rs.
    let _ = std::fs::remove_dir_all(work.join("src"));
    let mut programs = Vec::new();
    let mut present = BTreeSet::new();
    let program = |k: usize, exercise: &Exercise| format!("{}--{}", exercise.bin(), k + 1);
    for (k, (_, copy)) in students.iter().enumerate() {
        for exercise in exercises {
            let theirs = copy.join("learn").join(&exercise.lesson).join(format!("{}.rs", exercise.name));
            if !theirs.is_file() {
                continue;
            }
            let ours = work
                .join("src")
                .join((k + 1).to_string())
                .join(&exercise.lesson)
                .join(format!("{}.rs", exercise.name));
            std::fs::create_dir_all(ours.parent().expect("a file in a folder"))?;
            std::fs::copy(&theirs, &ours).with_context(|| format!("copy {}", theirs.display()))?;
            programs.push((program(k, exercise), ours));
            present.insert((k, exercise.id()));
        }
    }
    for exercise in exercises {
        programs.push((format!("{}-solution", exercise.bin()), exercise.solution(root)));
    }
    crate::learn::write_package(root, work, "grade", all, &programs)?;

    // One build for the class: the dev profile, and release for the programs a speed check times.
    let started = Instant::now();
    let release: BTreeSet<String> = exercises
        .iter()
        .filter(|e| e.slow_ratio.is_some())
        .flat_map(|e| {
            let mut names: Vec<String> = (0..students.len()).map(|k| program(k, e)).collect();
            names.push(format!("{}-solution", e.bin()));
            names
        })
        .collect();
    let (debug_names, release_names): (Vec<&String>, Vec<&String>) =
        programs.iter().map(|(name, _)| name).partition(|name| !release.contains(*name));
    said(&format!("building {} programs for {} students...", programs.len(), students.len()));
    let mut built = BTreeMap::new();
    let mut errors = BTreeMap::new();
    for (names, release) in [(debug_names, false), (release_names, true)] {
        if !names.is_empty() {
            build(work, target, &names, release, &mut built, &mut errors)?;
        }
    }
    let build_time = started.elapsed();

    let started = Instant::now();
    let scratch = work.join("runs");
    let mut rows = Vec::new();
    for (k, (student, _)) in students.iter().enumerate() {
        said(&format!("checking {student} ({} of {})...", k + 1, students.len()));
        let mut cells = Vec::new();
        for exercise in exercises {
            let name = program(k, exercise);
            let cell = if !present.contains(&(k, exercise.id())) {
                Cell::NotStarted
            } else if let Some(binary) = built.get(&name) {
                let reference = built
                    .get(&format!("{}-solution", exercise.bin()))
                    .with_context(|| format!("the reference solution of {} did not build", exercise.id()))?;
                let expected = std::fs::read_to_string(exercise.expected(root))?;
                let subject = Subject { binary, reference, expected: &expected };
                match crate::check(exercise, &subject, &scratch) {
                    Verdict::Pass { race, .. } => Cell::Passed { race },
                    Verdict::Fail { kind, message, .. } => Cell::Failed { kind, message },
                }
            } else {
                Cell::DoesNotBuild(errors.get(&name).cloned().unwrap_or_default())
            };
            cells.push(cell);
        }
        rows.push((student.clone(), cells));
    }
    Ok(Grades {
        exercises: exercises.iter().map(|e| e.id()).collect(),
        students: rows,
        build: build_time,
        checks: started.elapsed(),
    })
}

/// `cargo build --keep-going` of `names`: what built goes into `built` (name, program),
/// what did not into `errors` (name, the compiler's first error lines).
fn build(
    work: &Path,
    target: &Path,
    names: &[&String],
    release: bool,
    built: &mut BTreeMap<String, PathBuf>,
    errors: &mut BTreeMap<String, String>,
) -> anyhow::Result<()> {
    let mut cargo = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cargo
        .args(["build", "--keep-going", "--message-format", "json-diagnostic-short"])
        .args(release.then_some("--release"))
        .arg("--manifest-path")
        .arg(work.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(target)
        .env_remove("CARGO_TARGET_DIR")
        .stdin(Stdio::null())
        .stderr(Stdio::piped());
    for name in names {
        cargo.args(["--bin", name]);
    }
    let output = supervisor::output_of(&mut cargo).context("run cargo build")?;
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let Ok(message) = serde_json::from_str::<serde_json::Value>(line) else { continue };
        let name = message["target"]["name"].as_str().unwrap_or_default().to_string();
        match message["reason"].as_str() {
            Some("compiler-artifact") => {
                if let Some(executable) = message["executable"].as_str() {
                    built.insert(name, PathBuf::from(executable));
                }
            }
            Some("compiler-message") if message["message"]["level"] == "error" => {
                let rendered = message["message"]["rendered"].as_str().unwrap_or_default().trim();
                let said = errors.entry(name).or_default();
                if said.lines().count() < 6 {
                    said.push_str(rendered);
                    said.push('\n');
                }
            }
            _ => {}
        }
    }
    // A build that failed for another reason than a program of the class (a dependency, the
    // network): nothing would be graded fairly.
    if !output.status.success() && errors.is_empty() {
        bail!("cargo build failed:\n{}", String::from_utf8_lossy(&output.stderr));
    }
    Ok(())
}

impl Grades {
    fn passed(&self, cells: &[Cell]) -> usize {
        cells.iter().filter(|c| matches!(c, Cell::Passed { .. })).count()
    }

    /// The table in Markdown: a row per student, a column per exercise.
    pub fn markdown(&self) -> String {
        let mut text = String::from("| student | passed |");
        for id in &self.exercises {
            let _ = write!(text, " {id} |");
        }
        text.push_str("\n|---|---|");
        text.push_str(&"---|".repeat(self.exercises.len()));
        text.push('\n');
        for (student, cells) in &self.students {
            let _ = write!(text, "| {student} | {} of {} |", self.passed(cells), cells.len());
            for cell in cells {
                let _ = write!(text, " {} |", cell.short());
            }
            text.push('\n');
        }
        text
    }

    /// The same table as CSV.
    pub fn csv(&self) -> String {
        let quote = |field: &str| {
            if field.contains([',', '"', '\n']) {
                format!("\"{}\"", field.replace('"', "\"\""))
            } else {
                field.to_string()
            }
        };
        let mut text = String::from("student,passed");
        for id in &self.exercises {
            text.push(',');
            text.push_str(&quote(id));
        }
        text.push('\n');
        for (student, cells) in &self.students {
            text.push_str(&quote(student));
            let _ = write!(text, ",{}", self.passed(cells));
            for cell in cells {
                text.push(',');
                text.push_str(&quote(&cell.short()));
            }
            text.push('\n');
        }
        text
    }

    /// What each failure said, student by student, for the teacher to read.
    pub fn details(&self) -> String {
        let mut text = String::from("# What each check said\n");
        for (student, cells) in &self.students {
            let _ = write!(text, "\n## {student}\n");
            for (id, cell) in self.exercises.iter().zip(cells) {
                let said = match cell {
                    Cell::Failed { kind, message } => format!("{kind}: {message}"),
                    Cell::DoesNotBuild(errors) => format!("does not build:\n{errors}"),
                    _ => continue,
                };
                let lines: Vec<&str> = said.lines().take(12).collect();
                let _ = write!(text, "\n- **{id}**\n\n  ```text\n  {}\n  ```\n", lines.join("\n  "));
            }
        }
        text
    }
}

/// What a generated student did with one exercise, and so what grading must find.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Work {
    /// The reference solution, with a comment of their own.
    Solved,
    /// The starter, untouched but for a comment: it fails its declared check.
    Starter,
    /// The solution with a type error in it.
    Broken,
    /// No copy at all.
    Absent,
}

impl Work {
    /// The cell grading must give it, as [`Cell::short`] starts.
    pub fn expected(self, exercise: &Exercise) -> String {
        match self {
            Work::Solved => "passed".into(),
            Work::Starter => exercise.kind.to_string(),
            Work::Broken => "does not build".into(),
            Work::Absent => "not started".into(),
        }
    }
}

/// A class of `size` generated students in `class` (for measuring and testing the grader):
/// `student-01`... each a folder with a `learn/` of copies made from the solutions and the
/// starters, a tenth of them broken and a tenth absent, mixed so that every exercise has each
/// kind of work in a class of 10 or more. Student 2 also changed checks of their own copy (an
/// expected output, a manifest), which grading must ignore. What each did, by student.
pub fn make_class(
    root: &Path,
    exercises: &[&Exercise],
    class: &Path,
    size: usize,
) -> anyhow::Result<Vec<Vec<Work>>> {
    let mut works = Vec::new();
    for k in 0..size {
        let student = class.join(format!("student-{:02}", k + 1));
        let mut row = Vec::new();
        for (j, exercise) in exercises.iter().enumerate() {
            let work = match (k * 7 + j * 3) % 10 {
                0..=4 => Work::Solved,
                5 | 6 => Work::Starter,
                7 => Work::Broken,
                _ => Work::Absent,
            };
            let copy = student.join("learn").join(&exercise.lesson).join(format!("{}.rs", exercise.name));
            std::fs::create_dir_all(copy.parent().expect("a file in a folder"))?;
            let _ = std::fs::remove_file(&copy);
            let header = format!("// student-{:02}'s work\n", k + 1);
            let text = match work {
                Work::Solved => std::fs::read_to_string(exercise.solution(root))?,
                Work::Starter => std::fs::read_to_string(exercise.starter(root))?,
                Work::Broken => {
                    std::fs::read_to_string(exercise.solution(root))?
                        + "\nfn unfinished() -> u32 {\n    \"not a number\"\n}\n"
                }
                Work::Absent => {
                    row.push(work);
                    continue;
                }
            };
            std::fs::write(&copy, header + &text)?;
            row.push(work);
        }
        if k == 1 {
            // Checks changed in their own copy count for nothing: grading reads only learn/.
            for exercise in exercises {
                let expected = exercise.expected(&student);
                std::fs::create_dir_all(expected.parent().expect("a file in a folder"))?;
                std::fs::write(&expected, "whatever my program prints\n")?;
                let manifest = student.join("exercises").join(&exercise.lesson).join("exercises.toml");
                std::fs::write(manifest, "# no checks here\n")?;
            }
        }
        works.push(row);
    }
    Ok(works)
}
