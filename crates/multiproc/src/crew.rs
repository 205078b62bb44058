//! A crew: workers forked once and kept, each doing its part of every round the parent
//! calls, told "go" and answering "done" through rings in shared memory. What a
//! long-running program does instead of forking workers for every job (value-array,
//! when-slower).

use std::time::{Duration, Instant};

use anyhow::Context;
use nix::sys::resource::{UsageWho, getrusage};

use crate::proc::Children;
use crate::ring::{Ring, Wait};
use crate::shm::Shared;

// ANCHOR: crew
/// `N` workers forked once and kept. A round: the parent sends each worker "go" on a ring of
/// its own; each does its part and answers "done" on a second ring, with the page faults it
/// took meanwhile. An empty message tells them to stop.
pub struct Crew<const N: usize> {
    rings: Shared<[(Ring, Ring); N]>, // (go, done) for each worker
    workers: Children,
}

/// What one round cost.
#[derive(Debug, Clone, Copy)]
pub struct Round {
    pub time: Duration,
    /// The minor page faults the workers took doing their parts, all of them together.
    pub faults: u64,
}

impl<const N: usize> Crew<N> {
    /// Fork the `N` workers (named `name 0`, `name 1`, ...): worker `i` runs `prepare(i)`
    /// once, as it starts, and `part(i)` in every round.
    pub fn start(name: &str, prepare: impl Fn(usize), part: impl Fn(usize)) -> anyhow::Result<Crew<N>> {
        let rings = Shared::<[(Ring, Ring); N]>::new()?;
        let mut workers = Children::new(name);
        for worker in 0..N {
            let ((go, done), prepare, part) = (&rings[worker], &prepare, &part);
            workers.fork(move || -> anyhow::Result<()> {
                prepare(worker);
                while !go.recv(Wait::ADAPTIVE)?.is_empty() {
                    let before = minor_faults()?;
                    part(worker);
                    done.send(&(minor_faults()? - before).to_le_bytes(), Wait::ADAPTIVE)?;
                }
                Ok(()) // an empty message: stop
            })?;
        }
        Ok(Crew { rings, workers })
    }

    /// One round: every worker does its part. When this returns, what they wrote is seen
    /// here: each "done" was sent (Release) after the part and received (Acquire) before now.
    pub fn round(&mut self) -> anyhow::Result<Round> {
        let start = Instant::now();
        for (go, _) in self.rings.iter() {
            go.send(b"go", Wait::ADAPTIVE)?;
        }
        let mut faults = 0;
        for (_, done) in self.rings.iter() {
            let answer = done.recv(Wait::ADAPTIVE)?;
            faults += u64::from_le_bytes(answer.as_slice().try_into().context("a worker's answer")?);
        }
        Ok(Round { time: start.elapsed(), faults })
    }

    /// Tell every worker to stop, and wait for them all.
    pub fn stop(self) -> anyhow::Result<()> {
        for (go, _) in self.rings.iter() {
            go.send(b"", Wait::ADAPTIVE)?;
        }
        self.workers.join_all()
    }
}
// ANCHOR_END: crew

/// This process's minor page faults so far (a worker has no children of its own).
fn minor_faults() -> anyhow::Result<u64> {
    Ok(getrusage(UsageWho::RUSAGE_SELF)?.minor_page_faults() as u64)
}
