//! What the control plane sees of a cluster in one pass: each instance manager's report
//! (`/pg/status`), how long each instance has been unhealthy, whether its processes are gone,
//! whether its PostgreSQL is provably stopped, user fencing, and the restart and switchover
//! requests. The controller's `plan` decides from this.

use crate::desired::InstanceAddress;
use crate::state::read_json;
use crate::status::LocalClusterStatus;
use crate::LocalError;
use pgherd_api::Cluster;
use pgherd_controller::plan::{Observation, ObservedInstance};
use pgherd_instance_protocol::LeaseToken;
use pgherd_instance_protocol::{DesiredRole, InstanceSpec, InstanceStatus, Role};
use pgherd_postgres::version::major_from_image;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

pub use pgherd_controller::plan::{fenced_instances, FENCED_INSTANCES_ANNOTATION};

/// How long the control plane waits for an instance manager's report (loopback).
const STATUS_TIMEOUT: Duration = Duration::from_millis(500);
/// How long it waits for one that did not answer the previous pass: a manager on this machine
/// answers in milliseconds, and a pass during a failover must not wait the whole limit on an
/// instance that is cut off (each pass moves the failover one step).
const UNREACHABLE_STATUS_TIMEOUT: Duration = Duration::from_millis(200);

/// How the control plane proves it is the controller to a cluster's instance managers: its
/// client certificate (signed by the cluster CA) and the lease token.
#[derive(Debug, Clone)]
pub struct Controller {
    pub lease_token: LeaseToken,
    pub tls: pgherd_instance_manager::status_client::ClientTls,
}

/// Fetch an instance manager's report, renewing its lease when it is a primary; `fresh` asks
/// for WAL positions sampled for this request.
pub async fn fetch_status(
    address: &InstanceAddress,
    controller: &Controller,
    answered_last_time: bool,
    fresh: bool,
) -> Option<InstanceStatus> {
    let host = address.host.to_string();
    let timeout = if answered_last_time {
        STATUS_TIMEOUT
    } else {
        UNREACHABLE_STATUS_TIMEOUT
    };
    pgherd_instance_manager::status_client::fetch(
        &host,
        address.status,
        &controller.tls,
        Some(&controller.lease_token),
        fresh,
        timeout,
    )
    .await
}

fn serial_of(cluster: &str, instance: &str) -> Option<u32> {
    instance
        .strip_prefix(cluster)?
        .strip_prefix('-')?
        .parse()
        .ok()
}

/// Running as it should: a fresh report of a running PostgreSQL with room to write.
fn healthy(status: Option<&InstanceStatus>) -> bool {
    status
        .is_some_and(|s| s.role != Role::Down && !s.disk_full && pgherd_controller::ha::is_fresh(s))
}

/// Its PostgreSQL provably cannot accept writes: neither its manager nor a postmaster runs
/// (with the manager alive, a missing postmaster may just be starting), or its manager reports
/// it stopped under a spec that keeps it stopped.
fn stopped(dir: &Path, status: Option<&InstanceStatus>, spec: Option<&InstanceSpec>) -> bool {
    if crate::instances::is_dead(dir) {
        return true;
    }
    match (status, spec) {
        (Some(s), Some(spec)) => {
            s.role == Role::Down
                && s.applied_generation >= spec.generation
                && (spec.fenced || (spec.role == DesiredRole::Replica && spec.primary.is_none()))
        }
        _ => false,
    }
}

/// What the observation keeps per instance between passes: since when it has been unhealthy,
/// and since when its PostgreSQL has provably been stopped (forgotten on restart: a restarted
/// control plane waits a full grace period before failing over).
#[derive(Debug, Default)]
pub struct Since {
    pub unhealthy: BTreeMap<String, Instant>,
    pub stopped: BTreeMap<String, Instant>,
}

impl Since {
    pub fn clear(&mut self) {
        self.unhealthy.clear();
        self.stopped.clear();
    }
}

