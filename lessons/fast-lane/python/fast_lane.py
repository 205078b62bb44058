"""fast_lane.py: a ring buffer in shared memory between two processes, the Python twin of
lesson-fast-lane.

The same ring as the Rust kit's (a head, a tail, 8192 slots of 8 bytes; each message its
length, then its bytes) in an anonymous shared mapping made before fork, read and written
through a memoryview. Python has no futex, so its waits are the two that need none: spin,
and spin with sched_yield. Beside it, multiprocessing's Pipe, whose recv sleeps in the
kernel. This program sends messages through the ring, times a ping-pong each way, measures
the CPU an idle waiter burns, and shows that a spinning wait must look for a dead peer
itself.

    python3 lessons/fast-lane/python/fast_lane.py
    python3 lessons/fast-lane/python/fast_lane.py --measure [--json] [--runs N] [--quick]
"""

import mmap
import multiprocessing
import os
import pathlib
import signal
import struct
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[3] / "crates" / "plumbing" / "python"))
import lessonkit  # noqa: E402

ABOUT = "A ring buffer in shared memory between two processes, and the ways to wait for it."
FORK = multiprocessing.get_context("fork")  # the ring is inherited by fork
TRIPS = 2_000  # round trips in section 2
IDLE_S = 0.2  # how long section 3's waiter waits for nothing


# ANCHOR: ring
WORDS = 8192  # slots of 8 bytes, as in the Rust kit's ring
HEAD, TAIL, SLOTS = 0, 16, 32  # word offsets: head and tail 128 bytes apart


class Ring:
    """One way: one sender process, one receiver process. Made before fork.

    CPython has no atomics. What makes this work on x86-64: a memoryview store of an aligned
    8-byte word is one plain store, and x86 keeps stores in the order they were made, so the
    head, stored after the words, is seen after them. On ARM it would need fences Python
    cannot make; the Rust ring says its orderings instead of relying on the CPU's.
    """

    def __init__(self):
        self.memory = mmap.mmap(-1, (SLOTS + WORDS) * 8)  # MAP_SHARED | MAP_ANONYMOUS
        self.w = memoryview(self.memory).cast("Q")

    def send(self, message, wait):
        w, n = self.w, (len(message) + 7) // 8
        words = (len(message),) + struct.unpack(f"<{n}Q", message.ljust(n * 8, b"\0"))
        head = w[HEAD]
        for word in words:
            if head - w[TAIL] == WORDS:  # full: publish what is written, wait for room
                w[HEAD] = head
                while head - w[TAIL] == WORDS:
                    wait()
            w[SLOTS + head % WORDS] = word
            head += 1
        w[HEAD] = head  # publish: after the words

    def recv(self, wait):
        w, tail = self.w, self.w[TAIL]

        def take():
            nonlocal tail
            if tail == w[HEAD]:  # empty: give back the room read so far, wait for a word
                w[TAIL] = tail
                while tail == w[HEAD]:
                    wait()
            word = w[SLOTS + tail % WORDS]
            tail += 1
            return word

        length = take()
        n = (length + 7) // 8
        message = struct.pack(f"<{n}Q", *[take() for _ in range(n)])[:length]
        w[TAIL] = tail  # give back: after the words were read
        return message
# ANCHOR_END: ring


# ANCHOR: waits
def spin():
    pass  # look again at once


spin_yield = os.sched_yield  # give the CPU away between looks
WAITS = {"spin": spin, "spin + yield": spin_yield}
# ANCHOR_END: waits


# ANCHOR: messages
def echo_three(down, up):
    for _ in range(3):
        message = down.recv(spin)
        up.send(f"got {len(message)} bytes, summing to {sum(message)}".encode(), spin)


def messages():
    print("1. A ring in shared memory: the parent sends, a child answers")
    down, up = Ring(), Ring()
    child = FORK.Process(target=echo_three, args=(down, up), name="echo")
    child.start()
    for message in [b"ping", b"hello from the parent", bytes([7]) * 200_000]:
        down.send(message, spin)
        answer = up.recv(spin)
        print(f"   sent {len(message)} bytes; the child: {answer.decode()}")
    child.join()
    print(f"   joined the echo child: exitcode {child.exitcode}")
# ANCHOR_END: messages


# ANCHOR: ping_pong
def ring_echo(down, up, trips, wait):
    for _ in range(trips + 1):
        up.send(down.recv(wait), wait)


def ring_ping_pong(trips, wait):
    """`trips` round trips of 8 bytes through two rings; trip 0, untimed, waits for the child."""
    down, up = Ring(), Ring()
    child = FORK.Process(target=ring_echo, args=(down, up, trips, wait), name="echo")
    child.start()
    down.send(b"\0" * 8, wait)
    up.recv(wait)
    start = time.perf_counter()
    for trip in range(1, trips + 1):
        down.send(trip.to_bytes(8, "little"), wait)
        assert up.recv(wait) == trip.to_bytes(8, "little")
    elapsed = time.perf_counter() - start
    child.join()
    assert child.exitcode == 0, f"the echo child ended with exitcode {child.exitcode}"
    return elapsed
# ANCHOR_END: ping_pong


def pipe_echo(conn, trips):
    for _ in range(trips + 1):
        conn.send_bytes(conn.recv_bytes())


