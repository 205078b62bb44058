"""queue_lesson.py: one queue, many processes, the Python twin of lesson-queue.

multiprocessing.Queue is a pipe, a lock for readers and a lock for writers, and a feeder
thread in each process that puts: put() appends the object to a buffer and returns, and the
thread pickles it and writes it into the pipe in the background. This program shows three
producers and two consumers stopped by sentinels, the hang when a parent joins a child
before getting what it put, a bounded queue holding back a fast producer, and empty(),
which tells what is in the queue at one moment and nothing about what is still to come.

(Not named queue.py: that would shadow Python's own queue module, which multiprocessing uses.)

    python3 lessons/queue/python/queue_lesson.py
    python3 lessons/queue/python/queue_lesson.py --measure [--json] [--runs N] [--quick]
"""

import pathlib
import random
import sys
import time
from multiprocessing import Process, Queue, Value

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[3] / "crates" / "plumbing" / "python"))
import lessonkit  # noqa: E402

ABOUT = "One queue, many processes: multiprocessing.Queue, put/get, sentinels, join before get, maxsize."
# The Rust cases that the Python cases are compared with in the merged table.
SMALL_FLOOR = "pipe raw 64 B (floor)"
MIB_FLOOR = "pipe raw 1 MiB (floor)"
FLOOR = "private Vec, 1 process (floor)"

PRODUCERS = 3
CONSUMERS = 2
ITEMS = 1000
MIB = 1 << 20
JOIN_WAIT_MS = 300  # how long section 2 waits for the child before it looks
MAXSIZE = 4
BOUNDED_ITEMS = 20
SETTLE_MS = 100  # how long section 3 gives the child to put more than MAXSIZE items
WORKERS = 4
SMALL = 64  # bytes in a small message, for --measure
SQUARES = [1, 2, 3, 4]  # section 4's input
WORK_MS = 300  # how long section 4's producer works before its first put


# ANCHOR: many
def produce(q, producer):
    for seq in range(ITEMS):
        q.put((producer, seq))  # returns at once: the feeder thread writes it later


def consume(q, reports):
    got = []
    while (item := q.get()) is not None:  # None is the sentinel
        got.append(item)
    reports.put(got)


def many():
    print(f"1. One queue, {PRODUCERS} producers and {CONSUMERS} consumers")
    print(f"   each producer puts {ITEMS} items (its number and a sequence number)")
    q, reports = Queue(), Queue()
    producers = [Process(target=produce, args=(q, p)) for p in range(PRODUCERS)]
    consumers = [Process(target=consume, args=(q, reports)) for _ in range(CONSUMERS)]
    for p in producers + consumers:
        p.start()
    for p in producers:
        p.join()
    for _ in consumers:
        q.put(None)  # one sentinel per consumer
    got = [reports.get() for _ in consumers]  # get before join
    for p in consumers:
        p.join()
    # How the items fell between the consumers changes from run to run; their sum does not.
    print(f"   the consumers got {lessonkit.varies(sorted(len(g) for g in got))} items, fewest first")
    print(f"   {sum(len(g) for g in got)} items in all")
    for producer in range(PRODUCERS):
        seqs = [seq for g in got for (p, seq) in g if p == producer]
        print(f"   producer {producer}: every item got exactly once: {sorted(seqs) == list(range(ITEMS))}")
    in_order = all(
        [seq for (p, seq) in g if p == producer] == sorted(seq for (p, seq) in g if p == producer)
        for g in got
        for producer in range(PRODUCERS)
    )
    print(f"   in each consumer, every producer's items came in the order they were put: {in_order}")
# ANCHOR_END: many


# ANCHOR: deadlock
def put_big(q):
    q.put(b"x" * MIB)  # returns at once; the process cannot exit until the feeder thread has written it all


def join_before_get():
    print(f"2. Join before get: a child puts {MIB >> 20} MiB, and the parent joins it before getting")
    q = Queue()
    child = Process(target=put_big, args=(q,))
    child.start()
    child.join(timeout=JOIN_WAIT_MS / 1000)  # a plain join() would wait forever
    print(f"   after {JOIN_WAIT_MS} ms, child.is_alive() is {child.is_alive()}: join would wait forever")
    message = q.get()  # the fix: get first
    child.join()
    print(f"   the fix, get first: got {len(message)} bytes; then join: exitcode {child.exitcode}")
