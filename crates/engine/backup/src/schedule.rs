//! When a `ScheduledBackup` creates a `Backup`, the same on every platform: one named
//! `<schedule>-<YYYYMMDDhhmmss>` of the scheduled time when it is due (and one at once with
//! `immediate`), never while one it created is still to finish; `suspend` stops it. Times are
//! UTC, as CloudNativePG's. Pure: the clock and "is one still running" are inputs.

use crate::timestamp::{name_stamp, rfc3339};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use pgherd_api::kinds::backup::{Backup, BackupSpec};
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

fn at(unix: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(unix).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

fn unix(text: Option<&str>) -> Option<i64> {
    OffsetDateTime::parse(text?, &Rfc3339)
        .ok()
        .map(OffsetDateTime::unix_timestamp)
}

/// A Backup a schedule creates now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Due {
    pub name: String,
    /// Created by `immediate`.
    pub immediate: bool,
}

/// One step of `schedule` at `now` (seconds since the epoch) from its `status`: the new status
/// and the Backups to create. `unfinished`: a Backup the schedule created is still to finish.
pub fn step(
    schedule: &ScheduledBackup,
    mut status: ScheduledBackupStatus,
    now: i64,
    mut unfinished: bool,
) -> (ScheduledBackupStatus, Vec<Due>) {
    let name = schedule.metadata.name.clone().unwrap_or_default();
    let mut created = Vec::new();
    status.last_check_time = Some(rfc3339(at(now)));
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
                created.push(Due {
                    name: format!("{name}-{}", name_stamp(at(now))),
                    immediate: true,
                });
                unfinished = true;
                status.last_schedule_time = Some(rfc3339(at(now)));
            }
            let next = unix(status.next_schedule_time.as_deref()).or_else(|| cron.next_after(now));
            match next {
                Some(due) if due <= now => {
                    if !unfinished {
                        created.push(Due {
                            name: format!("{name}-{}", name_stamp(at(due))),
                            immediate: false,
                        });
                        status.last_schedule_time = Some(rfc3339(at(due)));
                        status.next_schedule_time = cron.next_after(now).map(|t| rfc3339(at(t)));
                    }
                }
                Some(due) => status.next_schedule_time = Some(rfc3339(at(due))),
                None => {
                    status.error = Some(format!(
                        "spec.schedule: {:?} never fires",
                        schedule.spec.schedule
                    ));
                }
            }
        }
    }
    (status, created)
}

/// Whether `after` says more than `before` beyond its check time (which alone is not worth a
/// write).
pub fn changed(before: &ScheduledBackupStatus, after: &ScheduledBackupStatus) -> bool {
    let strip = |s: &ScheduledBackupStatus| ScheduledBackupStatus {
        last_check_time: None,
        ..s.clone()
    };
    strip(before) != strip(after)
}

/// The Backup `due` is, in `namespace`, with CloudNativePG's labels and the owner the schedule
/// names (`backupOwnerReference`; its `uid` is the platform's to fill in).
pub fn backup(schedule: &ScheduledBackup, namespace: &str, due: &Due) -> Backup {
    let spec = &schedule.spec;
    let mut backup = Backup::new(
        &due.name,
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
    if due.immediate {
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
        backup.metadata.owner_references = Some(vec![OwnerReference {
            api_version: "postgresql.cnpg.io/v1".into(),
            kind: kind.into(),
            name: owner_name,
            ..Default::default()
        }]);
    }
    backup
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nightly() -> ScheduledBackup {
        let yaml = "apiVersion: postgresql.cnpg.io/v1\nkind: ScheduledBackup\nmetadata:\n  name: nightly\nspec:\n  schedule: \"0 0 2 * * *\"\n  immediate: true\n  backupOwnerReference: self\n  cluster:\n    name: pg\n";
        serde_yaml_ng::from_str(yaml).unwrap()
    }

    #[test]
    fn immediate_then_on_schedule_never_two_at_once() {
        let s = nightly();
        let monday = 1_704_067_200; // 2024-01-01T00:00:00Z
        let (status, due) = step(&s, Default::default(), monday, false);
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].name, "nightly-20240101000000");
        assert!(due[0].immediate);
        assert_eq!(
            status.next_schedule_time.as_deref(),
            Some("2024-01-01T02:00:00Z")
        );
        // Due, but the immediate one has not finished.
        let (status, due) = step(&s, status, monday + 2 * 3600, true);
        assert!(due.is_empty());
        let (status, due) = step(&s, status, monday + 2 * 3600 + 5, false);
        assert_eq!(due[0].name, "nightly-20240101020000");
        assert!(!due[0].immediate);
        assert_eq!(
            status.next_schedule_time.as_deref(),
            Some("2024-01-02T02:00:00Z")
        );
        let b = backup(&s, "default", &due[0]);
        assert_eq!(b.spec.cluster.name, "pg");
        assert_eq!(
            b.metadata.owner_references.unwrap()[0].kind,
            "ScheduledBackup"
        );
        assert_eq!(
            b.metadata.labels.unwrap()[SCHEDULED_BACKUP_LABEL],
            "nightly"
        );
    }

    #[test]
    fn a_bad_schedule_says_how_to_write_one_and_suspend_stops_it() {
        let mut s = nightly();
        s.spec.schedule = "every night".into();
        let (status, due) = step(&s, Default::default(), 0, false);
        assert!(due.is_empty());
        assert!(status.error.unwrap().contains("six fields"));
        let mut s = nightly();
        s.spec.suspend = Some(true);
        let (status, due) = step(&s, Default::default(), 0, false);
        assert!(due.is_empty() && status.next_schedule_time.is_none());
    }
}
