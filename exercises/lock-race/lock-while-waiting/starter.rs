//! Exercise lock-race/lock-while-waiting: a child takes a lock to update a shared count,
//! says it is ready, and waits for the parent's go-ahead on a pipe; the parent, once the
//! child is ready, takes the same lock to update the count, then sends the go-ahead. The program never ends. Make it end, with
//! both updates made.

use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};
use std::sync::atomic::{AtomicI64, AtomicU32};

use anyhow::Context;
use multiproc::lock::Lock;
use multiproc::proc::{fork_child_closing, join_ok};
use multiproc::shm::Shared;
use multiproc::wire::{recv, send};
use plumbing::{Args, Exercise};

const EXERCISE: Exercise = Exercise {
    lesson: "lock-race",
    name: "lock-while-waiting",
    about: "a parent and a child update a shared count under one lock, and talk through a pipe",
};

fn main() -> std::process::ExitCode {
    EXERCISE.run(exercise)
}

// ANCHOR: exercise
fn exercise(_args: &Args) -> anyhow::Result<()> {
    let shared = Shared::<(Lock, AtomicI64, AtomicU32)>::new()?;
    let (lock, count, ready) = &*shared;
    let (mut reader, mut writer) = std::io::pipe().context("create a pipe")?;
    let child = fork_child_closing([&mut writer], move || -> anyhow::Result<()> {
        let _guard = lock.lock(); // held until the end of this closure
        ready.store(1, Release);
        let go = recv(&mut reader)?.context("the parent never said go")?;
        count.fetch_add(10, Relaxed);
        println!("child: got {:?}, added 10", String::from_utf8_lossy(&go));
        Ok(())
    })?;
    while ready.load(Acquire) == 0 {
        std::thread::yield_now(); // until the child is ready
    }
    {
        let _guard = lock.lock();
        count.fetch_add(1, Relaxed);
    }
    send(&mut writer, b"go").context("send go")?;
    join_ok(child)?;
    println!("parent: count is {}", count.load(Relaxed));
    Ok(())
}
// ANCHOR_END: exercise