def pipe_ping_pong(trips):
    """The same over multiprocessing's Pipe (a socketpair): send_bytes, recv_bytes."""
    parent_end, child_end = FORK.Pipe()
    child = FORK.Process(target=pipe_echo, args=(child_end, trips), name="echo")
    child.start()
    child_end.close()
    parent_end.send_bytes(b"\0" * 8)
    parent_end.recv_bytes()
    start = time.perf_counter()
    for trip in range(1, trips + 1):
        parent_end.send_bytes(trip.to_bytes(8, "little"))
        assert parent_end.recv_bytes() == trip.to_bytes(8, "little")
    elapsed = time.perf_counter() - start
    child.join()
    parent_end.close()
    assert child.exitcode == 0, f"the echo child ended with exitcode {child.exitcode}"
    return elapsed


def ways():
    print(f"2. Ping-pong, {TRIPS} round trips of 8 bytes: a Pipe, then the ring with each wait")
    pipe = pipe_ping_pong(TRIPS)
    print(f"   Pipe:          {lessonkit.duration(pipe / TRIPS)} a round trip")
    for name, wait in WAITS.items():
        time_taken = ring_ping_pong(TRIPS, wait)
        against = lessonkit.varies(f"{time_taken / pipe:.2g}x")
        print(f"   {name + ':':<14} {lessonkit.duration(time_taken / TRIPS)} a round trip, {against} the Pipe's")


# ANCHOR: idle
def cpu_time(pid):
    """The CPU time `pid` has used so far, in seconds: /proc/PID/schedstat's first field."""
    with open(f"/proc/{pid}/schedstat") as f:
        return int(f.read().split()[0]) / 1e9


def wait_on_ring(ring, wait):
    ring.recv(wait)


def wait_on_pipe(conn):
    conn.recv_bytes()


def idle_share(idle_s, target, args, wake):
    """Start a waiter, read its CPU time over `idle_s` of nothing to receive, then wake it."""
    child = FORK.Process(target=target, args=args, name="waiter")
    child.start()
    time.sleep(0.01)  # let it start waiting
    before = cpu_time(child.pid)
    time.sleep(idle_s)
    used = cpu_time(child.pid) - before
    wake()
    child.join()
    assert child.exitcode == 0, f"the waiter ended with exitcode {child.exitcode}"
    return used / idle_s


def idle_ring(idle_s, wait):
    ring = Ring()
    return idle_share(idle_s, wait_on_ring, (ring, wait), lambda: ring.send(b"stop", spin))


def idle_pipe(idle_s):
    parent_end, child_end = FORK.Pipe()
    return idle_share(idle_s, wait_on_pipe, (child_end,), lambda: parent_end.send_bytes(b"stop"))


def idle():
    print(f"3. A waiter with nothing to receive for {int(IDLE_S * 1000)} ms: the CPU it burns")
    shares = {f"ring, {name}": idle_ring(IDLE_S, wait) for name, wait in WAITS.items()}
    shares["Pipe recv"] = idle_pipe(IDLE_S)
    for name, share in shares.items():
        verdict = "busy: it keeps a CPU" if share > 0.10 else "asleep: the CPU is free"
        print(f"   {name + ':':<19} {lessonkit.varies(f'{share:.0%}')} of a CPU; {verdict}")
# ANCHOR_END: idle


# ANCHOR: peer_dies
def die_before_answering(down):
    down.recv(spin)
    os.kill(os.getpid(), signal.SIGKILL)  # a crash, before the answer


class PeerGone(Exception):
    pass


def peer_dies():
    print("4. A peer that dies while the parent spins, waiting for its answer")
    down, up = Ring(), Ring()
    victim = FORK.Process(target=die_before_answering, args=(down,), name="victim")
    victim.start()
    looks = 0

    def spin_watching():
        # A spinning wait sleeps in no system call that the child's death could end:
        # without this look, the parent would spin forever.
        nonlocal looks
        looks += 1
        if looks % 1000 == 0 and not victim.is_alive():
            raise PeerGone(f"the victim ended with exitcode {victim.exitcode}")

    down.send(b"are you there?", spin)
    start = time.perf_counter()
    try:
        up.recv(spin_watching)
    except PeerGone as gone:
        after = lessonkit.duration(time.perf_counter() - start)
        print(f"   the wait, looking at victim.is_alive() every 1000 looks, ended after {after}:")
        print(f"   {gone}")
# ANCHOR_END: peer_dies


# ANCHOR: measure
def measure(args):
    bench = lessonkit.Bench("fast-lane", args)
    trips = lessonkit.pick(args, 20_000, 200)
    floor = "socketpair round trip (baseline)"
    bench.run("python Pipe round trip (send_bytes)", lambda: pipe_ping_pong(trips),
              ops=trips, baseline=floor, timed=True)
    for name, wait in WAITS.items():
        bench.run(f"python ring, {name}", lambda: ring_ping_pong(trips, wait),
                  ops=trips, baseline=floor, timed=True)
    idle_s = lessonkit.pick(args, 1.0, 0.05)
    for name, wait in WAITS.items():
        bench.run(f"python CPU time an idle waiter burns per second: ring, {name}",
                  lambda: idle_ring(idle_s, wait), timed=True)
    bench.run("python CPU time an idle waiter burns per second: Pipe recv",
              lambda: idle_pipe(idle_s), timed=True)
    bench.finish()
# ANCHOR_END: measure


def demo():
    messages()
    ways()
    idle()
    peer_dies()


if __name__ == "__main__":
    lessonkit.run(ABOUT, demo, measure)
