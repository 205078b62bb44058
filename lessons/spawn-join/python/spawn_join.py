"""spawn-join in Python: start a child process, wait for it, and read how it ended.

Process(target=f, args=(...)), start(), join(), pid, is_alive(), kill(), terminate() and
exitcode, with the "fork" and "spawn" start methods. The Rust lesson beside it
(lessons/spawn-join/src/main.rs) does the same with fork, waitpid and exec.

Usage: python3 spawn_join.py [--measure [--json] [--runs N] [--quick]]
"""

import multiprocessing as mp
import os
import pathlib
import signal
import subprocess
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[3] / "crates" / "plumbing" / "python"))
import lessonkit  # noqa: E402

ABOUT = "Start child processes and wait for them: start(), join(), is_alive(), exitcode."
# The Rust case that the Python cases are compared with in the merged table.
FLOOR = "fork+_exit+waitpid (floor)"
SLEEPERS = 2  # children in section 5, which sleep at the same time
NAP_MS = 500  # how long each of them sleeps
FORGOTTEN_NAP_S = 1  # how long section 6's child, which nobody joins, sleeps


# ANCHOR: targets
def greet(name):
    print(f"   hello {name} from the child, pid {os.getpid()}", flush=True)


def wait_forever():
    while True:
        signal.pause()  # sleep until a signal arrives


def exit_with_3():
    sys.exit(3)


def give_up():
    raise RuntimeError("the child gave up")


def nap():
    time.sleep(NAP_MS / 1000)


def forgotten_nap():
    time.sleep(FORGOTTEN_NAP_S)


def forget_a_child(daemon):
    """Section 6's program: start a child that naps, and end without joining it."""
    mp.get_context("fork").Process(target=forgotten_nap, daemon=daemon).start()
# ANCHOR_END: targets


def noop():
    pass


def demo():
    # ANCHOR: fork
    print("1. fork: the child starts as a copy of this process")
    p = mp.get_context("fork").Process(target=greet, args=("bob",))
    p.start()
    p.join()
    print(f"   parent: joined child pid {p.pid}, exitcode {p.exitcode}")
    # ANCHOR_END: fork

    # ANCHOR: spawn
    print("2. spawn: the child is a new Python that imports this file")
    p = mp.get_context("spawn").Process(target=greet, args=("alice",))
    p.start()
    p.join()
    print(f"   parent: joined child pid {p.pid}, exitcode {p.exitcode}")
    # ANCHOR_END: spawn

    # ANCHOR: is_alive
    print("3. is_alive, kill and terminate")
    p = mp.Process(target=wait_forever)
    p.start()
    print(f"   child pid {p.pid} waits forever: is_alive {p.is_alive()}")
    p.kill()
    p.join()
    print(f"   after kill and join: exitcode {p.exitcode}, is_alive {p.is_alive()}")

    p = mp.Process(target=wait_forever)
    p.start()
    p.terminate()
    p.join()
    print(f"   child pid {p.pid} after terminate and join: exitcode {p.exitcode}")
    # ANCHOR_END: is_alive

    # ANCHOR: exit_codes
    print("4. exit codes")
    p = mp.Process(target=exit_with_3)
    p.start()
    p.join()
    print(f"   a child that calls sys.exit(3): exitcode {p.exitcode}")
    p = mp.Process(target=give_up)  # its traceback goes to stderr
    p.start()
    p.join()
    print(f"   a child that raises: exitcode {p.exitcode}")
    # ANCHOR_END: exit_codes

    # ANCHOR: two_sleepers
    print(f"5. {SLEEPERS} children that each sleep {NAP_MS} ms")
    start = time.perf_counter()
    sleepers = [mp.Process(target=nap) for _ in range(SLEEPERS)]
    for p in sleepers:
        p.start()
    for p in sleepers:
        p.join()
    took = time.perf_counter() - start
    print(f"   exitcodes {' and '.join(str(p.exitcode) for p in sleepers)}")
    print(f"   all joined after {lessonkit.duration(took)}")  # about one nap: they slept at once
    # ANCHOR_END: two_sleepers

    # ANCHOR: at_exit
    print("6. the end of the program: a child nobody joined")
    for daemon in (False, True):
        # A fresh Python runs this file with --forget-a-child: forget_a_child, then its end.
        mode = "daemon" if daemon else "plain"
        start = time.perf_counter()
        ended = subprocess.run([sys.executable, __file__, "--forget-a-child", mode, str(os.getpid())])
        took = time.perf_counter() - start
        after = lessonkit.duration(took)
        print(f"   daemon={daemon}: the program exited with exitcode {ended.returncode} after {after}")
        if daemon:
            print("   it did not wait: at exit, Python terminates a daemon child")
        else:
            its_nap = f"its child's {FORGOTTEN_NAP_S} s nap"
            print(f"   it waited for {its_nap}: at exit, Python joins a child that is not a daemon")
        assert (took >= FORGOTTEN_NAP_S) != daemon, f"daemon={daemon}, yet the program took {took:.2f} s"
    # ANCHOR_END: at_exit


# ANCHOR: measure
def measure(args):
    bench = lessonkit.Bench("spawn-join", args)
    for method, n in (("fork", lessonkit.pick(args, 200, 5)), ("spawn", lessonkit.pick(args, 20, 2))):
        context = mp.get_context(method)

        def one_run():
            for _ in range(n):
                p = context.Process(target=noop)
                p.start()
                p.join()

        bench.run(f"python {method} start+join", one_run, ops=n, baseline=FLOOR)
    bench.finish()
# ANCHOR_END: measure


if __name__ == "__main__":
    if sys.argv[1:2] == ["--forget-a-child"]:
        lessonkit.die_with_parent(int(sys.argv[3]))  # as every process of a twin does
        forget_a_child(sys.argv[2] == "daemon")  # and then the end of the program
    else:
        lessonkit.run(ABOUT, demo, measure)
