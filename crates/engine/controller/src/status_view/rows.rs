//! How the status view's rows are worked out from the facts: continuous backup from the
//! Cluster's status and the primary's archiver, and each instance's row with its replication
//! role decided as CloudNativePG's plugin decides it.

use super::{ContinuousBackup, InstanceFacts, InstanceRow};
use crate::operations;
use pgherd_api::Cluster;
use pgherd_postgres::Lsn;

/// Continuous backup: what the Cluster's status says about backups, and the primary's last
/// `archive_command` outcome.
pub(super) fn continuous_backup(
    cluster: Option<&Cluster>,
    status: &pgherd_api::cluster::ClusterStatus,
    primary: Option<&InstanceFacts>,
) -> ContinuousBackup {
    let archive = primary.and_then(|p| p.archive.clone());
    let archiving_condition = status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "ContinuousArchiving");
    let configured = cluster.is_some_and(|c| {
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
    let disabled = cluster.is_some_and(Cluster::wal_archiving_disabled);
    let wal_archiving = match (archiving_condition, &archive) {
        _ if disabled => Some("Disabled".to_string()),
        (Some(c), _) if c.status == "False" => Some(format!("Failing: {}", c.message)),
        (_, Some(a)) if a.failing() => Some(format!(
            "Failing: {}",
            a.last_error.clone().unwrap_or_default()
        )),
        (Some(_), _) => Some("OK".to_string()),
        (None, Some(a)) if a.last_archived_wal.is_some() => Some("OK".to_string()),
        _ if configured => Some("Starting Up".to_string()),
        _ => None,
    };
    ContinuousBackup {
        configured,
        first_recoverability_point: status.first_recoverability_point.clone(),
        last_successful_backup: status.last_successful_backup.clone(),
        last_failed_backup: status.last_failed_backup.clone(),
        wal_archiving,
        last_archived_wal: archive.as_ref().and_then(|a| a.last_archived_wal.clone()),
        last_archived_time: archive.as_ref().and_then(|a| a.last_archived_time.clone()),
        last_failed_wal: archive.as_ref().and_then(|a| a.last_failed_wal.clone()),
        last_failed_time: archive.as_ref().and_then(|a| a.last_failed_time.clone()),
    }
}

/// One instance's row, its replication role decided the way CloudNativePG's plugin decides
/// it: fenced, primary, designated primary; a standby by its WAL receiver, replay and the
/// primary's `pg_stat_replication`.
pub(super) fn instance_row(
    i: &InstanceFacts,
    primary_name: Option<&str>,
    replica_cluster: bool,
    primary: Option<&InstanceFacts>,
    write_lsn: Option<Lsn>,
    fenced: &[String],
) -> InstanceRow {
    let is_current = Some(i.name.as_str()) == primary_name;
    let is_primary = is_current && i.role.as_deref() != Some("down") && !replica_cluster
        || i.role.as_deref() == Some("primary");
    let streaming = primary.and_then(|p| {
        p.replication
            .iter()
            .find(|r| r.application_name == i.name && r.state == "streaming")
    });
    let role = if operations::is_fenced(fenced, &i.name) {
        "Fenced".to_string()
    } else if is_primary {
        "Primary".to_string()
    } else if replica_cluster && is_current {
        "Designated primary".to_string()
    } else {
        match i.role.as_deref() {
            Some("down") => "Down".to_string(),
            Some("replica") | None if i.wal_receiver_active == Some(false) => {
                if i.ready == Some(true) {
                    "Standby (file based)".to_string()
                } else {
                    "Standby (starting up)".to_string()
                }
            }
            Some("replica") | None if i.replay_paused => "Standby (paused)".to_string(),
            Some("replica") | None if streaming.is_some() => {
                match streaming.map(|r| r.sync_state.as_str()) {
                    Some("sync" | "quorum") => "Standby (sync)".to_string(),
                    Some("potential") => "Standby (potential sync)".to_string(),
                    Some("async") => "Standby (async)".to_string(),
                    other => format!("Standby ({})", other.unwrap_or_default()),
                }
            }
            Some("replica") if replica_cluster => "Standby (in Replica Cluster)".to_string(),
            Some("replica") => "Standby".to_string(),
            _ => "Unknown".to_string(),
        }
    };
    let lag_bytes = i.lag_bytes.or_else(|| {
        if is_primary {
            return None;
        }
        write_lsn.zip(i.current_lsn).map(|(w, c)| w.bytes_since(c))
    });
    let status = if let Some(problem) = &i.problem {
        problem.clone()
    } else {
        match i.ready {
            Some(true) if i.pending_restart => "OK (pending restart)".to_string(),
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
        qos: i.qos.clone(),
        node: i.node.clone(),
        manager_version: i.manager_version.clone(),
    }
}
