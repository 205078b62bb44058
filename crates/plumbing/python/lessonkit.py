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
import json
import os
import statistics
import sys
import time

DEFAULT_RUNS = 5

# The variable the tests set, as in crates/plumbing/src/varies.rs; read once, at import.
MARK_VARYING = os.environ.get("FORKLORE_MARK_VARYING") == "1"


def run(about, demo, measure):
    """The lesson's main: `measure(args)` with --measure, else `demo()`.

    Call it under `if __name__ == "__main__":` only: a "spawn" child (and a Manager's or a
    Pool's, under that start method) imports the lesson's file, and must not run the demo.
    """
    args = parse_args(about)
    if args.measure:
        measure(args)
    else:
        demo()


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


def parse_args(about):
    """The lesson's options; a bad one prints a usage error and exits with status 2."""
    parser = argparse.ArgumentParser(description=about)
    parser.add_argument("--measure", action="store_true", help="run the full-size experiment")
    parser.add_argument("--json", action="store_true", help="with --measure: one JSON object per case")
    parser.add_argument("--runs", type=int, help=f"with --measure: runs per case (default {DEFAULT_RUNS})")
    parser.add_argument("--quick", action="store_true", help="with --measure: tiny sizes, one run")
    args = parser.parse_args()
    if args.runs is None:
        args.runs = 1 if args.quick else DEFAULT_RUNS
    if args.runs < 1:
        parser.error("--runs takes a whole number of 1 or more")
    return args


def pick(args, full, quick):
    """`full` for a real measurement, `quick` under --quick."""
    return quick if args.quick else full


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
            if timed:
                return one_run()
            start = time.perf_counter()
            one_run()
            return time.perf_counter() - start

        if not self.args.quick:
            once()
        times = sorted(once() for _ in range(self.args.runs))
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
