//! The fast lane: a ring buffer in shared memory that carries messages from one process to
//! another with no system call while both are awake. The fast-lane chapter builds it step
//! by step and includes this file.
//!
//! A [`Ring`] goes one way, from one sender process to one receiver process. Two rings, one
//! each way, make a duplex channel: `Shared::<(Ring, Ring)>::new()?` before `fork`.
//!
//! Everything in a ring is an atomic, so no sequence of calls, from any number of
//! processes, is undefined behaviour. A second sender or receiver on the same ring breaks
//! only the messages: a receiver checks every length it reads and returns an error for
//! one that cannot be right, never a panic.
//!
//! How a side waits when the ring is empty (or full) is its choice, [`Wait`]: spin, spin and
//! yield, sleep on a futex, or spin a moment and then sleep. Every wait ends when the peer
//! that should end it dies: a parent looks at its children now and then while it spins, and
//! at least every 20 ms while it sleeps (`proc::fail_if_no_one_can_answer`); a child forked
//! by the kit dies with its parent (PDEATHSIG).

use std::fmt;
use std::ops::Deref;
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release, SeqCst};
use std::sync::atomic::{AtomicU64, fence};
use std::time::{Duration, Instant};

use anyhow::Context;
use linux_futex::{Futex, Shared};

use crate::proc;
use crate::shm::Shareable;

// ANCHOR: ring
/// Words of 8 bytes a ring holds: 64 KiB of messages in flight (a pool's chunk of a few
/// thousand small items fits whole). A power of two, so that a position in the ring is a
/// count's lowest bits.
pub const WORDS: usize = 8192;
/// A long message moves in steps of a quarter ring: the sender publishes, and the receiver
/// gives back room, every `STEP` words, so that both work at once.
const STEP: u64 = WORDS as u64 / 4;

/// A one-way channel in shared memory. Messages are words: each message is its length in
/// bytes, then its bytes, 8 to a word (the last one padded with zeros).
///
/// `head` and `tail` count words since the start and never wrap (2^64 words at one a
/// nanosecond take 584 years): the ring holds `head - tail` words, at `count % WORDS`.
#[repr(C)]
pub struct Ring {
    /// Words written so far. Only the sender stores it, after the words themselves.
    head: CacheLine<AtomicU64>,
    /// Words read so far. Only the receiver stores it, after it has copied the words out.
    tail: CacheLine<AtomicU64>,
    /// 1 while the receiver may be asleep, waiting for words; the sender wakes it.
    receiver_asleep: CacheLine<Futex<Shared>>,
    /// 1 while the sender may be asleep, waiting for room; the receiver wakes it.
    sender_asleep: CacheLine<Futex<Shared>>,
    slots: [AtomicU64; WORDS],
}

/// A value alone on its cache lines (128 bytes: a line and the one the CPU fetches with
/// it). The sender writes `head` and the receiver `tail`: on one line, each write would
/// take the line away from the other CPU, and both would slow down ("false sharing").
#[repr(C, align(128))]
struct CacheLine<T>(T);
// ANCHOR_END: ring

impl<T> Deref for CacheLine<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

// SAFETY: a Ring is atomics (AtomicU64, and Futex<Shared>, one AtomicU32 by repr(transparent))
// and padding, which nothing reads. All zeros is an empty ring with no one asleep, it holds
// no pointer, and every change is an atomic operation on its own bytes.
unsafe impl Shareable for Ring {}

// ANCHOR: wait
/// What a side does when it cannot go on: the receiver with an empty ring, the sender with
/// a full one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wait {
    /// Look again at once, forever: the quickest answer, and a CPU kept busy while idle.
    Spin,
    /// Give the CPU away (`sched_yield`) between looks: still busy, but others may run.
    SpinYield,
    /// Sleep in the kernel (a futex) at once: no CPU while idle, a wake-up per message.
    Sleep,
    /// Spin for up to this long, then sleep: quick when the answer comes soon, and idle
    /// when it does not. What real systems do.
    SpinThenSleep(Duration),
}
// ANCHOR_END: wait

impl Wait {
    /// The fast lane's choice: spin for about what a wake-up costs here, then sleep (the
    /// fast-lane chapter measures the choices).
    pub const ADAPTIVE: Wait = Wait::SpinThenSleep(Duration::from_micros(20));
}

impl fmt::Display for Wait {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Wait::Spin => write!(f, "spin"),
            Wait::SpinYield => write!(f, "spin + yield"),
            Wait::Sleep => write!(f, "sleep (futex)"),
            Wait::SpinThenSleep(limit) => write!(f, "spin {} µs, then sleep", limit.as_micros()),
        }
    }
}

