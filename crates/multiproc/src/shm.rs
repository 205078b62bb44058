//! Memory that processes share: made before `fork`, the same physical pages in the parent
//! and in every child. The value-array chapter includes the anchored parts.
//!
//! Why not `memmap2::MmapMut::map_anon`? It maps MAP_PRIVATE: after fork, each process gets
//! its own copy of a page the moment it writes to it (copy-on-write), so a child's writes
//! never reach the parent. A shared mapping of a memory file is what Python's
//! `multiprocessing.sharedctypes` uses too (an anonymous file in a temporary directory).

use std::fs::File;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicI64, AtomicU32, AtomicU64};

use anyhow::{Context, bail, ensure};
use bytemuck::Pod;
use memmap2::MmapMut;
use nix::sys::memfd::{MFdFlags, memfd_create};

use crate::lock::{Lock, LockGuard, SpinLock};

// ANCHOR: region
/// Zeroed memory shared with every child forked after it was made.
///
/// It is a memory file (`memfd_create`) mapped MAP_SHARED. The file has no name anywhere
/// (nothing in /dev/shm to forget), and the kernel frees it when the last process that
/// maps it has exited, however that process ended.
pub struct Region {
    map: MmapMut,
    /// The mapping's first byte, taken once from `as_mut_ptr`: the one pointer that writes
    /// through shared references (locks, atomics, guarded values) are derived from.
    base: NonNull<u8>,
    /// The memory file itself: a re-executed child can be handed it to map the same pages.
    pub file: File,
}

impl Region {
    pub fn new(bytes: usize) -> anyhow::Result<Region> {
        ensure!(bytes > 0, "a shared region needs at least one byte");
        let fd = memfd_create(c"forklore-region", MFdFlags::MFD_CLOEXEC)
            .context("create a memory file (memfd_create)")?;
        let file = File::from(fd);
        file.set_len(bytes as u64).with_context(|| format!("size the shared region to {bytes} bytes"))?;
        // SAFETY: the file is new and ours; nothing truncates it while it is mapped.
        let mut map =
            unsafe { MmapMut::map_mut(&file) }.context("map the shared region (mmap MAP_SHARED)")?;
        let base = NonNull::new(map.as_mut_ptr()).context("mmap returned a null pointer")?;
        Ok(Region { map, base, file })
    }
    // ANCHOR_END: region

    /// The region's size in bytes.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether the region is empty (it never is: [`Region::new`] refuses zero bytes).
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    // ANCHOR: typed
    /// `len` values of type `T`, starting `offset` bytes in. Bounds and alignment are checked:
    /// the region starts on a page boundary, but an offset inside it may not suit `T`.
    pub fn slice<T: Pod>(&self, offset: usize, len: usize) -> anyhow::Result<&[T]> {
        let bytes = self.bytes(offset, len * size_of::<T>())?;
        bytemuck::try_cast_slice(&self.map[bytes]).map_err(|e| misfit::<T>(offset, e))
    }

    /// The same, writable. `&mut self`: the borrow checker sees to it that this process holds
    /// one writable view at a time; other processes are the program's business.
    pub fn slice_mut<T: Pod>(&mut self, offset: usize, len: usize) -> anyhow::Result<&mut [T]> {
        let bytes = self.bytes(offset, len * size_of::<T>())?;
        bytemuck::try_cast_slice_mut(&mut self.map[bytes]).map_err(|e| misfit::<T>(offset, e))
    }

    /// A shared object (an atomic or a lock) living `offset` bytes in.
    pub fn get<T: Shareable>(&self, offset: usize) -> anyhow::Result<&T> {
        self.bytes(offset, size_of::<T>())?;
        let ptr = self.at(offset);
        ensure!(ptr.cast::<T>().is_aligned(), "offset {offset} is not aligned for {}", name::<T>());
        // SAFETY: in bounds and aligned (checked above); `Shareable` types are valid for any
        // bit pattern, zero included, and change only through atomic operations, which is
        // what makes sharing them between processes sound.
        Ok(unsafe { &*ptr.cast::<T>() })
    }
    // ANCHOR_END: typed

    /// A pointer `offset` bytes in, for writes through `&self` (callers check bounds).
    fn at(&self, offset: usize) -> *mut u8 {
        self.base.as_ptr().wrapping_add(offset)
    }

    fn bytes(&self, offset: usize, len: usize) -> anyhow::Result<std::ops::Range<usize>> {
        match offset.checked_add(len) {
            Some(end) if end <= self.len() => Ok(offset..end),
            _ => bail!("{len} bytes at offset {offset} do not fit in a region of {} bytes", self.len()),
        }
    }
}

// SAFETY: a Region is memory mapped into the whole process, not tied to a thread. Through
// `&Region` it hands out only `Shareable` objects (changed atomically) and read-only slices;
// writable slices need `&mut Region`. The base pointer is what makes these impls manual.
unsafe impl Send for Region {}
// SAFETY: as above.
unsafe impl Sync for Region {}

fn name<T>() -> &'static str {
    std::any::type_name::<T>().rsplit("::").next().unwrap_or("?")
}

fn misfit<T>(offset: usize, e: bytemuck::PodCastError) -> anyhow::Error {
    anyhow::anyhow!("cannot view offset {offset} as {}: {e:?}", name::<T>())
}

