//! plumbing: what every forklore lesson needs and no chapter teaches.
//!
//! - [`cli`]: the options every lesson takes, `--help`, and one-line errors with exit 2.
//! - [`measure`]: `--measure`: cases run several times, median, fastest and slowest, a ratio
//!   to a baseline from the same run; the table, and JSON records for the book.
//! - [`machine`]: the machine a table was measured on (CPU, CPUs, OS, kernel, date).
//! - [`busy`]: how busy the machine was meanwhile (other processes' CPU time, the load).
//! - [`python`]: running the lesson's Python twin for its rows of the table.
//! - [`fault`]: faults on purpose, for the tests (a worker that panics or is killed).
//! - [`ipc`]: ipc-channel made ready before a lesson forks (so that it cannot panic later).
//! - [`random_job`]: the job two lessons measure (value-array and queue), written once.
//! - [`varies`]: what varies from run to run, marked for the tests' snapshots.

pub mod busy;
pub mod cli;
pub mod fault;
pub mod ipc;
pub mod machine;
pub mod measure;
pub mod python;
pub mod random_job;
pub mod varies;

pub use cli::{Args, Exercise, Lesson};
pub use measure::{Bench, Case};
pub use varies::varies;
