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

/// What the picture shows of one run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Timeline {
    /// Where and when, and the command that ran it.
    pub stamp: String,
    /// How long the run took, in microseconds.
    pub duration_us: f64,
    pub tracks: Vec<Track>,
}

/// A span in the picture: start and end in µs from the run's start, and its kind: `run`,
/// `send`, `recv`, `wait`.
pub type Span = (f64, f64, String);

/// One thread of one process.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Track {
    pub name: String,
    pub pid: i64,
    pub tid: i64,
    pub spans: Vec<Span>,
}

/// Reduce a trace (the JSON `--trace` writes) to a timeline: spans per thread, merged where
/// closer than a pixel of the drawing.
pub fn from_trace(trace: &serde_json::Value, stamp: &str) -> Result<Timeline, String> {
    let events = trace["traceEvents"].as_array().ok_or("not a trace: no traceEvents")?;
    let names: BTreeMap<i64, String> = events
        .iter()
        .filter(|e| e["ph"] == "M")
        .filter_map(|e| Some((e["pid"].as_i64()?, e["args"]["name"].as_str()?.to_string())))
        .collect();
    let start = events.iter().filter_map(|e| e["ts"].as_f64()).fold(f64::INFINITY, f64::min);
    let end = events.iter().filter_map(|e| e["ts"].as_f64()).fold(0.0, f64::max);
    if !start.is_finite() || end <= start {
        return Err("a trace without time".into());
    }
    let pixel = (end - start) / (WIDTH - NAMES - 20.0);
    let mut open: BTreeMap<(i64, i64), Vec<(f64, String)>> = BTreeMap::new();
    let mut spans: BTreeMap<(i64, i64), Vec<Span>> = BTreeMap::new();
    for event in events {
        let (Some(pid), Some(ts)) = (event["pid"].as_i64(), event["ts"].as_f64()) else { continue };
        let key = (pid, event["tid"].as_i64().unwrap_or(pid));
        match event["ph"].as_str() {
            Some("B") => {
                open.entry(key).or_default().push((ts - start, event["cat"].as_str().unwrap_or("run").into()))
            }
            Some("E") => {
                if let Some((from, kind)) = open.entry(key).or_default().pop() {
                    let list = spans.entry(key).or_default();
                    // Neighbours of one kind closer than a pixel: one span in the picture.
                    match list.iter_mut().rev().find(|(_, _, k)| *k == kind) {
                        Some(last) if from - last.1 < pixel && from >= last.0 => {
                            last.1 = last.1.max(ts - start)
                        }
                        _ => list.push((from, ts - start, kind)),
                    }
                }
            }
            _ => {}
        }
    }
    // A process with no span of its own (a child started by exec runs no kit work span):
    // its life, from "started" to "exited", so that it has its row too.
    let moment = |pid: i64, name: &str| {
        events
            .iter()
            .find(|e| e["pid"].as_i64() == Some(pid) && e["ph"] == "i" && e["name"] == name)
            .and_then(|e| e["ts"].as_f64())
    };
    for &pid in names.keys() {
        if !spans.contains_key(&(pid, pid))
            && let (Some(from), Some(to)) = (moment(pid, "started"), moment(pid, "exited"))
        {
            spans.insert((pid, pid), vec![(from - start, to - start, "run".to_string())]);
        }
    }
    let round = |x: f64| (x * 10.0).round() / 10.0;
    let tracks = spans
        .into_iter()
        .map(|((pid, tid), mut list)| {
            list.sort_by(|a, b| a.0.total_cmp(&b.0));
            let name = names.get(&pid).cloned().unwrap_or_else(|| "process".into());
            let name = if pid == tid { name } else { format!("{name}, a thread") };
            Track {
                name,
                pid,
                tid,
                spans: list.into_iter().map(|(a, b, k)| (round(a), round(b), k)).collect(),
            }
        })
        .collect();
    Ok(Timeline { stamp: stamp.to_string(), duration_us: round(end - start), tracks })
}

fn colour(kind: &str) -> &'static str {
    match kind {
        "send" => "#de7828",
        "recv" => "#3572a5",
        "wait" => "#9a9a9a",
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
         <style>text {{ font-family: sans-serif; font-size: 12px; fill: #222; }} .head {{ font-size: 15px; font-weight: bold; }} .note {{ font-size: 11px; fill: #555; }}</style>\n\
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
        // The work first, the sends, receives and waits inside it on top.
        for pass in ["run", "other"] {
            for (from, to, kind) in &track.spans {
                if (kind == "run") != (pass == "run") {
                    continue;
                }
                let (inset, h) = if kind == "run" { (2.0, ROW - 5.0) } else { (6.0, ROW - 13.0) };
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
        ("run", "running its work"),
        ("send", "sending"),
        ("recv", "receiving"),
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
        at += 40.0 + words.len() as f64 * 6.5;
    }
    // The stamp on two lines: where and when, then how.
    let (when, how) = timeline.stamp.split_once(" by ").unwrap_or((&timeline.stamp, ""));
    let _ = writeln!(out, "<text class=\"note\" x=\"20\" y=\"{:.1}\">{}</text>", axis + 62.0, escape(when));
    let _ = writeln!(out, "<text class=\"note\" x=\"20\" y=\"{:.1}\">by {}</text>", axis + 78.0, escape(how));
    out.push_str("</svg>\n");
    out
}
