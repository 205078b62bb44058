//! Memory that processes share: made before `fork`, the same physical pages in the parent and
//! in every child forked after it. The value-array and zero-copy chapters include the
//! anchored parts.
//!
//! # The rule: memory another process may write is touched only through atomics or a lock
//!
//! Rust lets the compiler assume that while a plain `&[f64]` exists, nothing writes the
//! numbers it points to, and that while a `&mut [f64]` exists, nothing else reads or writes
//! them. It uses that: it keeps values in registers, reorders and merges loads and stores.
//! Between threads, the borrow checker proves the assumption. Another process is outside
//! its view: `fork` copies every reference the parent holds into the child, so "only this
//! reference can write here" stops being true the moment the child exists. A program that
//! breaks the assumption has undefined behaviour: not merely a wrong number, but code the
//! compiler was allowed to get wrong in any way.
//!
//! So this module hands out plain references to shared memory only where no other process
//! can touch the same bytes while the reference lives, and proves it at run time:
//! - [`Shared<T>`] holds atomics and locks ([`Shareable`] types), which are made to be
//!   changed by several processes at once. Any process may use them at any time.
//! - [`Value`] and [`Array`] hold plain numbers behind a lock that lives in the same shared
//!   memory: their data is reached only through a [`Guard`], which holds the lock, in
//!   whatever process it is taken. (Python's `Value` and `Array` with `lock=True`.)
//! - [`Array::fork_parts`] and [`Array::fork_chunks`] are `lock=False`: they hold the
//!   array's lock themselves while children run, and give each child its own part, a plain
//!   `&mut [T]` that no other process can reach, until every child has been reaped.
//! - A process that holds a guard or a part cannot fork ([`crate::proc::fork_child`]
//!   refuses): the child would get a copy of it, and two processes would write through it.
//!
//! Why not `memmap2::MmapMut::map_anon`? It maps MAP_PRIVATE: after fork, each process gets
//! its own copy of a page the moment it writes to it (copy-on-write), so a child's writes
//! never reach the parent. A shared mapping of a memory file is what Python's
//! `multiprocessing.sharedctypes` uses too (an anonymous file in a temporary directory).

use std::cell::Cell;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut, Range};
use std::ptr::NonNull;
use std::sync::atomic::{
    AtomicBool, AtomicI32, AtomicI64, AtomicU8, AtomicU16, AtomicU32, AtomicU64, AtomicUsize, Ordering,
};

use anyhow::{Context, bail, ensure};
use bytemuck::Pod;
use memmap2::MmapMut;
use nix::sys::memfd::{MFdFlags, memfd_create};
use nix::sys::mman::{MmapAdvise, madvise};

use crate::lock::{Lock, LockGuard, SpinLock};
use crate::proc::{ChildExit, Children};

// ANCHOR: region
/// Zeroed memory shared with every child forked after it was made: the storage under
/// [`Shared`], [`Value`] and [`Array`], which say how it may be touched.
///
/// It is a memory file (`memfd_create`) mapped MAP_SHARED. The file has no name anywhere
/// (nothing in /dev/shm to forget), and the kernel frees it when the last process that
/// maps it has exited, however that process ended.
struct Region {
    map: MmapMut,
    /// The mapping's first byte, taken once from `as_mut_ptr`: every access goes through it.
    base: NonNull<u8>,
}

impl Region {
    fn new(bytes: usize) -> anyhow::Result<Region> {
        ensure!(bytes > 0, "a shared region needs at least one byte");
        let fd = memfd_create(c"forklore-region", MFdFlags::MFD_CLOEXEC)
            .context("create a memory file (memfd_create)")?;
        let file = std::fs::File::from(fd);
        file.set_len(bytes as u64).with_context(|| format!("size the shared region to {bytes} bytes"))?;
        // SAFETY: the file is new and ours, and is closed at the end of this function: nothing
        // can truncate it while it is mapped. What other processes may do with the mapping
        // is governed by the types that own a Region (see the module's rule).
        let mut map =
            unsafe { MmapMut::map_mut(&file) }.context("map the shared region (mmap MAP_SHARED)")?;
        let base = NonNull::new(map.as_mut_ptr()).context("mmap returned a null pointer")?;
        Ok(Region { map, base })
    }
    // ANCHOR_END: region

