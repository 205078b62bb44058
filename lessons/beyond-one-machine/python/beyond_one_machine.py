"""beyond_one_machine.py: MPI from Python with mpi4py, the Python twin of
lesson-beyond-one-machine.

The same two parts as the Rust lesson. The conductor (`demo`, `measure`) starts each job
with mpiexec (through crates/plumbing/python/mpijob.py, which mirrors the Rust kit) and
prints what every rank said, step by step. The ranks are this same file, started by mpiexec
as `python3 beyond_one_machine.py --rank WHAT...`. mpi4py sends Python objects
(lower-case methods: pickled) and buffers (upper-case methods: numbers in place, no pickle);
the lesson shows both.

    python3 lessons/beyond-one-machine/python/beyond_one_machine.py
    python3 lessons/beyond-one-machine/python/beyond_one_machine.py --measure [--json] [--runs N] [--quick]
"""

import os
import pathlib
import socket
import sys
import textwrap
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[3] / "crates" / "plumbing" / "python"))
import lessonkit  # noqa: E402
import mpijob  # noqa: E402

ABOUT = "MPI from Python (mpi4py): ranks, send and receive, scatter and gather, a reduction, the transport."
RANKS = 2
ITEMS = 10_000
TRIPS = 10_000
OVER_TCP = {"UCX_TLS": "tcp,self"}  # as the Rust lesson's: TCP, and no shared memory


DEADLINE_S = 10  # as the Rust lesson's: mpiexec waits forever when it cannot start a rank


def job(ranks, *what, env=None):
    return mpijob.run(ranks, [__file__, "--rank", *what], env=env, deadline_s=DEADLINE_S)


def show(lines):
    """Every rank's first line, then every rank's second, and so on."""
    for step in range(max(map(len, lines), default=0)):
        for said in lines:
            if step < len(said):
                print(f"   {said[step]}")


def last_words(lines, *names):
    """Rank 0's last line, `name value name value ...`: the values, as numbers."""
    words = lines[0][-1].split()
    values = [words[words.index(name) + 1] for name in names]
    return [int(v) if v.isdigit() else float(v) for v in values]


def demo():
    print(f"1. Ranks: mpiexec -n {RANKS} starts python3 with this file {RANKS} times; each is a rank")
    show(job(RANKS, "hello"))
    print("2. Send and receive, like a Pipe: rank 0 sends, rank 1 answers")
    show(job(RANKS, "pipe"))
    print("3. Scatter and gather, like Pool.map in chunks: the squares of 1..8")
    show(job(RANKS, "scatter"))
    print("4. A reduction, like a Value with its lock; a barrier, like the start gate")
    show(job(RANKS, "reduce"))
    print(f"5. The pool's job on ranks: the squares of range({ITEMS}), chunked and one item at a time")
    per_task = {}
    for how, ranks in [("chunked", 1), ("chunked", 2), ("single", 1), ("single", 2)]:
        total, seconds = last_words(job(ranks, "map", how, str(ITEMS)), "sum", "seconds")
        messages = 1 if how == "chunked" else ITEMS // ranks
        plural = "s" if ranks > 1 else " "
        print(f"   {how:>7}, {ranks} rank{plural}: sum {total}; {messages} scatter and gather each; "
              f"{lessonkit.varies(lessonkit.duration(seconds / ITEMS))}/task")
        per_task[how, ranks] = seconds
    slower = per_task["single", 2] > per_task["chunked", 2]
    print(f"   one item at a time costs more per task than chunked, on {RANKS} ranks: {slower}")
    print(f"6. The transport: a ping-pong of 8 bytes, {TRIPS} round trips between 2 ranks")
    shared = last_words(job(RANKS, "pingpong", str(TRIPS), "buffers"), "trip")[0]
    print(f"   over shared memory, buffers (Send/Recv): {lessonkit.varies(lessonkit.duration(shared))}")
    pickled = last_words(job(RANKS, "pingpong", str(TRIPS), "objects"), "trip")[0]
    print(f"   over shared memory, objects (send/recv, pickled): {lessonkit.varies(lessonkit.duration(pickled))}")
    tcp = last_words(job(RANKS, "pingpong", str(TRIPS), "buffers", env=OVER_TCP), "trip")[0]
    settings = " ".join(f"{k}={v}" for k, v in OVER_TCP.items())
    print(f"   over TCP ({settings}), buffers: {lessonkit.varies(lessonkit.duration(tcp))}")
    print(f"   TCP costs more than shared memory: {tcp > shared}")
    print("7. A rank that fails ends the whole job, at once")
    for how in ["raise", "kill"]:
        start = time.perf_counter()
        try:
            job(RANKS, "fail", how)
            raise SystemExit("the job went on without rank 1")
        except mpijob.JobFailed as failed:
            print(f"   rank 1 ({how}):")
            print(f"      the MPI job failed ({lessonkit.varies(failed.how)})")
            for said in failed.said:
                print("\n".join(textwrap.wrap(said, 96, initial_indent=" " * 6, subsequent_indent=" " * 7)))
        print(f"   the job ended within a second: {time.perf_counter() - start < 1}")


