"""pipe.py: a channel between a parent and a child process, the Python twin of lesson-pipe.

multiprocessing.Pipe() gives two Connection objects: a socketpair underneath (os.pipe with
duplex=False), pickled objects framed with a length header on top. This program shows
send/recv both ways, plain bytes versus send_bytes/recv_bytes, EOFError once the other end
is closed (and the wait when it is not), a one-way pipe and a pickled object.

    python3 lessons/pipe/python/pipe.py
    python3 lessons/pipe/python/pipe.py --measure [--json] [--runs N] [--quick]
"""

import os
import pathlib
import sys
import time
from dataclasses import dataclass
from multiprocessing import Pipe, Process

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[3] / "crates" / "plumbing" / "python"))
import lessonkit  # noqa: E402

ABOUT = "A channel between a parent and a child process: multiprocessing.Pipe()."
EOF_WAIT_MS = 300  # how long section 3 waits for an EOF that cannot come


# ANCHOR: duplex
REPLIES = {"hello": "hi, parent", "hey": "hey yourself", "hru?": "fine, thanks", "END": "bye"}


def answer(conn, parent_conn):
    """The child's side: answer each message; after END, say bye and return."""
    parent_conn.close()  # the child's copy of the parent's end
    while True:
        message = conn.recv()
        conn.send(REPLIES.get(message, "what?"))
        if message == "END":
            break


def duplex():
    print("1. A duplex channel: one socketpair, both processes send and receive")
    parent_conn, child_conn = Pipe()  # duplex=True: a socketpair underneath
    child = Process(target=answer, args=(child_conn, parent_conn))
    child.start()
    child_conn.close()  # the parent's copy of the child's end
    for message in ["hello", "hey", "hru?", "END"]:
        parent_conn.send(message)
        print(f"   parent sent: {message}")
        print(f"   child replied: {parent_conn.recv()}")
    child.join()
    print(f"   joined child pid {child.pid}: exitcode {child.exitcode}")
# ANCHOR_END: duplex


# ANCHOR: stream
def stream():
    print("2. A byte stream is not a message stream")
    a, b = Pipe()
    os.write(a.fileno(), b"hello")  # plain writes on the socket underneath
    os.write(a.fileno(), b"hey")
    got = os.read(b.fileno(), 64)
    print(f'   two plain writes, "hello" and "hey"; one plain read returns {got!r}')
    a.send_bytes(b"hello")  # each message goes out as a 4-byte length, then its bytes
    a.send_bytes(b"hey")
    first, second = b.recv_bytes(), b.recv_bytes()
    print(f'   two framed sends, "hello" and "hey"; recv_bytes returns {first!r}, then {second!r}')
# ANCHOR_END: stream


# ANCHOR: eof
def say_goodbye(conn, parent_conn):
    parent_conn.close()
    conn.send("goodbye")  # exiting closes conn: the last copy of the child's end


def eof():
    print("3. EOF: recv raises EOFError once every copy of the other end is closed")
    parent_conn, child_conn = Pipe()
    child = Process(target=say_goodbye, args=(child_conn, parent_conn))
    child.start()
    child_conn.close()
    print(f"   child sent: {parent_conn.recv()}")
    try:
        parent_conn.recv()
    except EOFError:
        print("   EOF: the child closed its end")
    child.join()
    print(f"   joined child pid {child.pid}: exitcode {child.exitcode}")
# ANCHOR_END: eof


# ANCHOR: forgot
def send_done(writer):
    writer.send("done")


def forgot():
    print("   a one-way pipe whose write end the parent forgot to close:")
    reader, writer = Pipe(duplex=False)
    child = Process(target=send_done, args=(writer,))
    child.start()  # ...and no writer.close() here: the mistake
    print(f"   parent read: {reader.recv()}")
    child.join()
    print(f"   joined child pid {child.pid}: exitcode {child.exitcode}")
    if not reader.poll(EOF_WAIT_MS / 1000):  # readable means data or EOF; wait that long at most
        print(f"   no EOF within {EOF_WAIT_MS} ms: this process still holds the write end")
    writer.close()
    try:
        reader.recv()
    except EOFError:
        print("   closed the parent's write end: EOF")
