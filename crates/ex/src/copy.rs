//! A student copy of the project (`cargo ex student-copy DEST`): every file git tracks,
//! without the exercises' solutions and the book's solutions pages, and still a whole
//! project: the exercises' packages no longer declare the solution programs, SUMMARY.md no
//! longer lists the pages, the chapters' Exercises sections say the solutions are with the
//! teacher, and `exercises/STUDENT-COPY.md` marks the copy. The checks that compare with the
//! reference solution (cost, slow) get its program, built here: `exercises/<lesson>/<name>/
//! reference`, a binary for the class's machines, not its source.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

use crate::manifest::{Exercise, STUDENT_COPY};

const NOTE: &str = "\
# A student copy

This copy of forklore was made for a class with `cargo ex student-copy`: it has every lesson,
every exercise's starter and every check, but not the exercises' solutions. `cargo ex`
works as in the full project; `cargo ex solution` says to ask your teacher.

The checks that compare your program with the reference solution (the cost and slow
exercises) run the reference's program, built by your teacher: `exercises/<lesson>/<name>/
reference`. It is a program for Linux on the machine type your teacher built it on, not
source to read.
";

/// What a copy holds.
pub struct Copied {
    pub files: usize,
    pub left_out: Vec<String>,
    pub references: usize,
}

/// Write a student copy of the checkout at `root` into `dest` (which must not exist).
pub fn student_copy(root: &Path, all: &[Exercise], dest: &Path) -> anyhow::Result<Copied> {
    if dest.exists() {
        bail!("{} exists: name a new folder", dest.display());
    }
    let listed = Command::new("git")
        .args(["ls-files", "-z"])
        .current_dir(root)
        .output()
        .context("run git ls-files (a student copy is made from a git checkout)")?;
    if !listed.status.success() {
        bail!("git ls-files failed: {}", String::from_utf8_lossy(&listed.stderr).trim());
    }
    let solutions: Vec<PathBuf> = all.iter().map(|e| e.solution(root)).collect();
    let mut copied = Copied { files: 0, left_out: Vec::new(), references: 0 };
    for name in listed.stdout.split(|b| *b == 0).filter(|n| !n.is_empty()) {
        let name = String::from_utf8_lossy(name).into_owned();
        let from = root.join(&name);
        if solutions.contains(&from) || (name.starts_with("book/src/") && name.ends_with("-solutions.md")) {
            copied.left_out.push(name);
            continue;
        }
        if !from.is_file() {
            continue; // deleted in the work tree, not yet committed
        }
        let to = dest.join(&name);
        std::fs::create_dir_all(to.parent().expect("a file in a folder"))?;
        std::fs::copy(&from, &to).with_context(|| format!("copy {name}"))?;
        copied.files += 1;
    }
    std::fs::write(dest.join(STUDENT_COPY), NOTE)?;

    // The packages without their solution programs; the book without its solutions pages.
    let mut lessons: Vec<&str> = all.iter().map(|e| e.lesson.as_str()).collect();
    lessons.dedup();
    for lesson in &lessons {
        let package = dest.join("exercises").join(lesson).join("Cargo.toml");
        let text = std::fs::read_to_string(&package)?;
        let mut blocks = text.split("\n[[bin]]\n");
        let mut kept = blocks.next().unwrap_or_default().to_string();
        for block in blocks {
            if block.lines().next().is_some_and(|l| l.starts_with("name = ") && l.ends_with("-solution\"")) {
                // Left out, up to a section that may follow it (`[lints]`).
                if let Some(next) = block.find("\n[") {
                    kept.push_str(&block[next..]);
                }
            } else {
                kept.push_str("\n[[bin]]\n");
                kept.push_str(block);
            }
        }
        std::fs::write(&package, kept)?;
    }
    let summary = dest.join("book/src/SUMMARY.md");
    let text = std::fs::read_to_string(&summary)?;
    let kept: Vec<&str> = text.lines().filter(|l| !l.contains("-solutions.md)")).collect();
    std::fs::write(&summary, kept.join("\n") + "\n")?;
    for (path, text) in crate::book::pages(dest, all) {
        std::fs::write(path, text)?;
    }

    // The reference programs the cost and slow checks run, built here.
    for exercise in all.iter().filter(|e| e.cost_ratio.is_some() || e.slow_ratio.is_some()) {
        let release = exercise.slow_ratio.is_some();
        let bin = format!("{}-solution", exercise.bin());
        let built = supervisor::build_program(&root.join("Cargo.toml"), &exercise.package(), &bin, release);
        let to = exercise.prebuilt_reference(dest);
        std::fs::copy(&built, &to).with_context(|| format!("copy {}", built.display()))?;
        copied.references += 1;
    }
    Ok(copied)
}
