//! The machine-readable view of a local cluster (`pgherd local status CLUSTER -o json`); its
//! top-level keys are a stable contract (DESIGN.md).

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One instance in the local status view.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LocalInstanceStatus {
    pub name: String,
    /// `primary`, `replica` or `down`.
    pub role: String,
    pub ready: bool,
    pub lsn: Option<String>,
    pub lag_bytes: Option<u64>,
    /// The address PostgreSQL listens on (loopback unless in a network namespace).
    pub host: String,
    pub port: u16,
    /// The postmaster's pid.
    pub pid: Option<u32>,
    /// The instance manager's status endpoint.
    pub status_endpoint: String,
    /// The metrics exporter (`/metrics`).
    #[serde(default)]
    pub metrics: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// `error` will not go away by trying again: the manifest (or the machine) must change.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stuck: bool,
}

/// A cluster's local status.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LocalClusterStatus {
    pub name: String,
    pub namespace: String,
    pub phase: String,
    /// Why the cluster is in this phase, when there is more to say (a major upgrade, its
    /// failure).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase_reason: Option<String>,
    pub instances: usize,
    pub ready_instances: usize,
    pub current_primary: Option<String>,
    pub target_primary: Option<String>,
    pub timeline: Option<u32>,
    /// `rw`, `ro`, `r` → `127.0.0.1:PORT`.
    pub endpoints: BTreeMap<String, String>,
    pub instances_status: Vec<LocalInstanceStatus>,
    /// Highest instance serial used (serials are never reused).
    pub latest_generated_node: u32,
    #[serde(default)]
    pub conditions: Vec<LocalCondition>,
    /// Managed roles: which are reconciled, which cannot be and why.
    #[serde(default)]
    pub managed_roles_status: ManagedRolesStatus,
    /// The restart token every instance should run under.
    #[serde(default)]
    pub restart_token: String,
    /// The restart annotation value last acted on.
    #[serde(default)]
    pub restart_annotation: String,
    /// The PostgreSQL image the instances run (`spec.imageName` or the catalog's); when it
    /// changes within the same major, the cluster is rolled.
    #[serde(default)]
    pub image: String,
    /// The primary's last WAL archive outcome (`lastArchivedWAL`, `lastFailedWAL`, ...), when
    /// the cluster archives to an object store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wal_archive: Option<pgherd_instance_protocol::ArchiveReport>,
    /// The oldest point the cluster can be recovered to (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_recoverability_point: Option<String>,
    /// When the last successful backup ended (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_successful_backup: Option<String>,
    /// When the last failed backup ended (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_failed_backup: Option<String>,
    /// The Poolers in front of the cluster (their endpoints are also in `endpoints`, under
    /// the pooler's name).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub poolers: Vec<ClusterPooler>,
    /// The image and major the data was made with (CloudNativePG's `pgDataImageInfo`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pg_data_image_info: Option<pgherd_api::cluster::ImageInfo>,
    /// The last major upgrade, while it runs, failed, or its old data waits to be removed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub major_upgrade: Option<pgherd_controller::major_upgrade::UpgradeAttempt>,
}

/// A Pooler in its cluster's status.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterPooler {
    pub name: String,
    #[serde(rename = "type")]
    pub pooler_type: String,
    pub endpoint: String,
    pub instances: usize,
    pub ready_instances: usize,
    pub phase: String,
    pub paused: bool,
}

/// CloudNativePG's `managedRolesStatus`, reduced to what the local platform knows.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ManagedRolesStatus {
    #[serde(default)]
    pub reconciled: Vec<String>,
    #[serde(default)]
    pub cannot_reconcile: BTreeMap<String, Vec<String>>,
}

/// A condition (`Ready`, ...).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LocalCondition {
    #[serde(rename = "type")]
    pub condition_type: String,
    pub status: String,
    pub reason: String,
    pub message: String,
}

impl From<pgherd_controller::cluster_status::ConditionInput> for LocalCondition {
    fn from(c: pgherd_controller::cluster_status::ConditionInput) -> Self {
        LocalCondition {
            condition_type: c.condition_type,
            status: if c.status { "True" } else { "False" }.into(),
            reason: c.reason,
            message: c.message,
        }
    }
}

