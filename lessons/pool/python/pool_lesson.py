"""pool_lesson.py: a pool of worker processes, the Python twin of lesson-pool.

multiprocessing.Pool forks its workers once. map() cuts the items into chunks, a task-handler
thread in the parent puts them into one shared queue that all workers get from, and a
result-handler thread reads the results from a second queue and puts them back in input
order. This program shows map, chunksize, imap_unordered, close and join, a task that raises,
and a killed worker (with concurrent.futures, because a Pool would wait forever).

    python3 lessons/pool/python/pool_lesson.py
    python3 lessons/pool/python/pool_lesson.py --measure [--json] [--runs N] [--quick]
"""

import os
import pathlib
import signal
import sys
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from multiprocessing import Pool

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[3] / "crates" / "plumbing" / "python"))
import lessonkit  # noqa: E402

ABOUT = "A pool of worker processes: Pool.map, chunksize, imap_unordered, errors, a killed worker."
# The Rust cases that the Python cases are compared with in the merged table.
RUST_CHUNK_1 = "pool.map, chunksize 1"
RUST_DEFAULT = "pool.map, default chunksize"

WORKERS = 4
ITEMS = 1000
CHUNK = 10
FIRST = [1, 2, 3, 4, 5]  # section 1's items
ERROR_WORKERS = 2  # the pools of sections 5 and 6
UNLUCKY = 13  # the item unlucky() raises on
ERROR_ITEMS = range(1, 21)  # section 5's items, UNLUCKY among them
MEASURE_WORKERS = 2


# ANCHOR: tasks
def square(x):
    return x * x


def unlucky(x):
    if x == UNLUCKY:
        raise ValueError(f"{x} is unlucky")
    return x * x


def die(x):
    os.kill(os.getpid(), signal.SIGKILL)  # as the OOM killer would
# ANCHOR_END: tasks


# ANCHOR: map
def basics():
    print(f"1. map: Pool({WORKERS}).map(square, {FIRST})")
    pool = Pool(WORKERS)  # Pool() starts os.cpu_count() workers
    print(f"   map returned {pool.map(square, FIRST)}, in input order")

    print(f"2. chunksize: map(square, range({ITEMS}))")
    squares = pool.map(square, range(ITEMS))  # chunksize: ceil(ITEMS / (4 * WORKERS)), 63 here
    print(f"   sum {sum(squares)}; first {squares[:3]}; last {squares[-3:]}")
    print(f"   chunksize 1, the same results: {pool.map(square, range(ITEMS), chunksize=1) == squares}")

    print(f"3. imap_unordered(square, range({ITEMS}), chunksize={CHUNK}): results as they finish")
    arrived = list(pool.imap_unordered(square, range(ITEMS), chunksize=CHUNK))
    # Whether the workers happened to finish in input order changes from run to run.
    print(f"   in input order this time: {lessonkit.varies(arrived == squares)}")
    print(f"   sorted, they are map's results: {sorted(arrived) == squares}")

    print("4. close: a sentinel (None) to each worker, then join")
    pool.close()
    pool.join()  # `with Pool() as pool:` calls terminate() instead: it kills the workers
# ANCHOR_END: map


# ANCHOR: errors
def errors():
    print(f"5. A task that raises: Pool({ERROR_WORKERS}).map(unlucky, {ERROR_ITEMS})")
    with Pool(ERROR_WORKERS) as pool:
        try:
            pool.map(unlucky, ERROR_ITEMS)
        except ValueError as e:
            print(f"   map raised the worker's exception: ValueError: {e}")
        print(f"   the workers live on: map(unlucky, {FIRST}) returned {pool.map(unlucky, FIRST)}")

    print("6. A worker killed with SIGKILL: ProcessPoolExecutor is broken")
    # A multiprocessing.Pool starts a new worker in its place, but the lost task never
    # comes back: pool.map(die, ...) would wait forever. The executor notices instead.
    with ProcessPoolExecutor(ERROR_WORKERS) as executor:
        try:
            list(executor.map(die, [1]))
        except BrokenProcessPool as e:
            print(f"   map raised BrokenProcessPool: {e}")
# ANCHOR_END: errors


def demo():
    basics()
    errors()


# ANCHOR: measure
def measure(args):
    bench = lessonkit.Bench("pool", args)
    n = lessonkit.pick(args, 20_000, 200)
    items = list(range(n))
    expected = [square(x) for x in items]
    with Pool(MEASURE_WORKERS) as pool:
        for case, chunksize, baseline in [
            ("python Pool.map, chunksize 1", 1, RUST_CHUNK_1),
            ("python Pool.map, default chunksize", None, RUST_DEFAULT),
        ]:

            def one_run():
                assert pool.map(square, items, chunksize=chunksize) == expected

            bench.run(case, one_run, ops=n, baseline=baseline)
    bench.finish()
# ANCHOR_END: measure


if __name__ == "__main__":
    lessonkit.run(ABOUT, demo, measure)
