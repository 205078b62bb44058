//! Process timelines (`--trace FILE`): what each real process did, in the Trace Event Format
//! that Perfetto (ui.perfetto.dev) and chrome://tracing open. One track per process, under
//! its real pid and the name the kit gave it ("worker 1"); spans for what it was doing
//! (running its work, sending, receiving, waiting for a channel, a lock or a child); an
//! instant when it started (with the moment its parent asked for it, so that the cost of a
//! fork or an exec shows) and when it ended, with its exit code; and an arrow (a flow) from
//! each message's send to its receive.
//!
//! Every process writes its own events to the one file, each event one `write` to a file
//! opened with `O_APPEND`, so events from several processes never tear or overwrite each
//! other, and whatever a process wrote before it was killed is already in the file. When
//! the lesson ends, [`finish`] (in the parent) turns the lines into one JSON document,
//! closes the spans a killed process left open, at the moment its end was seen, and draws
//! the arrows: a send and a receive carry a fingerprint of the message (the wire format is
//! not changed), and the k-th send of a fingerprint pairs with its k-th receive. (Messages
//! with the same bytes on different channels, a pool's empty sentinels say, may pair
//! crosswise: each arrow still goes from a send of those bytes to a receive of them.)
//!
//! Off (the default), each trace point costs one look at a `OnceLock`: nothing is formatted
//! or written.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use anyhow::Context;

/// The trace file, when `--trace` asked for one (inherited by every forked child).
static TRACE: OnceLock<(File, PathBuf)> = OnceLock::new();
/// The process that started the trace: the one that ends it ([`finish`]).
static OWNER: OnceLock<i32> = OnceLock::new();

/// How a child started by exec (`proc::spawn_self`) learns where the trace goes.
pub const VARIABLE: &str = "FORKLORE_TRACE";
/// And when its parent asked for it (µs on the monotonic clock).
const ASKED: &str = "FORKLORE_TRACE_ASKED";

/// In the parent, as a child is about to be forked: when it was asked for (the child's
/// "started" says how long its start took). `None` when not tracing.
pub fn clock() -> Option<f64> {
    on().then(now)
}

/// For a child started by exec: if this process traces, tell the child where the trace goes
/// and when it was asked for, so that its events join this run's timeline.
pub fn pass_to(command: &mut std::process::Command) {
    if let Some(path) = path() {
        command.env(VARIABLE, path).env(ASKED, now().to_string());
    }
}

/// In a child started by exec: if the parent traces (`FORKLORE_TRACE` names the file), add
/// this process's events to the same file, as `name`.
pub fn join_from_env(name: &str) -> anyhow::Result<()> {
    let Some(path) = std::env::var_os(VARIABLE) else { return Ok(()) };
    let path = PathBuf::from(path);
    let file = OpenOptions::new()
        .append(true)
        .open(&path)
        .with_context(|| format!("open the trace file {}", path.display()))?;
    if TRACE.set((file, path)).is_ok() {
        let asked = std::env::var(ASKED).ok().and_then(|t| t.parse().ok());
        started(name, asked);
    }
    Ok(())
}

/// The file a trace goes to, if one is being written.
pub fn path() -> Option<&'static Path> {
    TRACE.get().map(|(_, path)| path.as_path())
}

/// Start tracing into `path` (made anew), for this process and every child it forks.
pub fn start(path: &Path) -> anyhow::Result<()> {
    let file = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .open(path)
        .with_context(|| format!("create the trace file {}", path.display()))?;
    drop(file);
    let file = OpenOptions::new()
        .append(true)
        .open(path)
        .with_context(|| format!("open the trace file {}", path.display()))?;
    TRACE.set((file, path.to_path_buf())).map_err(|_| anyhow::anyhow!("tracing had started already"))?;
    let _ = OWNER.set(pid());
    started("main", None);
    Ok(())
}

/// Whether a trace is being written.
pub fn on() -> bool {
    TRACE.get().is_some()
}