/// Phase shown when nothing of the cluster runs (after `local down`, or before `local up`).
pub const PHASE_STOPPED: &str = "Stopped";
/// Phase shown while the control plane is down but instances still run (they outlive it).
pub const PHASE_NO_CONTROL_PLANE: &str = "Control plane not running";
/// Phase shown while the running control plane has not yet written a status of its own.
pub const PHASE_PENDING: &str = "Pending";

/// The stored status of a cluster made true now: the control plane writes it on every pass,
/// so when the control plane is not running, or was started after the status was written, the
/// stored phase, readiness and pids describe the past. Then the phase says so, no instance
/// counts as ready, and pids are those of postmasters that really run.
pub fn as_of_now(
    state: &crate::StateDir,
    namespace: &str,
    name: &str,
    stored: Option<LocalClusterStatus>,
) -> LocalClusterStatus {
    let status_file = state.status_path("Cluster", namespace, name);
    let modified = |p: &std::path::Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let control_plane = crate::instances::running_pid(&state.control_plane_pid());
    let current = match (&stored, control_plane) {
        (Some(_), Some(_)) => {
            match (modified(&status_file), modified(&state.control_plane_pid())) {
                (Some(written), Some(started)) => written >= started,
                _ => false,
            }
        }
        _ => false,
    };
    let mut status = stored.unwrap_or_else(|| LocalClusterStatus {
        name: name.to_string(),
        namespace: namespace.to_string(),
        ..LocalClusterStatus::default()
    });
    if current {
        return status;
    }
    let instances_dir = state.cluster_dir(namespace, name).join("instances");
    let mut running = 0;
    for instance in &mut status.instances_status {
        instance.ready = false;
        instance.pid = crate::instances::running_postmaster(&instances_dir.join(&instance.name));
        running += usize::from(instance.pid.is_some());
    }
    status.ready_instances = 0;
    status.phase = if control_plane.is_some() {
        PHASE_PENDING
    } else if running == 0 {
        PHASE_STOPPED
    } else {
        PHASE_NO_CONTROL_PLANE
    }
    .to_string();
    status
}

/// CloudNativePG's `Cluster.status` for a pass (`local get cluster` shows it), built by the
/// controller from the pass's plan and observation plus what the local view adds (backups,
/// archiving, managed roles); timestamps carry over from the previous one.
pub fn write_resource_status(
    state: &crate::StateDir,
    cluster: &pgherd_api::Cluster,
    plan: &pgherd_controller::plan::Plan,
    observed: &pgherd_controller::plan::Observation,
    view: &LocalClusterStatus,
) -> Result<(), crate::LocalError> {
    use pgherd_controller::cluster_status::{cluster_status, ConditionInput, StatusInput};
    let path = state.resource_status_path("Cluster", &view.namespace, &view.name);
    let previous: Option<pgherd_api::cluster::ClusterStatus> =
        crate::state::read_json(&path).ok().flatten();
    let addresses = view
        .instances_status
        .iter()
        .map(|i| (i.name.clone(), i.host.clone()))
        .collect();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    let mut status = cluster_status(&StatusInput {
        cluster,
        plan,
        observed,
        previous: previous.as_ref(),
        now,
        addresses: &addresses,
        conditions: view
            .conditions
            .iter()
            .filter(|c| c.condition_type != "Ready")
            .map(|c| ConditionInput {
                condition_type: c.condition_type.clone(),
                status: c.status == "True",
                reason: c.reason.clone(),
                message: c.message.clone(),
            })
            .collect(),
    });
    status.first_recoverability_point = view.first_recoverability_point.clone();
    status.last_successful_backup = view.last_successful_backup.clone();
    status.last_failed_backup = view.last_failed_backup.clone();
    let roles = &view.managed_roles_status;
    if !roles.reconciled.is_empty() || !roles.cannot_reconcile.is_empty() {
        status.managed_roles_status = Some(pgherd_api::cluster::ManagedRoles {
            by_status: Some(BTreeMap::from([(
                "reconciled".to_string(),
                roles.reconciled.clone(),
            )])),
            cannot_reconcile: Some(roles.cannot_reconcile.clone()).filter(|c| !c.is_empty()),
            password_status: None,
        });
    }
    status.phase = Some(view.phase.clone());
    if view.phase_reason.is_some() {
        status.phase_reason = view.phase_reason.clone();
    }
    if let Some(data) = &view.pg_data_image_info {
        status.image = Some(data.image.clone());
        status.pg_data_image_info = Some(data.clone());
    }
    if previous.as_ref() != Some(&status) {
        crate::state::write_json(&path, &status, 0o600)?;
    }
    Ok(())
}

