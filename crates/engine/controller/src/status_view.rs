//! What `kubectl cnpg status` and `pgherd local status` show about a cluster, built the same
//! way from what either platform knows: the Cluster (spec, annotations and the status the
//! controller wrote) plus per-instance facts (a Pod and its instance manager's `/pg/status`
//! report on Kubernetes, the local view's instance entries locally). One view model, one
//! renderer ([`crate::status_render`]), so both commands print the same sections in the same
//! order (CloudNativePG's): cluster summary, hibernation, certificates, continuous backup,
//! streaming replication, replication slots, managed roles, tablespaces, instances; then
//! pgherd's poolers. Pure.

use crate::operations;
use pgherd_api::Cluster;
use pgherd_instance_protocol::{
    ArchiveReport, InstanceStatus, ReplicationInfo, ReplicationSlotInfo, Role,
};
use pgherd_postgres::{Lsn, Timeline};
use serde::Serialize;

mod rows;
use rows::{continuous_backup, instance_row};

/// What the platform knows about one instance.
#[derive(Debug, Clone, Default)]
pub struct InstanceFacts {
    pub name: String,
    /// Where it runs: the Kubernetes node, or the local address.
    pub node: Option<String>,
    /// `primary`, `replica` or `down`, from the report or (without one) the platform.
    pub role: Option<String>,
    pub ready: Option<bool>,
    /// Primary: its write position; replica: its replay position.
    pub current_lsn: Option<Lsn>,
    pub received_lsn: Option<Lsn>,
    pub timeline: Option<u32>,
    /// Bytes of WAL behind the primary, when the platform computed it.
    pub lag_bytes: Option<u64>,
    pub manager_version: Option<String>,
    pub system_id: Option<String>,
    /// The Pod's QoS class (`BestEffort`, `Burstable`, `Guaranteed`), on Kubernetes.
    pub qos: Option<String>,
    /// A changed setting waits for a restart.
    pub pending_restart: bool,
    /// Replica: WAL replay is paused.
    pub replay_paused: bool,
    /// Replica: whether its WAL receiver streams (`None`: not reported).
    pub wal_receiver_active: Option<bool>,
    /// Primary: `pg_stat_replication`.
    pub replication: Vec<ReplicationInfo>,
    /// Primary: `pg_replication_slots`.
    pub replication_slots: Vec<ReplicationSlotInfo>,
    pub archive: Option<ArchiveReport>,
    /// What is wrong, when something is (a Pod not running, an error in the report, a status
    /// that could not be read).
    pub problem: Option<String>,
}

impl InstanceFacts {
    /// Facts from an instance manager's report.
    pub fn from_report(report: &InstanceStatus) -> InstanceFacts {
        InstanceFacts {
            name: report.pod.clone(),
            node: None,
            role: Some(
                match report.role {
                    Role::Primary => "primary",
                    Role::Replica => "replica",
                    Role::Down => "down",
                }
                .to_string(),
            ),
            ready: Some(report.ready),
            current_lsn: report.current_lsn.or(report.replay_lsn),
            received_lsn: report.received_lsn,
            timeline: report.timeline_id,
            lag_bytes: None,
            manager_version: Some(report.instance_manager_version.clone())
                .filter(|v| !v.is_empty()),
            system_id: report.system_id.clone(),
            qos: None,
            pending_restart: report.pending_restart,
            replay_paused: report.replay_paused,
            wal_receiver_active: (report.role == Role::Replica)
                .then_some(report.is_wal_receiver_active),
            replication: report.replication_info.clone(),
            replication_slots: report.replication_slots.clone(),
            archive: report.archive.clone(),
            problem: report.error.clone(),
        }
    }
}

/// A Pooler in front of the cluster.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PoolerRow {
    pub name: String,
    #[serde(rename = "type")]
    pub pooler_type: String,
    pub instances: usize,
    pub ready_instances: usize,
    /// Where clients connect (a Service name or a local address).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    pub paused: bool,
}

/// The cluster summary.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    pub name: String,
    pub namespace: String,
    #[serde(rename = "systemID")]
    pub system_id: Option<String>,
    pub image: Option<String>,
    pub primary: Option<String>,
    /// A replica cluster: the external cluster it replicates from (its primary is the
    /// designated primary).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replica_source: Option<String>,
    /// The token its primary issued when the cluster was demoted (`status.demotionToken`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub demotion_token: Option<String>,
    /// A promotion token the cluster is to be promoted with and was not yet.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pending_promotion_token: Option<String>,
    /// When the current primary was promoted (`status.currentPrimaryTimestamp`).
    pub primary_start_time: Option<String>,
    /// Seconds since `primary_start_time`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub primary_uptime_seconds: Option<i64>,
    /// Set while it differs from `primary` (a switchover or failover under way).
    pub target_primary: Option<String>,
    pub phase: String,
    pub phase_reason: Option<String>,
    pub instances: i64,
    pub ready_instances: i64,
    pub current_write_lsn: Option<String>,
    pub timeline: Option<i64>,
    pub wal_file: Option<String>,
    pub fenced_instances: Vec<String>,
    pub hibernation: Option<String>,
    /// Endpoints clients connect to (`rw` → address), when the platform has them.
    pub endpoints: Vec<(String, String)>,
}

