//! Network partitions of a node (`kube-sim node partition NODE`). Pods share the host's network
//! namespace on loopback addresses (`127.B.N.x` on node N), and a connection between two of
//! them leaves from `127.0.0.1`, so addresses cannot tell whose it is. Sockets can: every
//! container (and every `exec` into it) runs in the cgroup v2 `kube-sim-B/node-N`, and a
//! partition is iptables rules on OUTPUT (chain `KSIM-B`) matching the sending socket's cgroup:
//!
//! - node N's pods → their own node's addresses: allowed;
//! - node N's pods → anything else of this server (`127.B.0.0/16`: other nodes' pods, the
//!   ClusterIPs) and the API server's port on `127.0.0.1`: dropped;
//! - other nodes' pods → node N's addresses (`127.B.N.0/24`): dropped.
//!
//! Packets are dropped, not refused, as on a cut cable: connects hang and established
//! connections stall. The Service proxy (in kube-sim's own process, outside those cgroups)
//! stalls connections to node N's endpoints itself (see `proxy`). Without iptables or a
//! cgroup v2 hierarchy a partition is refused with the reason; everything else works without
//! them.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The cgroup v2 mount point (`/sys/fs/cgroup` or, on hybrid hosts, `/sys/fs/cgroup/unified`).
pub fn cgroup2_root() -> Option<PathBuf> {
    let mounts = std::fs::read_to_string("/proc/self/mounts").ok()?;
    mounts.lines().find_map(|l| {
        let mut f = l.split_whitespace();
        let (_, path, fstype) = (f.next()?, f.next()?, f.next()?);
        (fstype == "cgroup2").then(|| PathBuf::from(path))
    })
}

/// The cgroup (relative to the cgroup v2 root) of node `index`'s containers.
fn relative(network: u8, index: usize) -> String {
    format!("kube-sim-{network}/node-{index}")
}

/// The `cgroup.procs` file of node `index`'s cgroup, created on demand; `None` without cgroup
/// v2 (containers then run where kube-sim does, and partitions are refused).
pub fn cgroup_procs(network: u8, index: usize) -> Option<PathBuf> {
    let dir = cgroup2_root()?.join(relative(network, index));
    std::fs::create_dir_all(&dir).ok()?;
    Some(dir.join("cgroup.procs"))
}

/// The node cgroup for a pod address `127.B.N.x`.
pub fn cgroup_procs_for_ip(ip: &str) -> Option<PathBuf> {
    let mut o = ip.split('.');
    let (a, b, n) = (o.next()?, o.next()?, o.next()?);
    if a != "127" {
        return None;
    }
    cgroup_procs(b.parse().ok()?, n.parse().ok()?)
}

/// Node index of a pod address of network `b` (`127.B.N.x` → N), if it is one.
pub fn node_of_ip(ip: &std::net::IpAddr, network: u8) -> Option<usize> {
    match ip {
        std::net::IpAddr::V4(v4) => {
            let o = v4.octets();
            (o[0] == 127 && o[1] == network && o[2] > 0 && o[2] < 200).then_some(usize::from(o[2]))
        }
        std::net::IpAddr::V6(_) => None,
    }
}

fn chain(network: u8) -> String {
    format!("KSIM-{network}")
}

