//! `Backup` objects on Kubernetes: one at a time per cluster, taken by the instance the
//! Backup's `target` (else the cluster's `spec.backup.target`) picks — the most caught-up
//! ready standby for `prefer-standby`, else the primary — started over the instance protocol
//! (`POST /pg/backup`: the manager runs it beside the data, as its own process) and followed
//! until its report is final; the report becomes the Backup's status with CloudNativePG's
//! fields, and a finished one the Cluster's `lastSuccessfulBackup`/`lastFailedBackup`.

use super::references::Archive;
use crate::pod::STATUS_PORT;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::Client;
use pgherd_api::cluster::BackupTarget;
use pgherd_api::kinds::backup::{Backup, BackupStatus};
use pgherd_api::Cluster;
use pgherd_backup::store::archive_source::{backup_archive, started_status};
use pgherd_controller::plan::Plan;
use pgherd_instance_manager::status_client::{self, ClientTls};
use pgherd_instance_protocol::{InstanceStatus, Role};
use std::collections::BTreeMap;
use std::time::Duration;

const RUNNING: &str = "running";
/// A standby's backup is done, and waits for the primary to archive the WAL it ends in.
const FINALIZING: &str = "finalizing";
const PENDING: &str = "pending";
const FAILED: &str = "failed";
const COMPLETED: &str = "completed";

/// How long the operator waits for a manager's answer about a backup.
const MANAGER_TIMEOUT: Duration = Duration::from_secs(2);

/// A Backup that finished in this pass: completed or not, and when.
#[derive(Debug, Clone)]
pub(crate) struct Finished {
    /// The Backup's name.
    pub name: String,
    pub completed: bool,
    pub stopped_at: String,
}

/// What a pass over a cluster's Backups needs to know of the cluster.
pub(crate) struct BackupPass<'a> {
    pub client: &'a Client,
    pub cluster: &'a Cluster,
    pub archive: Option<&'a Archive>,
    /// Why the archive cannot be used this pass.
    pub archive_problem: Option<&'a str>,
    pub plan: &'a Plan,
    pub reports: &'a BTreeMap<String, InstanceStatus>,
    /// Each instance's pod address.
    pub addresses: &'a BTreeMap<String, String>,
    pub tls: &'a ClientTls,
}

fn terminal(status: &BackupStatus) -> bool {
    matches!(status.phase.as_deref(), Some(COMPLETED | FAILED))
}