/// The shared status view ([`pgherd_controller::status_view`]) of a local cluster: the stored
/// Cluster with the CloudNativePG-shaped status the control plane wrote, and the local view's
/// instances, poolers, endpoints and WAL archiving. `pgherd local status` renders it with the
/// renderer `kubectl cnpg status` uses.
pub fn shared_view(
    state: &crate::StateDir,
    view: &LocalClusterStatus,
    now: i64,
) -> pgherd_controller::status_view::StatusView {
    use pgherd_controller::status_view::{build, InstanceFacts, PoolerRow, ViewInput};
    let mut cluster: Option<pgherd_api::Cluster> =
        crate::state::read_json(&state.object_path("Cluster", &view.namespace, &view.name))
            .ok()
            .flatten();
    let resource_status: Option<pgherd_api::cluster::ClusterStatus> = crate::state::read_json(
        &state.resource_status_path("Cluster", &view.namespace, &view.name),
    )
    .ok()
    .flatten();
    if let Some(c) = cluster.as_mut() {
        let mut status = resource_status.unwrap_or_default();
        // The local view is fresher than the resource status (and knows when the control plane
        // is down): its phase and counts win.
        status.phase = Some(view.phase.clone());
        status.instances = i64::try_from(view.instances).ok();
        status.ready_instances = i64::try_from(view.ready_instances).ok();
        status.current_primary = view.current_primary.clone();
        status.target_primary = view.target_primary.clone();
        status.timeline_id = view.timeline.map(i64::from);
        status.first_recoverability_point = view.first_recoverability_point.clone();
        status.last_successful_backup = view.last_successful_backup.clone();
        status.last_failed_backup = view.last_failed_backup.clone();
        let mut conditions: Vec<pgherd_api::common::Condition> =
            status.conditions.take().unwrap_or_default();
        for local in &view.conditions {
            conditions.retain(|c| c.type_ != local.condition_type);
            conditions.push(pgherd_api::common::Condition {
                type_: local.condition_type.clone(),
                status: local.status.clone(),
                reason: local.reason.clone(),
                message: local.message.clone(),
                last_transition_time: pgherd_api::common::meta_time(now),
                observed_generation: None,
            });
        }
        status.conditions = Some(conditions);
        c.status = Some(status);
    }
    let instances = view
        .instances_status
        .iter()
        .map(|i| InstanceFacts {
            name: i.name.clone(),
            node: Some(format!("{}:{}", i.host, i.port)),
            role: Some(i.role.clone()),
            ready: Some(i.ready),
            current_lsn: i.lsn.as_deref().and_then(|l| l.parse().ok()),
            timeline: if i.role == "down" {
                None
            } else {
                view.timeline
            },
            lag_bytes: i.lag_bytes,
            archive: (view.current_primary.as_deref() == Some(i.name.as_str()))
                .then(|| view.wal_archive.clone())
                .flatten(),
            problem: i.error.clone(),
            ..InstanceFacts::default()
        })
        .collect();
    let poolers = view
        .poolers
        .iter()
        .map(|p| PoolerRow {
            name: p.name.clone(),
            pooler_type: p.pooler_type.clone(),
            instances: p.instances,
            ready_instances: p.ready_instances,
            endpoint: Some(p.endpoint.clone()),
            paused: p.paused,
        })
        .collect();
    let endpoints = view
        .endpoints
        .iter()
        .filter(|(kind, _)| !view.poolers.iter().any(|p| &p.name == *kind))
        .map(|(kind, addr)| (format!("{}-{kind}", view.name), addr.clone()))
        .collect();
    build(ViewInput {
        cluster: cluster.as_ref(),
        namespace: view.namespace.clone(),
        name: view.name.clone(),
        instances,
        poolers,
        endpoints,
        now,
        notes: Vec::new(),
    })
}
