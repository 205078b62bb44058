"""when_slower.py: why is my multiprocessing slower than one process? The Python twin of lesson-when-slower.

A job of items, each a few milliseconds of work making a large result (the bytes of an
image) from a small input (the bytes of the image's file, read by the parent). Here the work
is hashlib.shake_256 making the image's bytes from the file's: it runs in C, as numpy would,
so an item costs milliseconds, not seconds. The program makes the items in one process, in
two workers that put them on a Queue, in two workers that write them into a RawArray (shared
memory), and with Pool.map_async; it checks that all agree, and times each way.

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

ITEMS = 12  # enough to show the cost, few enough for the demo to take about a second
WORKERS = 2
FLOAT = 4  # bytes in a float32
SHAPE = (3, 512, 512)  # an image: channels, height, width
IMAGE_BYTES = math.prod(SHAPE) * FLOAT
INPUT_BYTES = 64 * 1024  # an item's input: its image file's bytes, about a JPEG's worth


# ANCHOR: make
def source(item):
    """Item `item`'s input: the bytes of its image file, which the parent reads before any work."""
    return hashlib.shake_256(item.to_bytes(4, "little")).digest(INPUT_BYTES)


def make(data, nbytes=IMAGE_BYTES):
    """One image's float32s, as bytes, made from its file's bytes. The work runs in C, as
    numpy's would."""
    return hashlib.shake_256(data).digest(nbytes)


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
def serial(inputs, nbytes):
    return [make(data, nbytes) for data in inputs]
# ANCHOR_END: serial


# ANCHOR: queue
def send_images(q, inputs, mine, nbytes):
    for item in mine:
        q.put((item, make(inputs[item], nbytes)))  # pickled, then written into the queue's pipe


def chunks_queue(workers, inputs, nbytes):
    q = Queue()
    # A Process's args are not pickled under fork: each worker starts with the parent's inputs
    procs = [
        Process(target=send_images, args=(q, inputs, share(w, workers, len(inputs)), nbytes))
        for w in range(workers)
    ]
    for p in procs:
        p.start()
    images = [None] * len(inputs)
    for _ in inputs:  # get before join
        item, image = q.get()  # in the order they come; the item number puts each in its place
        images[item] = image
    join_all(procs)
    return images
# ANCHOR_END: queue


# ANCHOR: shm
def write_images(shared, inputs, mine, nbytes):
    view = memoryview(shared).cast("B")  # the shared floats, as bytes
    for item in mine:
        view[item * nbytes : (item + 1) * nbytes] = make(inputs[item], nbytes)  # into its place


def chunks_shm(shared, workers, inputs, nbytes):
    procs = [
        Process(target=write_images, args=(shared, inputs, share(w, workers, len(inputs)), nbytes))
        for w in range(workers)
    ]
    for p in procs:
        p.start()
    join_all(procs)
    view = memoryview(shared).cast("B")
    return [view[item * nbytes : (item + 1) * nbytes] for item in range(len(inputs))]
# ANCHOR_END: shm


