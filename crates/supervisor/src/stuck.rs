//! Seeing a hang before anything is killed: every process of a run asleep in the kernel,
//! waiting for something that none of the others will ever do, and none of them using the
//! CPU. Read from /proc: where each process sleeps (its wchan), and which ends of which pipes
//! and sockets it holds, so that a report can say who waits for whom ("pid 812 reads
//! pipe:[9071], whose write end pid 811 and pid 812 itself still hold").

use std::collections::BTreeMap;
use std::fmt::Write as _;

use nix::unistd::Pid;

/// One process of a run, as /proc shows it at one moment.
#[derive(Clone, Debug)]
pub struct Sleeper {
    pub pid: i32,
    pub comm: String,
    /// R running, S asleep (interruptible), D asleep (not), Z a zombie...
    pub state: char,
    /// Where in the kernel it sleeps (`anon_pipe_read`, `futex_do_wait`, `do_wait`...); "0"
    /// when it runs.
    pub wchan: String,
    /// CPU time used so far, user and system, in clock ticks.
    pub cpu: u64,
    /// The pipes and sockets it holds: (fd, "pipe:[9071]", its access: "read", "write" or
    /// "read+write").
    pub ends: Vec<(i32, String, &'static str)>,
}

impl Sleeper {
    /// Asleep for as long as something else takes, not for a set time.
    fn waits_on_others(&self) -> bool {
        matches!(self.state, 'S' | 'D') && !self.wchan.contains("nanosleep")
    }
}

/// The run's process `root` and everything under it.
pub(crate) fn snapshot(root: Pid) -> Vec<Sleeper> {
    let mut pids = vec![root.as_raw()];
    pids.extend(crate::descendants(root).iter().map(|d| d.pid));
    pids.into_iter().filter_map(read).collect()
}

fn read(pid: i32) -> Option<Sleeper> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (open, close) = (stat.find('(')?, stat.rfind(')')?);
    let comm = stat[open + 1..close].to_string();
    let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
    let state = fields.first()?.chars().next()?;
    // Fields 14 and 15 of the whole line: utime and stime.
    let cpu = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    let wchan = std::fs::read_to_string(format!("/proc/{pid}/wchan")).unwrap_or_default();
    let mut ends = Vec::new();
    for entry in std::fs::read_dir(format!("/proc/{pid}/fd")).into_iter().flatten().filter_map(|e| e.ok()) {
        let Ok(fd) = entry.file_name().to_string_lossy().parse::<i32>() else { continue };
        let Ok(target) = std::fs::read_link(entry.path()) else { continue };
        let target = target.to_string_lossy().into_owned();
        if !(target.starts_with("pipe:") || target.starts_with("socket:")) {
            continue;
        }
        let info = std::fs::read_to_string(format!("/proc/{pid}/fdinfo/{fd}")).unwrap_or_default();
        let flags = info
            .lines()
            .find_map(|l| l.strip_prefix("flags:"))
            .and_then(|f| u32::from_str_radix(f.trim(), 8).ok())
            .unwrap_or(2);
        let access = match flags & 3 {
            0 => "read",
            1 => "write",
            _ => "read+write",
        };
        ends.push((fd, target, access));
    }
    ends.sort();
    Some(Sleeper { pid, comm, state, wchan, cpu, ends })
}

/// Whether every process of `run` waits for the others (none running, none in a timed sleep,
/// none a zombie waiting to be reaped by a parent that sleeps elsewhere is still asleep), and
/// their CPU time in all.
pub(crate) fn all_waiting(run: &[Sleeper]) -> Option<u64> {
    let alive: Vec<&Sleeper> = run.iter().filter(|s| s.state != 'Z').collect();
    (!alive.is_empty() && alive.iter().all(|s| s.waits_on_others()))
        .then(|| alive.iter().map(|s| s.cpu).sum())
}

/// What a sleeping process waits for, in words, from where it sleeps.
fn waiting_for(wchan: &str) -> String {
    match what_it_waits_for(wchan) {
        Some(what) => format!("{what} ({wchan})"),
        None => format!("in {wchan}"),
    }
}

fn what_it_waits_for(wchan: &str) -> Option<&'static str> {
    Some(if wchan.contains("pipe_read") {
        "to read from a pipe"
    } else if wchan.contains("pipe_write") {
        "to write into a full pipe"
    } else if wchan.contains("unix_stream") || wchan.contains("sock") || wchan.contains("skb") {
        "on a socket"
    } else if wchan.contains("futex") {
        "on a futex (a lock, a semaphore, a condition)"
    } else if wchan.contains("do_wait") {
        "for a child to end (wait)"
    } else if wchan.contains("poll") || wchan.contains("select") {
        "in poll, for one of several things"
    } else {
        return None;
    })
}

