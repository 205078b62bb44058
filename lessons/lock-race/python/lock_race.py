"""lock_race.py: two processes update one shared balance, the Python twin of lesson-lock-race.

A balance of 100 in a multiprocessing Value. One process deposits 1 ten thousand times,
another withdraws 1 ten thousand times, ten rounds over: with lock=False and no lock
(`balance.value += 1` is a read, then a write, and updates get lost), with a
multiprocessing.Lock around each update, and with the Value's own lock (lock=True), taken
with get_lock() or, wrongly, left to `+=`.

    python3 lessons/lock-race/python/lock_race.py
    python3 lessons/lock-race/python/lock_race.py --measure [--json] [--runs N] [--quick]
"""

import pathlib
import sys
import time
from multiprocessing import Barrier, Lock, Process, Value

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[3] / "crates" / "plumbing" / "python"))
import lessonkit  # noqa: E402

ABOUT = "Two processes update one shared Value: lost updates without a lock, none with one."
START = 100  # the balance every round starts with, and ends with when no update is lost
OPS = 10_000  # deposits by worker 0, and withdrawals by worker 1, in each round
ROUNDS = 10
DEPOSIT, WITHDRAW = 1, -1  # what worker 0 adds to the balance each time, and worker 1
# The Rust case that the Python cases are compared with in the merged table.
FLOOR = "atomic fetch_add, 2 processes (floor)"


# ANCHOR: workers
def no_lock(balance, amount, ops, gate):
    gate.wait()  # both workers start together
    for _ in range(ops):
        balance.value += amount  # read, add, write: the other process may write in between


def with_lock(balance, amount, ops, gate, lock):
    gate.wait()
    for _ in range(ops):
        with lock:  # a POSIX semaphore underneath, shared with the other process
            balance.value += amount
# ANCHOR_END: workers


# ANCHOR: own_lock
def own_lock(balance, amount, ops, gate):
    gate.wait()
    for _ in range(ops):
        with balance.get_lock():  # the Value's own lock (an RLock), around the whole update
            balance.value += amount


def own_lock_forgotten(balance, amount, ops, gate):
    gate.wait()
    for _ in range(ops):
        balance.value += amount  # takes the lock to read, lets go, takes it again to write
# ANCHOR_END: own_lock


# ANCHOR: rounds
def rounds(target, lock=True, extra=()):
    """ROUNDS rounds: a fresh balance of START, a depositor and a withdrawer, both joined."""
    finals = []
    for _ in range(ROUNDS):
        balance = Value("i", START, lock=lock)  # a C int in shared memory
        gate = Barrier(2)
        workers = [
            Process(target=target, args=(balance, amount, OPS, gate, *extra)) for amount in (DEPOSIT, WITHDRAW)
        ]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        assert all(w.exitcode == 0 for w in workers), [w.exitcode for w in workers]
        finals.append(balance.value)
    return finals


def racy(finals):
    """Print the final balances of a variant that loses updates."""
    # Which rounds go wrong, and by how much, changes from run to run (varies() marks it
    # for the tests, which redact it).
    wrong = sum(b != START for b in finals)
    print(f"   final balances: {lessonkit.varies(' '.join(map(str, finals)))}")
    print(f"   wrong in {lessonkit.varies(f'{wrong} of {ROUNDS}')} rounds, "
          f"from {lessonkit.varies(f'{min(finals)} to {max(finals)}')}")
    # What holds on every run: each write is a balance read earlier, plus the worker's
    # amount, and each worker writes OPS times.
    lowest, highest = START + OPS * WITHDRAW, START + OPS * DEPOSIT
    assert all(lowest <= b <= highest for b in finals), f"a balance outside {lowest}..{highest}: {finals}"
    print(f"   always between {lowest} and {highest}: each write is a balance read before, "
          f"plus {DEPOSIT} or minus {-WITHDRAW}")


def exact(finals):
    """Print the final balances of a variant that must never lose an update, and check them."""
    right = finals.count(START)
    print(f"   final balances: {' '.join(map(str, finals))}")
    print(f"   right in {right} of {ROUNDS} rounds")
    assert right == ROUNDS, f"updates were lost: {finals}"
# ANCHOR_END: rounds


def demo():
    print(f"1. A balance of {START} in a Value; worker 0 deposits {DEPOSIT} and worker 1 withdraws {-WITHDRAW}")
    print(f"   {OPS} times each, {ROUNDS} rounds of each variant: a fair result is {START} every round")
    # ANCHOR: demo
    print(f"2. Value('i', {START}, lock=False), no lock: balance.value += amount")
    racy(rounds(no_lock, lock=False))
    print("3. The same, holding a multiprocessing.Lock")
    exact(rounds(with_lock, lock=False, extra=(Lock(),)))
    print(f"4. Value('i', {START}) has a lock of its own: with balance.get_lock()")
    exact(rounds(own_lock))
    print("   and without get_lock(), balance.value += amount on that same Value")
    racy(rounds(own_lock_forgotten))
    # ANCHOR_END: demo


# ANCHOR: measure
def measure(args):
    bench = lessonkit.Bench("lock-race", args)
    n = lessonkit.pick(args, 500_000, 2_000)  # operations per worker

    def one_run(target, extra=()):
        balance = Value("i", START, lock=False)
        gate = Barrier(3)  # the two workers and this process: the clock starts when all are in
        workers = [Process(target=target, args=(balance, amount, n, gate, *extra)) for amount in (DEPOSIT, WITHDRAW)]
        for w in workers:
            w.start()
        gate.wait(timeout=60)
        start = time.perf_counter()
        for w in workers:
            w.join()
        elapsed = time.perf_counter() - start
        assert all(w.exitcode == 0 for w in workers), [w.exitcode for w in workers]
        return elapsed

    bench.run("Value lock=False, no Lock, 2 processes (wrong)", lambda: one_run(no_lock),
              ops=2 * n, baseline=FLOOR, timed=True)
    bench.run("Value lock=False with a Lock, 2 processes", lambda: one_run(with_lock, (Lock(),)),
              ops=2 * n, baseline=FLOOR, timed=True)
    bench.finish()
# ANCHOR_END: measure


if __name__ == "__main__":
    lessonkit.run(ABOUT, demo, measure)
