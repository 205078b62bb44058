//! Two hosts on one machine, for a job that must really cross a network: each host is a
//! network namespace (its own interfaces, addresses and routes) and a UTS namespace (its own
//! host name), joined by a virtual Ethernet cable, a veth pair. Needs root.
//!
//! Nothing is left behind, by design. The namespaces have no name: each is held by a process
//! of ours (`sleep`, under `unshare`), which dies with this program (`PR_SET_PDEATHSIG`) or
//! when [`Hosts`] is dropped, and a namespace ends with the last process in it; the veth is
//! made inside the first host with its other end in the second, and ends with them.
//!
//! `mpiexec` reaches a host through a launcher (`ssh`, on real machines). Here it is
//! [`launch`]: it enters the host's namespaces and runs what `mpiexec` asked for.

use std::fmt;
use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};

use anyhow::{Context, bail, ensure};
use nix::sys::signal::Signal;

/// The variable that tells [`launch`] each host's address and the process that holds it.
pub const VARIABLE: &str = "MPIJOB_HOSTS";
/// The veth's end in each host.
pub const DEVICE: &str = "flnet0";

/// The hosts' names and addresses (in their own namespaces: no other program sees them).
const HOSTS: [(&str, &str); 2] = [("hosta", "10.251.0.1"), ("hostb", "10.251.0.2")];

/// Two hosts, for as long as this value lives.
pub struct Hosts {
    holders: Vec<Child>,
}

/// Where the hosts are, for a job and its launcher: each one's address and holder's pid.
#[derive(Debug, Clone)]
pub struct Across(Vec<(String, u32)>);

