//! Where an instance listens: its ports (free ones, allocated once and kept in `ports.json`)
//! and its address (loopback, or its network namespace's under the netns annotation).

use crate::desired::InstanceAddress;
use crate::state::write_json;
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

/// A TCP port free on loopback now, outside the ephemeral range (the kernel's choice when none
/// of a hundred random tries is free).
pub(crate) fn free_port() -> Result<u16, LocalError> {
    use std::hash::{BuildHasher, Hasher};
    for attempt in 0..100u32 {
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u32(attempt);
        hasher.write_u32(std::process::id());
        let span = u64::from(PORTS.end - PORTS.start);
        let port = PORTS.start + u16::try_from(hasher.finish() % span).unwrap_or(0);
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(LocalError::NoPort)?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(LocalError::NoPort)
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
