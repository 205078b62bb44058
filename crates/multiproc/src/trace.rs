//! Process timelines (`--trace FILE`): what each real process did, in the Trace Event Format
//! that Perfetto (ui.perfetto.dev) and chrome://tracing open. One track per process, under
//! its real pid and the name the kit gave it ("worker 1"); spans for what it was doing
//! (running its work, sending, receiving, waiting for a channel, a lock or a child); an
//! instant when it started and when it ended, with its exit code.
//!
//! Every process writes its own events to the one file, each event one `write` to a file
//! opened with `O_APPEND`, so events from several processes never tear or overwrite each
//! other, and whatever a process wrote before it was killed is already in the file. When
//! the lesson ends, [`finish`] (in the parent) turns the lines into one JSON document and
//! closes the spans a killed process left open, at the moment its end was seen.
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
        started(name);
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
    started("main");
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

/// Name this process's track (the kit's name for a child: "worker 1"), and say it started.
pub fn started(name: &str) {
    if on() {
        let (pid, parent) = (pid(), nix::unistd::getppid().as_raw());
        write_all(&[
            serde_json::json!({
                "ph": "M", "name": "process_name", "pid": pid, "tid": pid, "args": {"name": name, "ppid": parent},
            }),
            serde_json::json!({
                "ph": "i", "s": "p", "name": "started", "cat": "process", "ts": now(), "pid": pid, "tid": tid(),
                "args": {"detail": ""},
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
    let document = serde_json::json!({"traceEvents": events, "displayTimeUnit": "ms"});
    std::fs::write(path, document.to_string()).with_context(|| format!("write {}", path.display()))
}