/// The longest message a receiver believes: a longer length means more than one sender
/// wrote to the ring.
const MAX_MESSAGE: u64 = 1 << 40;

impl Ring {
    // ANCHOR: send
    /// Send `message` (the sender's side): its length, then its bytes, into the ring. A
    /// message longer than the ring goes in pieces, as the receiver makes room.
    pub fn send(&self, message: &[u8], wait: Wait) -> anyhow::Result<()> {
        self.send_ringing(message, wait, None)
    }

    /// [`Ring::send`], ringing `bell` each time words are published (the first piece of a
    /// long message included: a receiver asleep on the bell must not wait for the last).
    pub fn send_ringing(&self, message: &[u8], wait: Wait, bell: Option<&Bell>) -> anyhow::Result<()> {
        let publish = |head| {
            self.publish(head);
            bell.map(Bell::ring);
        };
        let length = std::iter::once(message.len() as u64);
        let words = length.chain(message.chunks(8).map(word));
        let mut head = self.head.load(Relaxed); // only this side stores it
        // The receiver's count, read once: it only grows, so the room it shows is there.
        let mut tail = self.tail.load(Acquire);
        for word in words {
            if head - tail == WORDS as u64 {
                // Full, as far as this side knows. Look again; if it is, let the receiver
                // have what is written so far, and wait for room.
                tail = self.tail.load(Acquire);
                if head - tail == WORDS as u64 {
                    publish(head);
                    let room = || head - self.tail.load(Acquire) < WORDS as u64;
                    wait_for(&self.sender_asleep, room, wait, "room in a ring")?;
                    tail = self.tail.load(Acquire);
                }
            }
            self.slots[head as usize % WORDS].store(word, Relaxed);
            head += 1;
            if head.is_multiple_of(STEP) {
                publish(head); // a long message: the receiver may start on it
            }
        }
        publish(head);
        Ok(())
    }

    /// Make the words before `head` the receiver's. Release: a receiver that sees the new
    /// head (with Acquire) sees every word stored before it.
    fn publish(&self, head: u64) {
        self.head.store(head, Release);
        wake(&self.receiver_asleep);
    }
    // ANCHOR_END: send

    /// Send `message` only if it fits in the room the ring has now, whole; whether it did.
    /// Never waits: for a sender that must not block while its receiver may be blocked on it.
    pub fn try_send(&self, message: &[u8]) -> bool {
        let words = 1 + message.len().div_ceil(8) as u64;
        let used = self.head.load(Relaxed) - self.tail.load(Acquire);
        if used + words > WORDS as u64 {
            return false;
        }
        // It fits: `send` will find room for every word without waiting.
        self.send(message, Wait::Spin).is_ok()
    }

    /// Whether the ring holds nothing to receive (for its receiver, which alone empties it).
    pub fn is_empty(&self) -> bool {
        self.head.load(Acquire) == self.tail.load(Relaxed)
    }

    // ANCHOR: recv
    /// Receive the next message (the receiver's side) into `message`, replacing what it
    /// held; waits, as `wait` says, until there is one.
    pub fn recv_into(&self, message: &mut Vec<u8>, wait: Wait) -> anyhow::Result<()> {
        let mut tail = self.tail.load(Relaxed); // only this side stores it
        let mut head = tail; // the sender's count, read when the words known to be there run out
        let length = self.take(&mut tail, &mut head, wait)?;
        anyhow::ensure!(length <= MAX_MESSAGE, "a ring held a length of {length} bytes: two senders?");
        let length = length as usize;
        message.clear();
        message.try_reserve_exact(length).context("make room for a message from a ring")?;
        while message.len() < length {
            let bytes = self.take(&mut tail, &mut head, wait)?.to_le_bytes();
            let wanted = (length - message.len()).min(8);
            message.extend_from_slice(&bytes[..wanted]);
        }
        self.give_back(tail);
        Ok(())
    }

    /// The word at `tail`, once the sender has written it; `tail` moves past it. `head` is
    /// the sender's count as this side last read it.
    fn take(&self, tail: &mut u64, head: &mut u64, wait: Wait) -> anyhow::Result<u64> {
        if *tail == *head {
            *head = self.head.load(Acquire);
            if *tail == *head {
                // Empty. Give the sender the room read so far, and wait for a word.
                self.give_back(*tail);
                let written = || *tail != self.head.load(Acquire);
                wait_for(&self.receiver_asleep, written, wait, "a message in a ring")?;
                *head = self.head.load(Acquire);
            }
        }
        let word = self.slots[*tail as usize % WORDS].load(Relaxed);
        *tail += 1;
        if tail.is_multiple_of(STEP) {
            self.give_back(*tail); // a long message: the sender may go on with it
        }
        Ok(word)
    }

