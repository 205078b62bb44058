// shm::Atomics holds AtomicU32 or AtomicU64 words and nothing else: it relies on their size
// and alignment, so `Word` is sealed, and a type of one's own cannot be made one.
use std::sync::atomic::AtomicU64;

use multiproc::shm::{Shareable, Word};

#[repr(align(8192))]
struct Mine(AtomicU64);

// SAFETY: zero is valid, no pointer, changed only atomically (but aligned beyond a page).
unsafe impl Shareable for Mine {}

impl Word for Mine {
    fn touch(&self) {}
}

fn main() {}
