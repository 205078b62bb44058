//! The exercises and their checks, for the runner (`cargo ex`, src/main.rs) and for the
//! project's tests (tests/exercises.rs), which check every starter and every solution with
//! the same code that checks a learner's copy.
//!
//! - [`manifest`]: what the exercises are (`exercises/<lesson>/exercises.toml`).
//! - [`check`]: running a build of one, and the first check it fails.
//! - [`learn`]: the learner's copies, their build, their progress (`learn/`).
//! - [`grade`]: a class's copies, built once and checked, into a table.
//! - [`copy`]: a student copy of the project, without the solutions.
//! - [`book`]: the book's pages of exercises and solutions, generated from the manifests.

pub mod book;
pub mod check;
pub mod copy;
pub mod grade;
pub mod learn;
pub mod manifest;

pub use check::{Verdict, check};
pub use manifest::{Exercise, Kind};
