//! The local status view of a cluster, built from the controller's plan and what the
//! instances reported; it also tells the endpoints where to send connections.

use crate::control::ClusterRuntime;
use crate::desired::InstanceAddress;
use crate::status::{LocalClusterStatus, LocalCondition, LocalInstanceStatus};
use pgherd_controller::phase;
use pgherd_controller::plan::{Observation, ObservedInstance, Plan};
use std::collections::BTreeMap;
use std::net::SocketAddr;

/// The status of cluster `name`; sets the `-rw`/`-ro`/`-r` backends of `runtime` to match.
pub(crate) fn build(
    namespace: &str,
    name: &str,
    runtime: Option<&ClusterRuntime>,
    decided: &Plan,
    observed: &Observation,
    ports: &BTreeMap<String, InstanceAddress>,
) -> LocalClusterStatus {
    let by_name: BTreeMap<&str, &ObservedInstance> = observed
        .instances
        .iter()
        .map(|i| (i.name.as_str(), i))
        .collect();
    let primary_lsn = decided
        .current_primary
        .as_deref()
        .and_then(|p| by_name.get(p))
        .and_then(|i| i.status.as_ref())
        .and_then(|s| s.current_lsn);
    let mut rw = Vec::new();
    let mut ro = Vec::new();
    let mut instances_status = Vec::new();
    for d in &decided.instances {
        let status = by_name.get(d.name.as_str()).and_then(|i| i.status.as_ref());
        let address = ports.get(&d.name);
        let port = address.map_or(0, |p| p.postgres);
        let addr = address.map_or(SocketAddr::from(([127, 0, 0, 1], 0)), |a| a.postgres_addr());
        // A stale report (a frozen instance) does not receive connections.
        let ready = status.is_some_and(|s| s.ready && pgherd_controller::ha::is_fresh(s));
        let is_primary = status.is_some_and(|s| s.leads());
        if ready && is_primary && decided.current_primary.as_deref() == Some(d.name.as_str()) {
            rw.push(addr);
        } else if ready && !is_primary {
            ro.push(addr);
        }
        instances_status.push(LocalInstanceStatus {
            name: d.name.clone(),
            role: status
                .map_or("down", |s| {
                    if s.leads() {
                        "primary"
                    } else if s.ready {
                        "replica"
                    } else {
                        "down"
                    }
                })
                .to_string(),
            ready,
            lsn: status.and_then(|s| s.wal_position()).map(|l| l.to_string()),
            lag_bytes: match (primary_lsn, status.and_then(|s| s.replay_lsn)) {
                (Some(p), Some(r)) if !is_primary => Some(p.bytes_since(r)),
                _ if is_primary => Some(0),
                _ => None,
            },
            host: addr.ip().to_string(),
            port,
            pid: status.and_then(|s| s.postmaster_pid),
            status_endpoint: address.map_or_else(String::new, |a| {
                SocketAddr::new(a.host, a.status).to_string()
            }),
            metrics: address.map_or_else(String::new, |a| {
                SocketAddr::new(a.host, a.metrics).to_string()
            }),
            error: status.and_then(|s| s.error.clone()),
            stuck: status.is_some_and(|s| s.stuck && s.error.is_some()),
        });
    }
    let mut endpoints = BTreeMap::new();
    if let Some(runtime) = runtime {
        for (kind, (port, backends)) in &runtime.endpoints {
            let list = match kind.as_str() {
                "rw" => rw.clone(),
                "ro" => ro.clone(),
                _ => rw.iter().chain(ro.iter()).copied().collect(),
            };
            backends.set(list);
            endpoints.insert(kind.clone(), format!("127.0.0.1:{port}"));
        }
    }
    let timeline = decided
        .current_primary
        .as_deref()
        .and_then(|p| by_name.get(p))
        .and_then(|i| i.status.as_ref())
        .and_then(|s| s.timeline_id);
    let healthy = decided.phase == phase::HEALTHY;
    let mut managed_roles_status = crate::status::ManagedRolesStatus::default();
    let primary_status = decided
        .current_primary
        .as_deref()
        .and_then(|p| by_name.get(p))
        .and_then(|i| i.status.as_ref());
    for r in primary_status
        .map(|s| s.role_results.as_slice())
        .unwrap_or_default()
    {
        if r.applied {
            managed_roles_status.reconciled.push(r.name.clone());
        } else {
            managed_roles_status
                .cannot_reconcile
                .insert(r.name.clone(), r.message.iter().cloned().collect());
        }
    }
    LocalClusterStatus {
        name: name.to_string(),
        namespace: namespace.to_string(),
        phase: decided.phase.to_string(),
        instances: decided.instances.len(),
        ready_instances: decided.ready_instances,
        current_primary: decided.current_primary.clone(),
        target_primary: decided.target_primary.clone(),
        timeline,
        endpoints,
        instances_status,
        latest_generated_node: decided.latest_serial,
        conditions: vec![LocalCondition {
            condition_type: "Ready".into(),
            status: if healthy { "True" } else { "False" }.into(),
            reason: if healthy {
                "ClusterIsReady"
            } else {
                "ClusterIsNotReady"
            }
            .into(),
            message: if healthy {
                "Cluster is Ready".into()
            } else {
                decided.phase.to_string()
            },
        }],
        managed_roles_status,
        phase_reason: pgherd_controller::cluster_status::phase_reason(decided, observed),
        ..Default::default()
    }
}
