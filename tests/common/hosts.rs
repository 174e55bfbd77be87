//! Test hosts of their own on one Linux machine: network namespaces on a
//! bridge, each with its own IPv4 address, so a test can run the real
//! `rask scheduler` and `rask worker` as if on separate machines, and cut the
//! network between them (a host from everyone, or two hosts from each other).
//!
//! A [`TestNet`] is a bridge in the root namespace holding `10.213.X.1/24`
//! (the test process, the client, reaches the hosts through it) and one
//! namespace per [`Host`], joined to the bridge by a veth pair, at
//! `10.213.X.2`, `.3`, …. Everything is made with `ip` (iproute2) and needs
//! root; dropping the `TestNet` (also when a test panics) kills what still
//! runs in its hosts and deletes it all. Nothing is routed or forwarded
//! beyond the subnet.
//!
//! Each `TestNet` gets a subnet and names no other one uses: tests that run
//! side by side, in one process or several, never share them. The bridge is
//! named after the subnet (`rkb4d` for 10.213.77.0/24: the octet in hex), so
//! creating it claims the subnet atomically; the names of its namespaces and
//! veths start with the same two hex digits (`rk4d03f1h0`, `rk4d03f1v0`).
//!
//! On a machine where `br_netfilter` passes bridged packets to an iptables
//! `FORWARD` chain that drops them (as Docker sets up), hosts reach the root
//! namespace but not each other.
//!
//! # Example
//!
//! ```ignore
//! let net = TestNet::new("partitioned_worker", 3);
//! let (s, a, b) = (net.host(0), net.host(1), net.host(2));
//! let dir = tempfile::tempdir().expect("a temporary folder");
//! let address = format!("{}:8786", s.address);
//! let args = ["scheduler", "--host", &s.address, "--watch-stdin"];
//! let scheduler = start_in(s, "scheduler", dir.path(), &args, &[]);
//! scheduler.wait_for("scheduler at ");
//! let start = |h: &Host, name| {
//!     let args = ["worker", &address, "--host", &h.address, "--watch-stdin"];
//!     start_in(h, name, dir.path(), &args, &[])
//! };
//! let (_worker_a, _worker_b) = (start(a, "worker a"), start(b, "worker b"));
//! a.block(b); // a and b cannot reach each other; both reach the scheduler
//! b.cut(); // b reaches no one
//! b.heal();
//! a.unblock(b);
//! ```

#![allow(dead_code)]

use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::Path;
use std::process::Command;

use crate::processes::Process;

/// The first two octets of every test subnet, `10.213.X.0/24`.
const NETWORK: &str = "10.213";

/// A bridge and hosts on it, deleted when dropped.
pub struct TestNet {
    /// The bridge, named after the subnet.
    bridge: String,
    /// What the namespaces' and veths' names start with, `rk4d03f1`.
    tag: String,
    /// The subnet's first three octets, `10.213.7`.
    subnet: String,
    /// The hosts made so far (all of them once [`new`](Self::new) returns).
    hosts: Vec<Host>,
}

/// One network namespace on a [`TestNet`]'s bridge.
pub struct Host {
    /// The namespace's name, for `ip netns exec`.
    pub name: String,
    /// Its IPv4 address, e.g. `10.213.7.2`.
    pub address: String,
    /// The root namespace's end of its veth pair, on the bridge.
    pub veth: String,
}

impl TestNet {
    /// A bridge and `hosts` namespaces on a subnet of their own, for the test
    /// `test_name`. Panics, saying why, if they cannot be made (not root, no
    /// `ip`).
    pub fn new(test_name: &str, hosts: usize) -> Self {
        assert!(
            (1..=253).contains(&hosts),
            "a /24 holds 1 to 253 hosts besides the root's .1, not {hosts}"
        );
        let mut net = Self::claim(test_name);
        for i in 0..hosts {
            net.add_host(i);
        }
        net
    }

    /// The bridge of the first free subnet from one picked by hashing
    /// `test_name` and this process's id, with the root's address on it.
    fn claim(test_name: &str) -> Self {
        let mut hasher = DefaultHasher::new();
        (test_name, std::process::id()).hash(&mut hasher);
        let hash = hasher.finish();
        for step in 0..=u8::MAX {
            let octet = (hash as u8).wrapping_add(step);
            let tag = format!("rk{octet:02x}{:04x}", (hash >> 8) as u16);
            let subnet = format!("{NETWORK}.{octet}");
            let bridge = format!("rkb{octet:02x}");
            if in_use(&bridge, &subnet, &tag) {
                continue;
            }
            // Creating a link is atomic: whoever creates the bridge owns the
            // subnet and the names with its octet. No spanning tree and no
            // forward delay: a port forwards as soon as it is up.
            let add = [
                "link",
                "add",
                &bridge,
                "type",
                "bridge",
                "stp_state",
                "0",
                "forward_delay",
                "0",
            ];
            match run(&add) {
                Ok(_) => {}
                Err(e) if e.contains("File exists") => continue,
                Err(e) => fail(&add, &e),
            }
            // Made now, so that a failure below deletes the bridge.
            let net = Self {
                bridge,
                tag,
                subnet,
                hosts: Vec::new(),
            };
            let cidr = format!("{}/24", net.address());
            ip(&["addr", "add", &cidr, "dev", &net.bridge]);
            ip(&["link", "set", &net.bridge, "up"]);
            return net;
        }
        panic!(
            "every subnet of {NETWORK}.0.0/16 is in use: \
             see `ip link show type bridge` and `ip netns list` for leftovers"
        );
    }

