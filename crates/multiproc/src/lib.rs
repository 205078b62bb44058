//! multiproc: Python's `multiprocessing`, in Rust, with real processes. The chapters of the
//! forklore book build these modules and include them by anchor; the lessons use them.
//!
//! - [`proc`]: start a child (fork, or this program again), join it, read its exit code;
//!   join several and stop the rest when one fails (the spawn-join chapter).
//! - [`wire`]: messages over a byte stream, each its length and then its bytes (pipe).
//! - [`shm`]: memory shared with the children forked after it was made: `Value`, `Array`,
//!   and `Shared` atomics (value-array, zero-copy).
//! - [`lock`]: locks that work between processes, a spinlock and a futex lock (lock-race).
//! - [`queue`]: a queue any number of processes put into and get from (queue).
//! - [`pool`]: worker processes fed tasks in chunks, results in order (pool).
//! - [`ring`]: the fast lane, a ring buffer in shared memory from one process to another
//!   with no system call while both are awake (fast-lane).
//! - [`crew`]: workers forked once and kept, told each round's start through rings
//!   (value-array, when-slower).

pub mod crew;
pub mod lock;
pub mod pool;
pub mod proc;
pub mod queue;
pub mod ring;
pub mod shm;
pub mod trace;
pub mod wire;
