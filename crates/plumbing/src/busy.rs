//! How busy the machine was while a measurement ran: a table measured beside a compiler, a
//! browser or another test run says little about an idle machine, and its ratios move far
//! from the book's. [`Watch`] reads, from /proc, the CPU time every process of the machine
//! used between its start and its end, takes away what this process and its (reaped)
//! children used, and so tells the CPU time *other* processes took meanwhile. On a virtual
//! machine it also tells the time stolen: the hypervisor running something else while this
//! machine had work to do (a fork-heavy case causes some of it itself, about 0.2 CPUs here).

use std::fmt;
use std::time::Instant;

use nix::sys::resource::{UsageWho, getrusage};

/// Other processes using more than this many CPUs, on average over the run, make the run
/// "busy". A case that keeps both CPUs of a 2-CPU machine busy loses a quarter CPU's time
/// to them, about 12% of its capacity, which is more than the run-to-run spread of most of
/// the book's cases on an idle machine (a few per cent).
pub const BUSY_CPUS: f64 = 0.25;

/// More stolen time than this (CPUs, on average) is worth a warning too: on the machines the
/// book was measured on, the lessons' own work causes up to about 0.2 (fork-heavy cases).
pub const STOLEN_CPUS: f64 = 0.5;

/// A case whose slowest run took more than this many times its fastest varied too much for
/// its median to be trusted to two figures. Of the 102 rows of the book's tables (measured
/// on an idle machine), the median spread is 1.09x and 9 in 10 are under 1.4x; the few over
/// 1.5x are the rows to doubt.
pub const WIDE_SPREAD: f64 = 1.5;

/// A measurement's start: the machine's and this process's CPU time so far.
pub struct Watch {
    machine: Option<Cpu>,
    own: f64,
    start: Instant,
}

/// What [`Watch::end`] found.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Busy {
    /// The 1-minute load average at the end (it counts this run's own processes too).
    pub load: f64,
    /// CPUs other processes kept busy, on average over the run; `None` where /proc/stat
    /// cannot be read.
    pub others: Option<f64>,
    /// CPUs' worth of time the hypervisor gave elsewhere, on average over the run.
    pub stolen: Option<f64>,
}

/// The machine's CPU time since boot, in seconds: at work (user, nice, system, irq,
/// softirq) and stolen.
#[derive(Clone, Copy)]
struct Cpu {
    work: f64,
    stolen: f64,
}

impl Watch {
    pub fn start() -> Watch {
        Watch { machine: machine_cpu_seconds(), own: own_cpu_seconds(), start: Instant::now() }
    }

    /// The run is over (every child reaped): how busy the rest of the machine was.
    pub fn end(&self) -> Busy {
        let wall = self.start.elapsed().as_secs_f64().max(1e-3);
        let own = own_cpu_seconds() - self.own;
        let (others, stolen) = match (self.machine, machine_cpu_seconds()) {
            (Some(before), Some(after)) => (
                Some(((after.work - before.work - own) / wall).max(0.0)),
                Some(((after.stolen - before.stolen) / wall).max(0.0)),
            ),
            _ => (None, None),
        };
        Busy { load: load_average().unwrap_or(0.0), others, stolen }
    }
}

impl Busy {
    /// Whether other processes took more than [`BUSY_CPUS`], or the hypervisor more than
    /// [`STOLEN_CPUS`].
    pub fn is_busy(&self) -> bool {
        self.others.is_some_and(|cpus| cpus > BUSY_CPUS) || self.stolen.is_some_and(|cpus| cpus > STOLEN_CPUS)
    }

    /// The warning to print for a busy run, if it was one.
    pub fn warning(&self) -> Option<String> {
        let why = match (self.others, self.stolen) {
            (Some(others), _) if others > BUSY_CPUS => {
                format!("other processes kept {others:.2} CPUs busy during the run (more than {BUSY_CPUS})")
            }
            (_, Some(stolen)) if stolen > STOLEN_CPUS => format!(
                "the hypervisor gave {stolen:.2} CPUs' worth of time to something else (more than {STOLEN_CPUS})"
            ),
            _ => return None,
        };
        Some(format!(
            "warning: the machine was busy: {why}; these times may be far from an idle machine's, so \
             measure again when it is idle"
        ))
    }
}

