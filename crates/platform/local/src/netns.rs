//! Instances in their own network namespaces: one machine that behaves like several hosts, so
//! that a network partition can isolate one instance (the chaos suite does this).
//!
//! The namespaces are not created here: whoever sets `NETNS_PREFIX_ANNOTATION` on a Cluster
//! creates `<prefix>-<serial>` for each instance, gives it an address reachable from the host
//! and from the other namespaces, and removes them afterwards. An instance's address is read
//! once, when it is first placed, and kept in its `ports.json`.

use crate::LocalError;
use std::net::IpAddr;
use std::process::Command;

/// Cluster annotation: instance `<cluster>-<serial>` runs in network namespace
/// `<value>-<serial>`, listening on that namespace's first global IPv4 address.
pub const NETNS_PREFIX_ANNOTATION: &str = "pgherd.io/netns-prefix";

/// The namespace for instance `serial` under `prefix`.
pub fn namespace_of(prefix: &str, serial: u32) -> String {
    format!("{prefix}-{serial}")
}

/// The first global IPv4 address inside network namespace `ns`.
pub fn address_of(ns: &str) -> Result<IpAddr, LocalError> {
    let output = Command::new("ip")
        .args(["-n", ns, "-4", "-o", "addr", "show", "scope", "global"])
        .output()
        .map_err(|e| {
            LocalError::Invalid(format!(
                "cannot run `ip` to read network namespace {ns}: {e} (install iproute2)"
            ))
        })?;
    if !output.status.success() {
        return Err(LocalError::Invalid(format!(
            "network namespace {ns} (annotation {NETNS_PREFIX_ANNOTATION}) is not usable: {}; create it with `ip netns add {ns}` and give it an address, or remove the annotation",
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    first_address(&String::from_utf8_lossy(&output.stdout)).ok_or_else(|| {
        LocalError::Invalid(format!(
            "network namespace {ns} has no global IPv4 address: add one (`ip -n {ns} addr add 10.x.y.z/24 dev IFACE`)"
        ))
    })
}

/// The address in `ip -o addr` output (`2: veth0    inet 10.1.0.2/24 brd ... scope global ...`).
fn first_address(text: &str) -> Option<IpAddr> {
    text.lines().find_map(|line| {
        let mut words = line.split_whitespace();
        words.find(|w| *w == "inet")?;
        words.next()?.split('/').next()?.parse().ok()
    })
}

/// Run `exe args` inside `ns`, as `uid`/`gid` when given: `ip netns exec` needs root, so the
/// switch to the unprivileged user happens after it (`setpriv`), not before.
pub fn command_in(ns: &str, exe: &std::path::Path, uid_gid: Option<(u32, u32)>) -> Command {
    let mut command = Command::new("ip");
    command.args(["netns", "exec", ns]);
    if let Some((uid, gid)) = uid_gid {
        command.args([
            "setpriv".to_string(),
            format!("--reuid={uid}"),
            format!("--regid={gid}"),
            "--clear-groups".to_string(),
        ]);
    }
    command.arg(exe);
    command
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_address_from_ip_output() {
        let out = "2: veth0    inet 10.201.0.3/24 brd 10.201.0.255 scope global veth0\\       valid_lft forever preferred_lft forever\n";
        assert_eq!(first_address(out), Some("10.201.0.3".parse().unwrap()));
        assert_eq!(first_address(""), None);
    }

    #[test]
    fn a_missing_namespace_is_a_clear_error() {
        let e = address_of("pgherd-no-such-ns").unwrap_err().to_string();
        assert!(e.contains("pgherd-no-such-ns"), "{e}");
    }
}
