//! WAL archiving and backups in a cluster's status: the `ContinuousArchiving` condition from
//! the primary's last `archive_command` outcome, and the backup fields kept between passes.

use crate::status::LocalClusterStatus;
use pgherd_instance_protocol::ArchiveReport;

/// What the pass knows about the cluster's archive.
#[derive(Debug)]
pub struct ArchiveView<'a> {
    /// The cluster archives to an object store (even if it cannot be resolved now).
    pub configured: bool,
    /// Why the store cannot be used (a missing Secret, ObjectStore, ...).
    pub problem: Option<&'a str>,
    /// The primary's last outcome.
    pub report: Option<&'a ArchiveReport>,
}

/// Sets `ContinuousArchiving` and `walArchive`; keeps the backup fields of `previous`.
pub fn apply_archive_status(
    status: &mut LocalClusterStatus,
    view: &ArchiveView<'_>,
    previous: Option<&LocalClusterStatus>,
) {
    if let Some(previous) = previous {
        status.first_recoverability_point = previous.first_recoverability_point.clone();
        status.last_successful_backup = previous.last_successful_backup.clone();
        status.last_failed_backup = previous.last_failed_backup.clone();
        status.wal_archive = previous.wal_archive.clone();
        status.conditions.extend(
            previous
                .conditions
                .iter()
                .filter(|c| c.condition_type == LAST_BACKUP_SUCCEEDED)
                .cloned(),
        );
    }
    if !view.configured {
        status.wal_archive = None;
        return;
    }
    if let Some(report) = view.report {
        status.wal_archive = Some(report.clone());
    }
    let Some(c) = pgherd_controller::cluster_status::archiving_condition(
        view.problem,
        status.wal_archive.as_ref(),
    ) else {
        // Nothing archived yet: say so only if it was said before.
        return;
    };
    status.conditions.push(c.into());
}

/// CloudNativePG's condition types.
pub use pgherd_controller::cluster_status::CONTINUOUS_ARCHIVING;
pub use pgherd_controller::cluster_status::LAST_BACKUP_SUCCEEDED;

pub use pgherd_backup::catalog_summary::CatalogSummary;

/// Reads the catalog of the cluster's archive and, when `retention` is true and the store has
/// a retention policy, deletes what the recovery window no longer needs (never the last good
/// backup).
pub async fn refresh_catalog(
    store: &crate::stores::ClusterStore,
    retention: bool,
) -> Result<CatalogSummary, String> {
    pgherd_backup::catalog_summary::refresh(
        &store.target,
        store.retention_policy.as_deref().filter(|_| retention),
        &store.source,
    )
    .await
}

/// Puts a catalog summary into the status, with the `LastBackupSucceeded` condition.
pub fn apply_catalog(status: &mut LocalClusterStatus, summary: &CatalogSummary) {
    status.first_recoverability_point = summary.first_recoverability_point.clone();
    status.last_successful_backup = summary.last_successful_backup.clone();
    status.last_failed_backup = summary.last_failed_backup.clone();
    set_last_backup_condition(status);
}

/// `LastBackupSucceeded` from the status' last successful and last failed backup times.
pub fn set_last_backup_condition(status: &mut LocalClusterStatus) {
    status
        .conditions
        .retain(|c| c.condition_type != LAST_BACKUP_SUCCEEDED);
    let Some(c) = pgherd_controller::cluster_status::last_backup_condition(
        status.last_successful_backup.as_deref(),
        status.last_failed_backup.as_deref(),
    ) else {
        return;
    };
    status.conditions.push(c.into());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn condition(status: &LocalClusterStatus) -> Option<(&str, &str)> {
        status
            .conditions
            .iter()
            .find(|c| c.condition_type == CONTINUOUS_ARCHIVING)
            .map(|c| (c.status.as_str(), c.reason.as_str()))
    }

    #[test]
    fn archiving_condition_follows_the_last_outcome() {
        let ok = ArchiveReport {
            last_archived_wal: Some("000000010000000000000003".into()),
            ..Default::default()
        };
        let mut status = LocalClusterStatus::default();
        let view = ArchiveView {
            configured: true,
            problem: None,
            report: Some(&ok),
        };
        apply_archive_status(&mut status, &view, None);
        assert_eq!(
            condition(&status),
            Some(("True", "ContinuousArchivingSuccess"))
        );

        let failing = ArchiveReport {
            last_error: Some("could not put".into()),
            ..ok.clone()
        };
        let mut status = LocalClusterStatus::default();
        let view = ArchiveView {
            report: Some(&failing),
            ..view
        };
        apply_archive_status(&mut status, &view, None);
        assert_eq!(
            condition(&status),
            Some(("False", "ContinuousArchivingFailing"))
        );

        // No report this pass (the primary is away): the last one is kept.
        let previous = status.clone();
        let mut status = LocalClusterStatus::default();
        let view = ArchiveView {
            report: None,
            ..view
        };
        apply_archive_status(&mut status, &view, Some(&previous));
        assert_eq!(
            condition(&status),
            Some(("False", "ContinuousArchivingFailing"))
        );

        let mut status = LocalClusterStatus::default();
        let view = ArchiveView {
            configured: false,
            ..view
        };
        apply_archive_status(&mut status, &view, Some(&previous));
        assert_eq!(condition(&status), None);
        assert_eq!(status.wal_archive, None);
    }

    #[test]
    fn a_store_that_cannot_be_resolved_is_failing_archiving() {
        let mut status = LocalClusterStatus::default();
        let view = ArchiveView {
            configured: true,
            problem: Some("Secret \"minio\" not found"),
            report: None,
        };
        apply_archive_status(&mut status, &view, None);
        assert_eq!(
            condition(&status),
            Some(("False", "ContinuousArchivingFailing"))
        );
    }
}
