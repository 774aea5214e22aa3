//! What a cluster's backup catalog says — its first recoverability point, last successful and
//! last failed backup — read from the object store after retention deleted what the recovery
//! window no longer needs (never the last good backup). Every platform runs it beside its
//! passes, bounded in time, and puts the summary into the Cluster's status.

use crate::catalog::{apply_retention, BackupCatalog};
use crate::store::{RetryPolicy, StoreTarget};

/// What the cluster's backup catalog says (after retention, when applied).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CatalogSummary {
    pub first_recoverability_point: Option<String>,
    pub last_successful_backup: Option<String>,
    pub last_failed_backup: Option<String>,
    /// Backups and WAL files retention deleted.
    pub deleted: (usize, usize),
}

/// Read the catalog of `target`, applying `retention_policy` (`30d`, ...) first when given;
/// `source` names where the policy came from, for messages.
pub async fn refresh(
    target: &StoreTarget,
    retention_policy: Option<&str>,
    source: &str,
) -> Result<CatalogSummary, String> {
    let (object_store, server) = target
        .open(RetryPolicy::default(), Default::default())
        .map_err(|e| e.to_string())?;
    let mut catalog = BackupCatalog::load(&object_store, &server)
        .await
        .map_err(|e| e.to_string())?;
    let mut summary = CatalogSummary::default();
    let window = retention_policy
        .map(str::parse::<crate::retention::RecoveryWindow>)
        .transpose()
        .map_err(|e| format!("{source}: retentionPolicy: {e}"))?;
    if let Some(window) = window {
        let plan = crate::retention::plan(&catalog, window, time::OffsetDateTime::now_utc());
        if !plan.obsolete.is_empty() || plan.wal_cutoff.is_some() {
            summary.deleted = apply_retention(&object_store, &server, &plan)
                .await
                .map_err(|e| e.to_string())?;
            if summary.deleted.0 > 0 {
                catalog = BackupCatalog::load(&object_store, &server)
                    .await
                    .map_err(|e| e.to_string())?;
            }
        }
    }
    let done: Vec<_> = catalog.done().collect();
    summary.first_recoverability_point = done
        .first()
        .and_then(|b| b.info.end_time())
        .map(crate::timestamp::rfc3339);
    summary.last_successful_backup = done
        .last()
        .and_then(|b| b.info.end_time())
        .map(crate::timestamp::rfc3339);
    summary.last_failed_backup = catalog
        .backups
        .iter()
        .filter(|b| b.info.status() == crate::BackupStatus::Failed)
        .filter_map(|b| b.info.end_time().or(b.info.begin_time()))
        .max()
        .map(crate::timestamp::rfc3339);
    Ok(summary)
}