# ANCHOR: measure
def measure(args):
    bench = lessonkit.Bench("beyond-one-machine", args)
    items = lessonkit.pick(args, 1_000_000, 1_000)
    trips = lessonkit.pick(args, 100_000, 1_000)
    for how, name in [("chunked", "scatter + gather, chunked"), ("single", "scatter + gather, one item each")]:
        if how == "single":
            items = lessonkit.pick(args, 100_000, 1_000)  # a million rounds would take minutes
        for ranks in [1, 2]:
            rust = f"{name}, {ranks} rank{'s' if ranks > 1 else ''}"  # the Rust row it compares with
            case = f"python {rust}"

            def one_run(ranks=ranks, how=how, items=items):
                total, seconds = last_words(job(ranks, "map", how, str(items), "warm"), "sum", "seconds")
                assert total == sum(x * x for x in range(items)), "the ranks' sum is wrong"
                return seconds

            bench.run(case, one_run, ops=items, baseline=rust, timed=True)
    shared, tcp = "round trip, 2 ranks, shared memory", "round trip, 2 ranks, TCP"  # the Rust rows
    transports = [("buffers", "buffers", None, shared), ("objects", "pickled objects", None, shared),
                  ("buffers", "buffers, TCP", OVER_TCP, tcp)]
    for what, name, env, rust in transports:
        def one_run(what=what, env=env):
            return last_words(job(RANKS, "pingpong", str(trips), what, env=env), "trip")[0] * trips

        bench.run(f"python round trip, 2 ranks, {name}", one_run, ops=trips, baseline=rust, timed=True)
    bench.finish()
# ANCHOR_END: measure


# The ranks: what this file does when mpiexec starts it with --rank.

def say(line):
    """Print a line in one write: mpiexec marks each piece of a rank's output with its rank,
    and print() may write a line in two pieces."""
    os.write(1, f"{line}\n".encode())