/// What [`observe`] found besides the controller's [`Observation`].
#[derive(Debug, Default)]
pub struct Seen {
    pub ports: BTreeMap<String, InstanceAddress>,
    /// Instances whose manager was not running when observed: the only ones (with new
    /// instances) whose manager may be started in this pass, so that a manager dying after
    /// the observation is first seen (and its instance failed over) rather than restarted
    /// blindly under the old spec.
    pub managers_down: std::collections::BTreeSet<String>,
    /// Why the manager of an instance that did not report exited (the last error its log
    /// has): a manager that cannot start is restarted every pass and would otherwise leave
    /// its instance waiting without a word.
    pub manager_errors: BTreeMap<String, String>,
}

/// The error a manager that exited with one left as its log's last line (`pgherd: …`, how the
/// binary reports the error it exits with), with the log's path. A manager that was stopped or
/// killed left something else last.
fn manager_exit_error(log: &Path) -> Option<String> {
    // Read as every file in the instance's directory (its user's): no link, FIFO or device.
    let tail = pgherd_safe_fs::read_file_tail(log, 8192).ok()??;
    let tail = String::from_utf8_lossy(&tail);
    let line = tail
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())?
        .strip_prefix("pgherd: ")?;
    // The log is the PostgreSQL user's to write: no control characters (terminal escapes) reach
    // the status or `local up`'s output, and no more than a line's worth.
    let line: String = line.chars().filter(|c| !c.is_control()).take(500).collect();
    Some(format!(
        "its instance manager exited: {line} (see {})",
        log.display()
    ))
}

