//! Process timelines for the book, from real runs (`cargo xtask timelines`): a lesson run
//! with `--trace`, its events reduced to what a picture can show (per thread of each
//! process, its spans by kind, neighbours of one kind closer than a pixel merged), kept as
//! `book/src/timelines/<lesson>.json` with the stamp of the run, and drawn as an SVG from that
//! file, so a test can tell a picture that no longer matches its record.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

/// Width of the drawing, and of the column of track names.
const WIDTH: f64 = 960.0;
const NAMES: f64 = 190.0;
const ROW: f64 = 24.0;

/// What the picture shows of one run, or of one part of it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Timeline {
    /// Where and when, and the command that ran it.
    pub stamp: String,
    /// How long the part shown took, in microseconds.
    pub duration_us: f64,
    pub tracks: Vec<Track>,
    /// Messages from one track to another in the part shown (every one, before merging).
    pub messages: usize,
    /// The arrows drawn: (from track, at µs, to track, at µs); arrows between the same two
    /// tracks less than a pixel apart at both ends are drawn once.
    pub flows: Vec<Flow>,
}

/// A span in the picture: start and end in µs from the part's start, and its kind: `run`,
/// `start` (from the parent's fork or exec to the child's first step), `send`, `recv`, `wait`.
pub type Span = (f64, f64, String);

/// A message: from a track at a time to a track at a time.
pub type Flow = (usize, f64, usize, f64);

/// One thread of one process.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Track {
    pub name: String,
    pub pid: i64,
    pub tid: i64,
    pub spans: Vec<Span>,
}

