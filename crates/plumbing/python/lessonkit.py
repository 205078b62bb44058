"""Plumbing shared by the lessons' Python programs, as the plumbing crate is for the Rust ones.

The same options (--measure, --json, --runs N, --quick) and the same JSON records, one per
line, so a lesson's --measure can run its Python twin and put both in one table; and, for
the default run, the same way of printing what varies from run to run (`varies`) and a
measured time (`duration`), so that the tests can snapshot a twin's output as they do a
lesson's. A lesson program imports it with:

    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[3] / "crates" / "plumbing" / "python"))
    import lessonkit

and ends with:

    if __name__ == "__main__":
        lessonkit.run(ABOUT, demo, measure)
"""

import argparse
import ctypes
import json
import multiprocessing
import multiprocessing.util
import os
import resource
import shutil
import signal
import statistics
import sys
import threading
import time

DEFAULT_RUNS = 5
MAX_RUNS = 100  # as crates/plumbing/src/cli.rs: more would run for hours, and tell nothing new

# The variable the tests set, as in crates/plumbing/src/varies.rs; read once, at import.
MARK_VARYING = os.environ.get("FORKLORE_MARK_VARYING") == "1"


_LIBC = ctypes.CDLL(None, use_errno=True)
_FORKING_PARENT = None  # the pid that is forking, kept for the child to check


def _die_with_parent(parent):
    """Ask the kernel to kill this process when its parent ends (PR_SET_PDEATHSIG), as the
    Rust lessons' children do: no worker of a twin outlives it, however the twin ends. The
    parent may have died already, before the request: then it would never come, so end now."""
    _LIBC.prctl(1, signal.SIGKILL)  # 1: PR_SET_PDEATHSIG
    if os.getppid() != parent:
        os._exit(1)


# For a program a twin starts with subprocess (not forked by multiprocessing): given its
# parent's pid, it dies with that parent too.
die_with_parent = _die_with_parent


def _before_fork():
    global _FORKING_PARENT
    _FORKING_PARENT = os.getpid()


def _after_fork_in_child():
    _die_with_parent(_FORKING_PARENT)
    # The lesson's process keeps Ctrl-C for its watcher thread (see run); a child it forks
    # lets Ctrl-C end it, quietly, as the terminal's Ctrl-C ends a Rust lesson's children.
    if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


# Every child this program forks (a Process, a Pool's worker, a Manager's server) dies with
# its parent; so does a "spawn" child, which imports this module as it starts.
os.register_at_fork(before=_before_fork, after_in_child=_after_fork_in_child)
if multiprocessing.parent_process() is not None:
    _die_with_parent(multiprocessing.parent_process().pid)


def run(about, demo, measure, own_temp_dir=False):
    """The lesson's main: `measure(args)` with --measure, else `demo()`.

    Call it under `if __name__ == "__main__":` only: a "spawn" child (and a Manager's or a
    Pool's, under that start method) imports the lesson's file, and must not run the demo.

    Ctrl-C ends it with one line on stderr and exit status 130, and nothing left behind
    (see `_on_ctrl_c`).

    own_temp_dir: multiprocessing makes a temporary folder (pymp-*) in the first process
    that needs one (a Manager's server, for its socket), and removes it when that process
    exits normally; a server that is killed leaves it behind. With own_temp_dir, it is made
    here: it belongs to the lesson's process, every child forked later uses the same folder,
    and it is removed when the lesson ends, even when a child was killed.
    """
    args = parse_args(about)
    if own_temp_dir:
        multiprocessing.util.get_temp_dir()
    # Ctrl-C goes to a thread of its own, which waits for nothing else: blocked here, before
    # any other thread starts, it is blocked in every thread, and that one takes it (sigwait).
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    threading.Thread(target=_on_ctrl_c, name="ctrl-c", daemon=True).start()
    if args.measure:
        measure(args)
    else:
        demo()


def _on_ctrl_c():
    """Wait for Ctrl-C, which the terminal sends to every process of the lesson at once;
    then end the lesson: one line, its children killed, multiprocessing's temporary folder
    removed, exit status 130 (as a shell reports Ctrl-C).

    Not Python's KeyboardInterrupt, for two reasons. Python runs a signal's handler in the
    main thread, between two steps of its code: a Ctrl-C that comes just as the main thread
    goes to sleep in `pool.map()` waits until map returns, and map never returns when the
    same Ctrl-C killed the workers. And unwinding runs the clean-up of what was interrupted:
    a Pool's waits for the lock of its queue, which a killed worker may hold. A child forked
    meanwhile (a Pool replacing a worker) dies with the lesson (see _die_with_parent).
    """
    signal.sigwait({signal.SIGINT})
    print(f"{os.path.basename(sys.argv[0])}: interrupted", file=sys.stderr, flush=True)
    for child in multiprocessing.active_children():
        child.kill()
        child.join()
    temp = multiprocessing.process.current_process()._config.get("tempdir")
    if temp:
        shutil.rmtree(temp, ignore_errors=True)
    sys.stdout.flush()
    os._exit(130)