/// A certificate and when it expires.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CertificateRow {
    pub secret: String,
    pub expiration: String,
    /// Whole days from now, when the expiration parses.
    pub days_left: Option<i64>,
}

/// Continuous backup: recoverability and WAL archiving.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ContinuousBackup {
    /// Whether the cluster archives WAL at all (an object store or a WAL-archiver plugin).
    pub configured: bool,
    pub first_recoverability_point: Option<String>,
    pub last_successful_backup: Option<String>,
    pub last_failed_backup: Option<String>,
    /// `OK`, `Failing: ...`, `Disabled` (by annotation), or `Starting Up` before the first WAL
    /// is archived.
    pub wal_archiving: Option<String>,
    #[serde(rename = "lastArchivedWAL")]
    pub last_archived_wal: Option<String>,
    #[serde(rename = "lastArchivedWALTime")]
    pub last_archived_time: Option<String>,
    #[serde(rename = "lastFailedWAL")]
    pub last_failed_wal: Option<String>,
    #[serde(rename = "lastFailedWALTime")]
    pub last_failed_time: Option<String>,
}

/// One standby as the primary sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReplicationRow {
    pub name: String,
    pub sent_lsn: Option<String>,
    pub write_lsn: Option<String>,
    pub flush_lsn: Option<String>,
    pub replay_lsn: Option<String>,
    /// PostgreSQL's `write_lag`, `flush_lag`, `replay_lag` (intervals).
    pub write_lag: Option<String>,
    pub flush_lag: Option<String>,
    pub replay_lag: Option<String>,
    /// Bytes between what the primary wrote and what the standby replayed.
    pub replay_lag_bytes: Option<u64>,
    pub state: String,
    pub sync_state: String,
    pub sync_priority: Option<i32>,
    /// The high-availability replication slot the primary keeps for it, when reported.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub slot: Option<ReplicationSlotInfo>,
}

/// One instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InstanceRow {
    pub name: String,
    pub current_lsn: Option<String>,
    pub lag_bytes: Option<u64>,
    pub timeline: Option<u32>,
    /// CloudNativePG's replication role: `Primary`, `Designated primary`, `Fenced`,
    /// `Standby (sync)`, `Standby (potential sync)`, `Standby (async)`, `Standby (paused)`,
    /// `Standby (file based)`, `Standby (starting up)`, `Standby (in Replica Cluster)`; pgherd
    /// adds `Standby` (the primary's view is unknown), `Down` and `Unknown`.
    pub role: String,
    /// `OK`, `OK (pending restart)`, `Not ready`, or what is wrong.
    pub status: String,
    pub qos: Option<String>,
    pub node: Option<String>,
    pub manager_version: Option<String>,
}

/// The `cnpg.io/hibernation` condition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HibernationRow {
    pub hibernated: bool,
    pub message: String,
    /// When the condition last changed (RFC 3339).
    pub time: String,
}

/// Managed roles by state, and the errors of those that cannot be reconciled.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ManagedRolesView {
    pub by_status: Vec<(String, Vec<String>)>,
    pub cannot_reconcile: Vec<(String, Vec<String>)>,
}

/// A managed tablespace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TablespaceRow {
    pub name: String,
    pub owner: Option<String>,
    pub state: String,
    pub temporary: bool,
    pub error: Option<String>,
}

/// A condition of the cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConditionRow {
    #[serde(rename = "type")]
    pub condition_type: String,
    pub status: String,
    pub reason: String,
    pub message: String,
}

/// Everything `status` shows.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusView {
    pub summary: Summary,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hibernation: Option<HibernationRow>,
    pub certificates: Vec<CertificateRow>,
    pub continuous_backup: ContinuousBackup,
    /// High-availability replication slots are on (`replicationSlots.highAvailability`).
    pub replication_slots_enabled: bool,
    pub streaming_replication: Vec<ReplicationRow>,
    /// Why `streaming_replication` is empty: `Not configured` (one instance), `Primary
    /// instance not found`, `Not available yet`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub streaming_replication_absent: Option<String>,
    /// The primary's replication slots that are not the high-availability ones.
    pub unmanaged_replication_slots: Vec<ReplicationSlotInfo>,
    pub managed_roles: ManagedRolesView,
    pub tablespaces: Vec<TablespaceRow>,
    pub instances: Vec<InstanceRow>,
    pub poolers: Vec<PoolerRow>,
    pub conditions: Vec<ConditionRow>,
    /// What could not be read, and what that leaves out.
    pub notes: Vec<String>,
}