# ANCHOR_END: deadlock


# ANCHOR: bounded
def put_fast(q, puts):
    for i in range(BOUNDED_ITEMS):
        q.put(i)  # blocks while the queue holds MAXSIZE items
        with puts.get_lock():
            puts.value += 1


def bounded():
    print(f"3. A bounded queue: Queue(maxsize={MAXSIZE}) holds back a fast producer")
    q, puts = Queue(maxsize=MAXSIZE), Value("i", 0)
    child = Process(target=put_fast, args=(q, puts))
    child.start()
    while puts.value < MAXSIZE:
        time.sleep(0.001)
    time.sleep(SETTLE_MS / 1000)
    print(f"   {SETTLE_MS} ms after {MAXSIZE} puts, the child has put {puts.value}; q.qsize() is {q.qsize()}")
    most_ahead = puts.value
    for got in range(1, BOUNDED_ITEMS + 1):
        q.get()
        most_ahead = max(most_ahead, puts.value - got)
    child.join()
    print(f"   the parent got {BOUNDED_ITEMS} items; the child was never more than {most_ahead} puts ahead")
# ANCHOR_END: bounded


# ANCHOR: empty
def square_list(numbers, q, sentinel):
    time.sleep(WORK_MS / 1000)  # a moment of work before the first result
    for n in numbers:
        q.put(n * n)
    if sentinel:
        q.put(None)  # "no more": one sentinel for the one consumer


def empty_is_a_moment():
    print("4. empty() is a moment, not an end: get while not q.empty(), as a tutorial does")
    q = Queue()
    producer = Process(target=square_list, args=(SQUARES, q, False))
    producer.start()
    got = []
    while not q.empty():  # True at once: the producer has not put anything yet
        got.append(q.get())
    print(f"   while not q.empty(): got {got}")
    producer.join()  # its few small items fit in the pipe, so it can end before a get
    later = [q.get() for _ in SQUARES]
    print(f"   then the producer put {later}, which that loop never saw")
    q = Queue()
    producer = Process(target=square_list, args=(SQUARES, q, True))
    producer.start()
    got = list(iter(q.get, None))  # get until the sentinel
    producer.join()
    print(f"   with a sentinel: got {got}, all of them")
# ANCHOR_END: empty


# ANCHOR: measure
def put_many(q, count, message):
    for _ in range(count):
        q.put(message)


def one_one(count, size):
    q = Queue()
    child = Process(target=put_many, args=(q, count, b"x" * size))
    child.start()
    for _ in range(count):
        q.get()
    child.join()


def send_numbers(q, worker, count):
    r = random.Random(worker)
    q.put((worker, [r.random() for _ in range(count)]))  # pickled, then sent through the pipe


def queue_to_parent(count):
    q = Queue()
    workers = [Process(target=send_numbers, args=(q, w, count)) for w in range(WORKERS)]
    for p in workers:
        p.start()
    parts = dict(q.get() for _ in workers)  # get before join
    for p in workers:
        p.join()
    return [x for w in range(WORKERS) for x in parts[w]]


def measure(args):
    bench = lessonkit.Bench("queue", args)
    n = lessonkit.pick(args, 20_000, 200)
    bench.run(
        f"python Queue {SMALL} B, 1 producer 1 consumer",
        lambda: one_one(n, SMALL),
        ops=n,
        baseline=SMALL_FLOOR,
    )
    count = lessonkit.pick(args, 64, 2)
    bench.run(
        f"python Queue {MIB >> 20} MiB, 1 producer 1 consumer",
        lambda: one_one(count, MIB),
        ops=count,
        nbytes=count * MIB,
        baseline=MIB_FLOOR,
    )
    per_worker = lessonkit.pick(args, 1_000_000, 10_000)
    bench.run(f"python Queue, {WORKERS} workers", lambda: queue_to_parent(per_worker),
              ops=WORKERS * per_worker, baseline=FLOOR)
    bench.finish()
# ANCHOR_END: measure


def demo():
    many()
    join_before_get()
    bounded()
    empty_is_a_moment()


if __name__ == "__main__":
    lessonkit.run(ABOUT, demo, measure)
