//! The learner's side: `learn/`, a folder git ignores, holding the learner's own copy of each
//! exercise they have started (`learn/<lesson>/<name>.rs`), their progress, and a cargo
//! package of its own that builds those copies. The project's workspace never builds
//! `learn/`: a learner's edit, even one that does not compile, cannot break a lesson or the
//! project's tests, which check the pristine starters in `exercises/`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Context;

use crate::manifest::Exercise;

/// The learner's folder in the checkout at `root`.
pub struct Learn {
    root: PathBuf,
    dir: PathBuf,
}

/// Where an exercise stands for the learner.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    NotStarted,
    Attempted,
    Solved,
}

impl Learn {
    pub fn new(root: &Path) -> Learn {
        Learn { root: root.to_path_buf(), dir: root.join("learn") }
    }

    /// With its own folder: for grading, one per student.
    pub fn at(root: &Path, dir: &Path) -> Learn {
        Learn { root: root.to_path_buf(), dir: dir.to_path_buf() }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The learner's copy of `exercise`.
    pub fn copy(&self, exercise: &Exercise) -> PathBuf {
        self.dir.join(&exercise.lesson).join(format!("{}.rs", exercise.name))
    }

    /// Make the learner's copy from the starter, unless there is one. Whether it was made.
    pub fn start(&self, exercise: &Exercise) -> anyhow::Result<bool> {
        let copy = self.copy(exercise);
        if copy.is_file() {
            return Ok(false);
        }
        std::fs::create_dir_all(copy.parent().expect("a file in a folder"))?;
        std::fs::copy(exercise.starter(&self.root), &copy)
            .with_context(|| format!("copy the starter to {}", copy.display()))?;
        Ok(true)
    }

    /// Put the learner's copy back to the starter.
    pub fn reset(&self, exercise: &Exercise) -> anyhow::Result<()> {
        let copy = self.copy(exercise);
        let _ = std::fs::remove_file(&copy);
        self.start(exercise)?;
        let mut progress = self.progress();
        progress.remove(&exercise.id());
        progress.remove(&format!("{}#hints", exercise.id()));
        self.save(&progress)
    }

    /// Build the learner's copy and the reference solution: their programs, or what the
    /// compiler said about the learner's.
    pub fn build(
        &self,
        exercise: &Exercise,
        all: &[Exercise],
    ) -> anyhow::Result<Result<(PathBuf, PathBuf), String>> {
        self.write_package(all)?;
        let target = self.root.join("target/learn");
        // A student copy has no solution to build: the teacher built the reference program of
        // each exercise that is compared with it (cost, slow); the others never run theirs.
        let solution = exercise.solution(&self.root).is_file();
        let reference = format!("{}-solution", exercise.bin());
        // A speed check times release builds, as `--measure` does.
        let release = exercise.slow_ratio.is_some();
        let output = supervisor::output_of(
            Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
                .args(["build", "--quiet", "--message-format", "short", "--bin", &exercise.bin()])
                .args(solution.then_some(["--bin", &reference]).into_iter().flatten())
                .args(release.then_some("--release"))
                .arg("--manifest-path")
                .arg(self.dir.join("Cargo.toml"))
                .arg("--target-dir")
                .arg(&target)
                .env_remove("CARGO_TARGET_DIR"),
        )
        .context("run cargo build")?;
        if !output.status.success() {
            let said = String::from_utf8_lossy(&output.stderr);
            let errors: Vec<&str> = said.lines().filter(|l| !l.trim().is_empty()).take(12).collect();
            return Ok(Err(errors.join("\n")));
        }
        let programs = target.join(if release { "release" } else { "debug" });
        let mine = programs.join(exercise.bin());
        let reference = match (solution, exercise.prebuilt_reference(&self.root)) {
            (true, _) => programs.join(reference),
            (false, prebuilt) if prebuilt.is_file() => prebuilt,
            (false, _) => mine.clone(),
        };
        Ok(Ok((mine, reference)))
    }

    /// `learn/Cargo.toml`: a package of its own (its own workspace) with one program per
    /// exercise copy, and the reference solution's beside it.
    fn write_package(&self, all: &[Exercise]) -> anyhow::Result<()> {
        let mut programs = Vec::new();
        for exercise in all.iter().filter(|e| self.copy(e).is_file()) {
            programs.push((exercise.bin(), self.copy(exercise)));
            if exercise.solution(&self.root).is_file() {
                programs.push((format!("{}-solution", exercise.bin()), exercise.solution(&self.root)));
            }
        }
        write_package(&self.root, &self.dir, "learn", all, &programs)
    }

    fn progress_path(&self) -> PathBuf {
        self.dir.join("progress.toml")
    }

    /// `lesson/name` = "attempted" or "solved"; `lesson/name#hints` = how many hints shown.
    fn progress(&self) -> BTreeMap<String, toml::Value> {
        std::fs::read_to_string(self.progress_path())
            .ok()
            .and_then(|text| toml::from_str::<toml::Table>(&text).ok())
            .map(|table| table.into_iter().collect())
            .unwrap_or_default()
    }

    fn save(&self, progress: &BTreeMap<String, toml::Value>) -> anyhow::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        let table: toml::Table = progress.clone().into_iter().collect();
        let text =
            format!("# Your progress through the exercises (`cargo ex list`).\n{}", toml::to_string(&table)?);
        std::fs::write(self.progress_path(), text).context("save learn/progress.toml")
    }