    /// A pointer `offset` bytes in (callers keep within the region).
    fn at(&self, offset: usize) -> *mut u8 {
        debug_assert!(offset <= self.map.len());
        self.base.as_ptr().wrapping_add(offset)
    }
}

// SAFETY: a Region is a mapping owned by one value, not tied to a thread; it gives no access
// by itself. The types that hold one decide who may touch its bytes, between threads and
// between processes alike, and each says why its access is sound.
unsafe impl Send for Region {}
// SAFETY: as above: `&Region` offers nothing but `at`, a pointer its owner uses.
unsafe impl Sync for Region {}

// ANCHOR: shareable
/// Types that may live in shared memory and be used by several processes at once.
///
/// # Safety
/// Implement only for types that are valid when every byte is zero (that is how shared
/// memory starts), hold no pointer (an address means something in one process only), and
/// change only through atomic operations on their own bytes, whose effect is the same
/// whichever process performs them: atomics, locks made of atomics, and arrays and tuples
/// of those. Never for `std::sync::Mutex` and the like: their waiting and their state may
/// live outside their bytes, in one process.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot live in shared memory: other processes would change it behind this one's back",
    label = "not shareable between processes",
    note = "only atomics (AtomicU32, AtomicI64, ...), multiproc's Lock and SpinLock, \
            and arrays and tuples of them can; a std::sync::Mutex keeps its waiters in one \
            process, and a plain number changed by another process breaks what the compiler \
            assumes of a `&` (use an atomic, or shm::Value for a number with a lock)"
)]
pub unsafe trait Shareable: Sync {}
// ANCHOR_END: shareable

macro_rules! shareable {
    ($($t:ty),*) => {$(
        // SAFETY: an atomic is its value's bytes, zero is a valid value, and it changes only
        // through atomic instructions on those bytes.
        unsafe impl Shareable for $t {}
    )*};
}
shareable!(AtomicBool, AtomicU8, AtomicU16, AtomicU32, AtomicI32, AtomicU64, AtomicI64, AtomicUsize);
// SAFETY: one AtomicU32 (repr(transparent)); zero is "free". See crate::lock.
unsafe impl Shareable for Lock {}
// SAFETY: as above.
unsafe impl Shareable for SpinLock {}
// SAFETY: an array of Shareable values is those values, side by side.
unsafe impl<T: Shareable, const N: usize> Shareable for [T; N] {}
// SAFETY: a tuple of Shareable values is those values (and padding, which nothing reads).
unsafe impl<A: Shareable, B: Shareable> Shareable for (A, B) {}
// SAFETY: as above.
unsafe impl<A: Shareable, B: Shareable, C: Shareable> Shareable for (A, B, C) {}
// SAFETY: as above.
unsafe impl<A: Shareable, B: Shareable, C: Shareable, D: Shareable> Shareable for (A, B, C, D) {}

// ANCHOR: shared
/// One `T` made of atomics and locks, zeroed, in memory shared with every child forked after
/// it was made: `Shared::<(AtomicI64, Lock)>::new()?` and `let (balance, lock) = &*shared;`.
pub struct Shared<T: Shareable> {
    region: Region,
    kind: PhantomData<T>,
}

impl<T: Shareable> Shared<T> {
    pub fn new() -> anyhow::Result<Shared<T>> {
        ensure!(align_of::<T>() <= PAGE, "{} needs more alignment than a page", std::any::type_name::<T>());
        Ok(Shared { region: Region::new(size_of::<T>().max(1))?, kind: PhantomData })
    }
}

impl<T: Shareable> Deref for Shared<T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the region holds exactly one T, at its start, which is page-aligned; its
        // bytes started as zeros, a valid T (Shareable). Every process that maps it sees it
        // as this one type, and T changes only atomically (Shareable), so a shared reference
        // is sound however many processes use it at once.
        unsafe { &*self.region.at(0).cast::<T>() }
    }
}
// ANCHOR_END: shared