/// Observe the cluster's instances under `instances_dir`.
#[allow(clippy::too_many_arguments)]
pub async fn observe(
    name: &str,
    cluster: &Cluster,
    instances_dir: &Path,
    previous: Option<&LocalClusterStatus>,
    restart_annotation: &str,
    promote_request: Option<String>,
    since: &mut Since,
    unreachable: &mut std::collections::BTreeSet<String>,
    controller: &Controller,
) -> Result<(Observation, Seen), LocalError> {
    let mut observed = Observation {
        latest_serial: previous.map_or(0, |p| p.latest_generated_node),
        current_primary: previous
            .and_then(|p| p.current_primary.clone().or(p.target_primary.clone())),
        target_primary: previous.and_then(|p| p.target_primary.clone()),
        promote_request: promote_request.filter(|r| !r.is_empty()),
        hibernated: pgherd_controller::hibernation::in_progress(
            previous
                .into_iter()
                .flat_map(|p| &p.conditions)
                .map(|c| (c.condition_type.as_str(), c.reason.as_str())),
        ),
        instances: Vec::new(),
        restart_token: previous
            .map(|p| p.restart_token.clone())
            .unwrap_or_default(),
        instance_restarts: Default::default(),
    };
    if previous.is_some_and(|p| p.restart_annotation != restart_annotation) {
        // `local restart` (or kubectl cnpg restart): roll every instance.
        observed.restart_token = restart_annotation.to_string();
    }
    // A new image of the same major (an imageName update, or the catalog's entry for the
    // cluster's major changed): roll every instance onto it, as CloudNativePG rolls its pods.
    let image = cluster.image_name();
    if previous.is_some_and(|p| {
        !p.image.is_empty()
            && p.image != image
            && major_from_image(&p.image).ok() == cluster.major_version()
    }) {
        observed.restart_token = format!("image-{image}");
    }
    let fenced = fenced_instances(cluster);
    let mut seen = Seen::default();
    let mut found = Vec::new();
    for entry in std::fs::read_dir(instances_dir)
        .into_iter()
        .flatten()
        .flatten()
    {
        let instance = entry.file_name().to_string_lossy().into_owned();
        let Some(serial) = serial_of(name, &instance) else {
            continue;
        };
        let dir = entry.path();
        let dead_before_asking = crate::instances::is_dead(&dir);
        let ports: Option<InstanceAddress> = read_json(&dir.join("ports.json"))?;
        found.push((instance, serial, dir, ports, dead_before_asking));
    }
    // Every instance found dead above was stopped before any report is asked for, so before
    // any of them is sampled (a failover compares positions sampled after the old primary
    // stopped). Positions sampled for the request are asked for only when a failover may be
    // near (an instance dead or unhealthy); otherwise the manager's last sample will do.
    let asked_at = Instant::now();
    let fresh = found.iter().any(|f| f.4) || !since.unhealthy.is_empty();
    // Every report is asked for at once: a frozen instance costs one time limit, not one each.
    let mut asks = tokio::task::JoinSet::new();
    for (instance, _, _, ports, _) in &found {
        if let Some(p) = ports.clone() {
            let (controller, instance) = (controller.clone(), instance.clone());
            let answered = !unreachable.contains(&instance);
            asks.spawn(async move {
                (
                    instance,
                    fetch_status(&p, &controller, answered, fresh).await,
                )
            });
        }
    }
    let mut reports = BTreeMap::new();
    while let Some(answer) = asks.join_next().await {
        if let Ok((instance, Some(status))) = answer {
            reports.insert(instance, status);
        }
    }
    let now = Instant::now();
    for (instance, serial, dir, ports, dead_before_asking) in found {
        let status = reports.remove(&instance);
        if status.is_some() {
            unreachable.remove(&instance);
        } else {
            unreachable.insert(instance.clone());
        }
        if let Some(p) = ports {
            seen.ports.insert(instance.clone(), p);
        }
        if crate::instances::running_pid(&dir.join(crate::instances::MANAGER_PID)).is_none() {
            seen.managers_down.insert(instance.clone());
            if status.is_none() {
                if let Some(error) = manager_exit_error(&dir.join("manager.log")) {
                    seen.manager_errors.insert(instance.clone(), error);
                }
            }
        }
        let spec: Option<InstanceSpec> = read_json(&dir.join("instance.json"))?;
        let unhealthy_for = if healthy(status.as_ref()) {
            since.unhealthy.remove(&instance);
            None
        } else {
            Some(now.duration_since(*since.unhealthy.entry(instance.clone()).or_insert(now)))
        };
        let stopped_for = if stopped(&dir, status.as_ref(), spec.as_ref()) {
            let proven = if dead_before_asking { asked_at } else { now };
            let first = since.stopped.entry(instance.clone()).or_insert(proven);
            *first = (*first).min(proven);
            Some(now.duration_since(*first))
        } else {
            since.stopped.remove(&instance);
            None
        };
        observed.instances.push(ObservedInstance {
            serial,
            dead: spec.is_some() && crate::instances::is_dead(&dir),
            stopped_for,
            fenced: fenced.iter().any(|f| f == "*" || f == &instance),
            restart_recreates: false,
            draining: false,
            storage_given_up: false,
            told_primary: spec
                .as_ref()
                .is_some_and(|s| s.role == DesiredRole::Primary),
            spec_restart_token: spec.map(|s| s.restart_token).unwrap_or_default(),
            name: instance,
            status,
            unhealthy_for,
        });
    }
    // A setting that needs a restart: roll the cluster once every instance runs the current
    // token.
    let rollout_done = observed.instances.iter().all(|i| {
        i.status.as_ref().is_some_and(|s| {
            pgherd_controller::rollout::base_token(&s.restart_token) == observed.restart_token
        })
    });
    if rollout_done
        && observed
            .instances
            .iter()
            .any(|i| i.status.as_ref().is_some_and(|s| s.pending_restart))
    {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        observed.restart_token = format!("pending-restart-{now}");
    }
    Ok((observed, seen))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manager_exit_error_is_its_logs_last_error_line() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("manager.log");
        assert_eq!(manager_exit_error(&log), None);
        std::fs::write(&log, "INFO starting\npgherd: old error\nINFO starting\npgherd: cannot listen on 127.0.0.1:20001 (status port of c-2): Address in use\n").unwrap();
        let error = manager_exit_error(&log).unwrap();
        assert!(error.starts_with("its instance manager exited: cannot listen on 127.0.0.1:20001 (status port of c-2): Address in use (see "), "{error}");
        std::fs::write(&log, "pgherd: \x1b]0;owned\x07bad\x1b[2J\n").unwrap();
        let error = manager_exit_error(&log).unwrap();
        assert!(
            error.starts_with("its instance manager exited: ]0;ownedbad[2J (see "),
            "{error}"
        );
        std::fs::write(&log, "pgherd: an old error\nINFO running\n\n").unwrap();
        assert_eq!(manager_exit_error(&log), None);
    }
}