    pub fn state(&self, exercise: &Exercise) -> State {
        match self.progress().get(&exercise.id()).and_then(|v| v.as_str()) {
            Some("solved") => State::Solved,
            Some(_) => State::Attempted,
            None if self.copy(exercise).is_file() => State::Attempted,
            None => State::NotStarted,
        }
    }

    pub fn set_state(&self, exercise: &Exercise, state: State) -> anyhow::Result<()> {
        let mut progress = self.progress();
        let value = match state {
            State::Solved => "solved",
            State::Attempted => "attempted",
            State::NotStarted => {
                progress.remove(&exercise.id());
                return self.save(&progress);
            }
        };
        progress.insert(exercise.id(), value.into());
        self.save(&progress)
    }

    /// Which hint to show next (counting it as seen): the first not seen yet, or the last.
    pub fn next_hint(&self, exercise: &Exercise) -> anyhow::Result<usize> {
        let mut progress = self.progress();
        let key = format!("{}#hints", exercise.id());
        let seen = progress.get(&key).and_then(|v| v.as_integer()).unwrap_or(0).max(0) as usize;
        if seen < exercise.hints.len() {
            progress.insert(key, toml::Value::Integer(seen as i64 + 1));
            self.save(&progress)?;
        }
        Ok(seen.min(exercise.hints.len().saturating_sub(1)))
    }

    /// Count hints up to `index` as seen (a check showed that one).
    pub fn saw_hint(&self, exercise: &Exercise, index: usize) -> anyhow::Result<()> {
        let mut progress = self.progress();
        let key = format!("{}#hints", exercise.id());
        let seen = progress.get(&key).and_then(|v| v.as_integer()).unwrap_or(0).max(0) as usize;
        if index + 1 > seen {
            progress.insert(key, toml::Value::Integer(index as i64 + 1));
            self.save(&progress)?;
        }
        Ok(())
    }

    /// The exercise the learner worked on last, if any.
    pub fn current(&self) -> Option<String> {
        self.progress().get("current").and_then(|v| v.as_str()).map(str::to_string)
    }

    pub fn set_current(&self, exercise: &Exercise) -> anyhow::Result<()> {
        let mut progress = self.progress();
        progress.insert("current".into(), exercise.id().into());
        self.save(&progress)
    }
}

/// Write `dir/Cargo.toml`, a package named `name` that is a workspace of its own, with the
/// given programs (name, source file) and the dependencies the exercises' packages have, as
/// the project pins them (the project's `Cargo.lock` is copied once, so the versions are the
/// same). The file is only rewritten when it changes, so that cargo sees nothing new.
pub(crate) fn write_package(
    root: &Path,
    dir: &Path,
    name: &str,
    all: &[Exercise],
    programs: &[(String, PathBuf)],
) -> anyhow::Result<()> {
    let manifest: toml::Table = toml::from_str(&std::fs::read_to_string(root.join("Cargo.toml"))?)?;
    let pinned = manifest
        .get("workspace")
        .and_then(|w| w.get("dependencies"))
        .and_then(|d| d.as_table())
        .context("the project's [workspace.dependencies]")?;
    let mut wanted = BTreeMap::new();
    for lesson in all.iter().map(|e| e.lesson.as_str()).collect::<std::collections::BTreeSet<_>>() {
        let package = root.join("exercises").join(lesson).join("Cargo.toml");
        let table: toml::Table = toml::from_str(&std::fs::read_to_string(&package)?)?;
        for dependency in
            table.get("dependencies").and_then(|d| d.as_table()).into_iter().flat_map(|d| d.keys())
        {
            let mut spec =
                pinned.get(dependency).cloned().with_context(|| format!("{dependency} in the workspace"))?;
            if let Some(path) = spec.get("path").and_then(|p| p.as_str()) {
                let absolute = root.join(path).to_string_lossy().into_owned();
                spec.as_table_mut().expect("a table with a path").insert("path".into(), absolute.into());
            }
            wanted.insert(dependency.clone(), spec);
        }
    }
    let mut text = format!(
        "# Written by `cargo ex`: exercise programs, built apart from the project (this is a\n\
         # workspace of its own). Do not edit; the programs are the .rs files.\n\
         [package]\nname = \"{name}\"\nversion = \"0.0.0\"\nedition = \"2024\"\npublish = false\nautobins = false\n\n\
         [workspace]\n\n[dependencies]\n",
    );
    for (dependency, spec) in &wanted {
        text.push_str(&format!("{dependency} = {spec}\n")); // a table shows inline: `{ path = "..." }`
    }
    for (program, source) in programs {
        let source = source.strip_prefix(dir).unwrap_or(source);
        text.push_str(&format!(
            "\n[[bin]]\nname = \"{program}\"\npath = {:?}\n",
            source.display().to_string()
        ));
    }
    std::fs::create_dir_all(dir)?;
    let path = dir.join("Cargo.toml");
    if std::fs::read_to_string(&path).ok().as_deref() != Some(text.as_str()) {
        std::fs::write(&path, text)?;
    }
    let lock = dir.join("Cargo.lock");
    if !lock.is_file() {
        std::fs::copy(root.join("Cargo.lock"), &lock).context("copy Cargo.lock")?;
    }
    Ok(())
}