/// The smallest page: mappings start on one.
const PAGE: usize = 4096;

// ANCHOR: plain
/// The data a [`Value`] or an [`Array`] may hold: plain bytes, valid whatever they are
/// (bytemuck's `Pod`): numbers, and arrays and `repr(C)` structs of numbers.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be copied into shared memory: it is not plain data",
    note = "a pointer, a reference or a heap allocation (a String, a Vec, a Box) points into one process's own \
            memory: another process would read an address that means nothing to it"
)]
pub trait Plain: Pod {}
impl<T: Pod> Plain for T {}
// ANCHOR_END: plain

/// Where the data of a [`Value`] or an [`Array`] starts: after its lock, on a cache line of
/// its own (so that the lock word and the first values never share a line), and at an offset
/// that suits any `T`.
const DATA: usize = 64;

/// This process's guards and parts, counted: a process that holds one may not fork.
mod held {
    use super::*;

    thread_local! {
        /// Guards and parts alive in this thread. (A [`Guard`] is not `Send`: it is dropped
        /// in the thread that took it.)
        static HELD: Count = const { Count(Cell::new(0)) };
    }

    /// Set when a thread ended with a guard still counted (leaked with `mem::forget`): its
    /// references may still be in use, so this process never forks again.
    static LEAKED: AtomicBool = AtomicBool::new(false);

    struct Count(Cell<usize>);

    impl Drop for Count {
        fn drop(&mut self) {
            if self.0.get() != 0 {
                LEAKED.store(true, Ordering::Relaxed);
            }
        }
    }

    /// One held guard or part, for as long as this lives.
    pub(super) struct Held(PhantomData<*const ()>); // *const (): not Send

    impl Held {
        pub(super) fn new() -> Held {
            HELD.with(|h| h.0.set(h.0.get() + 1));
            Held(PhantomData)
        }
    }

    impl Drop for Held {
        fn drop(&mut self) {
            HELD.with(|h| h.0.set(h.0.get() - 1));
        }
    }

    /// Whether this thread holds a guard or a part now, or one was ever leaked.
    pub(crate) fn any() -> bool {
        HELD.with(|h| h.0.get() != 0) || LEAKED.load(Ordering::Relaxed)
    }
}
pub(crate) use held::any as held_here;

// ANCHOR: value_array
/// Python's `Value(typecode, initial)`: one `T` in shared memory, with a lock of its own.
pub struct Value<T> {
    region: Region,
    kind: PhantomData<T>,
}

impl<T: Plain> Value<T> {
    pub fn new(initial: T) -> anyhow::Result<Value<T>> {
        ensure!(align_of::<T>() <= DATA, "{} needs more alignment than {DATA} bytes", name::<T>());
        let value = Value { region: Region::new(DATA + size_of::<T>())?, kind: PhantomData };
        *value.lock()? = initial;
        Ok(value)
    }

    /// Python's `with v.get_lock(): v.value ...`: the value, for as long as the guard lives.
    ///
    /// Unlike Python's, it can fail, as `std::sync::Mutex::lock` can: in a process with
    /// children, if one of them dies abnormally while this one waits for the lock, the
    /// error names it (that child may hold the lock forever, its write half done). In a
    /// process without children it waits as long as the lock is held.
    pub fn lock(&self) -> anyhow::Result<Guard<'_, T>> {
        crate::proc::faults::waiting("a Value's lock");
        let lock = lock_of(&self.region).lock_watching("a Value's lock")?;
        crate::proc::faults::holding("a Value's lock");
        // SAFETY: in bounds and aligned (DATA suits any Plain T; the region is page-aligned),
        // and any bytes are a valid T (Plain). Exclusive while the guard lives: in every
        // process the value is reached only through a guard, which holds the lock, and no
        // guard is ever copied into another process (fork_child refuses while one lives).
        let value = unsafe { &mut *self.region.at(DATA).cast::<T>() };
        Ok(Guard { _lock: lock, value, _held: held::Held::new() })
    }
}

