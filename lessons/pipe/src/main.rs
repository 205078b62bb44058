//! lesson-pipe: a channel between a parent and a child process, in both directions.
//!
//! Python's `multiprocessing.Pipe()` is a socketpair (a pipe with `duplex=False`) that
//! carries bytes, with messages framed on top. This lesson builds the same from the parts:
//! a socketpair shared across `fork`, a byte stream that merges writes until messages get a
//! length prefix, EOF once every copy of the other end is closed (and the hang when one is
//! not), a one-way pipe, and typed messages through ipc-channel. `--measure` times small
//! round trips and 1 MiB transfers over each, beside Python's `Connection`.

use std::io::{BufReader, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use ipc_channel::IpcError;
use ipc_channel::ipc;
use multiproc::proc::{fork_child, fork_child_closing, join_all, join_ok};
use multiproc::wire::{recv, send};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use plumbing::{Args, Bench, Case, Lesson};
use serde::{Deserialize, Serialize};

const LESSON: Lesson = Lesson {
    name: "pipe",
    about: "A channel between a parent and a child process, as Python's multiprocessing.Pipe() \
            gives you: a socketpair shared across fork, byte streams versus messages (a length \
            prefix), EOF and the rule to close the ends you do not use, a one-way pipe, and typed \
            messages with ipc-channel. --measure times small round trips and 1 MiB transfers.",
    python: concat!(env!("CARGO_MANIFEST_DIR"), "/python/pipe.py"),
    roles: &[],
};

fn main() -> std::process::ExitCode {
    LESSON.run(lesson)
}

/// The lesson, top to bottom (plumbing's `run` parses its options first, and reports a
/// failure in one line after stopping any child left running).
fn lesson(args: &Args) -> anyhow::Result<()> {
    plumbing::ipc::ready()?; // ipc-channel's first send must not be where it can panic
    if args.measure {
        return measure(args);
    }

    // ANCHOR: duplex
    println!("1. A duplex channel: one socketpair, both processes send and receive");
    // socketpair(AF_UNIX, SOCK_STREAM): two connected ends, each one readable and writable.
    // ANCHOR: move_end
    let (mut parent_end, child_end) = UnixStream::pair().context("create a socketpair")?;
    // Close unused ends right after fork, in both processes: a reader sees EOF only once
    // every copy of the other end is closed, its own process's copy included. In the child,
    // fork_child_closing closes its copy of parent_end before the closure runs.
    let child = fork_child_closing([&mut parent_end], move || answer(child_end))?;
    // ANCHOR_END: move_end
    // In the parent, the `move` closure was dropped when fork_child_closing returned, and
    // child_end with it: the parent's copy of the child's end is closed.
    for message in ["hello", "hey", "hru?", "END"] {
        send(&mut parent_end, message.as_bytes()).context("send a message to the child")?;
        println!("   parent sent: {message}");
        let reply = recv(&mut parent_end).context("receive the child's reply")?;
        let reply = reply.context("the child closed its end before replying")?;
        println!("   child replied: {}", String::from_utf8_lossy(&reply));
    }
    println!("   joined child pid {child}: exitcode {}", join_ok(child)?);
    // ANCHOR_END: duplex

    // ANCHOR: stream
    println!("2. A byte stream is not a message stream");
    let (mut a, mut b) = UnixStream::pair().context("create a socketpair")?;
    a.write_all(b"hello").context("write hello")?;
    a.write_all(b"hey").context("write hey")?;
    let mut buffer = [0u8; 64];
    let n = b.read(&mut buffer).context("read what was written")?;
    let got = String::from_utf8_lossy(&buffer[..n]);
    println!("   two plain writes, \"hello\" and \"hey\"; one plain read returns {got:?}");
    // The same two messages, each sent as its length and then its bytes.
    send(&mut a, b"hello").context("send hello")?;
    send(&mut a, b"hey").context("send hey")?;
    let first = recv(&mut b).context("receive a message")?.context("the stream ended")?;
    let second = recv(&mut b).context("receive a message")?.context("the stream ended")?;
    let (first, second) = (String::from_utf8_lossy(&first), String::from_utf8_lossy(&second));
    println!("   two framed sends, \"hello\" and \"hey\"; recv returns {first:?}, then {second:?}");
    // ANCHOR_END: stream
    drop((a, b));

    // ANCHOR: eof
    println!("3. EOF: recv returns None once every copy of the other end is closed");
    let (mut parent_end, child_end) = UnixStream::pair().context("create a socketpair")?;
    let child = fork_child_closing([&mut parent_end], move || {
        send(&mut &child_end, b"goodbye").context("send goodbye")?;
        Ok(()) // exiting closes child_end: the last copy of it
    })?;
    let message = recv(&mut parent_end).context("receive")?.context("no goodbye came")?;
    println!("   child sent: {}", String::from_utf8_lossy(&message));
    match recv(&mut parent_end).context("receive")? {
        None => println!("   EOF: the child closed its end"),
        Some(_) => bail!("the child sent a second message"),
    }
    println!("   joined child pid {child}: exitcode {}", join_ok(child)?);
    // ANCHOR_END: eof

    // ANCHOR: forgot
    println!("   a one-way pipe whose write end the parent forgot to close:");
    let (mut reader, writer) = std::io::pipe().context("create a pipe")?;
    // This closure only borrows `writer`: the parent's copy stays open. That is the mistake.
    let child = fork_child(|| send(&mut &writer, b"done").context("send done"))?;
    let message = recv(&mut reader).context("receive")?.context("no message came")?;
    println!("   parent read: {}", String::from_utf8_lossy(&message));
    println!("   joined child pid {child}: exitcode {}", join_ok(child)?);
    // The child is gone, and its write end with it. Wait for EOF, but only so long.
    if readable_within(&reader, PATIENCE_MS)? {
        bail!("EOF came although the parent holds the write end");
    }
    println!("   no EOF within {PATIENCE_MS} ms: this process still holds the write end");
    drop(writer);
    match recv(&mut reader).context("receive")? {
        None => println!("   dropped the parent's write end: EOF"),
        Some(_) => bail!("a message came after the child exited"),
    }
    // ANCHOR_END: forgot

    // ANCHOR: one_way
    println!("4. A one-way pipe: the child writes, the parent reads until EOF");
    // pipe(): a read end and a write end, what Pipe(duplex=False) gives you.
    let (mut reader, writer) = std::io::pipe().context("create a pipe")?;
    // The child only writes: it closes its copy of the read end. Without one, a write fails
    // (EPIPE) if the parent goes away, instead of blocking once the pipe is full.
    let child = fork_child_closing([&mut reader], move || {
        let mut writer = writer;
        for word in ["first", "second", "third"] {
            send(&mut writer, word.as_bytes()).context("send a word")?;
        }
        Ok(())
    })?;
    // `writer` went away with the closure: the child now holds the only write end.
    let mut count = 0;
    while let Some(message) = recv(&mut reader).context("receive a word")? {
        println!("   received: {}", String::from_utf8_lossy(&message));
        count += 1;
    }
    println!("   EOF after {count} messages");
    println!("   joined child pid {child}: exitcode {}", join_ok(child)?);
    // ANCHOR_END: one_way

    // ANCHOR: typed
    println!("5. Typed messages with ipc-channel: a struct, serialised for you");
    // A socketpair inside, made before fork like the others. No thread runs behind it.
    let (tx, rx) = ipc::channel::<Note>().context("create an ipc-channel")?;
    let child = fork_child(move || {
        // ipc-channel keeps its descriptors to itself, so the child cannot close its
        // copy of `rx`. Harmless: only a copy of the *sender* could keep EOF away.
        tx.send(Note { word: "ferris".to_string(), number: 42 }).context("send a note")?;
        Ok(())
    })?;
    let note = rx.recv().context("receive a note")?;
    println!("   received: {note:?}");
    match rx.recv() {
        Err(IpcError::Disconnected) => println!("   then recv: Disconnected (the child's sender is closed)"),
        other => bail!("expected Disconnected, got {other:?}"),
    }
    println!("   joined child pid {child}: exitcode {}", join_ok(child)?);
    // ANCHOR_END: typed
    Ok(())
}

// ANCHOR: answer
/// The child's side of section 1: answer each message; after END, say bye and return.
fn answer(mut end: UnixStream) -> anyhow::Result<()> {
    while let Some(message) = recv(&mut end).context("receive a message")? {
        let reply = match &message[..] {
            b"hello" => "hi, parent",
            b"hey" => "hey yourself",
            b"hru?" => "fine, thanks",
            b"END" => "bye",
            _ => "what?",
        };
        send(&mut end, reply.as_bytes()).context("send a reply")?;
        if message == b"END" {
            break;
        }
    }
    Ok(())
}
// ANCHOR_END: answer

// ANCHOR: note
/// What section 5 sends: any type serde can serialise.
#[derive(Debug, Serialize, Deserialize)]
struct Note {
    word: String,
    number: u32,
}
// ANCHOR_END: note

// ANCHOR: readable
/// Whether `fd` becomes readable (data, or EOF) within `ms` milliseconds.
fn readable_within(fd: impl AsFd, ms: u16) -> anyhow::Result<bool> {
    let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
    let ready = poll(&mut fds, PollTimeout::from(ms)).context("poll the read end")?;
    Ok(ready > 0)
}
// ANCHOR_END: readable

/// How long section 3 waits for an EOF that cannot come.
const PATIENCE_MS: u16 = 300;

/// Bytes in a round-trip message.
const SMALL: usize = 64;
/// Bytes in a throughput message.
const MIB: usize = 1 << 20;

// ANCHOR: measure
fn measure(args: &Args) -> anyhow::Result<()> {
    let mut bench = Bench::new(&LESSON, args, "parent <-> child messages");

    // A 64-byte message to an echo child and back, `trips` times per run.
    let trips = args.pick(20_000, 200);
    let floor = "pipe pair raw (floor)";
    let case = |name: &str| Case::new(name).ops(trips as u64);
    bench.run_timed(case(floor), || pipe_pair_raw(trips))?;
    bench.run_timed(case("socketpair raw").vs(floor), || socketpair_raw(trips))?;
    bench.run_timed(case("socketpair framed").vs(floor), || socketpair_framed(trips))?;
    bench.run_timed(case("ipc-channel typed").vs(floor), || ipc_typed(trips))?;
    bench.run_timed(case("ipc-channel bytes").vs(floor), || ipc_bytes(trips))?;

    // `count` messages of 1 MiB from parent to child, then one small acknowledgement back.
    let count = args.pick(64, 2);
    let floor = "pipe raw 1 MiB (floor)";
    let case = |name: &str| Case::new(name).ops(count as u64).bytes((count * MIB) as u64);
    bench.run_timed(case(floor), || pipe_raw_mib(count))?;
    bench.run_timed(case("socketpair framed 1 MiB").vs(floor), || socketpair_framed_mib(count))?;
    bench.run_timed(case("ipc-channel typed 1 MiB").vs(floor), || ipc_typed_mib(count))?;
    bench.run_timed(case("ipc-channel bytes 1 MiB").vs(floor), || ipc_bytes_mib(count))?;

    bench.python()?;
    bench.finish();
    Ok(())
}
// ANCHOR_END: measure

// ANCHOR: with_child
/// Fork a child running `child_work`, time `parent_work`, then join the child.
///
/// Each child knows how many messages will come, so it needs no EOF; the copies of the
/// parent's ends that it inherited close when it exits. The parent's copies of the child's
/// ends go with the `move` closures that own them, when `fork_child` returns.
fn timed_with_child(
    child_work: impl FnOnce() -> anyhow::Result<()>,
    parent_work: impl FnOnce() -> anyhow::Result<()>,
) -> anyhow::Result<Duration> {
    let child = fork_child(child_work)?;
    let start = Instant::now();
    parent_work()?;
    let elapsed = start.elapsed();
    join_all(&[child])?; // it must have succeeded, or this is an error naming it
    Ok(elapsed)
}
// ANCHOR_END: with_child

/// The child's side of the raw cases: read a fixed-size message, write it back.
fn echo_raw(trips: usize, mut input: impl Read, mut output: impl Write) -> anyhow::Result<()> {
    let mut message = [0u8; SMALL];
    for _ in 0..trips {
        input.read_exact(&mut message).context("read a message")?;
        output.write_all(&message).context("write it back")?;
    }
    Ok(())
}

// ANCHOR: floor
fn pipe_pair_raw(trips: usize) -> anyhow::Result<Duration> {
    // Two pipes, one each way: the raw mechanism, with no framing and no copies of ours.
    let (down_reader, mut down_writer) = std::io::pipe().context("create a pipe")?;
    let (mut up_reader, up_writer) = std::io::pipe().context("create a pipe")?;
    timed_with_child(
        move || echo_raw(trips, down_reader, up_writer),
        || {
            let mut message = [b'x'; SMALL];
            for _ in 0..trips {
                down_writer.write_all(&message).context("write a message")?;
                up_reader.read_exact(&mut message).context("read the echo")?;
            }
            Ok(())
        },
    )
}
// ANCHOR_END: floor

fn socketpair_raw(trips: usize) -> anyhow::Result<Duration> {
    let (mut parent_end, child_end) = UnixStream::pair().context("create a socketpair")?;
    timed_with_child(
        move || echo_raw(trips, &child_end, &child_end),
        || {
            let mut message = [b'x'; SMALL];
            for _ in 0..trips {
                parent_end.write_all(&message).context("write a message")?;
                parent_end.read_exact(&mut message).context("read the echo")?;
            }
            Ok(())
        },
    )
}

// ANCHOR: framed
fn socketpair_framed(trips: usize) -> anyhow::Result<Duration> {
    let (parent_end, child_end) = UnixStream::pair().context("create a socketpair")?;
    // A BufReader turns recv's two reads (length, then bytes) into one system call.
    let (mut reader, mut writer) = (BufReader::new(&parent_end), &parent_end);
    timed_with_child(
        move || {
            let (mut reader, mut writer) = (BufReader::new(&child_end), &child_end);
            for _ in 0..trips {
                let message = recv(&mut reader).context("receive")?.context("the parent left")?;
                send(&mut writer, &message).context("send it back")?;
            }
            Ok(())
        },
        || {
            let message = [b'x'; SMALL];
            for _ in 0..trips {
                send(&mut writer, &message).context("send a message")?;
                let echo = recv(&mut reader).context("receive the echo")?.context("the child left")?;
                ensure!(echo.len() == SMALL, "the echo has {} bytes", echo.len());
            }
            Ok(())
        },
    )
}
// ANCHOR_END: framed

// ANCHOR: ipc
fn ipc_typed(trips: usize) -> anyhow::Result<Duration> {
    let (down_tx, down_rx) = ipc::channel::<Vec<u8>>().context("create an ipc-channel")?;
    let (up_tx, up_rx) = ipc::channel::<Vec<u8>>().context("create an ipc-channel")?;
    timed_with_child(
        move || {
            for _ in 0..trips {
                up_tx.send(down_rx.recv().context("receive")?).context("send it back")?;
            }
            Ok(())
        },
        || {
            let mut message = vec![b'x'; SMALL];
            for _ in 0..trips {
                down_tx.send(message).context("send a message")?; // a typed send takes the value
                message = up_rx.recv().context("receive the echo")?;
            }
            Ok(())
        },
    )
}

fn ipc_bytes(trips: usize) -> anyhow::Result<Duration> {
    let (down_tx, down_rx) = ipc::bytes_channel().context("create an ipc-channel")?;
    let (up_tx, up_rx) = ipc::bytes_channel().context("create an ipc-channel")?;
    timed_with_child(
        move || {
            for _ in 0..trips {
                up_tx.send(&down_rx.recv().context("receive")?).context("send it back")?;
            }
            Ok(())
        },
        || {
            let mut message = vec![b'x'; SMALL];
            for _ in 0..trips {
                down_tx.send(&message).context("send a message")?;
                message = up_rx.recv().context("receive the echo")?;
            }
            Ok(())
        },
    )
}
// ANCHOR_END: ipc

fn pipe_raw_mib(count: usize) -> anyhow::Result<Duration> {
    let (down_reader, mut down_writer) = std::io::pipe().context("create a pipe")?;
    let (mut up_reader, up_writer) = std::io::pipe().context("create a pipe")?;
    timed_with_child(
        move || {
            let (mut down_reader, mut up_writer) = (down_reader, up_writer);
            let mut message = vec![0u8; MIB];
            for _ in 0..count {
                down_reader.read_exact(&mut message).context("read 1 MiB")?;
            }
            up_writer.write_all(b"k").context("acknowledge")?;
            Ok(())
        },
        || {
            let message = vec![b'x'; MIB];
            for _ in 0..count {
                down_writer.write_all(&message).context("write 1 MiB")?;
            }
            up_reader.read_exact(&mut [0u8; 1]).context("read the acknowledgement")?;
            Ok(())
        },
    )
}

fn socketpair_framed_mib(count: usize) -> anyhow::Result<Duration> {
    let (parent_end, child_end) = UnixStream::pair().context("create a socketpair")?;
    let (mut reader, mut writer) = (BufReader::new(&parent_end), &parent_end);
    timed_with_child(
        move || {
            let (mut reader, mut writer) = (BufReader::new(&child_end), &child_end);
            for _ in 0..count {
                let message = recv(&mut reader).context("receive")?.context("the parent left")?;
                ensure!(message.len() == MIB, "a message of {} bytes", message.len());
            }
            send(&mut writer, b"k").context("acknowledge")?;
            Ok(())
        },
        || {
            let message = vec![b'x'; MIB];
            for _ in 0..count {
                send(&mut writer, &message).context("send 1 MiB")?;
            }
            recv(&mut reader).context("receive the acknowledgement")?.context("the child left")?;
            Ok(())
        },
    )
}

fn ipc_typed_mib(count: usize) -> anyhow::Result<Duration> {
    let (down_tx, down_rx) = ipc::channel::<Vec<u8>>().context("create an ipc-channel")?;
    let (up_tx, up_rx) = ipc::channel::<()>().context("create an ipc-channel")?;
    timed_with_child(
        move || {
            for _ in 0..count {
                let message = down_rx.recv().context("receive")?;
                ensure!(message.len() == MIB, "a message of {} bytes", message.len());
            }
            up_tx.send(()).context("acknowledge")?;
            Ok(())
        },
        || {
            let message = vec![b'x'; MIB];
            for _ in 0..count {
                down_tx.send(message.clone()).context("send 1 MiB")?;
            }
            up_rx.recv().context("receive the acknowledgement")?;
            Ok(())
        },
    )
}

fn ipc_bytes_mib(count: usize) -> anyhow::Result<Duration> {
    let (down_tx, down_rx) = ipc::bytes_channel().context("create an ipc-channel")?;
    let (up_tx, up_rx) = ipc::bytes_channel().context("create an ipc-channel")?;
    timed_with_child(
        move || {
            for _ in 0..count {
                let message = down_rx.recv().context("receive")?;
                ensure!(message.len() == MIB, "a message of {} bytes", message.len());
            }
            up_tx.send(b"k").context("acknowledge")?;
            Ok(())
        },
        || {
            let message = vec![b'x'; MIB];
            for _ in 0..count {
                down_tx.send(&message).context("send 1 MiB")?;
            }
            up_rx.recv().context("receive the acknowledgement")?;
            Ok(())
        },
    )
}