def default_chunksize(items, workers):
    """The chunksize map_async picks when given none: about 4 chunks per worker."""
    return -(-items // (4 * workers))


# ANCHOR: pool
def pool_map(workers, inputs, nbytes):
    with Pool(workers) as pool:  # starts the workers; leaving the block stops them
        # map_async cuts the inputs into chunks and pickles each chunk to a worker; the worker
        # sends back the chunk's images, pickled together as one message
        return pool.map_async(partial(make, nbytes=nbytes), inputs).get()
# ANCHOR_END: pool


# ANCHOR: order
# The seed's claim, tested in --measure: is the pool slow because it keeps the results in order,
# or because of what it pickles: the inputs going in, the images coming back a chunk at a time?
# (Keeping the order costs a slice assignment: map_async puts each chunk's images at the chunk's
# index as the chunk arrives, in any order; get() waits for the last, as the Queue's loop does.)
def make_numbered(numbered, nbytes):
    """The item's number with its image, for results that come in no order."""
    item, data = numbered
    return item, make(data, nbytes)


def pool_unordered(workers, inputs, nbytes):
    """imap_unordered: each chunk's images as soon as it is done, in no order (as the Queue's)."""
    images = [None] * len(inputs)
    chunksize = default_chunksize(len(inputs), workers)  # as map_async's; imap_unordered's is 1
    with Pool(workers) as pool:
        for item, image in pool.imap_unordered(
            partial(make_numbered, nbytes=nbytes), enumerate(inputs), chunksize
        ):
            images[item] = image
    return images


_INHERITED = []  # in a pool's worker: the parent's inputs, which `inherit` keeps


def inherit(inputs):
    global _INHERITED
    _INHERITED = inputs


def make_inherited(item, nbytes):
    return make(_INHERITED[item], nbytes)


def pool_inherited(workers, inputs, nbytes):
    """map_async of the item numbers: the workers read the inputs they inherited; none is pickled."""
    # A pool's initargs are its workers' Process args: not pickled under fork
    with Pool(workers, initializer=inherit, initargs=(inputs,)) as pool:
        return pool.map_async(partial(make_inherited, nbytes=nbytes), range(len(inputs))).get()


def pool_chunks(workers, inputs, nbytes, chunksize):
    """map_async with chunks of `chunksize` items: each chunk's images come back as one message."""
    with Pool(workers) as pool:
        return pool.map_async(partial(make, nbytes=nbytes), inputs, chunksize).get()
# ANCHOR_END: order


def timed(job):
    """The checksum of the images the job makes, and the job's time in seconds."""
    start = time.perf_counter()
    images = job()
    took = time.perf_counter() - start
    return checksum(images), took


def same(got, took, expected):
    """A way's checksum, whether it is the loop's, and its time."""
    took = lessonkit.duration(took)
    print(f"   checksum {got:#010x}, the same as one process's: {got == expected}; {took}")


def demo():
    nbytes = IMAGE_BYTES
    shape = "x".join(map(str, SHAPE))
    inputs = [source(item) for item in range(ITEMS)]  # read before any worker starts
    print(
        f"1. One process makes {ITEMS} images of {shape} float32 ({nbytes // 1024} KiB) "
        f"from {INPUT_BYTES // 1024} KiB inputs (their files)"
    )
    expected, loop = timed(lambda: serial(inputs, nbytes))
    print(f"   checksum {expected:#010x}; {lessonkit.duration(loop)}")
    print(f"2. {WORKERS} worker processes, forked with the inputs, put every image on a Queue")
    same(*timed(lambda: chunks_queue(WORKERS, inputs, nbytes)), expected)
    print(f"3. {WORKERS} worker processes, forked with the inputs, write their images into a RawArray")
    shared = RawArray("f", ITEMS * nbytes // FLOAT)  # shared memory, zeroed, no lock: made before the clock
    same(*timed(lambda: chunks_shm(shared, WORKERS, inputs, nbytes)), expected)
    chunksize = default_chunksize(ITEMS, WORKERS)
    chunks = -(-ITEMS // chunksize)
    print(
        f"4. Pool({WORKERS}).map_async(make, inputs): {chunks} chunks of {chunksize}, "
        "inputs pickled to the workers, images back"
    )
    got, pool = timed(lambda: pool_map(WORKERS, inputs, nbytes))
    same(got, pool, expected)
    print(f"   the pool took {lessonkit.varies(f'{pool / loop:.1f}')}x the loop's time")


def measure(args):
    bench = lessonkit.Bench("when-slower", args)
    items = lessonkit.pick(args, 32, 4)
    nbytes = lessonkit.pick(args, IMAGE_BYTES, 3 * 32 * 32 * FLOAT)
    moved = items * nbytes
    inputs = [source(item) for item in range(items)]
    bench.run("python loop, 1 process", lambda: serial(inputs, nbytes), ops=items, baseline=SERIAL)
    # The ways that send every image back to the parent: the pool, three variants of it that
    # test seed 003's explanation, and the Queue.
    for case, job in [
        ("Pool.map_async, big results", pool_map),
        ("Pool.imap_unordered, big results", pool_unordered),
        ("Pool.map_async, inputs inherited", pool_inherited),
        ("Pool.map_async, 1 chunk per worker", partial(pool_chunks, chunksize=items // WORKERS)),
        ("chunks + Queue, big results", chunks_queue),
    ]:
        bench.run(
            f"python {case}, {WORKERS} workers",
            lambda job=job: job(WORKERS, inputs, nbytes),
            ops=items,
            nbytes=moved,
            baseline=SERIAL,
        )
    shared = RawArray("f", items * nbytes // FLOAT)  # made once, outside the time, as in Rust

    def shm_case():
        start = time.perf_counter()
        chunks_shm(shared, WORKERS, inputs, nbytes)
        return time.perf_counter() - start

    bench.run(
        f"python chunks + RawArray, {WORKERS} workers", shm_case, ops=items, baseline=SERIAL, timed=True
    )
    bench.finish()


if __name__ == "__main__":
    lessonkit.run(ABOUT, demo, measure)