/// Python's `Array(typecode, n)`: `n` values of `T`, zeroed, in shared memory, with a lock.
pub struct Array<T> {
    region: Region,
    len: usize,
    kind: PhantomData<T>,
}

impl<T: Plain> Array<T> {
    pub fn new(len: usize) -> anyhow::Result<Array<T>> {
        ensure!(align_of::<T>() <= DATA, "{} needs more alignment than {DATA} bytes", name::<T>());
        let bytes = len.checked_mul(size_of::<T>()).and_then(|b| b.checked_add(DATA));
        let bytes = bytes.with_context(|| format!("an Array of {len} values does not fit in memory"))?;
        Ok(Array { region: Region::new(bytes)?, len, kind: PhantomData })
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Python's `with a.get_lock():` and `a[...]`: every value, to read or write, for as long
    /// as the guard lives. (Python's `lock=True` takes it for each `a[i]`.) It fails as
    /// [`Value::lock`] does.
    pub fn lock(&self) -> anyhow::Result<Guard<'_, [T]>> {
        crate::proc::faults::waiting("an Array's lock");
        let lock = lock_of(&self.region).lock_watching("an Array's lock")?;
        crate::proc::faults::holding("an Array's lock");
        // SAFETY: as for Value::lock, with `len` values from DATA on, all in the region.
        let values = unsafe { std::slice::from_raw_parts_mut(self.region.at(DATA).cast::<T>(), self.len) };
        Ok(Guard { _lock: lock, value: values, _held: held::Held::new() })
    }
}
// ANCHOR_END: value_array

// ANCHOR: fork_parts
impl<T: Plain> Array<T> {
    /// Python's `lock=False`, with the type system instead of a lock: fork one child per
    /// part, `&mut` to its own values; wait for them all. Child `i` runs `work(i, part)`, its
    /// part being the values `parts[i]`, and exits with what `work` returns. If a child
    /// fails, the others are stopped, as [`crate::proc::join_all`] does; either way, when
    /// this returns, every child has ended and been reaped.
    ///
    /// The parts must not overlap. `&mut self`: nothing else in this process can use the
    /// array meanwhile; and the array's lock is held from the first fork to the last reaped
    /// child, so no process can take a [`Guard`] to its values either.
    pub fn fork_parts<R: ChildExit>(
        &mut self,
        parts: &[Range<usize>],
        work: impl Fn(usize, &mut [T]) -> R,
    ) -> anyhow::Result<()> {
        let mut end = 0;
        for part in parts {
            if part.start < end || part.end < part.start || part.end > self.len {
                bail!("parts must be in order, not overlap, and fit in {} values: {parts:?}", self.len);
            }
            end = part.end;
        }
        // No Guard, anywhere, until every child is gone.
        let _lock = lock_of(&self.region).lock_watching("an Array's lock")?;
        let values = self.region.at(DATA).cast::<T>();
        // Named "worker 0", "worker 1"...; on any way out (an error, a panic): stopped and reaped.
        let mut children = Children::new("worker");
        for (i, part) in parts.iter().enumerate() {
            children.fork(|| {
                let _mine = held::Held::new(); // this process holds a part now: it may not fork
                // SAFETY: in bounds and aligned (checked above; DATA suits T), any bytes are a
                // valid T. No other process reads or writes these values while this child
                // lives: siblings have parts that do not overlap; the parent holds the lock, so
                // no Guard exists anywhere, and makes no view of its own; this child cannot fork
                // a grandchild that would copy the part (it holds a part); and the part cannot
                // outlive `work`, after which this child exits. The parent reaps this child
                // before it lets go of the lock.
                let part = unsafe { std::slice::from_raw_parts_mut(values.add(part.start), part.len()) };
                work(i, part)
            })?;
        }
        children.join_all()
    }

