//! Exercise spawn-join/wait-for-it: the parent starts three programs (`sleep 0.2`, as
//! `subprocess.Popen` would) and says it started them. It prints the right thing, but leaves
//! its children behind. Leave nothing: wait for each child, and say how each ended.

use std::process::Command;

use anyhow::Context;
use plumbing::{Args, Exercise};

const EXERCISE: Exercise = Exercise {
    lesson: "spawn-join",
    name: "wait-for-it",
    about: "the parent starts three programs that sleep a moment",
};

fn main() -> std::process::ExitCode {
    EXERCISE.run(exercise)
}

// ANCHOR: exercise
fn exercise(_args: &Args) -> anyhow::Result<()> {
    let mut children = Vec::new();
    for _ in 0..3 {
        let child = Command::new("sleep").arg("0.2").spawn().context("start sleep")?;
        children.push(child);
    }
    println!("started {} children", children.len());
    // Dropping a `Child` does not wait for it: each must be waited for, or it is left behind.
    for mut child in children {
        let status = child.wait().context("wait for sleep")?;
        println!("a child ended: {status}");
    }
    Ok(())
}
// ANCHOR_END: exercise
