//! The exercises: `exercises/<lesson>/exercises.toml` says what each asks and how it is
//! checked; beside it, `<name>/starter.rs` (what the learner gets), `<name>/solution.rs`, and
//! `<name>/expected.out` (what the solution prints, as the checks compare it). The package in
//! `exercises/<lesson>/Cargo.toml` builds both programs, as `<lesson>-<name>` and
//! `<lesson>-<name>-solution`.

use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::Deserialize;

/// How an exercise's starter is wrong: the check that fails on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// It does not build (only ever a learner's copy).
    Build,
    /// It prints the wrong thing, or exits with an error.
    Output,
    /// It never ends: its processes wait for each other.
    Hang,
    /// It leaves something behind: a process, a zombie, a file, a shared-memory segment.
    Leak,
    /// It is right on some runs and wrong on others.
    Race,
    /// It does not survive a worker that dies or panics.
    Fault,
    /// It costs far more than it should: pages copied or touched that could be shared.
    Cost,
    /// It is far slower than the reference solution, on the same machine.
    Slow,
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(match self {
            Kind::Build => "build",
            Kind::Output => "output",
            Kind::Hang => "hang",
            Kind::Leak => "leak",
            Kind::Race => "race",
            Kind::Fault => "fault",
            Kind::Cost => "cost",
            Kind::Slow => "slow",
        })
    }
}

/// One exercise, as its lesson's `exercises.toml` describes it.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Exercise {
    /// The lesson it belongs to (from the folder, not the file).
    #[serde(skip)]
    pub lesson: String,
    pub name: String,
    pub title: String,
    pub kind: Kind,
    pub minutes: u32,
    pub task: String,
    pub hints: Vec<String>,
    pub why: String,
    /// Which hint fits what a hang's diagnosis found, by the finding's key (`own-write-end`,
    /// `nobody-writes`, `nobody-reads`: see `supervisor::stuck::diagnose`) and the hint's
    /// number, from 1: the check shows it with the report.
    #[serde(default)]
    pub diagnosis: std::collections::BTreeMap<String, usize>,
    /// Runs that must all succeed (a race check), 2 in 5 of them two at a time.
    #[serde(default)]
    pub race_runs: Option<u32>,
    /// `FORKLORE_FAULT` values to run it with (`kill:1`, `panic:1`): each run must fail
    /// cleanly, at once, naming what died.
    #[serde(default)]
    pub faults: Vec<String>,
    /// Its processes may take at most this many times the page faults of the reference
    /// solution's (a cost check).
    #[serde(default)]
    pub cost_ratio: Option<f64>,
    /// Its run may take at most this many times the reference solution's (a slow check,
    /// release builds, timed alternately on the same machine).
    #[serde(default)]
    pub slow_ratio: Option<f64>,
    /// For teachers: what learners get wrong, how it goes in class (the solutions page shows
    /// it folded away).
    #[serde(default)]
    pub teacher: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    exercise: Vec<Exercise>,
}

impl Exercise {
    /// `lesson/name`: how learners and progress name it.
    pub fn id(&self) -> String {
        format!("{}/{}", self.lesson, self.name)
    }

    /// The folder of its files.
    pub fn dir(&self, root: &Path) -> PathBuf {
        root.join("exercises").join(&self.lesson).join(&self.name)
    }

    pub fn starter(&self, root: &Path) -> PathBuf {
        self.dir(root).join("starter.rs")
    }

    pub fn solution(&self, root: &Path) -> PathBuf {
        self.dir(root).join("solution.rs")
    }

    /// What the solution prints, redacted as the checks compare it.
    pub fn expected(&self, root: &Path) -> PathBuf {
        self.dir(root).join("expected.out")
    }

    /// In a student copy, the reference solution's program, built by the teacher (for the
    /// cost and slow checks, which compare with it): the source is not in the copy.
    pub fn prebuilt_reference(&self, root: &Path) -> PathBuf {
        self.dir(root).join("reference")
    }

    /// The name of the starter's program (the solution's adds `-solution`).
    pub fn bin(&self) -> String {
        format!("{}-{}", self.lesson, self.name)
    }

    /// The package that builds its programs.
    pub fn package(&self) -> String {
        format!("exercises-{}", self.lesson)
    }
}

/// The file that marks a student copy of the project (`cargo ex student-copy`): it has no
/// solutions, and says so.
pub const STUDENT_COPY: &str = "exercises/STUDENT-COPY.md";

/// Whether the checkout at `root` is a student copy, without the solutions.
pub fn is_student_copy(root: &Path) -> bool {
    root.join(STUDENT_COPY).is_file()
}

/// The lessons in the book's order: the chapters `SUMMARY.md` links, `<lesson>.md`.
pub fn book_order(root: &Path) -> anyhow::Result<Vec<String>> {
    let summary = root.join("book/src/SUMMARY.md");
    let text = std::fs::read_to_string(&summary).with_context(|| format!("read {}", summary.display()))?;
    let link = regex::Regex::new(r"\]\(([a-z0-9-]+)\.md\)").expect("a valid pattern");
    let lessons = root.join("lessons");
    Ok(link
        .captures_iter(&text)
        .map(|c| c[1].to_string())
        .filter(|name| lessons.join(name).join("Cargo.toml").is_file())
        .collect())
}

/// Every exercise, in the book's order of lessons, then each lesson's own order.
pub fn all(root: &Path) -> anyhow::Result<Vec<Exercise>> {
    let mut found = Vec::new();
    for lesson in book_order(root)? {
        let path = root.join("exercises").join(&lesson).join("exercises.toml");
        if !path.is_file() {
            continue;
        }
        let text = std::fs::read_to_string(&path).with_context(|| format!("read {}", path.display()))?;
        let file: File = toml::from_str(&text).with_context(|| format!("parse {}", path.display()))?;
        for mut exercise in file.exercise {
            exercise.lesson = lesson.clone();
            if exercise.hints.is_empty() {
                bail!("{}: an exercise needs at least one hint", exercise.id());
            }
            if let Some((key, _)) =
                exercise.diagnosis.iter().find(|&(_, &hint)| hint == 0 || hint > exercise.hints.len())
            {
                bail!("{}: diagnosis `{key}` names a hint it does not have", exercise.id());
            }
            found.push(exercise);
        }
    }
    Ok(found)
}