    /// [`Array::fork_parts`] with the values cut like `chunks_mut(chunk_len)`: parts of
    /// `chunk_len` values (the last may be shorter), one child each.
    pub fn fork_chunks<R: ChildExit>(
        &mut self,
        chunk_len: usize,
        work: impl Fn(usize, &mut [T]) -> R,
    ) -> anyhow::Result<()> {
        ensure!(chunk_len > 0, "chunks need at least one value each");
        let parts: Vec<Range<usize>> =
            (0..self.len).step_by(chunk_len).map(|start| start..(start + chunk_len).min(self.len)).collect();
        self.fork_parts(&parts, work)
    }
}
// ANCHOR_END: fork_parts

// ANCHOR: populate
/// How [`populate`] faulted in a part's pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Populated {
    /// In one system call, `madvise(MADV_POPULATE_WRITE)` (Linux 5.14 and later).
    InOneCall,
    /// One write per page, each byte written back as it was: where the kernel refuses that
    /// call, or the part holds no whole page.
    ByTouch,
}

/// Fault in the pages of `part`, writable, before the work writes them. A process that maps
/// shared memory its parent made starts with none of those pages in its own page table, and
/// takes a page fault per 4 KiB the first time it writes each: a trap into the kernel every
/// time. One `madvise(MADV_POPULATE_WRITE)` fills the page table for the whole part in one
/// call instead. The values are unchanged.
pub fn populate<T: Plain>(part: &mut [T]) -> Populated {
    let bytes: &mut [u8] = bytemuck::cast_slice_mut(part);
    let start = bytes.as_mut_ptr() as usize;
    let (first, end) = (start.next_multiple_of(PAGE), (start + bytes.len()) / PAGE * PAGE);
    if let Some(at) = NonNull::new(first as *mut std::ffi::c_void).filter(|_| first < end) {
        // SAFETY: the pages [first, end) lie wholly inside `part`, memory that is mapped and
        // that this function borrows mutably. MADV_POPULATE_WRITE changes no byte of them: it
        // fills this process's page table, as a write would, without writing; other processes
        // that share the pages see nothing change, whatever they do meanwhile.
        let done = unsafe { madvise(at, end - first, MmapAdvise::MADV_POPULATE_WRITE) };
        if done.is_ok() {
            return Populated::InOneCall;
        }
    }
    // The fallback: write one byte of each page back as it was. (black_box: the compiler
    // may not drop a store of what was just loaded.)
    for at in (0..bytes.len()).step_by(PAGE) {
        bytes[at] = std::hint::black_box(bytes[at]);
    }
    Populated::ByTouch
}
// ANCHOR_END: populate

// ANCHOR: atomics
/// `len` atomic words (`AtomicU64`, or `AtomicU32`), zeroed, in memory shared with every
/// child forked after it was made: an array without a lock that any process may read and
/// write at any time, each word on its own (an `f64` or an `f32` travels as its bits:
/// `to_bits`, `from_bits`). For workers that live on while the parent reads what they
/// wrote, where `Array::fork_parts` would need them gone.
pub struct Atomics<A: Word> {
    region: Region,
    len: usize,
    kind: PhantomData<A>,
}

/// The atomics an [`Atomics`] may hold: `AtomicU32` and `AtomicU64`, and no other type
/// (the trait is sealed: an `Atomics` relies on their size and alignment).
pub trait Word: Shareable + Sized + sealed::Sealed {
    /// A write that changes nothing (adds 0), atomically.
    fn touch(&self);
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for std::sync::atomic::AtomicU32 {}
    impl Sealed for std::sync::atomic::AtomicU64 {}
}

impl Word for AtomicU32 {
    fn touch(&self) {
        self.fetch_add(0, Ordering::Relaxed);
    }
}

impl Word for AtomicU64 {
    fn touch(&self) {
        self.fetch_add(0, Ordering::Relaxed);
    }
}

impl<A: Word> Atomics<A> {
    pub fn new(len: usize) -> anyhow::Result<Atomics<A>> {
        let bytes = len.checked_mul(size_of::<A>()).context("too many words for one region")?;
        Ok(Atomics { region: Region::new(bytes.max(1))?, len, kind: PhantomData })
    }

