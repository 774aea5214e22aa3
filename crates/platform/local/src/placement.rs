//! Where an instance listens: its ports (free ones, allocated once and kept in `ports.json`)
//! and its address (loopback, or its network namespace's under the netns annotation).

use crate::desired::InstanceAddress;
use crate::state::{read_json, write_json};
use crate::LocalError;
use pgherd_api::Cluster;
use pgherd_controller::plan::DesiredInstance;
use pgherd_instance_manager::OsUser;
use std::collections::BTreeMap;
use std::path::Path;

/// Ports handed out, below Linux's ephemeral range (32768–60999): a port the kernel chose for
/// a bind to port 0 is also what it hands to outgoing connections, so between the choice and
/// PostgreSQL's bind a client connection could take it (and hold it: "could not create any
/// TCP/IP sockets" on every start, seen in CI).
const PORTS: std::ops::Range<u16> = 20000..32000;

/// Ports this process handed out or found in a `ports.json`: a port is chosen free (nothing
/// bound to it) but is bound only later, by a process started after the choice, so without
/// this two choices made before either bind (an instance's PostgreSQL and status ports, two
/// instances, a pooler) could be the same port, and one of the two processes could never
/// listen.
static HANDED_OUT: std::sync::Mutex<std::collections::BTreeSet<u16>> =
    std::sync::Mutex::new(std::collections::BTreeSet::new());

/// Remember every port kept in a `ports.json` of the state directory at `root` (at start):
/// those of stopped or hibernated instances and poolers are no one's to take. Where they are:
/// `clusters/<ns>/<cluster>/ports.json` (endpoints), `…/instances/<instance>/ports.json` and
/// `…/poolers/<pooler>/ports.json`, read as every other state file (no symlink followed).
pub(crate) fn remember_kept_ports(root: &Path) {
    fn dirs(dir: &Path) -> impl Iterator<Item = std::path::PathBuf> {
        std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .map(|e| e.path())
    }
    fn numbers(value: &serde_json::Value, found: &mut Vec<u16>) {
        match value {
            serde_json::Value::Number(n) => {
                found.extend(n.as_u64().and_then(|n| u16::try_from(n).ok()));
            }
            serde_json::Value::Object(map) => map.values().for_each(|v| numbers(v, found)),
            serde_json::Value::Array(list) => list.iter().for_each(|v| numbers(v, found)),
            _ => {}
        }
    }
    let mut found = Vec::new();
    for cluster in dirs(&root.join("clusters")).flat_map(|ns| dirs(&ns).collect::<Vec<_>>()) {
        let owners = std::iter::once(cluster.clone())
            .chain(dirs(&cluster.join("instances")))
            .chain(dirs(&cluster.join("poolers")));
        for dir in owners {
            if let Ok(Some(value)) = read_json::<serde_json::Value>(&dir.join("ports.json")) {
                numbers(&value, &mut found);
            }
        }
    }
    handed_out().extend(found.into_iter().filter(|p| *p != 0));
}

fn handed_out() -> std::sync::MutexGuard<'static, std::collections::BTreeSet<u16>> {
    HANDED_OUT
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A port of `range` free on loopback now and not in `handed_out` (where it is then recorded),
/// chosen at random in at most `attempts` tries: the one way pgherd and its tests pick a port
/// that a process started later will bind.
pub fn pick_port(
    range: std::ops::Range<u16>,
    attempts: u32,
    handed_out: &mut std::collections::BTreeSet<u16>,
) -> Option<u16> {
    use std::hash::{BuildHasher, Hasher};
    for attempt in 0..attempts {
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u32(attempt);
        hasher.write_u32(std::process::id());
        let span = u64::from(range.end - range.start);
        let port = range.start + u16::try_from(hasher.finish() % span).unwrap_or(0);
        if !handed_out.contains(&port) && std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            handed_out.insert(port);
            return Some(port);
        }
    }
    None
}

/// A TCP port free on loopback now, outside the ephemeral range and never handed out before by
/// this process (the kernel's choice when none of a hundred random tries is).
pub(crate) fn free_port() -> Result<u16, LocalError> {
    let mut handed_out = handed_out();
    if let Some(port) = pick_port(PORTS, 100, &mut handed_out) {
        return Ok(port);
    }
    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(LocalError::NoPort)?;
    let port = listener
        .local_addr()
        .map(|a| a.port())
        .map_err(LocalError::NoPort)?;
    handed_out.insert(port);
    Ok(port)
}

/// Where a new instance listens: free ports, on loopback or, under the network-namespace
/// annotation, on its namespace's address.
fn place(cluster: &Cluster, serial: u32) -> Result<InstanceAddress, LocalError> {
    let netns = cluster
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(crate::netns::NETNS_PREFIX_ANNOTATION))
        .map(|prefix| crate::netns::namespace_of(prefix, serial));
    let host = match &netns {
        Some(ns) => crate::netns::address_of(ns)?,
        None => std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
    };
    Ok(InstanceAddress {
        postgres: free_port()?,
        status: free_port()?,
        metrics: free_port()?,
        host,
        netns,
    })
}

/// Place every instance of the plan that has no address yet (and give one placed by an earlier
/// version, before the metrics exporter, its metrics port).
pub(crate) fn place_instances(
    cluster: &Cluster,
    instances: &[DesiredInstance],
    instances_dir: &Path,
    ports_by_instance: &mut BTreeMap<String, InstanceAddress>,
    user: &OsUser,
) -> Result<(), LocalError> {
    for instance in instances {
        let path = instances_dir.join(&instance.name).join("ports.json");
        match ports_by_instance.get_mut(&instance.name) {
            Some(address) if address.metrics == 0 => {
                // Placed by an earlier version, before the metrics exporter.
                address.metrics = free_port()?;
                write_json(&path, &*address, 0o644)?;
            }
            Some(_) => {}
            None => {
                user.own_dir(&instances_dir.join(&instance.name), 0o700)?;
                let address = place(cluster, instance.serial)?;
                write_json(&path, &address, 0o644)?;
                ports_by_instance.insert(instance.name.clone(), address);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_port_is_handed_out_once() {
        // 3,000 choices from 12,000 ports: without the record, a repeat is all but certain.
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..3000 {
            let port = free_port().unwrap();
            assert!(PORTS.contains(&port), "{port}");
            assert!(seen.insert(port), "port {port} handed out twice");
        }
    }

    #[test]
    fn kept_ports_are_not_handed_out() {
        let root = tempfile::tempdir().unwrap();
        let cluster = root.path().join("clusters/default/c");
        let files = [
            (
                cluster.join("instances/c-1"),
                r#"{"postgres": 20001, "status": 20002, "metrics": 0, "host": "127.0.0.1"}"#,
            ),
            (cluster.clone(), r#"{"rw": 20003, "ro": 20004}"#),
            (
                cluster.join("poolers/p"),
                r#"{"endpoint": 20005, "instances": {"p-1": {"pgbouncer": 20006, "metrics": 20007}}}"#,
            ),
            // Not a place ports are kept in.
            (cluster.join("instances/c-1/pgdata"), r#"{"port": 19999}"#),
        ];
        for (dir, text) in files {
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join("ports.json"), text).unwrap();
        }
        remember_kept_ports(root.path());
        let kept = handed_out();
        assert!((20001..=20007).all(|p| kept.contains(&p)), "{kept:?}");
        assert!(!kept.contains(&0) && !kept.contains(&19999));
    }
}
