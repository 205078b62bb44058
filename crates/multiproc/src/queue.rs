//! Python's `multiprocessing.Queue`: one queue that any number of processes put messages into
//! and get messages from. The queue lesson builds it and its chapter includes this file;
//! later lessons use it (copy-on-write sends its matrices through it).
//!
//! Made of three things, all created before `fork` and so shared by every child:
//! - a pipe, carrying messages framed by [`crate::wire`] (a length, then the bytes);
//! - a writers' lock, so that one `put` writes its whole message before another starts: the
//!   kernel keeps a single `write` to a pipe in one piece only up to PIPE_BUF (4096 bytes);
//! - a readers' lock, so that one `get` reads a whole message, length then bytes, before
//!   another reader starts: that is what keeps message boundaries with several readers.
//!
//! A bounded queue (`Queue::bounded(maxsize)`) adds a counting semaphore: the number of free
//! slots, one futex word in the same shared memory.
//!
//! Unlike Python's, this queue starts no thread: `put` writes to the pipe itself, and blocks
//! while the pipe is full.

use std::io::{self, PipeReader, PipeWriter, Read, Write};
use std::os::fd::AsFd;
use std::sync::atomic::AtomicU32;
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};

use anyhow::{Context, ensure};
use linux_futex::{AsFutex, Futex, Shared as AcrossProcesses};
use nix::poll::PollFlags;

use crate::lock::Lock;
use crate::proc::{wait_futex, wait_ready};
use crate::shm::Shared;
use crate::wire::{recv, send};

// ANCHOR: queue
/// A multi-producer, multi-consumer queue of byte messages between processes.
pub struct Queue {
    reader: PipeReader,
    /// `None` once this process has called [`Queue::close`].
    writer: Option<PipeWriter>,
    /// The writers' lock, the readers' lock, and the free slots, in shared memory.
    shared: Shared<(Lock, Lock, AtomicU32)>,
    maxsize: Option<u32>,
}

impl Queue {
    /// Python's `Queue()`: no limit but the pipe's own buffer.
    pub fn new() -> anyhow::Result<Queue> {
        Queue::make(None)
    }

    /// Python's `Queue(maxsize)`: `put` waits while `maxsize` messages are in the queue.
    pub fn bounded(maxsize: u32) -> anyhow::Result<Queue> {
        ensure!(maxsize > 0, "a bounded queue needs room for at least one message");
        Queue::make(Some(maxsize))
    }

    fn make(maxsize: Option<u32>) -> anyhow::Result<Queue> {
        let (reader, writer) = std::io::pipe().context("create the queue's pipe")?;
        let shared = Shared::<(Lock, Lock, AtomicU32)>::new()?; // zeroed: both locks free, no free slots
        if let Some(maxsize) = maxsize {
            shared.2.store(maxsize, Relaxed);
        }
        Ok(Queue { reader, writer: Some(writer), shared, maxsize })
    }
    // ANCHOR_END: queue

    // ANCHOR: put_get
    /// Put one message. Blocks while the queue is full (bounded) or the pipe is.
    pub fn put(&self, message: &[u8]) -> anyhow::Result<()> {
        let writer = self.writer.as_ref().context("put on a queue this process has closed")?;
        if self.maxsize.is_some() {
            self.take_slot()?; // before the lock: never hold it while waiting for room
        }
        crate::proc::faults::waiting("room in a queue");
        let _turn = self.shared.0.lock_watching("the queue's writers' lock")?; // the whole message, or nothing
        crate::proc::faults::holding("the queue's writers' lock");
        send(&mut Watched(writer), message).context("write a message into the queue's pipe")
    }

    /// Get one message, waiting for it; `None` once no process can put any more (every
    /// process has closed its write end or exited). Usually a sentinel message ends a
    /// consumer long before that. In a parent, the wait also ends, with an error naming it,
    /// if one of its children dies abnormally meanwhile (`proc::wait_ready`): the parent holds
    /// a write end itself, so no EOF would come.
    pub fn get(&self) -> anyhow::Result<Option<Vec<u8>>> {
        crate::proc::faults::waiting("a message from a queue");
        let _turn = self.shared.1.lock_watching("the queue's readers' lock")?; // a whole message, or nothing
        crate::proc::faults::holding("the queue's readers' lock");
        let message = recv(&mut Watched(&self.reader)).context("read a message from the queue's pipe")?;
        if message.is_some() && self.maxsize.is_some() {
            self.give_slot();
        }
        Ok(message)
    }
    // ANCHOR_END: put_get