    /// Fault in the pages of `words` in this process's page table, writable, as [`populate`]
    /// does for a part of an `Array`. The values are unchanged.
    pub fn populate(&self, words: Range<usize>) -> Populated {
        let words = &self[words];
        let Some(first_word) = words.first() else { return Populated::ByTouch };
        let start = std::ptr::from_ref(first_word) as usize;
        let end = start + size_of_val(words);
        let (first, end) = (start.next_multiple_of(PAGE), end / PAGE * PAGE);
        if let Some(at) = NonNull::new(first as *mut std::ffi::c_void).filter(|_| first < end) {
            // SAFETY: the pages [first, end) lie wholly inside `words`, which are mapped for
            // as long as `self` lives. MADV_POPULATE_WRITE changes no byte: it fills this
            // process's page table as a write would; other processes see nothing change.
            if unsafe { madvise(at, end - first, MmapAdvise::MADV_POPULATE_WRITE) }.is_ok() {
                return Populated::InOneCall;
            }
        }
        words.iter().step_by(PAGE / size_of::<A>()).for_each(Word::touch);
        Populated::ByTouch
    }
}

impl<A: Word> Deref for Atomics<A> {
    type Target = [A];
    fn deref(&self) -> &[A] {
        // SAFETY: the region holds `len` words of type A from its start, page-aligned (A is
        // AtomicU32 or AtomicU64, by the sealed Word: it needs 4 or 8), zeroed (a valid
        // value: Shareable). They change only atomically, in any process, so shared
        // references are sound however many processes use them at once.
        unsafe { std::slice::from_raw_parts(self.region.at(0).cast::<A>(), self.len) }
    }
}
// ANCHOR_END: atomics

/// The lock at the start of a Value's or an Array's region.
fn lock_of(region: &Region) -> &Lock {
    // SAFETY: every Value and Array region starts with its Lock (zeroed: free), at offset 0,
    // page-aligned, and nothing else is ever placed there; a Lock changes only atomically,
    // so any number of processes may hold a `&Lock` to it at once.
    unsafe { &*region.at(0).cast::<Lock>() }
}

// ANCHOR: guard
/// Access to a [`Value`] or an [`Array`] under its lock; the lock is let go on drop.
///
/// Not `Send`: it is counted in the thread that took it, and while any guard is alive this
/// process does not fork.
pub struct Guard<'a, T: ?Sized> {
    _lock: LockGuard<'a>,
    value: &'a mut T,
    _held: held::Held,
}

impl<T: ?Sized> Deref for Guard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        self.value
    }
}

impl<T: ?Sized> DerefMut for Guard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        self.value
    }
}
// ANCHOR_END: guard

// ANCHOR: cast
/// `len` values of type `T`, `offset` bytes into `bytes`: checked that they fit and that the
/// offset suits `T`'s alignment (in memory, where `bytes` lie), and then a plain `&[T]`.
pub fn cast<T: Plain>(bytes: &[u8], offset: usize, len: usize) -> anyhow::Result<&[T]> {
    let range = fits::<T>(bytes.len(), offset, len)?;
    bytemuck::try_cast_slice(&bytes[range]).map_err(|e| misfit::<T>(offset, e))
}

/// The same, to write.
pub fn cast_mut<T: Plain>(bytes: &mut [u8], offset: usize, len: usize) -> anyhow::Result<&mut [T]> {
    let range = fits::<T>(bytes.len(), offset, len)?;
    bytemuck::try_cast_slice_mut(&mut bytes[range]).map_err(|e| misfit::<T>(offset, e))
}
// ANCHOR_END: cast

fn fits<T>(available: usize, offset: usize, len: usize) -> anyhow::Result<Range<usize>> {
    match len.checked_mul(size_of::<T>()).and_then(|bytes| offset.checked_add(bytes)) {
        Some(end) if end <= available => Ok(offset..end),
        _ => bail!("{len} {} at byte {offset} do not fit in {available} bytes", name::<T>()),
    }
}

fn name<T>() -> &'static str {
    std::any::type_name::<T>().rsplit("::").next().unwrap_or("?")
}