    /// Make the slots before `tail` the sender's again. Release: the sender that sees the
    /// new tail (with Acquire) writes into a slot only after this side has read it.
    fn give_back(&self, tail: u64) {
        self.tail.store(tail, Release);
        wake(&self.sender_asleep);
    }
    // ANCHOR_END: recv

    /// A message from the ring, in a new `Vec`: [`Ring::recv_into`].
    pub fn recv(&self, wait: Wait) -> anyhow::Result<Vec<u8>> {
        let mut message = Vec::new();
        self.recv_into(&mut message, wait)?;
        Ok(message)
    }
}

// ANCHOR: wait_until
/// Wait, as `wait` says, until `ready()`. `asleep` is the waiting side's flag: 1 while it
/// may be asleep on it, so that the other side knows to wake it.
fn wait_for(asleep: &Futex<Shared>, ready: impl Fn() -> bool, wait: Wait, what: &str) -> anyhow::Result<()> {
    proc::faults::waiting(what); // a test may end this process here
    match wait {
        Wait::Spin => spin(&ready, None, false, what).map(drop),
        Wait::SpinYield => spin(&ready, None, true, what).map(drop),
        Wait::Sleep => sleep(asleep, &ready, what),
        Wait::SpinThenSleep(limit) => match spin(&ready, Some(limit), false, what)? {
            true => Ok(()),
            false => sleep(asleep, &ready, what),
        },
    }
}

/// Look at `ready()` until it holds (true), or until `limit` has passed (false). Between
/// looks, a PAUSE instruction (`spin_loop`: lets the other hyperthread run, saves power), or
/// with `yield_cpu`, `sched_yield`. Every millisecond it looks at the children: a spinning
/// process sleeps in no system call that a child's death could end.
fn spin(
    ready: impl Fn() -> bool,
    limit: Option<Duration>,
    yield_cpu: bool,
    what: &str,
) -> anyhow::Result<bool> {
    let (start, mut looked) = (Instant::now(), Duration::ZERO);
    loop {
        for _ in 0..LOOKS_PER_CLOCK {
            if ready() {
                return Ok(true);
            }
            if yield_cpu {
                std::thread::yield_now();
            } else {
                std::hint::spin_loop();
            }
        }
        let spun = start.elapsed();
        if limit.is_some_and(|limit| spun >= limit) {
            return Ok(false);
        }
        if spun - looked >= LOOK_AT_CHILDREN {
            proc::fail_if_no_one_can_answer(what)?;
            looked = spun;
        }
    }
}

/// Looks at the ring between two looks at the clock (a clock read costs about as much as
/// a few PAUSEs).
const LOOKS_PER_CLOCK: u32 = 32;
/// How often a spinning wait looks at the children.
const LOOK_AT_CHILDREN: Duration = Duration::from_millis(1);

/// Sleep on `asleep` until `ready()`. The flag goes to 1 *before* the last look at the
/// ring, and the other side stores its count *before* it looks at the flag, each with a
/// SeqCst fence between: so either this side sees the new count and does not sleep, or the
/// other side sees the 1 and wakes it. (Without the fences both could miss the other's
/// store, and this side would sleep with a message waiting.)
fn sleep(asleep: &Futex<Shared>, ready: impl Fn() -> bool, what: &str) -> anyhow::Result<()> {
    let _sleeping = crate::trace::span("wait", || format!("asleep, waiting for {what}"));
    loop {
        asleep.value.store(1, Relaxed);
        fence(SeqCst);
        if ready() {
            asleep.value.store(0, Relaxed);
            return Ok(());
        }
        // Sleeps only while the flag is still 1: a wake that came first is not lost.
        proc::wait_futex_answer(asleep, 1, what)?;
    }
}

/// The other side's half of [`sleep`]: after storing its count, wake the sleeper, if any.
/// When no one sleeps this is a fence and a load: no system call.
fn wake(asleep: &Futex<Shared>) {
    fence(SeqCst);
    if asleep.value.load(Relaxed) == 1 && asleep.value.swap(0, Relaxed) == 1 {
        asleep.wake(1);
    }
}
// ANCHOR_END: wait_until

