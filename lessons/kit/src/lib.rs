//! lesson-kit: the plumbing every forklore lesson shares, written once.
//!
//! A lesson's `main.rs` holds what it teaches; everything that teaches nothing lives here:
//! option parsing ([`cli`]), timing and tables ([`measure`]), the machine stamp ([`machine`]),
//! running the lesson's Python twin ([`python`]). Two pieces are teaching material that
//! several lessons reuse, and their chapters include them by anchor: process start and
//! exit codes ([`proc`], from the spawn-join chapter) and message framing ([`wire`], from
//! the pipe chapter).

pub mod cli;
pub mod fault;
pub mod lock;
pub mod machine;
pub mod measure;
pub mod pool;
pub mod proc;
pub mod python;
pub mod queue;
pub mod random_job;
pub mod shm;
pub mod wire;

pub use cli::{Args, Lesson};
pub use measure::{Bench, Case};