fn misfit<T>(offset: usize, e: bytemuck::PodCastError) -> anyhow::Error {
    anyhow::anyhow!("cannot view offset {offset} as {}: {e:?}", name::<T>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomics_start_zeroed_and_populate_changes_no_value() {
        let words = Atomics::<AtomicU64>::new(3 * PAGE).unwrap();
        assert!(words.iter().all(|w| w.load(Ordering::Relaxed) == 0));
        words[PAGE].store(7, Ordering::Relaxed);
        words.populate(0..words.len());
        let total: u64 = words.iter().map(|w| w.load(Ordering::Relaxed)).sum();
        assert_eq!((words.len(), total), (3 * PAGE, 7));
    }

    #[test]
    fn populate_changes_no_value_and_spares_the_faults() {
        use nix::sys::resource::{UsageWho, getrusage};
        let faults = || getrusage(UsageWho::RUSAGE_THREAD).map(|u| u.minor_page_faults()).unwrap_or(0);
        let mut values: Vec<u64> = (0..100_000).map(|i| i * 7 + 1).collect(); // 781 KiB
        let before = values.clone();
        populate(&mut values);
        assert_eq!(values, before);
        // Fresh memory (calloc'd: no page of it is in the page table yet): populated, its
        // writes take no page fault; unpopulated, one per page.
        let mut fresh = vec![0u64; 1 << 17]; // 1 MiB, 256 pages
        let how = populate(&mut fresh);
        let start = faults();
        fresh.iter_mut().step_by(512).for_each(|v| *v = 1);
        let taken = faults() - start;
        assert!(taken < 16, "{taken} page faults writing 256 populated pages ({how:?})");
        let mut small = [3u8; 100]; // no whole page: touched
        assert_eq!(populate(&mut small), Populated::ByTouch);
        assert_eq!(small, [3u8; 100]);
    }

    // Tests never fork (the harness has threads): the lessons and tests/fork.rs do. Here, one
    // process.
    #[test]
    fn casts_are_checked() {
        let bytes = Array::<u8>::new(64).unwrap();
        let mut all = bytes.lock().unwrap();
        cast_mut::<f64>(&mut all, 8, 7).unwrap()[6] = 1.5;
        assert_eq!(cast::<f64>(&all, 56, 1).unwrap(), [1.5]);
        assert!(cast::<f64>(&all, 4, 1).unwrap_err().to_string().contains("cannot view offset 4"));
        assert!(cast::<f64>(&all, 8, 8).unwrap_err().to_string().contains("do not fit"));
        assert!(cast::<u8>(&all, usize::MAX, 2).is_err());
    }

    #[test]
    fn value_array_and_shared() {
        let v = Value::new(2.5f64).unwrap();
        *v.lock().unwrap() += 1.0;
        assert_eq!(*v.lock().unwrap(), 3.5);
        let a = Array::<u64>::new(10).unwrap();
        a.lock().unwrap()[9] += 10;
        assert_eq!(a.lock().unwrap()[..], [0, 0, 0, 0, 0, 0, 0, 0, 0, 10]);
        let shared = Shared::<(AtomicU32, Lock, [AtomicI64; 3])>::new().unwrap();
        let (count, lock, numbers) = &*shared;
        count.fetch_add(2, Ordering::Relaxed);
        drop(lock.lock());
        numbers[2].store(-7, Ordering::Relaxed);
        assert_eq!((count.load(Ordering::Relaxed), numbers[2].load(Ordering::Relaxed)), (2, -7));
        assert!(Array::<u64>::new(usize::MAX / 4).is_err());
    }

    #[test]
    fn guards_are_counted() {
        assert!(!held_here());
        let v = Value::new(1u32).unwrap();
        let guard = v.lock().unwrap();
        assert!(held_here());
        drop(guard);
        assert!(!held_here());
    }

    #[test]
    fn parts_are_checked_before_any_fork() {
        let mut a = Array::<u8>::new(10).unwrap();
        let error = a.fork_parts(&[0..5, 4..10], |_, _| 0).unwrap_err().to_string();
        assert!(error.contains("not overlap"), "{error}");
        assert!(a.fork_parts(&[0..5, 5..11], |_, _| 0).is_err());
        assert!(a.fork_chunks(0, |_, _| 0).is_err());
    }
}
