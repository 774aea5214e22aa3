//! `ScheduledBackup`s on the local platform: a `Backup` named `<schedule>-<YYYYMMDDhhmmss>` of
//! the scheduled time when it is due (and one at once with `immediate`), never while the
//! previous one is still running; `suspend` stops it. Times are UTC, as the operator's.

use crate::state::{read_json, write_json, StateDir};
use crate::LocalError;
use pgherd_api::kinds::backup::{Backup, BackupSpec, BackupStatus};
use pgherd_api::kinds::scheduled_backup::{
    BackupOwnerReference, ScheduledBackup, ScheduledBackupStatus,
};
use std::collections::BTreeMap;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// Label CloudNativePG puts on the Backups a schedule creates.
pub const SCHEDULED_BACKUP_LABEL: &str = "cnpg.io/scheduled-backup";
/// Label of the Backup `immediate` creates.
pub const IMMEDIATE_BACKUP_LABEL: &str = "cnpg.io/immediateBackup";

fn rfc3339(unix: i64) -> String {
    OffsetDateTime::from_unix_timestamp(unix)
        .map(pgherd_backup::timestamp::rfc3339)
        .unwrap_or_default()
}

fn unix(text: Option<&str>) -> Option<i64> {
    OffsetDateTime::parse(text?, &Rfc3339)
        .ok()
        .map(OffsetDateTime::unix_timestamp)
}

fn stamp(unix: i64) -> String {
    pgherd_backup::timestamp::name_stamp(
        OffsetDateTime::from_unix_timestamp(unix).unwrap_or(OffsetDateTime::UNIX_EPOCH),
    )
}

/// Whether a Backup the schedule created is still to finish.
fn unfinished(state: &StateDir, namespace: &str, schedule: &str) -> Result<bool, LocalError> {
    for (ns, name, backup) in state.list_objects::<Backup>("Backup")? {
        let ours = backup
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(SCHEDULED_BACKUP_LABEL))
            .is_some_and(|s| s == schedule);
        if ns != namespace || !ours {
            continue;
        }
        let status: BackupStatus =
            read_json(&state.status_path("Backup", &ns, &name))?.unwrap_or_default();
        if !matches!(status.phase.as_deref(), Some("completed" | "failed")) {
            return Ok(true);
        }
    }
    Ok(false)
}

fn create_backup(
    state: &StateDir,
    namespace: &str,
    schedule: &ScheduledBackup,
    name: &str,
    immediate: bool,
) -> Result<(), LocalError> {
    let path = state.object_path("Backup", namespace, name);
    if path.exists() {
        return Ok(()); // created by an earlier pass: idempotent
    }
    let spec = &schedule.spec;
    let mut backup = Backup::new(
        name,
        BackupSpec {
            cluster: spec.cluster.clone(),
            target: spec.target,
            method: spec.method,
            plugin_configuration: spec.plugin_configuration.clone(),
            online: spec.online,
            online_configuration: spec.online_configuration.clone(),
        },
    );
    let schedule_name = schedule.metadata.name.clone().unwrap_or_default();
    let mut labels = BTreeMap::from([(SCHEDULED_BACKUP_LABEL.to_string(), schedule_name.clone())]);
    if immediate {
        labels.insert(IMMEDIATE_BACKUP_LABEL.into(), "true".into());
    }
    backup.metadata.labels = Some(labels);
    backup.metadata.namespace = Some(namespace.to_string());
    let owner = match spec.backup_owner_reference.unwrap_or_default() {
        BackupOwnerReference::None => None,
        BackupOwnerReference::SelfRef => Some(("ScheduledBackup", schedule_name)),
        BackupOwnerReference::Cluster => Some(("Cluster", spec.cluster.name.clone())),
    };
    if let Some((kind, owner_name)) = owner {
        backup.metadata.owner_references = Some(vec![
            k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
                api_version: "postgresql.cnpg.io/v1".into(),
                kind: kind.into(),
                name: owner_name,
                ..Default::default()
            },
        ]);
    }
    write_json(&path, &backup, 0o600)
}