def varies(value):
    """`str(value)`, marked `{varies: value}` when the tests ask (FORKLORE_MARK_VARYING=1).

    For what a demo prints that changes from run to run: a race's outcome, how work fell
    among workers, a memory count. The snapshot shows it as `[varies]`.
    """
    return f"{{varies: {value}}}" if MARK_VARYING else str(value)


def duration(seconds):
    """Seconds, in the unit that suits them: `45.1 ns`, `8.41 µs`, `503.20 ms`, `1.503 s`.

    As plumbing::measure::duration prints them, which the tests redact as a measured time.
    """
    if seconds < 1e-6:
        return f"{seconds * 1e9:.1f} ns"
    if seconds < 1e-3:
        return f"{seconds * 1e6:.2f} µs"
    if seconds < 1:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds:.3f} s"


class _OneLineParser(argparse.ArgumentParser):
    """argparse, but a bad option is one line on stderr (and status 2), as in the Rust lessons:
    argparse's own error prints the whole usage first."""

    def error(self, message):
        sys.stderr.write(f"{self.prog}: {message} (see --help)\n")
        sys.exit(2)


def parse_args(about):
    """The lesson's options; a bad one prints one line and exits with status 2."""
    parser = _OneLineParser(description=about)
    parser.add_argument("--measure", action="store_true", help="run the full-size experiment")
    parser.add_argument("--json", action="store_true", help="with --measure: one JSON object per case")
    parser.add_argument("--runs", type=int, help=f"with --measure: runs per case (default {DEFAULT_RUNS})")
    parser.add_argument("--quick", action="store_true", help="with --measure: tiny sizes, one run")
    args = parser.parse_args()
    if args.runs is None:
        args.runs = 1 if args.quick else DEFAULT_RUNS
    if not 1 <= args.runs <= MAX_RUNS:
        parser.error(f"--runs takes a whole number from 1 to {MAX_RUNS}")
    return args


def pick(args, full, quick):
    """`full` for a real measurement, `quick` under --quick."""
    return quick if args.quick else full


def _faults_so_far():
    """Minor page faults so far of this process, and of its children that have been reaped."""
    return sum(resource.getrusage(who).ru_minflt for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))


class Bench:
    """Runs cases and prints their records (with --json) or a small table."""

    def __init__(self, lesson, args):
        self.lesson = lesson
        self.args = args
        self.records = []

    def run(self, case, one_run, ops=1, nbytes=None, baseline=None, timed=False):
        """Measure `one_run()` args.runs times (after one warm-up run unless --quick).

        With timed=True, one_run() returns its own time in seconds (to leave set-up out).
        """
        print(f"measuring {case:<36}", end="", file=sys.stderr, flush=True)

        def once():
            """(seconds, page faults): the faults of this process and of the children it
            reaped during the run, as the Rust bench counts them."""
            before = _faults_so_far()
            if timed:
                seconds = one_run()
            else:
                start = time.perf_counter()
                one_run()
                seconds = time.perf_counter() - start
            return seconds, _faults_so_far() - before

        if not self.args.quick:
            once()
        runs = sorted(once() for _ in range(self.args.runs))
        times = [seconds for seconds, _ in runs]
        record = {
            "lesson": self.lesson,
            "case": case,
            "impl": "python",
            "runs": self.args.runs,
            "median_s": statistics.median(times),
            "min_s": times[0],
            "max_s": times[-1],
            "baseline": baseline,
            "ops": ops,
            "faults": runs[(len(runs) - 1) // 2][1],  # the median run's
        }
        if nbytes is not None:
            record["bytes"] = nbytes
        print(f" {record['median_s'] / ops * 1e6:.2f} µs/op", file=sys.stderr)
        if self.args.json:
            print(json.dumps(record), flush=True)
        self.records.append(record)

    def finish(self):
        if self.args.json:
            return
        print(f"{'case':<36} {'runs':>4} {'median/op':>12} {'min/op':>12} {'max/op':>12}")
        for r in self.records:
            per = [f"{r[k] / r['ops'] * 1e6:.2f} µs" for k in ("median_s", "min_s", "max_s")]
            print(f"{r['case']:<36} {r['runs']:>4} {per[0]:>12} {per[1]:>12} {per[2]:>12}")
