"""value_array.py: numbers in shared memory, the Python twin of lesson-value-array.

multiprocessing.Value and Array put numbers in memory that every child shares, each with a
lock (an RLock) unless made with lock=False. This program shows a counter that children add
to under its lock, an array that children fill with lock=False (each its own part, by
convention only), the same with lock=True (the lock taken for every element), and why the
memory must be mapped MAP_SHARED.

    python3 lessons/value-array/python/value_array.py
    python3 lessons/value-array/python/value_array.py --measure [--json] [--runs N] [--quick]
"""

import mmap
import pathlib
import random
import sys
import time
from multiprocessing import Array, Process, Queue, Value, get_context

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[3] / "crates" / "plumbing" / "python"))
import lessonkit  # noqa: E402

ABOUT = "Numbers in shared memory: multiprocessing.Value and Array, with lock=True and lock=False."
# The Rust case that the Python cases are compared with in the merged table.
FLOOR = "private Vec, 1 process (floor)"

WORKERS = 4
ADDS = 10_000
LEN = 40_000
MAPPED = 8  # bytes in each of section 4's mappings


def start_all(target, args_of):
    """Start one Process per worker, numbered from 0, and return them."""
    workers = [Process(target=target, args=args_of(worker)) for worker in range(WORKERS)]
    for p in workers:
        p.start()
    return workers


def join_all(workers):
    for p in workers:
        p.join()
    failed = [p.exitcode for p in workers if p.exitcode != 0]
    assert not failed, f"a worker failed: exitcodes {failed}"


# ANCHOR: value
def add(counter):
    for _ in range(ADDS):
        with counter.get_lock():  # `counter.value += 1` is a read, then a write
            counter.value += 1


def shared_counter():
    print(f"1. A shared counter: Value, and {WORKERS} workers that add 1 to it {ADDS} times each")
    counter = Value("q", 0)  # a 64-bit integer in shared memory, with an RLock
    join_all(start_all(add, lambda worker: (counter,)))
    print(f"   joined {WORKERS} workers")
    print(f"   final count: {counter.value} (expected {WORKERS} x {ADDS} = {WORKERS * ADDS})")
# ANCHOR_END: value


# ANCHOR: unlocked
def fill_part(a, first, count):
    for i in range(first, first + count):
        a[i] = i  # nothing but convention keeps the workers to their own parts


def unlocked():
    print("2. An Array with lock=False: each worker writes its own part, a[i] = i")
    a = Array("d", LEN, lock=False)  # a plain ctypes array of doubles, in shared memory
    part = LEN // WORKERS
    join_all(start_all(fill_part, lambda worker: (a, worker * part, part)))
    for worker in range(WORKERS):
        first, last = worker * part, (worker + 1) * part - 1
        values = f"{a[first]:.0f}, {a[first + 1]:.0f}, ..., {a[last]:.0f}"
        print(f"   worker {worker} wrote a[{first}..={last}]: {values}")
    print(f"   sum of all {LEN} values: {sum(a):.0f} (expected {LEN * (LEN - 1) // 2})")
# ANCHOR_END: unlocked


# ANCHOR: locked
def locked():
    print("3. The same with lock=True: the lock is taken for every element")
    a = Array("d", LEN)  # lock=True: every a[i] = x takes a.get_lock() and lets it go
    part = LEN // WORKERS
    join_all(start_all(fill_part, lambda worker: (a, worker * part, part)))
    print(f"   sum of all {LEN} values: {sum(a[:]):.0f} (expected {LEN * (LEN - 1) // 2})")
# ANCHOR_END: locked


# ANCHOR: private
def write_42(private, shared):
    private[0] = 42  # MAP_PRIVATE: this write copies the page, for this process only
    shared[0] = 42  # MAP_SHARED: the parent's page too


def why_shared():
    print("4. Why MAP_SHARED: a child writes 42 into two mappings made before the fork")
    private = mmap.mmap(-1, MAPPED, flags=mmap.MAP_PRIVATE)
    shared = mmap.mmap(-1, MAPPED)  # an anonymous mmap is MAP_SHARED unless you ask otherwise
    # The child must inherit both mappings by fork: an mmap object cannot be pickled.
    child = get_context("fork").Process(target=write_42, args=(private, shared))
    child.start()
    child.join()
    print(f"   mmap(-1, {MAPPED}, flags=MAP_PRIVATE): the parent reads {private[0]}")
    print(f"   mmap(-1, {MAPPED}) (MAP_SHARED): the parent reads {shared[0]}")
# ANCHOR_END: private


# ANCHOR: measure
def numbers(worker, count):
    """One worker's share of the job: `count` random floats from a generator seeded with its number."""
    r = random.Random(worker)
    return [r.random() for _ in range(count)]


def send_numbers(q, worker, count):
    q.put((worker, numbers(worker, count)))  # pickled, then sent through a pipe


def write_numbers(a, worker, count):
    r = random.Random(worker)
    first = worker * count
    for i in range(first, first + count):
        a[i] = r.random()  # with lock=True: acquire, store, release, for every element


def queue_case(count):
    q = Queue()
    workers = start_all(send_numbers, lambda worker: (q, worker, count))
    parts = dict(q.get() for _ in range(WORKERS))  # get before join: see the Queue docs
    join_all(workers)
    return [x for worker in range(WORKERS) for x in parts[worker]]


def array_case(count, lock):
    a = Array("d", WORKERS * count, lock=lock)
    join_all(start_all(write_numbers, lambda worker: (a, worker, count)))
    return a


def serial_case(count):
    return [x for worker in range(WORKERS) for x in numbers(worker, count)]


def measure(args):
    bench = lessonkit.Bench("value-array", args)
    full = lessonkit.pick(args, 1_000_000, 10_000)  # numbers per worker, as in the Rust cases
    # lock=True is slow enough that a full run would take several seconds: a quarter of the
    # numbers, and the table's time per element stays comparable.
    slow = lessonkit.pick(args, 250_000, 2_000)
    for name, count, one_run in [
        (f"python Queue, {WORKERS} workers", full, queue_case),
        (f"python Array lock=True, {WORKERS} workers", slow, lambda count: array_case(count, True)),
        (f"python Array lock=False, {WORKERS} workers", full, lambda count: array_case(count, False)),
        ("python list, 1 process", full, serial_case),
    ]:
        bench.run(name, lambda: one_run(count), ops=WORKERS * count, baseline=FLOOR)
    bench.finish()
# ANCHOR_END: measure


def demo():
    shared_counter()
    unlocked()
    locked()
    why_shared()


if __name__ == "__main__":
    lessonkit.run(ABOUT, demo, measure)
