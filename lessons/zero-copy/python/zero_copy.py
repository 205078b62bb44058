"""zero_copy.py: typed views over shared memory, the Python twin of lesson-zero-copy.

numpy.frombuffer(arr.get_obj()) lays a float64 array over a shared Array's bytes without
copying them. numpy is not needed to see the idea: memoryview(arr.get_obj()).cast("B").cast("d")
is the same kind of view, built into Python. This program fills a grid in a shared Array
through such views, one row per worker, and lays every worker's array at its own offset in
one block of shared bytes. --measure fills arrays through a view, into a private array('d'),
element by element through the synchronized Array, through a Pipe and through a Manager.

    python3 lessons/zero-copy/python/zero_copy.py
    python3 lessons/zero-copy/python/zero_copy.py --measure [--json] [--runs N] [--quick]
"""

import multiprocessing as mp
import pathlib
import sys
import time
from array import array
from collections import namedtuple

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[3] / "crates" / "plumbing" / "python"))
import lessonkit  # noqa: E402

ABOUT = "Typed views over shared memory: numpy.frombuffer, or memoryview.cast, over a shared Array."
WORKERS = 4
COLS = 10
LENS = [3, 5, 2, 4]  # values per worker in sections 2 and 3
ROW, COL = 2, 7  # the element section 1 reads both ways

fork = mp.get_context("fork")  # the children inherit the shared memory made before start()


def show(values):
    return " ".join(f"{x:2.0f}" for x in values)


# ANCHOR: grid
def fill_row(arr, worker):
    # numpy: grid = numpy.frombuffer(arr.get_obj()).reshape(WORKERS, COLS)
    grid = memoryview(arr.get_obj()).cast("B").cast("d", (WORKERS, COLS))
    for column in range(COLS):
        grid[worker, column] = worker * COLS + column  # straight into the shared page


def grid_demo():
    print(f"1. A {WORKERS} x {COLS} grid of f64 in shared memory; each worker fills a row through a view")
    arr = mp.Array("d", WORKERS * COLS)  # zeroed, with a lock that the views bypass
    workers = [fork.Process(target=fill_row, args=(arr, w)) for w in range(WORKERS)]
    for p in workers:
        p.start()
    for p in workers:
        p.join()
    grid = memoryview(arr.get_obj()).cast("B").cast("d", (WORKERS, COLS))
    for worker, row in enumerate(grid.tolist()):
        print(f"   worker {worker} wrote row {worker}: {show(row)}")
    flat = ROW * COLS + COL  # row-major: a row is COLS values
    print(f"   grid[{ROW}, {COL}] = {grid[ROW, COL]:.0f}; the same bytes seen flat: a[{flat}] = {arr[flat]:.0f}")
# ANCHOR_END: grid


# ANCHOR: layout
Block = namedtuple("Block", "len_at values_at len")