/// Microseconds on the monotonic clock, which every process of the machine shares (a child
/// started by exec too), so every process's times line up.
fn now() -> f64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .map_or(0.0, |t| t.tv_sec() as f64 * 1e6 + t.tv_nsec() as f64 / 1e3)
}

fn pid() -> i32 {
    nix::unistd::getpid().as_raw()
}

/// The thread: a pool's parent sends from a feeder thread while its main thread receives.
fn tid() -> i32 {
    nix::unistd::gettid().as_raw()
}

/// One event, one line, one `write`.
fn write(event: serde_json::Value) {
    write_all(&[event]);
}

/// Events, a line each, in one `write`: a process killed meanwhile wrote all or none.
fn write_all(events: &[serde_json::Value]) {
    if let Some((file, _)) = TRACE.get() {
        let mut lines = String::new();
        for event in events {
            lines.push_str(&event.to_string());
            lines.push('\n');
        }
        let _ = (&*file).write_all(lines.as_bytes());
    }
}

/// Name this process's track (the kit's name for a child: "worker 1"), and say it started;
/// `asked`: when its parent asked for it ([`clock`]), if it has a parent that traces.
pub fn started(name: &str, asked: Option<f64>) {
    if on() {
        let (pid, parent, now) = (pid(), nix::unistd::getppid().as_raw(), now());
        let mut args = serde_json::json!({"detail": ""});
        if let Some(asked) = asked {
            args["asked"] = asked.into();
            args["detail"] = format!("started {:.0} µs after its parent asked", now - asked).into();
        }
        write_all(&[
            serde_json::json!({
                "ph": "M", "name": "process_name", "pid": pid, "tid": pid, "args": {"name": name, "ppid": parent},
            }),
            serde_json::json!({
                "ph": "i", "s": "p", "name": "started", "cat": "process", "ts": now, "pid": pid, "tid": tid(),
                "args": args,
            }),
        ]);
    }
}

/// A moment in this process: "started", "exited" (with its code in `detail`).
pub fn instant(name: &str, detail: &str) {
    if on() {
        write(serde_json::json!({
            "ph": "i", "s": "p", "name": name, "cat": "process", "ts": now(), "pid": pid(), "tid": tid(),
            "args": {"detail": detail},
        }));
    }
}

/// A span of this process's time, from now until the value is dropped.
#[must_use = "a span ends when this value is dropped"]
pub struct Span(bool);

/// A fingerprint of a message, the same in the process that sends it and the one that
/// receives it: its length and up to 256 of its bytes, spread over it (cheap for a big one).
fn fingerprint(message: &[u8]) -> String {
    let step = (message.len() / 256).max(1);
    let bytes = (message.len() as u64).to_le_bytes().into_iter().chain(message.iter().step_by(step).copied());
    let hash = bytes.fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
    format!("{hash:016x}")
}

/// Begin a span sending `message`: its arrow starts here.
pub fn sending(message: &[u8]) -> Span {
    if !on() {
        return Span(false);
    }
    write(serde_json::json!({
        "ph": "B", "name": format!("send {} B", message.len()), "cat": "send", "ts": now(), "pid": pid(), "tid": tid(),
        "args": {"message": fingerprint(message)},
    }));
    Span(true)
}

impl Span {
    /// End a receiving span with the message that came: its arrow ends here.
    pub fn received(mut self, message: &[u8]) {
        if std::mem::take(&mut self.0) {
            write(serde_json::json!({
                "ph": "E", "ts": now(), "pid": pid(), "tid": tid(), "args": {"message": fingerprint(message)},
            }));
        }
    }
}

/// Begin a span: `cat` is what kind of thing the process does (`run`, `send`, `recv`, `wait`),
/// `name` says what, made only when tracing is on.
pub fn span(cat: &'static str, name: impl FnOnce() -> String) -> Span {
    if !on() {
        return Span(false);
    }
    write(
        serde_json::json!({"ph": "B", "name": name(), "cat": cat, "ts": now(), "pid": pid(), "tid": tid()}),
    );
    Span(true)
}