    /// Makes host `i`: a namespace at `.i+2`, on the bridge.
    fn add_host(&mut self, i: usize) {
        let name = format!("{}h{i}", self.tag);
        ip(&["netns", "add", &name]);
        // Kept now, so that a failure below deletes the namespace.
        self.hosts.push(Host {
            name,
            address: format!("{}.{}", self.subnet, i + 2),
            veth: format!("{}v{i}", self.tag),
        });
        let host = &self.hosts[i];
        ip(&[
            "link", "add", &host.veth, "type", "veth", "peer", "name", "eth0", "netns", &host.name,
        ]);
        ip(&["link", "set", &host.veth, "master", &self.bridge, "up"]);
        let cidr = format!("{}/24", host.address);
        host.ip(&["addr", "add", &cidr, "dev", "eth0"]);
        host.ip(&["link", "set", "eth0", "up"]);
        host.ip(&["link", "set", "lo", "up"]);
    }

    /// Host `i` (from 0).
    #[track_caller]
    pub fn host(&self, i: usize) -> &Host {
        &self.hosts[i]
    }

    /// The root namespace's address on the bridge (the test process's),
    /// `10.213.X.1`.
    pub fn address(&self) -> String {
        format!("{}.1", self.subnet)
    }
}

impl Drop for TestNet {
    /// Kills what runs in the hosts and deletes them and the bridge,
    /// ignoring errors.
    fn drop(&mut self) {
        for host in &self.hosts {
            if let Ok(pids) = run(&["netns", "pids", &host.name]) {
                let pids: Vec<&str> = pids.split_whitespace().collect();
                if !pids.is_empty() {
                    // The shell's own `kill`, as `processes::signal`.
                    let kill = format!("kill -9 {}", pids.join(" "));
                    let _ = Command::new("sh").args(["-c", &kill]).status();
                }
            }
            let _ = run(&["link", "del", &host.veth]);
            let _ = run(&["netns", "del", &host.name]);
        }
        let _ = run(&["link", "del", &self.bridge]);
    }
}

impl Host {
    /// `ip netns exec NAME PROGRAM`: `program` run in this host.
    pub fn command(&self, program: &Path) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.name]).arg(program);
        command
    }

    /// Takes this host off the network: its veth goes down.
    pub fn cut(&self) {
        ip(&["link", "set", &self.veth, "down"]);
    }

    /// Puts this host back on the network after [`cut`](Self::cut), at once
    /// (no spanning tree). An address tried in vain during the cut may take
    /// up to a second more to resolve again (ARP retries), and its first
    /// packet may be lost.
    pub fn heal(&self) {
        ip(&["link", "set", &self.veth, "up"]);
    }

    /// Drops what this host sends to `other` (a blackhole route), so no
    /// connection between them works, either way; both still reach everyone
    /// else. Here a connection to `other` fails at once ("Invalid
    /// argument"); from `other`, it times out.
    pub fn block(&self, other: &Host) {
        self.blackhole("add", other);
    }

    /// Undoes [`block`](Self::block).
    pub fn unblock(&self, other: &Host) {
        self.blackhole("del", other);
    }

    /// `ip route ACTION blackhole OTHER/32` in this host.
    fn blackhole(&self, action: &str, other: &Host) {
        let route = format!("{}/32", other.address);
        self.ip(&["route", action, "blackhole", &route]);
    }

    /// `ip -n NAME ARGS…`: `ip` in this host.
    fn ip(&self, args: &[&str]) -> String {
        let mut all = vec!["-n", self.name.as_str()];
        all.extend_from_slice(args);
        ip(&all)
    }
}

/// Starts `rask ARGS…` in `host`, from `dir`, as [`Process::start`] does.
pub fn start_in(
    host: &Host,
    name: &str,
    dir: &Path,
    args: &[&str],
    env: &[(&str, &str)],
) -> Process {
    let mut command = host.command(Path::new(env!("CARGO_BIN_EXE_rask")));
    command
        .current_dir(dir)
        .args(args)
        .envs(env.iter().copied());
    Process::start_command(command, name)
}

/// Whether a link or namespace is named `bridge` or starts with `tag`, or an
/// address of the root namespace is in `subnet`: made by a test that was
/// killed before it could clean up, or by someone else.
fn in_use(bridge: &str, subnet: &str, tag: &str) -> bool {
    let links = ip(&["-o", "link", "show"]);
    // `4: rk07a3f1v0@if3: <BROADCAST,…`
    let mut links = links
        .lines()
        .filter_map(|line| line.split(": ").nth(1)?.split('@').next());
    let namespaces = ip(&["netns", "list"]);
    links.any(|link| link == bridge || link.starts_with(tag))
        || namespaces.lines().any(|line| line.starts_with(tag))
        || ip(&["-4", "-o", "addr", "show"]).contains(&format!("inet {subnet}."))
}

/// Runs `ip ARGS…`, panicking with its error if it fails; its output.
fn ip(args: &[&str]) -> String {
    run(args).unwrap_or_else(|e| fail(args, &e))
}

/// Runs `ip ARGS…`: its output, or its error.
fn run(args: &[&str]) -> Result<String, String> {
    let output = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run `ip` (iproute2): {e}"))?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).trim().to_string())
    }
}

/// Panics: `ip ARGS…` failed with `error`.
fn fail(args: &[&str], error: &str) -> ! {
    panic!(
        "`ip {}` failed: {error}\n(test hosts need root and iproute2's `ip`)",
        args.join(" ")
    )
}