/// A report of a run that waits for itself: each process, where it sleeps and the ends it
/// holds; then each pipe or socket, and who holds its ends; then what stands out (a process
/// reading a pipe whose write end it holds itself, or whose every writer is asleep too).
pub fn report(run: &[Sleeper]) -> String {
    let mut text = String::new();
    // The pipes that matter: those that a process of the run reads from. (The others, its
    // stdout and stderr, or a pipe inherited from whoever started it, only go out.)
    let read_here: Vec<&str> = run
        .iter()
        .flat_map(|s| s.ends.iter())
        .filter(|(_, what, access)| what.starts_with("pipe:") && access.contains("read"))
        .map(|(_, what, _)| what.as_str())
        .collect();
    let matters = |what: &str| !what.starts_with("pipe:") || read_here.contains(&what);
    let mut holders: BTreeMap<&str, Vec<(i32, i32, &str)>> = BTreeMap::new();
    for s in run.iter().filter(|s| s.state != 'Z') {
        let _ = write!(text, "  pid {} ({}) waits {}", s.pid, s.comm, waiting_for(&s.wchan));
        let ends: Vec<String> = s
            .ends
            .iter()
            .filter(|(_, what, _)| matters(what))
            .map(|(fd, what, access)| format!("fd {fd} {what} {access}"))
            .collect();
        if !ends.is_empty() {
            let _ = write!(text, "; holds {}", ends.join(", "));
        }
        text.push('\n');
        for (fd, what, access) in s.ends.iter().filter(|(_, what, _)| matters(what)) {
            holders.entry(what.as_str()).or_default().push((s.pid, *fd, access));
        }
    }
    for (what, held) in &holders {
        if !what.starts_with("pipe:") {
            continue;
        }
        let side = |want: &str| -> Vec<String> {
            held.iter()
                .filter(|(_, _, access)| access.contains(want))
                .map(|(pid, fd, _)| format!("pid {pid} (fd {fd})"))
                .collect()
        };
        let (readers, writers) = (side("read"), side("write"));
        let _ = writeln!(
            text,
            "  {what}: read end held by {}; write end held by {}",
            if readers.is_empty() { "nobody".into() } else { readers.join(", ") },
            if writers.is_empty() { "nobody".into() } else { writers.join(", ") },
        );
    }
    for finding in diagnose(run) {
        let _ = writeln!(text, "  {}", finding.said);
    }
    text
}

/// Something that stands out in a run that waits for itself, in words, with a key an
/// exercise's manifest can pick a hint by.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    /// `own-write-end`: a reader holds the write end of a pipe it reads, so it never sees EOF.
    /// `nobody-writes`: a reader waits for data that no process is about to write: every
    /// other holder of the write end sleeps elsewhere. `nobody-reads`: a writer waits for room
    /// in a full pipe that no process is about to read.
    pub key: &'static str,
    pub said: String,
}

/// What stands out in `run`, a run whose every process waits: a reader that holds its own
/// write end, a reader whose writers all wait elsewhere, a writer whose readers all do. A
/// process that sleeps in a pipe read may hold several read ends; each counts.
pub fn diagnose(run: &[Sleeper]) -> Vec<Finding> {
    let alive: Vec<&Sleeper> = run.iter().filter(|s| s.state != 'Z').collect();
    let others = |me: i32, pipe: &str, want: &str| -> Vec<&Sleeper> {
        alive
            .iter()
            .copied()
            .filter(|s| s.pid != me && s.ends.iter().any(|(_, w, a)| w == pipe && a.contains(want)))
            .collect()
    };
    let named = |holders: &[&Sleeper]| -> String {
        holders
            .iter()
            .map(|s| format!("pid {} waits {}", s.pid, what_it_waits_for(&s.wchan).unwrap_or(&s.wchan)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut found = Vec::new();
    for s in &alive {
        let reading = s.wchan.contains("pipe_read");
        let writing = s.wchan.contains("pipe_write");
        let mut seen = std::collections::BTreeSet::new();
        for (_, pipe, access) in &s.ends {
            if !pipe.starts_with("pipe:") || !seen.insert(pipe.as_str()) {
                continue;
            }
            let holds = |want: &str| s.ends.iter().any(|(_, w, a)| w == pipe && a.contains(want));
            if reading && access.contains("read") {
                if holds("write") {
                    found.push(Finding {
                        key: "own-write-end",
                        said: format!(
                            "pid {} reads {pipe} and holds its write end itself: it can never see EOF \
                             while it holds it (close the ends a process does not use, right after fork)",
                            s.pid
                        ),
                    });
                }
                let writers = others(s.pid, pipe, "write");
                if !writers.is_empty() && writers.iter().all(|w| !w.wchan.contains("pipe_write")) {
                    found.push(Finding {
                        key: "nobody-writes",
                        said: format!(
                            "pid {} waits for data on {pipe}, and every other process that could write \
                             it waits for something else: {}",
                            s.pid,
                            named(&writers)
                        ),
                    });
                }
            }
            if writing && holds("write") {
                let readers = others(s.pid, pipe, "read");
                if !readers.is_empty() && readers.iter().all(|r| !r.wchan.contains("pipe_read")) {
                    found.push(Finding {
                        key: "nobody-reads",
                        said: format!(
                            "pid {} waits for room in {pipe} (a pipe holds 64 KiB), and every process \
                             that could read it waits for something else: {}",
                            s.pid,
                            named(&readers)
                        ),
                    });
                }
            }
        }
    }
    found
}
