"""manager_proxy.py: shared objects in a server process, the Python twin of lesson-manager-proxy.

multiprocessing.Manager() starts a server process that owns the shared objects;
manager.list() and manager.dict() return proxies, and every method call on a proxy is a
request to the server (pickled, over a socket) and a wait for its pickled answer. This program
runs the classic example (one child appends a record, another prints them all), a dict, four
workers appending at once, a shutdown, and a server that dies.

    python3 lessons/manager-proxy/python/manager_proxy.py
    python3 lessons/manager-proxy/python/manager_proxy.py --measure [--json] [--runs N] [--quick]
"""

import os
import pathlib
import signal
import sys
from multiprocessing import Manager, Process

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[3] / "crates" / "plumbing" / "python"))
import lessonkit  # noqa: E402

ABOUT = "Shared objects in a server process: multiprocessing.Manager(), its list and dict proxies."
# The Rust case that the Python cases are compared with in the merged table.
FLOOR = "raw round trip, socketpair (floor)"

WORKERS = 4
APPENDS = 50


def run(target, *args):
    """Start a child, wait for it, and say how it ended."""
    p = Process(target=target, args=args)
    p.start()
    p.join()
    return p


# ANCHOR: classic
def insert_record(record, records):
    records.append(record)  # a request to the server: ('append', (record,)), pickled
    print(f"   child: appended {record[0]} {record[1]}")


def print_records(records):
    for name, score in records[:]:  # one request brings a copy of the whole list
        print(f"   child: Name: {name}, Score: {score}")


def classic(records):
    print("2. One child appends a record; after it is joined, another prints them all")
    p = run(insert_record, ("Jeff", 8), records)
    print(f"   joined the appending child, pid {p.pid}: exitcode {p.exitcode}")
    p = run(print_records, records)
    print(f"   joined the printing child, pid {p.pid}: exitcode {p.exitcode}")
# ANCHOR_END: classic


# ANCHOR: dict
def get_and_set(scores):
    print(f"   child: scores.get('round') = {scores.get('round')}")
    scores["round"] = 2
    print("   child: scores['round'] = 2")
    print(f"   child: scores.get('missing') = {scores.get('missing')}")


def a_dict(scores):
    print("3. A dict: the parent sets a key, a child gets it and sets it, the parent gets it")
    scores["round"] = 1
    print("   parent: scores['round'] = 1")
    p = run(get_and_set, scores)
    print(f"   joined the child, pid {p.pid}: exitcode {p.exitcode}")
    print(f"   parent: scores.get('round') = {scores.get('round')}")
# ANCHOR_END: dict


# ANCHOR: workers
def append_many(records, worker):
    for i in range(APPENDS):
        records.append((f"worker {worker}", i))  # one round trip each


def workers(records):
    print(f"4. {WORKERS} workers append {APPENDS} records each, at once")
    before = len(records)
    ps = [Process(target=append_many, args=(records, w)) for w in range(WORKERS)]
    for p in ps:
        p.start()
    for p in ps:
        p.join()
    assert all(p.exitcode == 0 for p in ps), [p.exitcode for p in ps]
    print(f"   joined {WORKERS} workers")
    everything = records[:]
    print(f"   records[:]: {len(everything)} records ({before} before, plus {WORKERS} x {APPENDS})")
    for w in range(WORKERS):
        mine = [score for name, score in everything if name == f"worker {w}"]
        print(f"   worker {w}: {len(mine)} records, in the order it sent them: {mine == list(range(APPENDS))}")
# ANCHOR_END: workers


# ANCHOR: dies
def server_dies():
    print("6. The server dies: the next call is an error, not a hang")
    manager = Manager()
    records = manager.list([("Sam", 10), ("Adam", 9), ("Kevin", 9)])
    server = manager._process  # the server's Process object (a private attribute)
    print(f"   a new server, pid {server.pid}; len(records): {len(records)}")
    os.kill(server.pid, signal.SIGKILL)
    server.join()
    print("   killed the server with SIGKILL")
    try:
        len(records)
    except (EOFError, OSError) as error:
        print(f"   len(records): {type(error).__name__} {error}")
    print(f"   joined the server, pid {server.pid}: exitcode {server.exitcode}")
    # A killed server never removed its socket file: do it here.
    os.remove(manager.address)
# ANCHOR_END: dies


# ANCHOR: nested
def nested():
    print("7. The nested-mutation trap: a list inside a managed dict")
    with Manager() as manager:
        scores = manager.dict()
        scores["history"] = []
        scores["history"].append(1)  # appends to the copy that scores["history"] returned
        print(f"   after scores['history'].append(1): {scores['history']}")
        history = scores["history"]  # a copy, in this process
        history.append(1)
        scores["history"] = history  # one request: the server's value is replaced
        print(f"   after getting it, appending and setting it back: {scores['history']}")
        server = manager._process
    print(f"   joined the server, pid {server.pid}: exitcode {server.exitcode}")
# ANCHOR_END: nested


# ANCHOR: measure
def measure(args):
    bench = lessonkit.Bench("manager-proxy", args)
    calls = lessonkit.pick(args, 5_000, 100)
    with Manager() as manager:
        records = manager.list()
        scores = manager.dict({"round": 0})

        def appends():
            for i in range(calls):
                records.append(("Jeff", i))

        def gets():
            for _ in range(calls):
                scores.get("round")

        def sets():
            for i in range(calls):
                scores["round"] = i

        bench.run("python Manager list.append", appends, ops=calls, baseline=FLOOR)
        bench.run("python Manager dict get", gets, ops=calls, baseline=FLOOR)
        bench.run("python Manager dict set", sets, ops=calls, baseline=FLOOR)
    bench.finish()
# ANCHOR_END: measure


def demo():
    # ANCHOR: start
    print("1. Manager(): a server process that owns the list and the dict")
    with Manager() as manager:  # leaving the block shuts the server down
        records = manager.list([("Sam", 10), ("Adam", 9), ("Kevin", 9)])
        scores = manager.dict()
        print(f"   started the server, pid {manager._process.pid}")
        print(f"   len(records) from the parent: {len(records)}")
        # ANCHOR_END: start
        classic(records)
        a_dict(scores)
        workers(records)
        # ANCHOR: shutdown
        print("5. Shutdown: leaving the with block calls manager.shutdown()")
        server = manager._process
    print(f"   joined the server, pid {server.pid}: exitcode {server.exitcode}")
    # ANCHOR_END: shutdown
    server_dies()
    nested()


if __name__ == "__main__":
    lessonkit.run(ABOUT, demo, measure, own_temp_dir=True)  # the servers' sockets live there
