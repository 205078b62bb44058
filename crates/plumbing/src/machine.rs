//! What machine a measurement ran on: every table says it.

use std::fmt;

/// The facts a measured table is stamped with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Machine {
    /// CPU model, from /proc/cpuinfo.
    pub cpu: String,
    /// CPUs this process may run on.
    pub cpus: usize,
    /// Operating system, from /etc/os-release.
    pub os: String,
    /// Kernel name and release, from uname.
    pub kernel: String,
    /// Today's date (UTC), YYYY-MM-DD.
    pub date: String,
}

impl Machine {
    /// Read the facts of the machine this process runs on.
    pub fn detect() -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = field(&cpuinfo, "model name")
            .or_else(|| field(&cpuinfo, "Model"))
            .unwrap_or_else(|| std::env::consts::ARCH.to_string());
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let os_release = std::fs::read_to_string("/etc/os-release").unwrap_or_default();
        let os = os_release
            .lines()
            .find_map(|l| l.strip_prefix("PRETTY_NAME="))
            .map(|v| v.trim_matches('"').to_string())
            .unwrap_or_else(|| std::env::consts::OS.to_string());
        let kernel = match nix::sys::utsname::uname() {
            Ok(u) => format!("{} {}", u.sysname().to_string_lossy(), u.release().to_string_lossy()),
            Err(_) => "unknown kernel".to_string(),
        };
        let date = jiff::Timestamp::now().strftime("%Y-%m-%d").to_string();
        Machine { cpu, cpus, os, kernel, date }
    }
}

fn field(cpuinfo: &str, key: &str) -> Option<String> {
    cpuinfo.lines().find_map(|line| {
        let (k, v) = line.split_once(':')?;
        (k.trim() == key).then(|| v.split_whitespace().collect::<Vec<_>>().join(" "))
    })
}

impl fmt::Display for Machine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let cpus = if self.cpus == 1 { "1 CPU".to_string() } else { format!("{} CPUs", self.cpus) };
        write!(f, "{}, {cpus}, {}, {}, on {}", self.cpu, self.os, self.kernel, self.date)
    }
}
