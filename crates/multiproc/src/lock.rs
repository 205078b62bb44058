//! Locks that work between processes. Each is one 32-bit word in shared memory; the
//! lock-race chapter builds them step by step and includes this file.
//!
//! `std::sync::Mutex` and `parking_lot` must never be placed in shared memory: they are
//! process-private (their waiting is keyed to one address space), so a process sleeping on
//! one would never be woken by another. `shm::Shared` refuses them (`shm::Shareable`).
//!
//! These locks guard no data of their own: what they protect is up to the code that takes
//! them, which keeps it in atomics (the lock-race lesson), or uses `shm::Value` and
//! `shm::Array`, whose data is reached only through their lock.

use std::sync::atomic::AtomicU32;
use std::sync::atomic::Ordering::{AcqRel, Acquire, Relaxed, Release};

use linux_futex::{Futex, Shared};

// ANCHOR: spinlock
/// The simplest lock: 0 is free, 1 is taken, and waiting means trying again.
#[repr(transparent)]
#[derive(Default)]
pub struct SpinLock {
    taken: AtomicU32,
}

impl SpinLock {
    pub fn lock(&self) {
        // Swap 0 for 1 in one indivisible step; whoever succeeds holds the lock.
        while self.taken.compare_exchange_weak(0, 1, Acquire, Relaxed).is_err() {
            std::hint::spin_loop(); // burn the CPU until the holder lets go
        }
    }

    pub fn unlock(&self) {
        self.taken.store(0, Release); // Release: our writes are seen before the lock is free
    }
}
// ANCHOR_END: spinlock

// ANCHOR: lock
/// A lock that sleeps instead of spinning: 0 is free, 1 is taken, 2 is taken and someone
/// may be asleep waiting for it. Sleeping and waking go through the kernel's futex call,
/// keyed by the word's physical page, so they work across processes (`Futex<Shared>`).
#[repr(transparent)]
#[derive(Default)]
pub struct Lock {
    state: Futex<Shared>,
}

impl Lock {
    /// Take the lock; it is let go when the guard is dropped.
    pub fn lock(&self) -> LockGuard<'_> {
        // Uncontended: 0 -> 1 in user space, no system call at all.
        if self.state.value.compare_exchange(0, 1, Acquire, Relaxed).is_err() {
            let _waiting = crate::trace::span("wait", || "waiting for the lock".into()); // --trace
            // Taken: say "someone is waiting" (2), and sleep while it stays taken.
            while self.state.value.swap(2, Acquire) != 0 {
                let _ = self.state.wait(2); // sleeps only if the word is still 2
            }
        }
        LockGuard { lock: self }
    }

    fn unlock(&self) {
        // Only if someone may be asleep (2) is a system call needed, to wake one.
        if self.state.value.swap(0, Release) == 2 {
            self.state.wake(1);
        }
    }
}

/// Holds a [`Lock`] until dropped. It guards no data: see the module's documentation.
pub struct LockGuard<'a> {
    lock: &'a Lock,
}

impl Drop for LockGuard<'_> {
    fn drop(&mut self) {
        self.lock.unlock();
    }
}
// ANCHOR_END: lock

impl Lock {
    /// [`Lock::lock`], for a process whose children may take the lock too: if one of them
    /// dies abnormally while this process waits, the wait ends with an error naming it
    /// (`waiting_for` says what for), since a dead holder would never let go
    /// (`proc::wait_futex`). In a process without children it is `lock`.
    pub fn lock_watching(&self, waiting_for: &str) -> anyhow::Result<LockGuard<'_>> {
        if self.state.value.compare_exchange(0, 1, Acquire, Relaxed).is_err() {
            while self.state.value.swap(2, Acquire) != 0 {
                crate::proc::wait_futex(&self.state, 2, waiting_for)?;
            }
        }
        Ok(LockGuard { lock: self })
    }
}

// ANCHOR: meet
/// A meeting point in shared memory: each of `parties` processes adds itself to `arrived`
/// (0 to start with) and waits until all have. It yields the CPU while it waits, so the
/// others can get there even on one CPU. Set `arrived` back to 0 to meet again.
pub fn meet(arrived: &AtomicU32, parties: u32) {
    arrived.fetch_add(1, AcqRel); // what each did before arriving is seen by all after
    while arrived.load(Acquire) < parties {
        std::thread::yield_now();
    }
}
// ANCHOR_END: meet

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::UnsafeCell;

    /// A counter with no protection of its own.
    struct Racy(UnsafeCell<u64>);
    // SAFETY: every access below happens under one of the locks being tested.
    unsafe impl Sync for Racy {}

    impl Racy {
        /// Read, let another thread run, write back: loses updates unless excluded.
        fn bump(&self) {
            // SAFETY: called only while holding the lock under test.
            unsafe {
                let v = *self.0.get();
                std::thread::yield_now();
                *self.0.get() = v + 1;
            }
        }
    }

    // Within one process, with threads: what a lock guarantees does not depend on how
    // many address spaces share its word. Across processes, the lessons show it.
    #[test]
    fn locks_exclude() {
        let (spin, lock) = (SpinLock::default(), Lock::default());
        let (a, b) = (Racy(UnsafeCell::new(0)), Racy(UnsafeCell::new(0)));
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..500 {
                        spin.lock();
                        a.bump();
                        spin.unlock();
                        let _guard = lock.lock();
                        b.bump();
                    }
                });
            }
        });
        assert_eq!((a.0.into_inner(), b.0.into_inner()), (2_000, 2_000));
        assert_eq!(lock.state.value.load(Relaxed), 0);
    }
}
