//! Exercise spawn-join/failed-child: three workers each do their share of a job, and the
//! parent joins them and says the job is done. The check makes worker 1 panic half-way:
//! the parent still says "done", and exits 0. Make a failed worker fail the program, with
//! an error that names it.

use multiproc::proc::{fork_named, join};
use plumbing::{Args, Exercise, fault};

const EXERCISE: Exercise = Exercise {
    lesson: "spawn-join",
    name: "failed-child",
    about: "three workers do their share of a job; one of them may fail",
};

const WORKERS: usize = 3;

fn main() -> std::process::ExitCode {
    EXERCISE.run(exercise)
}

// ANCHOR: exercise
fn exercise(_args: &Args) -> anyhow::Result<()> {
    let mut workers = Vec::new();
    for worker in 0..WORKERS {
        workers.push(fork_named("worker", move || {
            for step in 0..100 {
                if step == 50 {
                    fault::inject(worker); // the check makes worker 1 panic here
                }
            }
            0
        })?);
    }
    for pid in workers {
        join(pid)?;
    }
    println!("the job is done: {WORKERS} workers joined");
    Ok(())
}
// ANCHOR_END: exercise