impl Drop for Span {
    fn drop(&mut self) {
        if self.0 {
            write(serde_json::json!({"ph": "E", "ts": now(), "pid": pid(), "tid": tid()}));
        }
    }
}

/// At the end of a process that traces ("exited"); then, in the parent that started the
/// trace, once every child has ended: make the file one JSON document
/// (`{"traceEvents": [...]}`), ending every span a killed process left open when that
/// process's end was last seen (its last event, or now).
pub fn finish() -> anyhow::Result<()> {
    let Some((_, path)) = TRACE.get() else { return Ok(()) };
    instant("exited", "");
    if OWNER.get() != Some(&pid()) {
        return Ok(()); // a child started by exec: its parent ends the trace
    }
    let text = std::fs::read_to_string(path).with_context(|| format!("read {}", path.display()))?;
    let mut events: Vec<serde_json::Value> =
        text.lines().filter(|l| !l.trim().is_empty()).filter_map(|l| serde_json::from_str(l).ok()).collect();
    let mut open: std::collections::BTreeMap<(i64, i64), (usize, f64)> = Default::default();
    for event in &events {
        let (Some(pid), ts) = (event["pid"].as_i64(), event["ts"].as_f64()) else { continue };
        let tid = event["tid"].as_i64().unwrap_or(pid);
        let entry = open.entry((pid, tid)).or_insert((0, 0.0));
        if let Some(ts) = ts {
            entry.1 = entry.1.max(ts);
        }
        match event["ph"].as_str() {
            Some("B") => entry.0 += 1,
            Some("E") => entry.0 = entry.0.saturating_sub(1),
            _ => {}
        }
    }
    for ((pid, tid), (unended, last)) in open {
        for _ in 0..unended {
            events.push(serde_json::json!({"ph": "E", "ts": last, "pid": pid, "tid": tid, "args": {"ended": "killed"}}));
        }
    }
    let flows = flows(&events);
    events.extend(flows);
    let document = serde_json::json!({"traceEvents": events, "displayTimeUnit": "ms"});
    std::fs::write(path, document.to_string()).with_context(|| format!("write {}", path.display()))
}

/// The arrows: for each fingerprint, its sends and its receives in time order, the k-th
/// send to the k-th receive (a message never received, its sender killed say, has none).
/// Each is a flow start where the sending span begins (so it is inside it even when the
/// sender was killed mid-send, and its span ended where it began) and a flow end just inside
/// the receiving one (`"bp": "e"`: bound to the span around it; a receive that got its
/// message always ended normally).
fn flows(events: &[serde_json::Value]) -> Vec<serde_json::Value> {
    type Ends = std::collections::BTreeMap<String, Vec<(f64, i64, i64)>>;
    let (mut sent, mut got) = (Ends::new(), Ends::new());
    for event in events {
        let (Some(message), Some(ts), Some(pid)) =
            (event["args"]["message"].as_str(), event["ts"].as_f64(), event["pid"].as_i64())
        else {
            continue;
        };
        let end = (ts, pid, event["tid"].as_i64().unwrap_or(pid));
        match event["ph"].as_str() {
            Some("B") => sent.entry(message.to_string()).or_default().push(end),
            Some("E") => got.entry(message.to_string()).or_default().push(end),
            _ => {}
        }
    }
    let mut flows = Vec::new();
    for (message, mut sends) in sent {
        let Some(receives) = got.get_mut(&message) else { continue };
        sends.sort_by(|a, b| a.0.total_cmp(&b.0));
        receives.sort_by(|a, b| a.0.total_cmp(&b.0));
        for (&(from, spid, stid), &(to, rpid, rtid)) in sends.iter().zip(receives.iter()) {
            let id = flows.len() / 2;
            flows.push(serde_json::json!({
                "ph": "s", "id": id, "cat": "message", "name": "message", "ts": from, "pid": spid, "tid": stid,
            }));
            flows.push(serde_json::json!({
                "ph": "f", "bp": "e", "id": id, "cat": "message", "name": "message", "ts": to - 0.001, "pid": rpid, "tid": rtid,
            }));
        }
    }
    flows
}
