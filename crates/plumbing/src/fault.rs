//! Faults on purpose, for the tests. Without `FORKLORE_FAULT` nothing here does anything.
//!
//! - Mid-work: a lesson calls `fault::inject(worker)` once in each worker's loop (holding
//!   the lock, where there is one). With `FORKLORE_FAULT=panic:1` worker 1 panics there;
//!   with `FORKLORE_FAULT=kill:1` it dies of SIGKILL there.
//! - At a kit fault point (`multiproc::proc::faults`): `FORKLORE_FAULT=kill:NAME@start`
//!   kills the child named NAME (`worker 0`, `server`) as it starts, and
//!   `FORKLORE_FAULT=kill:NAME@wait` as it is about to wait in one of the kit's waits (a
//!   queue's get or put, a Value's or an Array's lock, a recv), and
//!   `FORKLORE_FAULT=kill:NAME@holding` as soon as it holds one of the kit's locks (a
//!   Value's, an Array's, a queue's readers' or writers'). `Lesson::run` sets the hook.
//!
//! tests/lessons.rs and tests/faults.rs run the lessons so, and check that the parent says
//! which child failed and how, exits with status 1 within 2 s, and leaves nothing behind.

use multiproc::proc::faults::{self, Point};
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

/// Listen at the kit's fault points, if `FORKLORE_FAULT` asks for one (`kill:NAME@start`,
/// `kill:NAME@wait`, `kill:NAME@holding`). A name without a number also matches its number 0 (`worker`: `worker
/// 0`), so every kind of child can be named the same way.
pub fn listen() {
    if std::env::var(VARIABLE).is_ok_and(|spec| spec.contains('@')) {
        faults::set_hook(at_point);
    }
}

fn at_point(name: &str, point: Point) {
    let Ok(spec) = std::env::var(VARIABLE) else { return };
    let Some((target, stage)) = spec.strip_prefix("kill:").and_then(|s| s.rsplit_once('@')) else { return };
    let named = name == target || name == format!("{target} 0");
    let now = matches!(
        (stage, point),
        ("start", Point::Start) | ("wait", Point::Wait(_)) | ("holding", Point::Holding(_))
    );
    if named && now {
        // The tests time the lesson's reaction from this line.
        let pid = nix::unistd::getpid();
        multiproc::proc::say(&format!("fault: killing {name} (pid {pid}) at {stage}"));
        let _ = raise(Signal::SIGKILL);
    }
}