impl BackupPass<'_> {
    fn api(&self) -> Api<Backup> {
        Api::namespaced(
            self.client.clone(),
            self.cluster
                .metadata
                .namespace
                .as_deref()
                .unwrap_or("default"),
        )
    }

    async fn write(&self, name: &str, status: &BackupStatus) {
        let patch = serde_json::json!({ "status": status });
        if let Err(e) = self
            .api()
            .patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            tracing::warn!("Backup {name}: cannot write its status: {e}");
        }
    }

    /// One step for each of the cluster's unfinished Backups; the ones that finished.
    pub(crate) async fn run(&self) -> Vec<Finished> {
        let cluster = self.cluster.metadata.name.clone().unwrap_or_default();
        let Ok(list) = self.api().list(&ListParams::default()).await else {
            return Vec::new(); // the CRD is not installed, or the API is away: next pass
        };
        let mut backups: Vec<Backup> = list
            .into_iter()
            .filter(|b| b.spec.cluster.name == cluster)
            .filter(|b| !b.status.as_ref().is_some_and(terminal))
            .collect();
        // Oldest first: they are taken in the order they were asked for.
        backups.sort_by(|a, b| {
            a.metadata
                .creation_timestamp
                .as_ref()
                .map(|t| t.0)
                .cmp(&b.metadata.creation_timestamp.as_ref().map(|t| t.0))
        });
        let mut finished = Vec::new();
        let mut busy = false;
        for backup in backups {
            let name = backup.metadata.name.clone().unwrap_or_default();
            let mut status = backup.status.clone().unwrap_or_default();
            let before = status.clone();
            if matches!(status.phase.as_deref(), Some(RUNNING | FINALIZING)) {
                self.follow(&name, &mut status).await;
                busy |= !terminal(&status);
            } else if busy {
                status.phase = Some(PENDING.into());
            } else {
                match self.start(&name, &backup, &mut status).await {
                    Ok(true) => busy = true,
                    Ok(false) => status.phase = Some(PENDING.into()),
                    Err(message) => {
                        status.phase = Some(FAILED.into());
                        status.error = Some(message);
                        status.stopped_at = Some(pgherd_backup::timestamp::rfc3339_now());
                    }
                }
            }
            if terminal(&status) {
                tracing::info!(
                    "backup {name} {}",
                    status.phase.as_deref().unwrap_or_default()
                );
                finished.push(Finished {
                    name: name.clone(),
                    completed: status.phase.as_deref() == Some(COMPLETED),
                    stopped_at: status
                        .stopped_at
                        .clone()
                        .unwrap_or_else(pgherd_backup::timestamp::rfc3339_now),
                });
            }
            if status != before {
                self.write(&name, &status).await;
            }
        }
        finished
    }

    /// Ask the instance taking `name` how it goes.
    async fn follow(&self, name: &str, status: &mut BackupStatus) {
        let instance = status
            .instance_id
            .as_ref()
            .and_then(|i| i.pod_name.clone())
            .unwrap_or_default();
        let Some(host) = self.addresses.get(&instance) else {
            if !self.plan.instances.iter().any(|i| i.name == instance) {
                fail(status, format!("instance {instance} is gone"));
            }
            return; // its pod is being replaced: ask again later
        };
        match status_client::backup(
            host,
            STATUS_PORT as u16,
            self.tls,
            name,
            false,
            MANAGER_TIMEOUT,
        )
        .await
        {
            Ok(Some(report)) => {
                report.fold_into(status);
                let on_standby = self.plan.current_primary.as_deref() != Some(instance.as_str());
                if on_standby
                    && status.phase.as_deref() == Some(COMPLETED)
                    && !self.archived(status.end_wal.as_deref())
                {
                    // Restorable only once the primary archived the segment the backup
                    // ends in: close it now rather than at archive_timeout.
                    status.phase = Some(FINALIZING.into());
                    self.switch_wal().await;
                }
            }
            Ok(None) => fail(
                status,
                format!("instance {instance} restarted while taking the backup; take it again"),
            ),
            Err(e) => tracing::debug!("Backup {name}: {e}"),
        }
    }

    /// Whether the primary reports `end_wal`'s segment (or a later one) archived.
    fn archived(&self, end_wal: Option<&str>) -> bool {
        let archived = self
            .plan
            .current_primary
            .as_deref()
            .and_then(|p| self.reports.get(p))
            .and_then(|r| r.archive.as_ref())
            .and_then(|a| a.last_archived_wal.as_deref());
        match (end_wal, archived) {
            (Some(end), Some(archived)) => pgherd_postgres::wal::archived_through(end, archived),
            _ => false,
        }
    }

    /// Ask the primary to close its current WAL segment.
    async fn switch_wal(&self) {
        let Some(host) = self
            .plan
            .current_primary
            .as_deref()
            .and_then(|p| self.addresses.get(p))
        else {
            return;
        };
        if let Err(e) =
            status_client::switch_wal(host, STATUS_PORT as u16, self.tls, MANAGER_TIMEOUT).await
        {
            tracing::debug!("switching WAL on the primary: {e}");
        }
    }

    /// Start backup `name` (`false`: no instance is ready to take it yet); the error is the
    /// Backup's `status.error`.
    async fn start(
        &self,
        name: &str,
        backup: &Backup,
        status: &mut BackupStatus,
    ) -> Result<bool, String> {
        let usable = match self.archive_problem {
            Some(problem) => Err(problem),
            None => Ok(self.archive),
        };
        let (archive, target) =
            backup_archive(backup, self.cluster, usable, |a| a.method == "plugin")?;
        let Some(instance) = self.pick(target) else {
            return Ok(false);
        };
        let Some(host) = self.addresses.get(&instance) else {
            return Ok(false);
        };
        let report = status_client::backup(
            host,
            STATUS_PORT as u16,
            self.tls,
            name,
            true,
            MANAGER_TIMEOUT,
        )
        .await?
        .ok_or_else(|| format!("instance {instance} did not start the backup"))?;
        *status = started_status(
            name,
            archive.method,
            &archive.target,
            self.cluster.major_version().map(|m| m.0),
            instance,
        );
        report.fold_into(status);
        Ok(true)
    }

    /// A ready standby for `prefer-standby` (the most caught-up, that is streaming), else the
    /// ready primary.
    fn pick(&self, target: BackupTarget) -> Option<String> {
        let primary = self.plan.current_primary.as_deref()?;
        let ready = |name: &str| self.reports.get(name).is_some_and(|s| s.ready);
        let standby = self
            .reports
            .iter()
            .filter(|(name, s)| {
                name.as_str() != primary
                    && s.ready
                    && s.role == Role::Replica
                    && s.is_wal_receiver_active
            })
            .max_by_key(|(_, s)| s.wal_position())
            .map(|(name, _)| name.clone());
        match (target, standby) {
            (BackupTarget::PreferStandby, Some(s)) => Some(s),
            _ => ready(primary).then(|| primary.to_string()),
        }
    }
}

fn fail(status: &mut BackupStatus, message: String) {
    status.phase = Some(FAILED.into());
    status.error = Some(message);
    status.stopped_at = Some(pgherd_backup::timestamp::rfc3339_now());
}
