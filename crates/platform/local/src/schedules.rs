//! `ScheduledBackup`s on the local platform: a `Backup` named `<schedule>-<YYYYMMDDhhmmss>` of
//! the scheduled time when it is due (and one at once with `immediate`), never while the
//! previous one is still running; `suspend` stops it. Times are UTC, as the operator's.

use crate::state::{read_json, write_json, StateDir};
use crate::LocalError;
use pgherd_api::kinds::backup::{Backup, BackupStatus};
use pgherd_api::kinds::scheduled_backup::{ScheduledBackup, ScheduledBackupStatus};
use pgherd_backup::schedule;

pub use pgherd_backup::schedule::{IMMEDIATE_BACKUP_LABEL, SCHEDULED_BACKUP_LABEL};

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

/// One pass over every ScheduledBackup at `now` (seconds since the epoch). Returns the
/// Backups created.
pub fn reconcile_schedules(state: &StateDir, now: i64) -> Result<Vec<String>, LocalError> {
    let mut created = Vec::new();
    for (namespace, name, schedule) in state.list_objects::<ScheduledBackup>("ScheduledBackup")? {
        let status_path = state.status_path("ScheduledBackup", &namespace, &name);
        let before: ScheduledBackupStatus = read_json(&status_path)?.unwrap_or_default();
        let running = unfinished(state, &namespace, &name)?;
        let (status, due) = schedule::step(&schedule, before.clone(), now, running);
        for d in due {
            let path = state.object_path("Backup", &namespace, &d.name);
            // Created by an earlier pass: idempotent.
            if !path.exists() {
                write_json(&path, &schedule::backup(&schedule, &namespace, &d), 0o600)?;
            }
            created.push(d.name);
        }
        if schedule::changed(&before, &status) {
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
