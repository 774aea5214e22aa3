//! The cluster's backup catalog on Kubernetes: read (with `retentionPolicy` applied) after a
//! Backup finishes and every half hour, beside the passes — an object store that does not
//! answer must not hold up a failover — bounded in time; the summary goes into the status of
//! the pass that finds the read done.

use super::references::Archive;
use pgherd_backup::catalog_summary::{refresh, CatalogSummary};
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;

/// How often the catalog is read without a backup finishing.
const EVERY: Duration = Duration::from_secs(30 * 60);
/// How long a read may take before it is given up (and tried again when next due).
const LIMIT: Duration = Duration::from_secs(30);

/// The catalog reads of one cluster.
#[derive(Default)]
pub(crate) struct CatalogReads {
    running: Option<JoinHandle<Result<CatalogSummary, String>>>,
    started_at: Option<Instant>,
}

impl CatalogReads {
    /// The summary of a read that finished since the last pass; starts the next read when
    /// one is due (`backup_finished`: at once).
    pub(crate) async fn step(
        &mut self,
        archive: Option<&Archive>,
        backup_finished: bool,
    ) -> Option<CatalogSummary> {
        let mut summary = None;
        if let Some(read) = self.running.take_if(|r| r.is_finished()) {
            match read.await {
                Ok(Ok(s)) => {
                    if s.deleted != (0, 0) {
                        tracing::info!(
                            "retention deleted {} backup(s) and {} WAL file(s)",
                            s.deleted.0,
                            s.deleted.1
                        );
                    }
                    summary = Some(s);
                }
                Ok(Err(e)) => tracing::warn!("backup catalog: {e}"),
                Err(e) => tracing::warn!("backup catalog: {e}"),
            }
        }
        let archive = archive?;
        let due = backup_finished || self.started_at.is_none_or(|t| t.elapsed() > EVERY);
        if due && self.running.is_none() {
            self.started_at = Some(Instant::now());
            let archive = archive.clone();
            self.running = Some(tokio::spawn(async move {
                tokio::time::timeout(
                    LIMIT,
                    refresh(
                        &archive.target,
                        archive.retention_policy.as_deref(),
                        &archive.source,
                    ),
                )
                .await
                .unwrap_or_else(|_| {
                    Err(format!(
                        "no answer from the object store within {} s",
                        LIMIT.as_secs()
                    ))
                })
            }));
        }
        summary
    }
}
