"""threads_or_processes.py: threads or processes? The Python twin of lesson-threads-or-processes.

In Python the usual answer is "processes, because of the GIL": one lock that a thread must
hold to run Python code, so two threads run Python one at a time. This program shows it (two
threads are no faster than a loop on pure-Python work, two processes are), shows where
threads do help (C code that lets go of the GIL: hashlib on a large buffer, as numpy does),
and shows what else a process buys: a crash stays in it, it can be killed, it has limits of
its own, and it can run another program.

    python3 lessons/threads-or-processes/python/threads_or_processes.py
    python3 lessons/threads-or-processes/python/threads_or_processes.py --measure [--json] [--runs N] [--quick]
"""

import hashlib
import multiprocessing
import os
import pathlib
import resource
import subprocess
import sys
import threading
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[3] / "crates" / "plumbing" / "python"))
import lessonkit  # noqa: E402

ABOUT = "Threads or processes? The GIL, work that releases it, a crash, limits, another program."
# The Rust cases that the Python cases are compared with in the merged table.
RUST_START = "start and join one thread"
RUST_LOOP = "CPU job: loop, 1 thread (baseline)"
# The hashlib job is other work than the CPU job: its cases are compared with its own loop, a
# Python case measured in the same run.
HASH_LOOP = "python hashlib job: loop"

FORK = multiprocessing.get_context("fork")  # as the Rust lesson's children: a copy of this one
WORKERS = 2
MASK64 = (1 << 64) - 1
ROUNDS = 2000  # xorshift rounds per item of the CPU job, as in the Rust lesson
CPU_ITEMS = 250  # about 0.25 s of pure Python in a loop
BLOCK = bytes(range(256)) * 4096  # the 1 MiB each item of the hashlib job hashes
HASH_ITEMS = 128
CRASH_ITEMS = 20  # section 4's job
UNLUCKY = 7  # the item unlucky() raises on: thread 0 does items 0 to 9
HEADROOM = 512 << 20  # section 5: the child's address space may grow by this much
GIB = 1 << 30


# ANCHOR: work
def work(i, rounds=ROUNDS):
    """One item of the CPU job: rounds of xorshift64, every step a Python operation."""
    x = (i * 0x9E3779B97F4A7C15 + 1) & MASK64
    for _ in range(rounds):
        x ^= (x << 13) & MASK64
        x ^= x >> 7
        x ^= (x << 17) & MASK64
    return x & 0xFFFF


def cpu_job(items):
    return sum(work(i) for i in items)


def digest(i):
    """One item of the hashlib job. sha256 lets go of the GIL while it hashes a large buffer
    (2 KiB or more), as numpy does in its loops: another thread runs Python meanwhile."""
    h = hashlib.sha256(i.to_bytes(4, "little"))
    h.update(BLOCK)  # the GIL is released in here, for the whole MiB
    return int.from_bytes(h.digest()[:4], "little")


def hash_job(items):
    return sum(digest(i) for i in items)
# ANCHOR_END: work