fn iptables(args: &[&str]) -> Result<(), String> {
    let out = Command::new("iptables")
        .arg("-w")
        .args(args)
        .output()
        .map_err(|e| {
            format!("cannot run iptables ({e}): a partition needs it (Debian package iptables)")
        })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "iptables {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Make the OUTPUT rules cut off exactly the `partitioned` nodes (by index).
pub fn apply_rules(
    network: u8,
    api_port: u16,
    partitioned: &BTreeSet<usize>,
) -> Result<(), String> {
    let chain = chain(network);
    if partitioned.is_empty() {
        remove_rules(network);
        return Ok(());
    }
    if cgroup2_root().is_none() {
        return Err("a partition needs a cgroup v2 hierarchy (none is mounted)".into());
    }
    if iptables(&["-n", "-L", &chain]).is_err() {
        iptables(&["-N", &chain])?;
    }
    if iptables(&["-C", "OUTPUT", "-j", &chain]).is_err() {
        iptables(&["-I", "OUTPUT", "-j", &chain])?;
    }
    iptables(&["-F", &chain])?;
    let sim = format!("kube-sim-{network}");
    let all = format!("127.{network}.0.0/16");
    let port = api_port.to_string();
    for &n in partitioned {
        let node = relative(network, n);
        let own = format!("127.{network}.{n}.0/24");
        let rules: [&[&str]; 4] = [
            &["-m", "cgroup", "--path", &node, "-d", &own, "-j", "RETURN"],
            &["-m", "cgroup", "--path", &node, "-d", &all, "-j", "DROP"],
            &[
                "-m",
                "cgroup",
                "--path",
                &node,
                "-d",
                "127.0.0.1/32",
                "-p",
                "tcp",
                "--dport",
                &port,
                "-j",
                "DROP",
            ],
            &["-m", "cgroup", "--path", &sim, "-d", &own, "-j", "DROP"],
        ];
        for r in rules {
            let mut args = vec!["-A", chain.as_str()];
            args.extend_from_slice(r);
            iptables(&args)?;
        }
    }
    Ok(())
}

/// Remove this server's chain (at start, leftovers of a killed run; at shutdown, ours).
pub fn remove_rules(network: u8) {
    let chain = chain(network);
    while iptables(&["-D", "OUTPUT", "-j", &chain]).is_ok() {}
    let _ = iptables(&["-F", &chain]);
    let _ = iptables(&["-X", &chain]);
}

/// Remove the server's cgroups once they are empty; returns whether they are gone.
pub fn remove_cgroups(network: u8) -> bool {
    let Some(root) = cgroup2_root() else {
        return true;
    };
    let dir = root.join(format!("kube-sim-{network}"));
    if let Ok(entries) = std::fs::read_dir(&dir) {
        for e in entries.flatten().filter(|e| e.path().is_dir()) {
            let _ = std::fs::remove_dir(e.path());
        }
    }
    let _ = std::fs::remove_dir(&dir);
    !dir.exists()
}

/// Remove the cgroups of servers that are gone (their network `127.B` no longer claimed: the
/// claim listener on `127.B.0.1:1` can be bound again), which a test process may leave behind
/// when it exits before its kubelet's cleanup is done.
pub fn remove_stale_cgroups() {
    let Some(root) = cgroup2_root() else { return };
    let Ok(entries) = std::fs::read_dir(&root) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(b) = name
            .strip_prefix("kube-sim-")
            .and_then(|b| b.parse::<u8>().ok())
        else {
            continue;
        };
        let unclaimed =
            std::net::TcpListener::bind((std::net::Ipv4Addr::new(127, b, 0, 1), 1)).is_ok();
        if unclaimed {
            remove_cgroups(b);
        }
    }
}

/// `sh -c 'echo $$ > PROCS; exec "$@"'`: `program args` started inside the cgroup whose
/// `cgroup.procs` is `procs` (before it can fork anything), or as it is without one.
pub fn in_cgroup(procs: Option<&Path>, program: &str) -> Command {
    match procs {
        Some(p) => {
            let mut c = Command::new("/bin/sh");
            c.arg("-c")
                .arg("echo $$ > \"$0\" && exec \"$@\"")
                .arg(p)
                .arg(program);
            c
        }
        None => Command::new(program),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_addresses_name_their_node() {
        let ip = |s: &str| s.parse::<std::net::IpAddr>().unwrap();
        assert_eq!(node_of_ip(&ip("127.30.2.7"), 30), Some(2));
        assert_eq!(node_of_ip(&ip("127.30.0.7"), 30), None, "a ClusterIP");
        assert_eq!(node_of_ip(&ip("127.31.2.7"), 30), None, "another server");
        assert_eq!(node_of_ip(&ip("10.0.2.7"), 30), None);
    }
}