# ANCHOR_END: forgot


# ANCHOR: one_way
def send_words(writer, reader):
    reader.close()  # the child only writes
    for word in ["first", "second", "third"]:
        writer.send(word)


def one_way():
    print("4. A one-way pipe: the child writes, the parent reads until EOF")
    reader, writer = Pipe(duplex=False)  # os.pipe() underneath
    child = Process(target=send_words, args=(writer, reader))
    child.start()
    writer.close()  # now the child holds the only write end
    count = 0
    while True:
        try:
            print(f"   received: {reader.recv()}")
        except EOFError:
            break
        count += 1
    print(f"   EOF after {count} messages")
    child.join()
    print(f"   joined child pid {child.pid}: exitcode {child.exitcode}")
# ANCHOR_END: one_way


# ANCHOR: typed
@dataclass
class Note:
    word: str
    number: int


def send_note(conn, parent_conn):
    parent_conn.close()
    conn.send(Note("ferris", 42))  # pickled, then framed like any message


def typed():
    print("5. Any picklable object: send pickles it, recv unpickles it")
    parent_conn, child_conn = Pipe()
    child = Process(target=send_note, args=(child_conn, parent_conn))
    child.start()
    child_conn.close()
    print(f"   received: {parent_conn.recv()}")
    try:
        parent_conn.recv()
    except EOFError:
        print("   then recv: EOFError (the child's end is closed)")
    child.join()
    print(f"   joined child pid {child.pid}: exitcode {child.exitcode}")
# ANCHOR_END: typed


SMALL = 64  # bytes in a round-trip message
MIB = 1 << 20  # bytes in a throughput message


def echo(conn, parent_conn, trips):
    parent_conn.close()
    for _ in range(trips):
        conn.send(conn.recv())


def echo_bytes(conn, parent_conn, trips):
    parent_conn.close()
    for _ in range(trips):
        conn.send_bytes(conn.recv_bytes())


def drain(conn, parent_conn, count):
    parent_conn.close()
    for _ in range(count):
        assert len(conn.recv_bytes()) == MIB
    conn.send_bytes(b"k")


# ANCHOR: measure
def with_child(target, n, parent_work):
    """Start `target` in a child over a fresh Pipe(), time parent_work(conn), join."""
    parent_conn, child_conn = Pipe()
    child = Process(target=target, args=(child_conn, parent_conn, n))
    child.start()
    child_conn.close()
    start = time.perf_counter()
    parent_work(parent_conn)
    elapsed = time.perf_counter() - start
    child.join()
    parent_conn.close()
    assert child.exitcode == 0, f"the child failed with exitcode {child.exitcode}"
    return elapsed


def measure(args):
    bench = lessonkit.Bench("pipe", args)
    trips = lessonkit.pick(args, 20_000, 200)
    message = b"x" * SMALL

    def send_recv(conn):
        for _ in range(trips):
            conn.send(message)
            conn.recv()

    def send_recv_bytes(conn):
        for _ in range(trips):
            conn.send_bytes(message)
            conn.recv_bytes()

    floor = "pipe pair raw (floor)"
    bench.run("Pipe send/recv round trip", lambda: with_child(echo, trips, send_recv),
              ops=trips, baseline=floor, timed=True)
    bench.run("Pipe send_bytes/recv_bytes round trip", lambda: with_child(echo_bytes, trips, send_recv_bytes),
              ops=trips, baseline=floor, timed=True)

    count = lessonkit.pick(args, 64, 2)
    block = b"x" * MIB

    def send_mib(conn):
        for _ in range(count):
            conn.send_bytes(block)
        conn.recv_bytes()

    bench.run(f"Pipe send_bytes {MIB >> 20} MiB", lambda: with_child(drain, count, send_mib),
              ops=count, nbytes=count * MIB, baseline="pipe raw 1 MiB (floor)", timed=True)
    bench.finish()
# ANCHOR_END: measure


def demo():
    duplex()
    stream()
    eof()
    forgot()
    one_way()
    typed()


if __name__ == "__main__":
    lessonkit.run(ABOUT, demo, measure)
