"""copy_on_write.py: children read the parent's data for free, the Python twin of lesson-copy-on-write.

A global built before a fork-context Process (or Pool) is inherited by the children: the
kernel shares the parent's pages with them until someone writes. In Python, reading writes:
every object touched gets its reference count changed, so the page it lives on is copied.
This program shows it with /proc/self/smaps_rollup, read in each worker before reading,
after reading and after writing one element.

    python3 lessons/copy-on-write/python/copy_on_write.py
    python3 lessons/copy-on-write/python/copy_on_write.py --measure [--json] [--runs N] [--quick]
"""

import os
import pathlib
import pickle
import sys
from multiprocessing import get_context

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[3] / "crates" / "plumbing" / "python"))
import lessonkit  # noqa: E402

ABOUT = "Children forked after the parent built a global read it without a copy, until they touch it."
# The Rust case that the Python cases are compared with in the merged table.
SERIAL = "serial sum in the parent (floor)"

MATRICES_COUNT = 16
SIDE = 250  # a quarter of the Rust lesson's elements: a Python float is a 24-byte object
WORKERS = 2
FIELDS = ("Rss", "Pss", "Shared_Clean", "Shared_Dirty", "Private_Clean", "Private_Dirty")

MATRICES = []  # built by the parent before it forks; the workers inherit it


def memory():
    """This process's memory in kB, from /proc/self/smaps_rollup."""
    values = {}
    with open("/proc/self/smaps_rollup") as f:
        for line in f:
            name, _, rest = line.partition(":")
            if name in FIELDS:
                values[name] = int(rest.split()[0])
    return values


def show(m):
    """The numbers, which vary a little from run to run (varies() marks them for the tests)."""
    return lessonkit.varies(", ".join(f"{name} {m[name]}" for name in FIELDS)) + " kB"


def build(count, side):
    """Small whole numbers, so any sum is exact; each a float object of its own."""
    return [[float((m + (i // side) * (i % side)) % 10) for i in range(side * side)] for m in range(count)]


# ANCHOR: work
def work(worker, conn):
    before = memory()
    per_worker = len(MATRICES) // WORKERS
    mine = MATRICES[worker * per_worker:(worker + 1) * per_worker]
    total = sum(sum(matrix) for matrix in mine)  # reading: every float's refcount is written
    after_reading = memory()
    mine[0][0] = -1.0  # one write into one list: its page is copied
    after_writing = memory()
    conn.send((total, before, after_reading, after_writing))
# ANCHOR_END: work


# ANCHOR: demo
def demo():
    global MATRICES
    print(f"1. The parent builds {MATRICES_COUNT} matrices of {SIDE}x{SIDE} floats, lists in a global")
    empty = memory()
    MATRICES = build(MATRICES_COUNT, SIDE)
    built = memory()
    print(f"   parent pid {os.getpid()} before: {show(empty)}")
    print(f"   parent pid {os.getpid()} after:  {show(built)}")

    print(f"2. {WORKERS} workers forked after that (start method 'fork'): they inherit the global")
    fork = get_context("fork")
    workers, pipes = [], []
    for worker in range(WORKERS):
        receiver, sender = fork.Pipe(duplex=False)
        p = fork.Process(target=work, args=(worker, sender))
        p.start()
        workers.append(p)
        pipes.append(receiver)
    reports = [r.recv() for r in pipes]  # receive before joining, as with a Queue
    for p in workers:
        p.join()
        assert p.exitcode == 0, f"worker pid {p.pid} failed: exitcode {p.exitcode}"
    # The floats of one worker's share, in kB: a float object is 24 bytes (sys.getsizeof(1.0)).
    share = MATRICES_COUNT // WORKERS * SIDE * SIDE * sys.getsizeof(1.0) // 1024
    for worker, (total, before, read, wrote) in enumerate(reports):
        print(f"   worker {worker} (pid {workers[worker].pid}) summed its matrices: {total:.0f}")
        print(f"      before reading          {show(before)}")
        print(f"      after reading           {show(read)}")
        print(f"      after writing one float {show(wrote)}")
        grew = read["Private_Dirty"] - before["Private_Dirty"]
        print(f"      reading made {lessonkit.varies(grew)} kB private: "
              "the pages of every float it touched were copied")
        assert grew > share // 2, f"worker {worker}: reading made only {grew} kB private"
    print(f"   in every worker, reading made over half of its {share} kB of floats private: "
          "a reference count written is a page copied")

    print("3. The parent's view, after the workers are gone")
    after = memory()
    print(f"   parent pid {os.getpid()} after:  {show(after)}")
    expected = sum(sum(matrix) for matrix in MATRICES)
    print(f"   the workers' sums add up to {sum(r[0] for r in reports):.0f}, the parent's own sum: {expected:.0f}")
    print(f"   the parent's first element is still {MATRICES[0][0]}: the workers wrote their own copies")
# ANCHOR_END: demo


# ANCHOR: measure
def sum_global(index):
    return sum(MATRICES[index])  # the matrix is inherited: only the index was sent


def in_pool(workers, function, inputs):
    """A fresh fork-context Pool per run, as the Rust cases fork fresh workers."""
    pool = get_context("fork").Pool(processes=workers)
    try:
        return sum(pool.map(function, inputs))
    finally:
        pool.close()
        pool.join()


def plural(workers):
    return "1 worker" if workers == 1 else f"{workers} workers"


def measure(args):
    global MATRICES
    bench = lessonkit.Bench("copy-on-write", args)
    count, side = lessonkit.pick(args, (MATRICES_COUNT, 500), (4, 100))  # the Rust sizes
    MATRICES = build(count, side)
    expected = sum(sum(matrix) for matrix in MATRICES)
    pickled = sum(len(pickle.dumps(matrix)) for matrix in MATRICES)

    def checked(total):
        assert total == expected, f"got {total}, expected {expected}"

    for workers in (1, 2):
        bench.run(
            f"python fork-global, {plural(workers)}",
            lambda: checked(in_pool(workers, sum_global, range(count))),
            ops=count,
            baseline=SERIAL,
        )
    for workers in (1, 2):
        bench.run(
            f"python Pool.map pickled, {plural(workers)}",
            lambda: checked(in_pool(workers, sum, MATRICES)),  # each matrix pickled and sent
            ops=count,
            nbytes=pickled,
            baseline=SERIAL,
        )
    bench.finish()
# ANCHOR_END: measure


if __name__ == "__main__":
    lessonkit.run(ABOUT, demo, measure)