    // ANCHOR: semaphore
    /// The free slots, a counting semaphore: `put` takes one, `get` gives one back.
    fn slots(&self) -> &Futex<AcrossProcesses> {
        self.shared.2.as_futex()
    }

    /// Take a free slot, sleeping while there is none (and, in a process with children,
    /// not past the death of one: `proc::wait_futex`).
    fn take_slot(&self) -> anyhow::Result<()> {
        let slots = self.slots();
        loop {
            let free = slots.value.load(Relaxed);
            if free == 0 {
                wait_futex(slots, 0, "a free slot in a bounded queue")?; // sleeps only while it is 0
            } else if slots.value.compare_exchange(free, free - 1, Acquire, Relaxed).is_ok() {
                return Ok(());
            }
        }
    }

    /// Give a slot back, and wake one `put` that may be sleeping for it.
    fn give_slot(&self) {
        let slots = self.slots();
        slots.value.fetch_add(1, Release);
        slots.wake(1); // a system call on every get; a waiter count could save it
    }

    /// Python's `q.qsize()`: how many messages are in a bounded queue (put, or being put,
    /// and not yet got). `None` for an unbounded queue, which does not count them.
    pub fn qsize(&self) -> Option<u32> {
        Some(self.maxsize? - self.slots().value.load(Relaxed))
    }
    // ANCHOR_END: semaphore

    /// Python's `q.close()`: this process will put no more, so its write end is closed.
    /// `get` returns `None` once every process has done this, or exited.
    pub fn close(&mut self) {
        self.writer = None;
    }
}

// ANCHOR: watched
/// The queue's pipe, read and written so that a parent's wait ends if one of its children
/// dies: every `read` and `write` first waits for the pipe with `proc::wait_ready`. A
/// process with no children of its own reads and writes as plainly as before.
struct Watched<'a, T>(&'a T);

/// What a pipe takes in one write without blocking, once it has room at all (`PIPE_BUF`).
const ONE_PAGE: usize = 4096;

impl Read for Watched<'_, PipeReader> {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        wait_ready(self.0.as_fd(), PollFlags::POLLIN, "a message from a queue").map_err(io::Error::other)?;
        (&mut &*self.0).read(buffer)
    }
}

impl Write for Watched<'_, PipeWriter> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        let watching =
            wait_ready(self.0.as_fd(), PollFlags::POLLOUT, "room in a queue").map_err(io::Error::other)?;
        // Watching, write what surely fits, so that the write itself never blocks.
        let n = if watching { bytes.len().min(ONE_PAGE) } else { bytes.len() };
        (&mut &*self.0).write(&bytes[..n])
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
// ANCHOR_END: watched

#[cfg(test)]
mod tests {
    use super::*;

    // One process: tests never fork (the harness has threads). The lesson shows several.
    #[test]
    fn messages_come_out_whole_and_in_order() {
        let queue = Queue::new().unwrap();
        let sizes = [0usize, 1, 4092, 4093, 10_000, 3];
        for (i, &size) in sizes.iter().enumerate() {
            queue.put(&vec![i as u8; size]).unwrap();
        }
        for (i, &size) in sizes.iter().enumerate() {
            assert_eq!(queue.get().unwrap().unwrap(), vec![i as u8; size]);
        }
    }

    #[test]
    fn bounded_counts_and_eof() {
        let mut queue = Queue::bounded(2).unwrap();
        assert_eq!(queue.qsize(), Some(0));
        queue.put(b"a").unwrap();
        queue.put(b"b").unwrap();
        assert_eq!(queue.qsize(), Some(2));
        assert_eq!(queue.get().unwrap().unwrap(), b"a");
        assert_eq!(queue.qsize(), Some(1));
        queue.close();
        assert!(queue.put(b"c").is_err());
        assert_eq!(queue.get().unwrap().unwrap(), b"b");
        assert!(queue.get().unwrap().is_none());
        assert_eq!(Queue::new().unwrap().qsize(), None);
    }
}