/// Which part of a run a picture shows.
#[derive(Clone, Copy, Debug)]
pub enum Window {
    /// The whole run.
    Whole,
    /// The first span, in any process, with this name (a pool's `map`, say).
    Span(&'static str),
    /// The lives, from the parent's asking to the exit, of the `nth` (from 1) processes with
    /// each of these names.
    Lives(&'static [&'static str], usize),
    /// The first process with a span of this name, and its siblings alive beside it.
    RoundOf(&'static str),
    /// A close-up: from the start of the first span of this name, so many microseconds.
    CloseUp(&'static str, f64),
}

/// Each process of a trace: its name, parent, when it was asked for (if its parent traced
/// that), when it started and exited.
struct Life {
    name: String,
    parent: i64,
    asked: Option<f64>,
    started: Option<f64>,
    exited: Option<f64>,
}

fn lives(events: &[serde_json::Value]) -> BTreeMap<i64, Life> {
    let mut lives = BTreeMap::new();
    for e in events.iter().filter(|e| e["ph"] == "M") {
        if let (Some(pid), Some(name)) = (e["pid"].as_i64(), e["args"]["name"].as_str()) {
            let parent = e["args"]["ppid"].as_i64().unwrap_or(0);
            lives.insert(pid, Life { name: name.into(), parent, asked: None, started: None, exited: None });
        }
    }
    for e in events.iter().filter(|e| e["ph"] == "i") {
        let (Some(pid), Some(ts)) = (e["pid"].as_i64(), e["ts"].as_f64()) else { continue };
        let Some(life) = lives.get_mut(&pid) else { continue };
        match e["name"].as_str() {
            Some("started") if life.started.is_none() => {
                life.started = Some(ts);
                life.asked = e["args"]["asked"].as_f64();
            }
            Some("exited") => life.exited = Some(ts),
            _ => {}
        }
    }
    lives
}

impl Life {
    fn from(&self) -> Option<f64> {
        self.asked.or(self.started)
    }
}

/// The times, on the trace's clock, of the part `window` names.
pub fn window(trace: &serde_json::Value, window: Window) -> Result<(f64, f64), String> {
    let events = trace["traceEvents"].as_array().ok_or("not a trace: no traceEvents")?;
    let lives = lives(events);
    let times = || events.iter().filter_map(|e| e["ts"].as_f64());
    // The processes whose lives make the part: the messages they sent end inside it too.
    let mut makers: Vec<i64> = Vec::new();
    let (from, mut to) = match window {
        Window::Whole => (times().fold(f64::INFINITY, f64::min), times().fold(0.0, f64::max)),
        Window::Span(name) => {
            let begin = events
                .iter()
                .position(|e| e["ph"] == "B" && e["name"] == name)
                .ok_or(format!("no span named {name:?} in the trace"))?;
            let key = |e: &serde_json::Value| (e["pid"].as_i64(), e["tid"].as_i64());
            let (at, mut depth) = (key(&events[begin]), 0);
            let end = events[begin + 1..]
                .iter()
                .filter(|e| key(e) == at)
                .find(|e| {
                    match e["ph"].as_str() {
                        Some("B") => depth += 1,
                        Some("E") if depth == 0 => return true,
                        Some("E") => depth -= 1,
                        _ => {}
                    }
                    false
                })
                .ok_or(format!("the span {name:?} never ends"))?;
            (events[begin]["ts"].as_f64().unwrap_or(0.0), end["ts"].as_f64().unwrap_or(0.0))
        }
        Window::Lives(names, nth) => {
            let mut from_to = (f64::INFINITY, 0.0_f64);
            for name in names {
                // The nth to start (pids may wrap around: not the nth pid).
                let mut named: Vec<(&i64, &Life)> = lives.iter().filter(|(_, l)| l.name == *name).collect();
                named.sort_by(|a, b| {
                    a.1.from().unwrap_or(f64::INFINITY).total_cmp(&b.1.from().unwrap_or(f64::INFINITY))
                });
                let &(&pid, life) = named
                    .get(nth.saturating_sub(1))
                    .ok_or(format!("no process number {nth} named {name:?} in the trace"))?;
                let (Some(from), Some(to)) = (life.from(), life.exited) else {
                    return Err(format!("{name:?} has no start or exit in the trace"));
                };
                from_to = (from_to.0.min(from), from_to.1.max(to));
                makers.push(pid);
            }
            from_to
        }
        Window::RoundOf(name) => {
            let pid = events
                .iter()
                .find(|e| e["ph"] == "B" && e["name"] == name)
                .and_then(|e| e["pid"].as_i64())
                .ok_or(format!("no span named {name:?} in the trace"))?;
            let life = &lives[&pid];
            let (Some(from), Some(to)) = (life.from(), life.exited) else {
                return Err(format!("the process with {name:?} has no start or exit"));
            };
            let round: Vec<(&i64, &Life)> = lives
                .iter()
                .filter(|(_, l)| {
                    l.parent == life.parent
                        && l.from().is_some_and(|f| f < to)
                        && l.exited.is_some_and(|e| e > from)
                })
                .collect();
            makers.extend(round.iter().map(|(pid, _)| **pid));
            round.iter().fold((from, to), |(a, b), (_, l)| {
                (a.min(l.from().unwrap_or(a)), b.max(l.exited.unwrap_or(b)))
            })
        }
        Window::CloseUp(name, us) => {
            let from = events
                .iter()
                .find(|e| e["ph"] == "B" && e["name"] == name)
                .and_then(|e| e["ts"].as_f64())
                .ok_or(format!("no span named {name:?} in the trace"))?;
            (from, from + us)
        }
    };
    let sent: std::collections::BTreeSet<i64> = events
        .iter()
        .filter(|e| e["ph"] == "s" && e["pid"].as_i64().is_some_and(|pid| makers.contains(&pid)))
        .filter_map(|e| e["id"].as_i64())
        .collect();
    for e in events.iter().filter(|e| e["ph"] == "f" && e["id"].as_i64().is_some_and(|id| sent.contains(&id)))
    {
        to = to.max(e["ts"].as_f64().unwrap_or(to));
    }
    if !from.is_finite() || to <= from {
        return Err("a part of the trace without time".into());
    }
    Ok((from, to))
}

/// Reduce a trace (the JSON `--trace` writes) to a timeline of the part between `from` and
/// `to` ([`window`]): spans per thread, clipped to the part and merged where closer than a
/// pixel of the drawing; each child's start; the messages.
pub fn from_trace(trace: &serde_json::Value, part: (f64, f64), stamp: &str) -> Result<Timeline, String> {
    let events = trace["traceEvents"].as_array().ok_or("not a trace: no traceEvents")?;
    let mut lives = lives(events);
    // The processes alive in the part; a margin of 1% each side, to see its edges.
    lives.retain(|_, l| l.from().is_none_or(|f| f <= part.1) && l.exited.is_none_or(|e| e >= part.0));
    let margin = (part.1 - part.0) * 0.01;
    let (from, to) = (part.0 - margin, part.1 + margin);
    let pixel = (to - from) / (WIDTH - NAMES - 20.0);
    let inside = |a: f64, b: f64| b >= from && a <= to;
    let clip = |t: f64| t.clamp(from, to) - from;
    let mut open: BTreeMap<(i64, i64), Vec<(f64, String)>> = BTreeMap::new();
    let mut spans: BTreeMap<(i64, i64), Vec<Span>> = BTreeMap::new();
    let add = |spans: &mut BTreeMap<(i64, i64), Vec<Span>>, key: (i64, i64), a: f64, b: f64, kind: String| {
        // A phase (a pool's map) names a part of the run for a window; it is not drawn.
        if !inside(a, b) || kind == "phase" {
            return;
        }
        let (a, b) = (clip(a), clip(b));
        let list = spans.entry(key).or_default();
        // Neighbours of one kind closer than a pixel: one span in the picture.
        match list.iter_mut().rev().find(|(_, _, k)| *k == kind) {
            Some(last) if a - last.1 < pixel && a >= last.0 => last.1 = last.1.max(b),
            _ => list.push((a, b, kind)),
        }
    };
    for event in events {
        let (Some(pid), Some(ts)) = (event["pid"].as_i64(), event["ts"].as_f64()) else { continue };
        if !lives.contains_key(&pid) {
            continue;
        }
        let key = (pid, event["tid"].as_i64().unwrap_or(pid));
        match event["ph"].as_str() {
            Some("B") => {
                open.entry(key).or_default().push((ts, event["cat"].as_str().unwrap_or("run").into()))
            }
            Some("E") => {
                if let Some((begin, kind)) = open.entry(key).or_default().pop() {
                    add(&mut spans, key, begin, ts, kind);
                }
            }
            _ => {}
        }
    }
    // Each process: its start, from its parent's asking to its first step; and its life, from
    // then to its exit, if no span of its own shows it working (a parent, a child started by
    // exec: the kit runs no work span for them).
    for (&pid, life) in &lives {
        let (Some(started), Some(exited)) = (life.started, life.exited) else { continue };
        if let Some(asked) = life.asked {
            add(&mut spans, (pid, pid), asked, started, "start".into());
        }
        if !spans.get(&(pid, pid)).is_some_and(|list| list.iter().any(|(_, _, k)| k == "run")) {
            add(&mut spans, (pid, pid), started, exited, "run".into());
        }
    }
    let round = |x: f64| (x * 10.0).round() / 10.0;
    // A thread seen only in the margins (a pool's feeder of the map before) is not of the part.
    spans.retain(|_, list| list.iter().any(|(a, b, _)| *b >= margin && *a <= to - from - margin));
    let keys: Vec<(i64, i64)> = spans.keys().copied().collect();
    let tracks = spans
        .into_iter()
        .map(|((pid, tid), mut list)| {
            list.sort_by(|a, b| a.0.total_cmp(&b.0));
            let name = lives.get(&pid).map_or_else(|| "process".into(), |l| l.name.clone());
            let name = if pid == tid { name } else { format!("{name}, a thread") };
            Track {
                name,
                pid,
                tid,
                spans: list.into_iter().map(|(a, b, k)| (round(a), round(b), k)).collect(),
            }
        })
        .collect();
    // The messages: each flow's start and end (`s` and `f` with one id), both inside the part.
    let mut ends: BTreeMap<i64, [Option<(usize, f64)>; 2]> = BTreeMap::new();
    for event in events {
        let end = match event["ph"].as_str() {
            Some("s") => 0,
            Some("f") => 1,
            _ => continue,
        };
        let (Some(id), Some(pid), Some(ts)) =
            (event["id"].as_i64(), event["pid"].as_i64(), event["ts"].as_f64())
        else {
            continue;
        };
        let key = (pid, event["tid"].as_i64().unwrap_or(pid));
        if let Some(track) = keys.iter().position(|k| *k == key)
            && (from..=to).contains(&ts)
        {
            ends.entry(id).or_default()[end] = Some((track, ts - from));
        }
    }
    let mut messages = 0;
    let mut flows: Vec<Flow> = Vec::new();
    for [sent, got] in ends.into_values() {
        let (Some((a, at)), Some((b, bt))) = (sent, got) else { continue };
        let core = margin - 1.0..=to - from - margin + 1.0; // (1 µs for rounding)
        if core.contains(&at) && core.contains(&bt) {
            messages += 1; // counted if inside the part, drawn if inside the margins too
        }
        let near = |f: &Flow| f.0 == a && f.2 == b && (f.1 - at).abs() < pixel && (f.3 - bt).abs() < pixel;
        if !flows.iter().any(near) {
            flows.push((a, round(at), b, round(bt)));
        }
    }
    flows.sort_by(|x, y| x.1.total_cmp(&y.1));
    Ok(Timeline { stamp: stamp.to_string(), duration_us: round(to - from), tracks, messages, flows })
}

fn colour(kind: &str) -> &'static str {
    match kind {
        "send" => "#de7828",
        "recv" => "#3572a5",
        "wait" => "#9a9a9a",
        "start" => "#9b59b6",
        _ => "#f6dcc2",
    }
}

/// A readable time: `850 µs`, `12.5 ms`, `1.20 s`.
fn time(us: f64) -> String {
    match us {
        u if u < 1e3 => format!("{u:.0} µs"),
        u if u < 1e6 => format!("{:.1} ms", u / 1e3),
        u => format!("{:.2} s", u / 1e6),
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// The timeline as an SVG: a row per thread of each process, its spans by kind, a time axis,
/// a key and the stamp; a white card for the book's light and dark themes alike.
pub fn svg(title: &str, timeline: &Timeline) -> String {
    let rows = timeline.tracks.len() as f64;
    let height = 60.0 + rows * ROW + 100.0;
    let span_width = WIDTH - NAMES - 20.0;
    let x = |us: f64| NAMES + us / timeline.duration_us.max(1.0) * span_width;
    let mut out = String::new();
    let _ = write!(
        out,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{height}\" viewBox=\"0 0 {WIDTH} {height}\" role=\"img\">\n\
         <title>{}: a timeline of one run, a row per process (and thread), what each did over time</title>\n\
         <style>text {{ font-family: sans-serif; font-size: 12px; fill: #222; }} .head {{ font-size: 15px; font-weight: bold; }} .note {{ font-size: 11px; fill: #555; }} .message {{ stroke: #222; stroke-opacity: 0.55; stroke-width: 0.8; }}</style>\n\
         <defs><marker id=\"head\" viewBox=\"0 0 6 6\" refX=\"6\" refY=\"3\" markerWidth=\"6\" markerHeight=\"6\" orient=\"auto\"><path d=\"M0,0 L6,3 L0,6 z\" fill=\"#222\" fill-opacity=\"0.7\"/></marker></defs>\n\
         <rect width=\"{WIDTH}\" height=\"{height}\" rx=\"10\" fill=\"#ffffff\"/>\n\
         <text class=\"head\" x=\"{}\" y=\"24\" text-anchor=\"middle\">{}</text>\n",
        escape(title),
        WIDTH / 2.0,
        escape(title)
    );
    for (row, track) in timeline.tracks.iter().enumerate() {
        let y = 44.0 + row as f64 * ROW;
        let label = format!("{} ({})", track.name, track.pid);
        let _ = writeln!(
            out,
            "<text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            NAMES - 8.0,
            y + 15.0,
            escape(&label)
        );
        let _ = writeln!(
            out,
            "<line x1=\"{NAMES}\" y1=\"{:.1}\" x2=\"{:.1}\" y2=\"{:.1}\" stroke=\"#eee\"/>",
            y + ROW - 1.0,
            NAMES + span_width,
            y + ROW - 1.0
        );
        // The work (and the start before it) first, the sends, receives and waits inside it on top.
        for pass in ["run", "other"] {
            for (from, to, kind) in &track.spans {
                let whole = kind == "run" || kind == "start";
                if whole != (pass == "run") {
                    continue;
                }
                let (inset, h) = if whole { (2.0, ROW - 5.0) } else { (6.0, ROW - 13.0) };
                let w = (x(*to) - x(*from)).max(0.6);
                let _ = writeln!(
                    out,
                    "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{w:.1}\" height=\"{h:.1}\" fill=\"{}\"/>",
                    x(*from),
                    y + inset,
                    colour(kind)
                );
            }
        }
    }
    // The messages: an arrow from the sender's row, when it began to send, to the receiver's,
    // when the message was in.
    let middle = |track: usize| 44.0 + track as f64 * ROW + ROW / 2.0 - 1.0;
    for &(a, at, b, bt) in &timeline.flows {
        let _ = writeln!(
            out,
            "<line x1=\"{:.1}\" y1=\"{:.1}\" x2=\"{:.1}\" y2=\"{:.1}\" class=\"message\" marker-end=\"url(#head)\"/>",
            x(at),
            middle(a),
            x(bt),
            middle(b)
        );
    }
    // The time axis: five ticks.
    let axis = 44.0 + rows * ROW + 6.0;
    let _ = writeln!(
        out,
        "<line x1=\"{NAMES}\" y1=\"{axis:.1}\" x2=\"{:.1}\" y2=\"{axis:.1}\" stroke=\"#888\"/>",
        NAMES + span_width
    );
    for tick in 0..=4 {
        let us = timeline.duration_us * tick as f64 / 4.0;
        let anchor = match tick {
            0 => "start",
            4 => "end",
            _ => "middle",
        };
        let _ = writeln!(
            out,
            "<text class=\"note\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"{anchor}\">{}</text>",
            x(us),
            axis + 14.0,
            time(us)
        );
    }
    let key = [
        ("start", "starting (fork, or exec)"),
        ("run", "running"),
        ("send", "sending"),
        ("recv", "receiving, or waiting to"),
        ("wait", "waiting (channel, lock, child)"),
    ];
    let mut at = 20.0;
    for (kind, words) in key {
        let _ = writeln!(
            out,
            "<rect x=\"{at:.1}\" y=\"{:.1}\" width=\"14\" height=\"12\" fill=\"{}\"/><text x=\"{:.1}\" y=\"{:.1}\">{words}</text>",
            axis + 28.0,
            colour(kind),
            at + 20.0,
            axis + 38.0
        );
        at += 34.0 + words.len() as f64 * 6.2;
    }
    let messages = match timeline.messages {
        1 => "1 message".to_string(),
        n => format!("{n} messages"),
    };
    let _ = writeln!(
        out,
        "<line x1=\"{at:.1}\" y1=\"{:.1}\" x2=\"{:.1}\" y2=\"{:.1}\" class=\"message\" marker-end=\"url(#head)\"/><text x=\"{:.1}\" y=\"{:.1}\">{messages}</text>",
        axis + 34.0,
        at + 18.0,
        axis + 34.0,
        at + 24.0,
        axis + 38.0
    );
    // The stamp on two lines: where and when, then how.
    let (when, how) = timeline.stamp.split_once(" by ").unwrap_or((&timeline.stamp, ""));
    let _ = writeln!(out, "<text class=\"note\" x=\"20\" y=\"{:.1}\">{}</text>", axis + 62.0, escape(when));
    let _ = writeln!(out, "<text class=\"note\" x=\"20\" y=\"{:.1}\">by {}</text>", axis + 78.0, escape(how));
    out.push_str("</svg>\n");
    out
}