impl fmt::Display for Busy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "load average {:.2}", self.load)?;
        match (self.others, self.stolen) {
            (Some(others), Some(stolen)) => {
                write!(f, ", other processes {others:.2} CPUs, stolen {stolen:.2}")
            }
            _ => write!(f, ", other processes unknown"),
        }
    }
}

/// The warning for a case whose runs spread wider than [`WIDE_SPREAD`], if it did.
pub fn spread_warning(case: &str, min_s: f64, max_s: f64) -> Option<String> {
    let spread = max_s / min_s;
    (min_s > 0.0 && spread > WIDE_SPREAD).then(|| {
        format!(
            "warning: {case:?} varied widely, its slowest run {spread:.2}x its fastest (more than \
             {WIDE_SPREAD}x): its median is rough; more --runs, or an idle machine, will tell"
        )
    })
}

/// CPU time, in seconds, every CPU of the machine has spent at work since boot, from the
/// first line of /proc/stat (user + nice + system + irq + softirq), and stolen (steal).
fn machine_cpu_seconds() -> Option<Cpu> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let fields: Vec<f64> =
        stat.lines().next()?.split_whitespace().skip(1).filter_map(|f| f.parse().ok()).collect();
    let work: f64 = [0, 1, 2, 5, 6].iter().filter_map(|&i| fields.get(i)).sum();
    let ticks = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK).ok()?? as f64;
    Some(Cpu { work: work / ticks, stolen: fields.get(7).copied().unwrap_or(0.0) / ticks })
}

/// CPU time, in seconds, this process and its reaped children have used.
fn own_cpu_seconds() -> f64 {
    [UsageWho::RUSAGE_SELF, UsageWho::RUSAGE_CHILDREN]
        .into_iter()
        .filter_map(|who| getrusage(who).ok())
        .map(|u| {
            let secs = |t: nix::sys::time::TimeVal| t.tv_sec() as f64 + t.tv_usec() as f64 / 1e6;
            secs(u.user_time()) + secs(u.system_time())
        })
        .sum()
}

fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg").ok()?.split_whitespace().next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_busy_machine_is_told() {
        let idle = Busy { load: 0.3, others: Some(0.02), stolen: Some(0.2) };
        assert!(!idle.is_busy() && idle.warning().is_none());
        let busy = Busy { load: 2.1, others: Some(0.9), stolen: Some(0.0) };
        assert!(busy.is_busy());
        assert!(busy.warning().unwrap().contains("0.90 CPUs"));
        assert_eq!(busy.to_string(), "load average 2.10, other processes 0.90 CPUs, stolen 0.00");
        let stolen = Busy { load: 0.5, others: Some(0.0), stolen: Some(0.8) };
        assert!(stolen.is_busy() && stolen.warning().unwrap().contains("hypervisor"));
        assert!(spread_warning("x", 1.0, 1.4).is_none());
        assert!(spread_warning("x", 1.0, 2.0).unwrap().contains("2.00x"));
    }

    /// This process spinning is counted as its own time, and the machine's count holds it
    /// too (so that what is left is other processes'), however busy the machine is.
    #[test]
    fn own_work_is_counted_as_own() {
        let (machine, own) = (machine_cpu_seconds().unwrap(), own_cpu_seconds());
        let start = Instant::now();
        let mut x = 0u64;
        while own_cpu_seconds() - own < 0.2 {
            assert!(start.elapsed().as_secs() < 10, "10 s of spinning, and no CPU time counted as own");
            for _ in 0..100_000 {
                x = std::hint::black_box(x.wrapping_add(1));
            }
        }
        let own = own_cpu_seconds() - own;
        let machine = machine_cpu_seconds().unwrap().work - machine.work;
        assert!(machine >= own - 0.05, "the machine's count ({machine} s) lacks this process's {own} s");
    }
}
