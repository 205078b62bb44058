"""when_slower.py: why is my multiprocessing slower than one process? The Python twin of lesson-when-slower.

A job of items, each a few milliseconds of work making a large result (the bytes of an
image). Here the work is hashlib.shake_256 making the image's bytes: it runs in C, as numpy
would, so an item costs milliseconds, not seconds. The program makes the items in one
process, in two workers that put them on a Queue, in two workers that write them into a
RawArray (shared memory), and with Pool.map_async, and checks that all agree.

    python3 lessons/when-slower/python/when_slower.py
    python3 lessons/when-slower/python/when_slower.py --measure [--json] [--runs N] [--quick]
"""

import hashlib
import math
import pathlib
import sys
import time
import zlib
from functools import partial
from multiprocessing import Pool, Process, Queue, RawArray

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[3] / "crates" / "plumbing" / "python"))
import lessonkit  # noqa: E402

ABOUT = "Why is my multiprocessing slower than one process? One process, a Queue, shared memory, a Pool."
# The Rust case that the Python cases are compared with in the merged table.
SERIAL = "serial loop, 1 process (baseline)"

ITEMS = 8
WORKERS = 2
FLOAT = 4  # bytes in a float32
SHAPE = (3, 64, 64)  # an item in the demo: channels, height, width


# ANCHOR: make
def make(item, nbytes=math.prod(SHAPE) * FLOAT):
    """One item: the bytes of an image of float32s. The work runs in C, as numpy's would."""
    return hashlib.shake_256(item.to_bytes(4, "little")).digest(nbytes)


def checksum(images):
    """A CRC of the images, in order."""
    crc = 0
    for image in images:
        crc = zlib.crc32(image, crc)
    return crc
# ANCHOR_END: make


def share(worker, workers, items):
    """The items worker `worker` makes: a contiguous share."""
    per_worker = -(-items // workers)
    return range(min(worker * per_worker, items), min((worker + 1) * per_worker, items))


def join_all(workers):
    for p in workers:
        p.join()
    failed = [p.exitcode for p in workers if p.exitcode != 0]
    assert not failed, f"a worker failed: exitcodes {failed}"


# ANCHOR: serial
def serial(items, nbytes):
    return [make(item, nbytes) for item in range(items)]
# ANCHOR_END: serial


# ANCHOR: queue
def send_images(q, worker, workers, items, nbytes):
    for item in share(worker, workers, items):
        q.put((item, make(item, nbytes)))  # pickled, then written into the queue's pipe


def chunks_queue(workers, items, nbytes):
    q = Queue()
    procs = [Process(target=send_images, args=(q, w, workers, items, nbytes)) for w in range(workers)]
    for p in procs:
        p.start()
    images = [None] * items
    for _ in range(items):  # get before join
        item, image = q.get()
        images[item] = image
    join_all(procs)
    return images
# ANCHOR_END: queue


# ANCHOR: shm
def write_images(shared, worker, workers, items, nbytes):
    view = memoryview(shared).cast("B")  # the shared floats, as bytes
    for item in share(worker, workers, items):
        view[item * nbytes : (item + 1) * nbytes] = make(item, nbytes)  # straight into place


def chunks_shm(shared, workers, items, nbytes):
    procs = [Process(target=write_images, args=(shared, w, workers, items, nbytes)) for w in range(workers)]
    for p in procs:
        p.start()
    join_all(procs)
    view = memoryview(shared).cast("B")
    return [view[item * nbytes : (item + 1) * nbytes] for item in range(items)]
# ANCHOR_END: shm


# ANCHOR: pool
def pool_map(workers, items, nbytes):
    with Pool(workers) as pool:  # starts the workers; leaving the block stops them
        # map_async cuts range(items) into chunks; each image is pickled back to the parent
        return pool.map_async(partial(make, nbytes=nbytes), range(items)).get()
# ANCHOR_END: pool


def demo():
    nbytes = math.prod(SHAPE) * FLOAT
    shape = "x".join(map(str, SHAPE))
    print(f"1. The job: {ITEMS} items, each the bytes of a {shape} float32 image ({nbytes // 1024} KiB), "
          "in this process")
    expected = checksum(serial(ITEMS, nbytes))
    print(f"   checksum {expected:#010x}")
    print(f"2. {WORKERS} worker processes put every image on a Queue")
    got = checksum(chunks_queue(WORKERS, ITEMS, nbytes))
    print(f"   checksum {got:#010x}, the same as one process's: {got == expected}")
    print(f"3. {WORKERS} worker processes write their images straight into a RawArray")
    shared = RawArray("f", ITEMS * nbytes // FLOAT)  # shared memory, zeroed, no lock
    got = checksum(chunks_shm(shared, WORKERS, ITEMS, nbytes))
    print(f"   checksum {got:#010x}, the same as one process's: {got == expected}")
    print(f"4. Pool({WORKERS}).map_async(make, range({ITEMS}))")
    got = checksum(pool_map(WORKERS, ITEMS, nbytes))
    print(f"   checksum {got:#010x}, the same as one process's: {got == expected}")


def measure(args):
    bench = lessonkit.Bench("when-slower", args)
    items = lessonkit.pick(args, 32, 4)
    nbytes = lessonkit.pick(args, 3 * 512 * 512 * FLOAT, 3 * 32 * 32 * FLOAT)
    moved = items * nbytes
    bench.run("python loop, 1 process", lambda: serial(items, nbytes), ops=items, baseline=SERIAL)
    bench.run(
        f"python Pool.map_async, big results, {WORKERS} workers",
        lambda: pool_map(WORKERS, items, nbytes),
        ops=items,
        nbytes=moved,
        baseline=SERIAL,
    )
    bench.run(
        f"python chunks + Queue, big results, {WORKERS} workers",
        lambda: chunks_queue(WORKERS, items, nbytes),
        ops=items,
        nbytes=moved,
        baseline=SERIAL,
    )
    shared = RawArray("f", items * nbytes // FLOAT)  # made once, outside the time, as in Rust

    def shm_case():
        start = time.perf_counter()
        chunks_shm(shared, WORKERS, items, nbytes)
        return time.perf_counter() - start

    bench.run(f"python chunks + RawArray, {WORKERS} workers", shm_case, ops=items, baseline=SERIAL, timed=True)
    bench.finish()


if __name__ == "__main__":
    lessonkit.run(ABOUT, demo, measure)