impl Hosts {
    /// Make the two hosts and the cable between them.
    pub fn two() -> anyhow::Result<Hosts> {
        ensure!(nix::unistd::geteuid().is_root(), "making network namespaces needs root");
        let mut hosts = Hosts { holders: Vec::new() };
        for (name, _) in HOSTS {
            hosts.holders.push(hold(name)?);
        }
        let [a, b] = [hosts.holders[0].id(), hosts.holders[1].id()];
        // The cable, made inside host a, its other end put straight into host b.
        let peer = b.to_string();
        inside(a, &["ip", "link", "add", DEVICE, "type", "veth", "peer", "name", "flnet1", "netns", &peer])?;
        inside(b, &["ip", "link", "set", "flnet1", "name", DEVICE])?;
        for (pid, (_, address)) in [a, b].into_iter().zip(HOSTS) {
            inside(pid, &["ip", "address", "add", &format!("{address}/24"), "dev", DEVICE])?;
            inside(pid, &["ip", "link", "set", DEVICE, "up"])?;
        }
        // The cable carries packets once the kernel has seen both its ends up, a moment later.
        for pid in [a, b] {
            let up = || {
                inside_output(pid, &["ip", "-o", "link", "show", DEVICE])
                    .is_ok_and(|s| s.contains("state UP"))
            };
            let start = std::time::Instant::now();
            while !up() {
                ensure!(start.elapsed().as_secs() < 5, "the veth did not come up within 5 s");
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
        }
        Ok(hosts)
    }

    /// The hosts' names.
    pub fn names(&self) -> [&'static str; 2] {
        HOSTS.map(|(name, _)| name)
    }

    /// Bytes sent and received so far through the first host's end of the cable.
    pub fn bytes(&self) -> anyhow::Result<(u64, u64)> {
        // /proc/PID/net/dev lists the interfaces of PID's network namespace.
        let dev = std::fs::read_to_string(format!("/proc/{}/net/dev", self.holders[0].id()))?;
        let line =
            dev.lines().find(|l| l.trim_start().starts_with(&format!("{DEVICE}:"))).context("no veth")?;
        let fields: Vec<u64> = line
            .split_once(':')
            .context("net/dev")?
            .1
            .split_whitespace()
            .map(|f| f.parse().unwrap_or(0))
            .collect();
        // Received bytes come first, transmitted bytes ninth.
        let (Some(&received), Some(&sent)) = (fields.first(), fields.get(8)) else {
            bail!("net/dev: {line}")
        };
        Ok((sent, received))
    }

    pub(crate) fn across(&self) -> Across {
        Across(
            HOSTS.iter().zip(&self.holders).map(|((_, address), h)| (address.to_string(), h.id())).collect(),
        )
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        for holder in &mut self.holders {
            let _ = holder.kill();
            let _ = holder.wait();
        }
    }
}

/// A process in new network and UTS namespaces, with `name` as host name and its loopback
/// up, that holds them until it is killed (or this program ends).
fn hold(name: &str) -> anyhow::Result<Child> {
    let script = format!("hostname {name} && ip link set lo up && echo ready && exec sleep infinity");
    let mut command = Command::new("unshare");
    command.args(["--net", "--uts", "sh", "-c", &script]).stdin(Stdio::null()).stdout(Stdio::piped());
    // SAFETY: between fork and exec only async-signal-safe work may be done: one prctl.
    unsafe {
        command.pre_exec(|| nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(std::io::Error::from));
    }
    let mut holder = command.spawn().context("start unshare (util-linux) to make a host")?;
    let mut line = String::new();
    let said = BufReader::new(holder.stdout.take().context("its stdout")?).read_line(&mut line);
    if said.is_err() || line.trim() != "ready" {
        let _ = holder.kill();
        let _ = holder.wait();
        bail!("could not make host {name} (needs root, and iproute2's ip)");
    }
    Ok(holder)
}

/// Run `command` in the network namespace of process `pid`.
fn inside(pid: u32, command: &[&str]) -> anyhow::Result<()> {
    inside_output(pid, command).map(drop)
}

/// [`inside`], and what the command printed.
fn inside_output(pid: u32, command: &[&str]) -> anyhow::Result<String> {
    let output = Command::new("nsenter")
        .arg(format!("--net=/proc/{pid}/ns/net"))
        .args(command)
        .stdin(Stdio::null())
        .output()
        .context("run nsenter (util-linux)")?;
    ensure!(
        output.status.success(),
        "{}: {}",
        command.join(" "),
        String::from_utf8_lossy(&output.stderr).trim()
    );
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

impl Across {
    /// The addresses, for `mpiexec -hosts`.
    pub(crate) fn addresses(&self) -> String {
        self.0.iter().map(|(address, _)| address.as_str()).collect::<Vec<_>>().join(",")
    }

    /// `nsenter` and its options, to enter the first host.
    pub(crate) fn enter_first(&self) -> Vec<String> {
        let pid = self.0[0].1;
        vec!["nsenter".into(), format!("--net=/proc/{pid}/ns/net"), format!("--uts=/proc/{pid}/ns/uts")]
    }
}

impl fmt::Display for Across {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let hosts: Vec<String> = self.0.iter().map(|(address, pid)| format!("{address}={pid}")).collect();
        write!(f, "{}", hosts.join(","))
    }
}

/// The launcher, in place of ssh: `mpiexec` calls it as `LAUNCHER -x HOST COMMAND...`, once
/// per host, and it runs COMMAND (the launcher's proxy) in HOST's namespaces, found through
/// [`VARIABLE`]. It returns only if it could not.
pub fn launch(args: &[String]) -> anyhow::Result<std::convert::Infallible> {
    let [x, host, command @ ..] = args else { bail!("usage: -x HOST COMMAND...") };
    ensure!(x == "-x", "usage: -x HOST COMMAND...");
    let hosts = std::env::var(VARIABLE).with_context(|| format!("{VARIABLE} is not set"))?;
    let pid = hosts
        .split(',')
        .find_map(|entry| entry.split_once('=').filter(|(address, _)| address == host).map(|(_, pid)| pid))
        .with_context(|| format!("no host {host} in {VARIABLE}"))?;
    // As ssh does, the command is one line for a shell (mpiexec quotes its parts in it). It
    // runs with a /sys of the host's own, in a mount namespace of its own: /sys lists the
    // network devices of the namespace that mounted it, and MPI's transport looks there. And
    // with a /dev/shm of its own, which ends with the namespace, as every job's does.
    let mounts = "mount -t sysfs sysfs /sys && mount -t tmpfs -o mode=1777 tmpfs /dev/shm";
    let line = format!("{mounts} && {}", command.join(" "));
    let error = Command::new("nsenter")
        .args([format!("--net=/proc/{pid}/ns/net"), format!("--uts=/proc/{pid}/ns/uts")])
        .args(["unshare", "--mount", "--propagation", "private", "sh", "-c", &line])
        .exec();
    Err(error).context("run nsenter")
}
