//! Faults on purpose, for the tests: a lesson calls `fault::inject(worker)` once in each
//! worker's loop, and with `FORKLORE_FAULT=panic:1` worker 1 panics there, with
//! `FORKLORE_FAULT=kill:1` it dies of SIGKILL there. Without the variable it does nothing.
//!
//! tests/lessons.rs runs every lesson that calls it both ways, and checks that the parent
//! says which child failed, exits non-zero, and leaves nothing behind.

use nix::sys::signal::{Signal, raise};

/// The variable the tests set.
pub const VARIABLE: &str = "FORKLORE_FAULT";

/// Fail here if `FORKLORE_FAULT` names this worker.
pub fn inject(worker: usize) {
    let Ok(spec) = std::env::var(VARIABLE) else { return };
    let Some((fault, target)) = spec.split_once(':') else { return };
    if target.parse() != Ok(worker) {
        return;
    }
    match fault {
        "panic" => panic!("injected fault: {VARIABLE}={spec}"),
        "kill" => {
            let _ = raise(Signal::SIGKILL);
        }
        _ => {}
    }
}