def share(worker, workers, items):
    """The items worker `worker` does: a contiguous share of range(items)."""
    per_worker = -(-items // workers)
    return range(min(worker * per_worker, items), min((worker + 1) * per_worker, items))


# ANCHOR: ways
def in_a_loop(job, items):
    return job(range(items))


def in_threads(job, items, workers=WORKERS):
    sums = [None] * workers  # the threads share this list: each writes its own slot

    def run(w):
        sums[w] = job(share(w, workers, items))

    threads = [threading.Thread(target=run, args=(w,)) for w in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(sums)


def send_sum(q, job, worker, workers, items):
    q.put(job(share(worker, workers, items)))  # a process's memory is its own: send the sum


def in_processes(job, items, workers=WORKERS):
    q = FORK.Queue()
    procs = [FORK.Process(target=send_sum, args=(q, job, w, workers, items))
             for w in range(workers)]
    for p in procs:
        p.start()
    total = sum(q.get() for _ in procs)  # get before join
    for p in procs:
        p.join()
    assert all(p.exitcode == 0 for p in procs), [p.exitcode for p in procs]
    return total
# ANCHOR_END: ways


WAYS = [("loop", in_a_loop), ("2 threads", in_threads), ("2 processes", in_processes)]


def timed(f, *args):
    start = time.perf_counter()
    result = f(*args)
    return result, time.perf_counter() - start


# ANCHOR: start
def note(box, value):
    box.append(value)


def start_one():
    print("1. Start a thread and a process, each appends to a list, and join them")
    box = []
    start = time.perf_counter()
    thread = threading.Thread(target=note, args=(box, "from the thread"))
    thread.start()  # a new thread in this process: the same memory, the same interpreter
    thread.join()
    took = lessonkit.duration(time.perf_counter() - start)
    print(f"   threading.Thread: started and joined in {took}")
    start = time.perf_counter()
    process = FORK.Process(target=note, args=(box, "from the process"))
    process.start()  # fork: a new process, a copy of this one
    process.join()
    took = lessonkit.duration(time.perf_counter() - start)
    print(f"   multiprocessing.Process (fork): started and joined in {took}, "
          f"exitcode {process.exitcode}")
    # The thread appended to this process's list; the process, to its own copy of it.
    print(f"   the list: {box}: the thread shares this process's memory, the process had a copy")
# ANCHOR_END: start


def compare(job, items, ways):
    """Run the job each way; print each result, time, and time as a ratio of the loop's."""
    loop_time = None
    for label, way in ways:
        result, took = timed(way, job, items)
        line = f"   {label + ':':<12} result {result} in {lessonkit.duration(took)}"
        if loop_time is None:
            loop_time = took
        else:
            line += f", {lessonkit.varies(f'{took / loop_time:.2f}x')} the loop's time"
        print(line)


# ANCHOR: gil
def the_gil():
    print(f"2. The CPU job in pure Python: {CPU_ITEMS} items of {ROUNDS} xorshift rounds each")
    gil = getattr(sys, "_is_gil_enabled", lambda: True)()  # False only in a free-threaded build
    print(f"   {lessonkit.varies(os.cpu_count())} CPUs here; the GIL is on: {gil}")
    compare(cpu_job, CPU_ITEMS, WAYS)
    print("   2 threads: about the loop's time, for one thread at a time may run Python code;")
    print("   2 processes: each has its own interpreter and its own GIL")

    print(f"3. The hashlib job: {HASH_ITEMS} items, sha256 over 1 MiB each, in C")
    compare(hash_job, HASH_ITEMS, WAYS[:2])
    print("   2 threads can win here: while one hashes, without the GIL, the other runs")
# ANCHOR_END: gil


# ANCHOR: crash
def unlucky(items):
    for i in items:
        if i == UNLUCKY:
            raise ValueError(f"item {i} is unlucky")
    return cpu_job(items)


def nap(_items):
    time.sleep(3600)  # a worker stuck for good


def crash():
    print("4. A crash in one worker")
    # An exception that ends a thread goes to threading.excepthook, which prints it on
    # stderr; here it goes to a list instead. It ends that thread only.
    caught = []
    threading.excepthook = caught.append
    sums = [None] * WORKERS

    def run(w, job):
        sums[w] = job(share(w, WORKERS, CRASH_ITEMS))

    jobs = [unlucky, cpu_job]  # thread 0 meets the unlucky item; thread 1 does its share
    threads = [threading.Thread(target=run, args=(w, job)) for w, job in enumerate(jobs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    threading.excepthook = threading.__excepthook__
    print(f"   thread 0 raised {caught[0].exc_type.__name__}: {caught[0].exc_value}; "
          f"thread 1's sum survives: {sums[1]}")
    # A thread cannot be stopped from outside: Python has no kill() for one, as the Rust
    # standard library has none. A process can be, as the OOM killer does.
    print(f"   threading.Thread has kill(): {hasattr(threading.Thread, 'kill')}; "
          f"multiprocessing.Process has: {hasattr(FORK.Process, 'kill')}")

    q = FORK.Queue()
    stuck = FORK.Process(target=send_sum, args=(q, nap, 0, WORKERS, CRASH_ITEMS))
    worker = FORK.Process(target=send_sum, args=(q, cpu_job, 1, WORKERS, CRASH_ITEMS))
    stuck.start()
    worker.start()
    got = q.get()
    stuck.kill()  # SIGKILL
    stuck.join()
    worker.join()
    print(f"   worker process 0 killed: exitcode {stuck.exitcode}; worker 1 sent its sum: {got}, "
          f"exitcode {worker.exitcode}")
    print("   and this program lives on")
# ANCHOR_END: crash


# ANCHOR: limits
def address_space():
    """This process's address space, in bytes (VmSize)."""
    with open("/proc/self/status") as status:
        kib = next(int(line.split()[1]) for line in status if line.startswith("VmSize:"))
    return kib * 1024


def try_a_gib(q):
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    limit = address_space() + HEADROOM
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))  # this process's, and its children's
    try:
        bytearray(GIB)
        q.put("bytearray(1 GiB) succeeded")
    except MemoryError:
        q.put("bytearray(1 GiB) raised MemoryError")


def limits():
    print("5. Limits: a child lowers its RLIMIT_AS (address space) to what it uses + 512 MiB")
    before = resource.getrlimit(resource.RLIMIT_AS)
    q = FORK.Queue()
    child = FORK.Process(target=try_a_gib, args=(q,))
    child.start()
    said = q.get()
    child.join()
    print(f"   the child: {said}, and exited {child.exitcode}")
    same = resource.getrlimit(resource.RLIMIT_AS) == before
    print(f"   this process's limit is unchanged: {same}; a thread has no limit of its own")
    # setrlimit() in a thread would set the limit of the whole process: threads have none of
    # their own, as they have no memory of their own.
# ANCHOR_END: limits


# ANCHOR: program
def another_program():
    print('6. Another program: subprocess.run(["sh", "-c", "exit 3"])')
    # fork, then exec in the child: exec replaces the whole process, every thread of it, by
    # the new program. A thread can only run this program's code.
    done = subprocess.run(["sh", "-c", "exit 3"])
    print(f"   returncode {done.returncode}: sh ran in a process of its own")
# ANCHOR_END: program


def demo():
    start_one()
    the_gil()
    crash()
    limits()
    another_program()


# ANCHOR: measure
def start_join_threads(n):
    for _ in range(n):
        t = threading.Thread(target=int)
        t.start()
        t.join()


def start_join_processes(n):
    for _ in range(n):
        p = FORK.Process(target=int)
        p.start()
        p.join()


def measure(args):
    bench = lessonkit.Bench("threads-or-processes", args)
    threads = lessonkit.pick(args, 200, 10)
    bench.run("python start and join one thread", lambda: start_join_threads(threads),
              ops=threads, baseline=RUST_START)
    forks = lessonkit.pick(args, 50, 5)
    bench.run("python start and join one process (fork)", lambda: start_join_processes(forks),
              ops=forks, baseline=RUST_START)

    for job, name, items, baseline in [
        (cpu_job, "CPU job", lessonkit.pick(args, 200, 8), RUST_LOOP),
        (hash_job, "hashlib job", lessonkit.pick(args, 128, 8), HASH_LOOP),
    ]:
        expected = job(range(items))
        for label, way in WAYS:
            case = f"python {name}: {label}"

            def one_run(job=job, items=items, way=way, expected=expected):
                assert way(job, items) == expected

            # The hashlib job's loop is the baseline of its threads and processes.
            bench.run(case, one_run, ops=items, baseline=None if case == HASH_LOOP else baseline)
    bench.finish()
# ANCHOR_END: measure


if __name__ == "__main__":
    lessonkit.run(ABOUT, demo, measure)