// ANCHOR: bell
/// A doorbell in shared memory, for one process that waits for any of several rings (a
/// pool's parent, for results from every worker): each sender rings it after `send`, and
/// the waiter sleeps on it once every ring is empty. The same handshake as a ring's.
#[repr(C)]
pub struct Bell {
    asleep: CacheLine<Futex<Shared>>,
}

// SAFETY: one Futex<Shared> (an AtomicU32) and padding: valid as zeros, no pointer, changed
// only atomically.
unsafe impl Shareable for Bell {}

impl Bell {
    /// After a `send`: wake the waiter if it may be asleep (a fence and a load when not).
    pub fn ring(&self) {
        wake(&self.asleep);
    }

    /// Wait, as `wait` says, until `ready()` (say, one of the rings is not empty).
    pub fn wait_until(&self, ready: impl Fn() -> bool, wait: Wait, what: &str) -> anyhow::Result<()> {
        if ready() {
            return Ok(());
        }
        wait_for(&self.asleep, ready, wait, what)
    }
}
// ANCHOR_END: bell

/// Up to 8 bytes as a word, little-endian, padded with zeros.
fn word(bytes: &[u8]) -> u64 {
    let mut padded = [0u8; 8];
    padded[..bytes.len()].copy_from_slice(bytes);
    u64::from_le_bytes(padded)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A ring on the heap, zeroed as shared memory starts (the tests use threads: what the
    /// ring guarantees does not depend on how many address spaces share it).
    fn ring() -> Box<Ring> {
        // SAFETY: all zeros is a valid Ring (Shareable), and the Box frees what it allocates.
        unsafe { Box::new_zeroed().assume_init() }
    }

    #[test]
    fn messages_of_every_length_arrive_whole_and_in_order() {
        let ring = ring();
        // Lengths around word and ring boundaries, and longer than the ring.
        let lengths = [0, 1, 7, 8, 9, 100, WORDS * 8 - 8, WORDS * 8, WORDS * 8 + 1, 5 * WORDS * 8 + 3];
        for wait in [Wait::Spin, Wait::SpinYield, Wait::Sleep, Wait::ADAPTIVE] {
            std::thread::scope(|s| {
                s.spawn(|| {
                    for (i, &n) in lengths.iter().enumerate() {
                        let message: Vec<u8> = (0..n).map(|b| (b * 7 + i) as u8).collect();
                        ring.send(&message, wait).unwrap();
                    }
                });
                let mut got = Vec::new();
                for (i, &n) in lengths.iter().enumerate() {
                    ring.recv_into(&mut got, wait).unwrap();
                    let message: Vec<u8> = (0..n).map(|b| (b * 7 + i) as u8).collect();
                    assert_eq!(got, message, "message {i} ({n} bytes), waiting by {wait}");
                }
            });
        }
    }

    #[test]
    fn a_sleeping_receiver_is_woken_every_time() {
        let ring = ring();
        std::thread::scope(|s| {
            s.spawn(|| {
                for i in 0..2_000u32 {
                    ring.send(&i.to_le_bytes(), Wait::Sleep).unwrap();
                    if i % 100 == 0 {
                        std::thread::sleep(Duration::from_millis(1)); // let the receiver sleep
                    }
                }
            });
            for i in 0..2_000u32 {
                assert_eq!(ring.recv(Wait::Sleep).unwrap(), i.to_le_bytes());
            }
        });
        assert_eq!(ring.receiver_asleep.value.load(Relaxed), 0);
    }

    #[test]
    fn a_bell_rings_for_the_first_piece_of_a_long_message() {
        // SAFETY: as in `ring`: zeros are a valid Bell.
        let bell: Box<Bell> = unsafe { Box::new_zeroed().assume_init() };
        let (ring, long) = (ring(), vec![1u8; 3 * WORDS * 8]);
        std::thread::scope(|s| {
            s.spawn(|| {
                std::thread::sleep(Duration::from_millis(10)); // the receiver is asleep by now
                ring.send_ringing(&long, Wait::Sleep, Some(&bell)).unwrap();
            });
            // The message is 3 rings long: the sender fills the ring and waits for room. Rung
            // only at the end, the bell would never ring, and both would sleep forever.
            bell.wait_until(|| !ring.is_empty(), Wait::Sleep, "a message").unwrap();
            assert!(ring.recv(Wait::Sleep).unwrap() == long);
        });
    }

    #[test]
    fn a_length_no_sender_wrote_is_an_error() {
        let ring = ring();
        ring.slots[0].store(u64::MAX, Relaxed);
        ring.head.store(1, Release);
        let error = ring.recv(Wait::Spin).unwrap_err().to_string();
        assert!(error.contains("two senders?"), "{error}");
    }
}