/// One pass over every ScheduledBackup at `now` (seconds since the epoch). Returns the
/// Backups created.
pub fn reconcile_schedules(state: &StateDir, now: i64) -> Result<Vec<String>, LocalError> {
    let mut created = Vec::new();
    for (namespace, name, schedule) in state.list_objects::<ScheduledBackup>("ScheduledBackup")? {
        let status_path = state.status_path("ScheduledBackup", &namespace, &name);
        let mut status: ScheduledBackupStatus = read_json(&status_path)?.unwrap_or_default();
        let before = status.clone();
        status.last_check_time = Some(rfc3339(now));
        match pgherd_api::cron::parse(&schedule.spec.schedule) {
            Err(e) => {
                status.error = Some(format!(
                    "spec.schedule: {e} (hint: six fields, seconds first: \"0 0 0 * * *\" is every midnight)"
                ));
                status.next_schedule_time = None;
            }
            Ok(_) if schedule.spec.suspend == Some(true) => {
                status.error = None;
                status.next_schedule_time = None;
            }
            Ok(cron) => {
                status.error = None;
                if schedule.spec.immediate == Some(true) && status.last_schedule_time.is_none() {
                    let backup = format!("{name}-{}", stamp(now));
                    create_backup(state, &namespace, &schedule, &backup, true)?;
                    created.push(backup);
                    status.last_schedule_time = Some(rfc3339(now));
                }
                let next =
                    unix(status.next_schedule_time.as_deref()).or_else(|| cron.next_after(now));
                match next {
                    Some(due) if due <= now => {
                        if !unfinished(state, &namespace, &name)? {
                            let backup = format!("{name}-{}", stamp(due));
                            create_backup(state, &namespace, &schedule, &backup, false)?;
                            created.push(backup);
                            status.last_schedule_time = Some(rfc3339(due));
                            status.next_schedule_time = cron.next_after(now).map(rfc3339);
                        }
                    }
                    Some(due) => status.next_schedule_time = Some(rfc3339(due)),
                    None => {
                        status.error = Some(format!(
                            "spec.schedule: {:?} never fires",
                            schedule.spec.schedule
                        ));
                    }
                }
            }
        }
        // lastCheckTime alone does not rewrite the file.
        let changed = ScheduledBackupStatus {
            last_check_time: None,
            ..status.clone()
        } != ScheduledBackupStatus {
            last_check_time: None,
            ..before
        };
        if changed {
            write_json(&status_path, &status, 0o600)?;
        }
    }
    Ok(created)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule(state: &StateDir, yaml: &str) {
        let manifests = pgherd_api::manifest::load(yaml);
        assert_eq!(crate::apply::store(state, &manifests).unwrap().len(), 1);
    }

    #[test]
    fn immediate_then_on_schedule_never_two_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::new(dir.path());
        state.create().unwrap();
        schedule(
            &state,
            "apiVersion: postgresql.cnpg.io/v1\nkind: ScheduledBackup\nmetadata:\n  name: nightly\nspec:\n  schedule: \"0 0 2 * * *\"\n  immediate: true\n  backupOwnerReference: self\n  cluster:\n    name: pg\n",
        );
        let monday = 1_704_067_200; // 2024-01-01T00:00:00Z
        let created = reconcile_schedules(&state, monday).unwrap();
        assert_eq!(created, vec!["nightly-20240101000000"]);
        let status: ScheduledBackupStatus =
            read_json(&state.status_path("ScheduledBackup", "default", "nightly"))
                .unwrap()
                .unwrap();
        assert_eq!(
            status.next_schedule_time.as_deref(),
            Some("2024-01-01T02:00:00Z")
        );
        // Due, but the immediate one has not finished.
        assert!(reconcile_schedules(&state, monday + 2 * 3600)
            .unwrap()
            .is_empty());
        write_json(
            &state.status_path("Backup", "default", "nightly-20240101000000"),
            &BackupStatus {
                phase: Some("completed".into()),
                ..Default::default()
            },
            0o644,
        )
        .unwrap();
        let created = reconcile_schedules(&state, monday + 2 * 3600 + 5).unwrap();
        assert_eq!(created, vec!["nightly-20240101020000"]);
        let backup: Backup =
            read_json(&state.object_path("Backup", "default", "nightly-20240101020000"))
                .unwrap()
                .unwrap();
        assert_eq!(backup.spec.cluster.name, "pg");
        assert_eq!(
            backup.metadata.owner_references.unwrap()[0].kind,
            "ScheduledBackup"
        );
        let status: ScheduledBackupStatus =
            read_json(&state.status_path("ScheduledBackup", "default", "nightly"))
                .unwrap()
                .unwrap();
        assert_eq!(
            status.next_schedule_time.as_deref(),
            Some("2024-01-02T02:00:00Z")
        );
    }
}