# ANCHOR: ranks
def rank_main(what):
    from mpi4py import MPI  # MPI_Init, as mpi4py is imported

    world = MPI.COMM_WORLD
    rank, size = world.Get_rank(), world.Get_size()
    if what == ["hello"]:
        with open(f"/proc/{os.getppid()}/comm") as f:
            parent = f.read().strip()
        host = lessonkit.varies(socket.gethostname())
        say(f"rank {rank} of {size}: pid {lessonkit.varies(os.getpid())}, started by {parent}, on host {host}")
    elif what == ["pipe"]:
        if rank == 0:
            world.send("ping", dest=1)
            say(f"rank 0 sent 'ping' to rank 1, and received {world.recv(source=1)!r}")
        elif rank == 1:
            status = MPI.Status()
            message = world.recv(source=0, status=status)
            world.send("pong", dest=0)
            say(f"rank 1 received {message!r} from rank {status.Get_source()}, and answered 'pong'")
    elif what == ["scatter"]:
        items = list(range(1, 9))
        chunks = [items[r * 4:(r + 1) * 4] for r in range(size)] if rank == 0 else None
        mine = world.scatter(chunks, root=0)
        say(f"rank {rank} squared {mine}")
        gathered = world.gather([x * x for x in mine], root=0)
        if rank == 0:
            say(f"rank 0 gathered {[y for part in gathered for y in part]}, in order")
    elif what == ["reduce"]:
        counted = sum(1 for _ in range(1000))
        say(f"rank {rank} counted {counted}, in memory of its own")
        total = world.reduce(counted, op=MPI.SUM, root=0)
        if rank == 0:
            say(f"rank 0: reduce(sum) of every rank's count: {total}, no lock, none lost")
        world.Barrier()
        arrived = world.allreduce(1, op=MPI.SUM)
        say(f"rank {rank}: past the barrier, which {arrived} of {size} ranks reached")
    elif what[0] == "map":
        rank_map(world, what[1], int(what[2]), warm=what[3:] == ["warm"])
    elif what[0] == "pingpong":
        rank_ping_pong(world, int(what[1]), what[2])
    elif what[0] == "fail":
        if rank == 1:
            if what[1] == "raise":
                raise RuntimeError("rank 1 raises on purpose")
            os.kill(os.getpid(), 9)
        world.recv(source=1)
    mpijob.finish(MPI)
# ANCHOR_END: ranks


# ANCHOR: rank_map
def rank_map(world, how, items, warm):
    """The squares of range(items), chunked (one scatter, one gather) or one item per rank per
    round; buffers (numbers in place), as a Pool's chunks would be pickled otherwise."""
    from mpi4py import MPI
    import array

    rank, size = world.Get_rank(), world.Get_size()
    inputs = array.array("Q", range(items)) if rank == 0 else None
    results = array.array("Q", bytes(8 * items)) if rank == 0 else None

    def step(ins, outs, count):
        mine = array.array("Q", bytes(8 * count))
        world.Scatter(ins, mine, root=0)
        world.Gather(array.array("Q", (x * x for x in mine)), outs, root=0)

    def once():
        if how == "chunked":
            step(inputs, results, items // size)
        else:
            for r in range(items // size):
                ins = memoryview(inputs)[r * size:(r + 1) * size] if rank == 0 else None
                outs = memoryview(results)[r * size:(r + 1) * size] if rank == 0 else None
                step(ins, outs, 1)

    if warm:
        once()
    world.Barrier()
    start = MPI.Wtime()
    once()
    seconds = MPI.Wtime() - start
    if rank == 0:
        say(f"sum {sum(results)} seconds {seconds}")
# ANCHOR_END: rank_map


# ANCHOR: rank_ping_pong
def rank_ping_pong(world, trips, what):
    from mpi4py import MPI
    import array

    rank = world.Get_rank()
    if rank > 1:
        return  # only ranks 0 and 1 play
    other = 1 - rank
    message = array.array("B", bytes(8))
    start = 0.0
    for trip in range(100 + trips):
        if trip == 100:
            start = MPI.Wtime()
        if what == "buffers":
            if rank == 0:
                world.Send(message, dest=other)
                world.Recv(message, source=other)
            else:
                world.Recv(message, source=other)
                world.Send(message, dest=other)
        else:
            if rank == 0:
                world.send(b"12345678", dest=other)
                world.recv(source=other)
            else:
                world.send(world.recv(source=other), dest=other)
    if rank == 0:
        say(f"round trip {(MPI.Wtime() - start) / trips}")
# ANCHOR_END: rank_ping_pong


if __name__ == "__main__":
    if sys.argv[1:2] == ["--rank"]:
        mpijob.rank(lambda: rank_main(sys.argv[2:]))
    else:
        why = mpijob.missing()
        if why:
            print(f"{os.path.basename(sys.argv[0])}: {why}", file=sys.stderr)
            sys.exit(3)  # plumbing::python::MISSING: the lesson's --measure skips its rows
        lessonkit.run(ABOUT, demo, measure)
