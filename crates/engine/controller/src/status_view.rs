//! What `kubectl cnpg status` and `pgherd local status` show about a cluster, built the same
//! way from what either platform knows: the Cluster (spec, annotations and the status the
//! controller wrote) plus per-instance facts (a Pod and its instance manager's `/pg/status`
//! report on Kubernetes, the local view's instance entries locally). One view model, one
//! renderer ([`crate::status_render`]), so both commands print the same sections in the same
//! order: cluster summary, certificates, continuous backup, streaming replication, instances,
//! poolers. Pure.

use crate::operations;
use pgherd_api::Cluster;
use pgherd_instance_protocol::{ArchiveReport, InstanceStatus, ReplicationInfo, Role};
use pgherd_postgres::{Lsn, Timeline};
use serde::Serialize;

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
    /// Primary: `pg_stat_replication`.
    pub replication: Vec<ReplicationInfo>,
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
            replication: report.replication_info.clone(),
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
    pub primary_start_time: Option<String>,
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
    /// `OK`, `Failing: ...`, or `Starting up` before the first WAL is archived.
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
    /// Bytes between what the primary wrote and what the standby replayed.
    pub replay_lag_bytes: Option<u64>,
    pub state: String,
    pub sync_state: String,
}

/// One instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InstanceRow {
    pub name: String,
    pub current_lsn: Option<String>,
    pub lag_bytes: Option<u64>,
    pub timeline: Option<u32>,
    /// `Primary`, `Standby (async)`, `Standby (sync)`, `Standby`, `Down`, `Unknown`.
    pub role: String,
    /// `OK`, `Fenced`, `Not ready`, or what is wrong.
    pub status: String,
    pub node: Option<String>,
    pub manager_version: Option<String>,
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
    pub certificates: Vec<CertificateRow>,
    pub continuous_backup: ContinuousBackup,
    pub streaming_replication: Vec<ReplicationRow>,
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
    /// Now, seconds since the epoch (for days left on certificates).
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
        primary_start_time: status.current_primary_timestamp.clone(),
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

    let archive = primary.and_then(|p| p.archive.clone());
    let archiving_condition = status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "ContinuousArchiving");
    let configured = input.cluster.is_some_and(|c| {
        c.spec
            .backup
            .as_ref()
            .is_some_and(|b| b.barman_object_store.is_some())
            || c.spec
                .plugins
                .iter()
                .flatten()
                .any(|p| p.is_wal_archiver == Some(true))
    }) || archive.is_some()
        || archiving_condition.is_some();
    let wal_archiving = match (archiving_condition, &archive) {
        (Some(c), _) if c.status == "False" => Some(format!("Failing: {}", c.message)),
        (_, Some(a)) if a.failing() => Some(format!(
            "Failing: {}",
            a.last_error.clone().unwrap_or_default()
        )),
        (Some(_), _) => Some("OK".to_string()),
        (None, Some(a)) if a.last_archived_wal.is_some() => Some("OK".to_string()),
        _ if configured => Some("Starting up".to_string()),
        _ => None,
    };
    let continuous_backup = ContinuousBackup {
        configured,
        first_recoverability_point: status.first_recoverability_point.clone(),
        last_successful_backup: status.last_successful_backup.clone(),
        last_failed_backup: status.last_failed_backup.clone(),
        wal_archiving,
        last_archived_wal: archive.as_ref().and_then(|a| a.last_archived_wal.clone()),
        last_archived_time: archive.as_ref().and_then(|a| a.last_archived_time.clone()),
        last_failed_wal: archive.as_ref().and_then(|a| a.last_failed_wal.clone()),
        last_failed_time: archive.as_ref().and_then(|a| a.last_failed_time.clone()),
    };

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
                    replay_lag_bytes: write_lsn.zip(r.replay_lsn).map(|(w, r)| w.bytes_since(r)),
                    state: r.state.clone(),
                    sync_state: r.sync_state.clone(),
                })
                .collect();
            rows.sort_by_key(|a| serial_order(&a.name));
            rows
        })
        .unwrap_or_default();

    let instance_rows = instances
        .iter()
        .map(|i| {
            let is_primary = Some(&i.name) == primary_name.as_ref()
                && i.role.as_deref() != Some("down")
                || i.role.as_deref() == Some("primary");
            let sync = streaming_replication
                .iter()
                .find(|r| r.name == i.name)
                .map(|r| r.sync_state.clone());
            let role = match (i.role.as_deref(), is_primary) {
                (_, true) => "Primary".to_string(),
                (Some("down"), _) => "Down".to_string(),
                (Some("replica"), _) | (None, false) if sync.is_some() => {
                    format!("Standby ({})", sync.unwrap_or_default())
                }
                (Some("replica"), _) => "Standby".to_string(),
                _ => "Unknown".to_string(),
            };
            let lag_bytes = i.lag_bytes.or_else(|| {
                if is_primary {
                    return None;
                }
                write_lsn.zip(i.current_lsn).map(|(w, c)| w.bytes_since(c))
            });
            let status = if operations::is_fenced(&fenced, &i.name) {
                "Fenced".to_string()
            } else if let Some(problem) = &i.problem {
                problem.clone()
            } else {
                match i.ready {
                    Some(true) => "OK".to_string(),
                    Some(false) => "Not ready".to_string(),
                    None => "Unknown".to_string(),
                }
            };
            InstanceRow {
                name: i.name.clone(),
                current_lsn: i.current_lsn.map(|l| l.to_string()),
                lag_bytes: if is_primary { None } else { lag_bytes },
                timeline: i.timeline,
                role,
                status,
                node: i.node.clone(),
                manager_version: i.manager_version.clone(),
            }
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

    let mut poolers = input.poolers;
    poolers.sort_by(|a, b| a.name.cmp(&b.name));
    StatusView {
        summary,
        certificates,
        continuous_backup,
        streaming_replication,
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