/// What the view is built from.
#[derive(Debug, Default)]
pub struct ViewInput<'a> {
    pub cluster: Option<&'a Cluster>,
    pub namespace: String,
    pub name: String,
    pub instances: Vec<InstanceFacts>,
    pub poolers: Vec<PoolerRow>,
    pub endpoints: Vec<(String, String)>,
    /// Now, seconds since the epoch (for days left on certificates and the primary's uptime).
    pub now: i64,
    pub notes: Vec<String>,
}

fn parse_time(s: &str) -> Option<i64> {
    s.parse::<k8s_openapi::jiff::Timestamp>()
        .ok()
        .map(|t| t.as_second())
}

/// Build the view.
pub fn build(input: ViewInput<'_>) -> StatusView {
    let status = input
        .cluster
        .and_then(|c| c.status.clone())
        .unwrap_or_default();
    let fenced = input
        .cluster
        .map(operations::fenced_instances)
        .unwrap_or_default();
    let annotations = input.cluster.and_then(|c| c.metadata.annotations.as_ref());
    let replica_source = input
        .cluster
        .filter(|c| c.is_replica())
        .and_then(|c| c.spec.replica.as_ref())
        .map(|r| r.source.clone());
    let mut instances = input.instances;
    instances.sort_by_key(|a| serial_order(&a.name));
    let primary_name = status.current_primary.clone().or_else(|| {
        instances
            .iter()
            .find(|i| i.role.as_deref() == Some("primary"))
            .map(|i| i.name.clone())
    });
    let primary = instances
        .iter()
        .find(|i| Some(&i.name) == primary_name.as_ref());
    let write_lsn = primary.and_then(|p| p.current_lsn);
    let timeline = status
        .timeline_id
        .or_else(|| primary.and_then(|p| p.timeline).map(i64::from));
    let wal_file = match (write_lsn, timeline) {
        (Some(lsn), Some(tl)) => u32::try_from(tl).ok().map(|tl| {
            pgherd_postgres::wal::segment_name(
                Timeline(tl),
                lsn,
                pgherd_postgres::wal::DEFAULT_SEGMENT_SIZE,
            )
        }),
        _ => None,
    };
    let summary = Summary {
        name: input.name.clone(),
        namespace: input.namespace.clone(),
        system_id: status
            .system_id
            .clone()
            .or_else(|| instances.iter().find_map(|i| i.system_id.clone())),
        image: status.image.clone().or_else(|| {
            // Without a catalog, the image is the spec's or the default.
            input
                .cluster
                .filter(|c| c.spec.image_catalog_ref.is_none())
                .map(Cluster::image_name)
        }),
        primary: primary_name.clone(),
        replica_source,
        demotion_token: status.demotion_token.clone(),
        pending_promotion_token: input
            .cluster
            .and_then(crate::external::pending_promotion_token)
            .map(str::to_string),
        primary_start_time: status.current_primary_timestamp.clone(),
        primary_uptime_seconds: status
            .current_primary_timestamp
            .as_deref()
            .and_then(parse_time)
            .map(|t| input.now - t),
        target_primary: status
            .target_primary
            .clone()
            .filter(|t| Some(t) != primary_name.as_ref()),
        phase: status.phase.clone().unwrap_or_else(|| "-".to_string()),
        phase_reason: status.phase_reason.clone().filter(|r| !r.is_empty()),
        instances: status.instances.unwrap_or_else(|| {
            input
                .cluster
                .and_then(|c| c.spec.instances)
                .unwrap_or(instances.len() as i64)
        }),
        ready_instances: status
            .ready_instances
            .unwrap_or_else(|| instances.iter().filter(|i| i.ready == Some(true)).count() as i64),
        current_write_lsn: write_lsn.map(|l| l.to_string()),
        timeline,
        wal_file,
        fenced_instances: fenced.clone(),
        hibernation: annotations
            .and_then(|a| a.get(operations::HIBERNATION_ANNOTATION))
            .cloned(),
        endpoints: input.endpoints,
    };

    let mut certificates: Vec<CertificateRow> = status
        .certificates
        .as_ref()
        .and_then(|c| c.expirations.clone())
        .unwrap_or_default()
        .into_iter()
        .map(|(secret, expiration)| CertificateRow {
            days_left: parse_time(&expiration).map(|t| (t - input.now).div_euclid(86_400)),
            secret,
            expiration,
        })
        .collect();
    certificates.sort_by(|a, b| a.secret.cmp(&b.secret));

    let continuous_backup = continuous_backup(input.cluster, &status, primary);

    let slot_prefix = input
        .cluster
        .and_then(|c| c.spec.replication_slots.as_ref())
        .and_then(|r| r.high_availability.as_ref());
    let replication_slots_enabled = slot_prefix.and_then(|h| h.enabled).unwrap_or(true);
    let slot_prefix = slot_prefix
        .and_then(|h| h.slot_prefix.clone())
        .unwrap_or_else(|| "_cnpg_".to_string());
    let primary_slots = primary
        .map(|p| p.replication_slots.as_slice())
        .unwrap_or(&[]);
    let streaming_replication: Vec<ReplicationRow> = primary
        .map(|p| {
            let mut rows: Vec<ReplicationRow> = p
                .replication
                .iter()
                .map(|r| ReplicationRow {
                    name: r.application_name.clone(),
                    sent_lsn: r.sent_lsn.map(|l| l.to_string()),
                    write_lsn: r.write_lsn.map(|l| l.to_string()),
                    flush_lsn: r.flush_lsn.map(|l| l.to_string()),
                    replay_lsn: r.replay_lsn.map(|l| l.to_string()),
                    write_lag: r.write_lag.clone(),
                    flush_lag: r.flush_lag.clone(),
                    replay_lag: r.replay_lag.clone(),
                    replay_lag_bytes: write_lsn.zip(r.replay_lsn).map(|(w, r)| w.bytes_since(r)),
                    state: r.state.clone(),
                    sync_state: r.sync_state.clone(),
                    sync_priority: r.sync_priority,
                    slot: {
                        let name = pgherd_api::cluster::replication_slot_name(
                            &slot_prefix,
                            &r.application_name,
                        );
                        primary_slots.iter().find(|s| s.slot_name == name).cloned()
                    },
                })
                .collect();
            rows.sort_by_key(|a| serial_order(&a.name));
            rows
        })
        .unwrap_or_default();
    let single_instance = input.cluster.and_then(|c| c.spec.instances) == Some(1);
    let streaming_replication_absent = streaming_replication.is_empty().then(|| {
        if single_instance {
            "Not configured"
        } else if primary.is_none() {
            "Primary instance not found"
        } else {
            "Not available yet"
        }
        .to_string()
    });
    let unmanaged_replication_slots = primary_slots
        .iter()
        .filter(|s| !(replication_slots_enabled && s.slot_name.starts_with(&slot_prefix)))
        .cloned()
        .collect();

    let designated_primary = summary.replica_source.is_some();
    let instance_rows = instances
        .iter()
        .map(|i| {
            instance_row(
                i,
                primary_name.as_deref(),
                designated_primary,
                primary,
                write_lsn,
                &fenced,
            )
        })
        .collect();

    let conditions = status
        .conditions
        .iter()
        .flatten()
        .map(|c| ConditionRow {
            condition_type: c.type_.clone(),
            status: c.status.clone(),
            reason: c.reason.clone(),
            message: c.message.clone(),
        })
        .collect();
    let hibernation = status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == operations::HIBERNATION_ANNOTATION)
        .map(|c| HibernationRow {
            hibernated: c.status == "True",
            message: c.message.clone(),
            time: c.last_transition_time.0.to_string(),
        });

    let managed_roles = status
        .managed_roles_status
        .as_ref()
        .map(|m| ManagedRolesView {
            by_status: m
                .by_status
                .clone()
                .unwrap_or_default()
                .into_iter()
                .collect(),
            cannot_reconcile: m
                .cannot_reconcile
                .clone()
                .unwrap_or_default()
                .into_iter()
                .collect(),
        })
        .unwrap_or_default();
    let temporary = |name: &str| {
        input
            .cluster
            .and_then(|c| c.spec.tablespaces.as_ref())
            .is_some_and(|t| {
                t.iter()
                    .any(|t| t.name == name && t.temporary == Some(true))
            })
    };
    let tablespaces = status
        .tablespaces_status
        .iter()
        .flatten()
        .map(|t| TablespaceRow {
            name: t.name.clone(),
            owner: t.owner.clone(),
            state: t.state.clone(),
            temporary: temporary(&t.name),
            error: t.error.clone(),
        })
        .collect();

    let mut poolers = input.poolers;
    poolers.sort_by(|a, b| a.name.cmp(&b.name));
    StatusView {
        summary,
        hibernation,
        certificates,
        continuous_backup,
        replication_slots_enabled,
        streaming_replication,
        streaming_replication_absent,
        unmanaged_replication_slots,
        managed_roles,
        tablespaces,
        instances: instance_rows,
        poolers,
        conditions,
        notes: input.notes,
    }
}

/// Sort key putting `X-2` before `X-10`.
fn serial_order(name: &str) -> (String, u64) {
    match name.rsplit_once('-') {
        Some((prefix, serial)) => match serial.parse::<u64>() {
            Ok(n) => (prefix.to_string(), n),
            Err(_) => (name.to_string(), 0),
        },
        None => (name.to_string(), 0),
    }
}
