//! Exercise when-slower/serial-is-faster: 20,000 numbers to square and add up. Two workers
//! get them one at a time through a queue and send each square back. The sum is right, but
//! the run is far slower than it should be. Make it fast.

use plumbing::{Args, Exercise};

const EXERCISE: Exercise = Exercise {
    lesson: "when-slower",
    name: "serial-is-faster",
    about: "20,000 numbers to square and add up",
};

const ITEMS: u64 = 20_000;

fn main() -> std::process::ExitCode {
    EXERCISE.run(exercise)
}

// ANCHOR: exercise
fn exercise(_args: &Args) -> anyhow::Result<()> {
    // A square costs a nanosecond; a message to another process and back, tens of
    // microseconds. No split of this job can win back what the messages cost: one loop.
    let sum: u64 = (0..ITEMS).map(|x| x * x).sum();
    println!("the sum of {ITEMS} squares: {sum}");
    Ok(())
}
// ANCHOR_END: exercise