def layout_demo():
    print("2. One region for every worker's array: each block is a u32 length, then the values")
    blocks, end = [], 0
    for length in LENS:
        len_at = end
        values_at = -(-(len_at + 4) // 8) * 8  # the next multiple of 8: what f64 needs
        blocks.append(Block(len_at, values_at, length))
        end = values_at + 8 * length
    region = mp.RawArray("B", end)  # shared bytes, no lock
    buf = memoryview(region).cast("B")
    for worker, b in enumerate(blocks):
        buf[b.len_at:b.len_at + 4].cast("I")[0] = b.len
        print(f"   worker {worker}: length at byte {b.len_at}, {b.len} values at bytes "
              f"{b.values_at}..{b.values_at + 8 * b.len}")
    print(f"   {end} bytes in all; the 4 bytes after each length are padding")
    buf[4:4 + 8 * LENS[0]].cast("d")  # no error: memoryview does not check alignment
    print("   an f64 view at byte 4 instead: memoryview allows it (numpy too, and marks it unaligned)")
    return region, blocks
# ANCHOR_END: layout


# ANCHOR: offsets
def fill_block(region, worker, block):
    buf = memoryview(region).cast("B")
    (length,) = buf[block.len_at:block.len_at + 4].cast("I")
    values = buf[block.values_at:block.values_at + 8 * length].cast("d")
    for i in range(length):
        values[i] = worker * COLS + i


def offsets_demo(region, blocks):
    print("3. Each worker finds its length in the region and fills its values in place")
    workers = [fork.Process(target=fill_block, args=(region, w, b)) for w, b in enumerate(blocks)]
    for p in workers:
        p.start()
    for p in workers:
        p.join()
    buf = memoryview(region).cast("B")
    for worker, b in enumerate(blocks):
        values = buf[b.values_at:b.values_at + 8 * b.len].cast("d")
        print(f"   worker {worker} wrote at byte {b.values_at}: {show(values)}")
# ANCHOR_END: offsets


MEASURE_WORKERS = 2
BLOCK = 4096  # one op is one block of 4096 floats written, as in the Rust lesson
BASELINE = "private Vec (baseline)"  # the Rust case the Python rows are compared with


# ANCHOR: fill
def fill(values, first):
    """The work in every case: write first, first + 1, ... into any sequence of floats."""
    x = float(first)
    for i in range(len(values)):
        values[i] = x
        x += 1.0
# ANCHOR_END: fill


# ANCHOR: measure_workers
def fill_view(arr, iterations):
    view = memoryview(arr.get_obj()).cast("B").cast("d")  # numpy.frombuffer(arr.get_obj())
    for it in range(iterations):
        fill(view, it)


def fill_private(n, iterations):
    values = array("d", bytes(8 * n))  # this worker's own memory
    for it in range(iterations):
        fill(values, it)


def fill_synchronized(arr, iterations):
    for it in range(iterations):
        fill(arr, it)  # arr[i] = x: the lock, then a ctypes conversion, for every element


def fill_and_send(conn, n, iterations):
    for it in range(iterations):
        values = [0.0] * n
        fill(values, it)
        conn.send(values)  # pickled one float at a time


def fill_through_proxy(proxy, n, iterations):
    block = [0.0] * BLOCK
    for it in range(iterations):
        for first in range(0, n, BLOCK):
            fill(block, it + first)
            proxy[first:first + BLOCK] = block  # one round trip to the manager per block
# ANCHOR_END: measure_workers


def run_workers(target, args_per_worker):
    workers = [fork.Process(target=target, args=a) for a in args_per_worker]
    start = time.perf_counter()
    for p in workers:
        p.start()
    for p in workers:
        p.join()
    elapsed = time.perf_counter() - start
    for p in workers:
        assert p.exitcode == 0, f"a worker failed with exitcode {p.exitcode}"
    return elapsed


def check(values, iterations):
    last = iterations - 1
    assert (values[0], values[-1]) == (last, last + len(values) - 1), "the parent got other values"


def measure(args):
    bench = lessonkit.Bench("zero-copy", args)

    def case(name, n, iterations, one_run):
        ops = MEASURE_WORKERS * iterations * n // BLOCK
        bench.run(name, one_run, ops=ops, nbytes=ops * BLOCK * 8, baseline=BASELINE, timed=True)

    # Interpreted loops are slow: smaller arrays than Rust's, the same work per op.
    n, iterations = BLOCK * lessonkit.pick(args, 64, 2), lessonkit.pick(args, 8, 1)

    arrays = [fork.Array("d", n) for _ in range(MEASURE_WORKERS)]

    def view():
        elapsed = run_workers(fill_view, [(a, iterations) for a in arrays])
        for a in arrays:
            check(memoryview(a.get_obj()).cast("B").cast("d"), iterations)
        return elapsed

    case("python memoryview over shared Array", n, iterations, view)
    case("python private array('d')", n, iterations,
         lambda: run_workers(fill_private, [(n, iterations)] * MEASURE_WORKERS))

    small = BLOCK * lessonkit.pick(args, 16, 1)  # a lock per element is slower still
    locked = [fork.Array("d", small) for _ in range(MEASURE_WORKERS)]
    case("python Array element by element", small, iterations,
         lambda: run_workers(fill_synchronized, [(a, iterations) for a in locked]))

    def pipe():
        ends = [fork.Pipe(duplex=False) for _ in range(MEASURE_WORKERS)]
        workers = [fork.Process(target=fill_and_send, args=(w, n, iterations)) for _, w in ends]
        start = time.perf_counter()
        for p in workers:
            p.start()
        for _, w in ends:
            w.close()  # the children hold the write ends now
        for _ in range(iterations):
            for r, _ in ends:
                last = r.recv()
        for p in workers:
            p.join()
        elapsed = time.perf_counter() - start
        check(last, iterations)
        return elapsed

    case("python Pipe send of a list", n, iterations, pipe)

    with fork.Manager() as manager:  # a server process that owns the lists

        def proxied():
            lists = [manager.list([0.0] * n) for _ in range(MEASURE_WORKERS)]
            elapsed = run_workers(fill_through_proxy, [(lst, n, iterations) for lst in lists])
            for lst in lists:
                check(lst[:], iterations)
            return elapsed

        case("python Manager list, proxy call per block", n, iterations, proxied)
    bench.finish()


def demo():
    grid_demo()
    region, blocks = layout_demo()
    offsets_demo(region, blocks)


if __name__ == "__main__":
    lessonkit.run(ABOUT, demo, measure)