/// Types that may live in shared memory and be used from several processes at once: every
/// bit pattern is valid (zero is a fine start), and they change only atomically.
///
/// # Safety
/// Implement only for such types: atomics, and locks made of atomics. Never for
/// `std::sync::Mutex` and the like, which are process-private.
pub unsafe trait Shareable: Sync {}
// SAFETY: atomics are plain integers changed atomically; the locks are one AtomicU32 each.
unsafe impl Shareable for AtomicU32 {}
// SAFETY: as above.
unsafe impl Shareable for AtomicU64 {}
// SAFETY: as above.
unsafe impl Shareable for AtomicI64 {}
// SAFETY: as above.
unsafe impl Shareable for Lock {}
// SAFETY: as above.
unsafe impl Shareable for SpinLock {}

/// Where the data starts after a leading [`Lock`]: the lock's 4 bytes, rounded up to `T`'s
/// alignment.
fn data_offset<T>() -> usize {
    size_of::<Lock>().next_multiple_of(align_of::<T>())
}

// ANCHOR: value_array
/// Python's `Value(typecode, initial)`: one `T` in shared memory, with a lock of its own.
pub struct Value<T> {
    region: Region,
    kind: PhantomData<T>,
}

impl<T: Pod> Value<T> {
    pub fn new(initial: T) -> anyhow::Result<Value<T>> {
        let mut region = Region::new(data_offset::<T>() + size_of::<T>())?;
        region.slice_mut::<T>(data_offset::<T>(), 1)?[0] = initial;
        Ok(Value { region, kind: PhantomData })
    }

    /// Python's `v.get_lock()`.
    pub fn get_lock(&self) -> &Lock {
        self.region.get(0).expect("a Value starts with its lock")
    }

    /// Python's `with v.get_lock(): v.value ...`: the value, for as long as the guard lives.
    pub fn lock(&self) -> Guard<'_, T> {
        let lock = self.get_lock().lock();
        // SAFETY: in bounds and aligned by construction; exclusive while the lock is held,
        // provided every process reaches the value only through this lock.
        let value = unsafe { &mut *self.region.at(data_offset::<T>()).cast::<T>() };
        Guard { _lock: lock, value }
    }
}

/// Python's `Array(typecode, n)`: `n` values of `T`, zeroed, in shared memory, with a lock.
pub struct Array<T> {
    region: Region,
    len: usize,
    kind: PhantomData<T>,
}

impl<T: Pod> Array<T> {
    pub fn new(len: usize) -> anyhow::Result<Array<T>> {
        let region = Region::new(data_offset::<T>() + len.max(1) * size_of::<T>())?;
        Ok(Array { region, len, kind: PhantomData })
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Python's `a.get_lock()`.
    pub fn get_lock(&self) -> &Lock {
        self.region.get(0).expect("an Array starts with its lock")
    }

    /// `lock=True`: every access takes the lock (Python does it for each `a[i]`).
    pub fn lock(&self) -> Guard<'_, [T]> {
        let lock = self.get_lock().lock();
        let start = self.region.at(data_offset::<T>()).cast::<T>();
        // SAFETY: as for Value::lock.
        let values = unsafe { std::slice::from_raw_parts_mut(start, self.len) };
        Guard { _lock: lock, value: values }
    }

    /// `lock=False`: the values, no lock. Split them into disjoint parts (`chunks_mut`) and
    /// give each child its own: the type system, not a lock, keeps the writers apart.
    pub fn as_mut_slice(&mut self) -> &mut [T] {
        self.region.slice_mut(data_offset::<T>(), self.len).expect("an Array fits its region")
    }

    /// The values, to read (after the writers have been joined).
    pub fn as_slice(&self) -> &[T] {
        self.region.slice(data_offset::<T>(), self.len).expect("an Array fits its region")
    }
}

/// Access to a [`Value`] or an [`Array`] under its lock; the lock is let go on drop.
pub struct Guard<'a, T: ?Sized> {
    _lock: LockGuard<'a>,
    value: &'a mut T,
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
// ANCHOR_END: value_array

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_views_are_checked() {
        let mut region = Region::new(64).unwrap();
        region.slice_mut::<f64>(8, 7).unwrap()[6] = 1.5;
        assert_eq!(region.slice::<f64>(56, 1).unwrap(), [1.5]);
        assert!(region.slice::<f64>(4, 1).unwrap_err().to_string().contains("cannot view offset 4"));
        assert!(region.slice::<f64>(8, 8).unwrap_err().to_string().contains("do not fit"));
        assert!(region.get::<AtomicU64>(4).is_err());
        assert!(region.get::<AtomicU32>(60).is_ok());
    }

    #[test]
    fn value_and_array() {
        let v = Value::new(2.5f64).unwrap();
        *v.lock() += 1.0;
        assert_eq!(*v.lock(), 3.5);
        let mut a = Array::<u64>::new(10).unwrap();
        a.as_mut_slice().chunks_mut(5).enumerate().for_each(|(i, part)| part.fill(i as u64 + 1));
        a.lock()[9] += 10;
        assert_eq!(a.as_slice(), [1, 1, 1, 1, 1, 2, 2, 2, 2, 12]);
    }
}
