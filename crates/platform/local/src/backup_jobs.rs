//! `Backup` objects on the local platform: each runs `pgherd instance backup` (as the PostgreSQL
//! user, next to the chosen instance), one per cluster at a time; the job's report becomes the
//! Backup's status, with CloudNativePG's fields. `ScheduledBackup`s create Backups when due.

use crate::desired::InstanceAddress;
use crate::instances::{running_pid, spawn_detached};
use crate::state::{read_json, write_json, StateDir};
use crate::status::LocalClusterStatus;
use crate::stores::{ClusterStore, StoreMethod, ARCHIVE_STORE_FILE};
use crate::LocalError;
use pgherd_api::cluster::BackupTarget;
use pgherd_api::kinds::backup::{Backup, BackupStatus};
use pgherd_api::Cluster;
use pgherd_instance_manager::base_backup::BackupReport;
use pgherd_instance_manager::OsUser;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Backup phases (CloudNativePG's names).
pub const PENDING: &str = "pending";
pub const RUNNING: &str = "running";
/// A standby's backup is done and waits for the primary to archive the WAL it ends in.
pub const FINALIZING: &str = "finalizing";
pub const COMPLETED: &str = "completed";
pub const FAILED: &str = "failed";

/// What one pass over a cluster's Backups needs.
#[derive(Debug)]
pub struct BackupPass<'a> {
    pub state: &'a StateDir,
    pub namespace: &'a str,
    pub cluster: &'a Cluster,
    pub cluster_dir: &'a Path,
    /// The cluster's archive, or why it has none usable.
    pub store: Result<Option<&'a ClusterStore>, &'a str>,
    pub status: &'a LocalClusterStatus,
    pub ports: &'a BTreeMap<String, InstanceAddress>,
    pub exe: &'a Path,
    pub user: &'a OsUser,
}

fn terminal(status: &BackupStatus) -> bool {
    matches!(status.phase.as_deref(), Some(COMPLETED | FAILED))
}

fn job_dir(cluster_dir: &Path, backup: &str) -> PathBuf {
    cluster_dir.join("backups").join(backup)
}

/// A running backup's progress: bytes put into its tarballs so far, and about how many there
/// will be (from its job's report; `None` before the job reports).
pub fn progress(
    state: &StateDir,
    namespace: &str,
    cluster: &str,
    backup: &str,
) -> Option<(u64, Option<u64>)> {
    let dir = job_dir(&state.cluster_dir(namespace, cluster), backup);
    let report = BackupReport::read(&dir.join("report.json"))?;
    Some((report.bytes_done?, report.bytes_total))
}

impl BackupPass<'_> {
    fn cluster_name(&self) -> String {
        self.cluster.metadata.name.clone().unwrap_or_default()
    }

    /// The Backups of this cluster, with their stored status.
    fn backups(&self) -> Result<Vec<(String, Backup, BackupStatus)>, LocalError> {
        let name = self.cluster_name();
        let mut out = Vec::new();
        for (ns, backup_name, backup) in self.state.list_objects::<Backup>("Backup")? {
            if ns != self.namespace || backup.spec.cluster.name != name {
                continue;
            }
            let status: BackupStatus =
                read_json(&self.state.status_path("Backup", &ns, &backup_name))?
                    .unwrap_or_default();
            out.push((backup_name, backup, status));
        }
        Ok(out)
    }

    fn write_status(&self, backup: &str, status: &BackupStatus) -> Result<(), LocalError> {
        write_json(
            &self.state.status_path("Backup", self.namespace, backup),
            status,
            0o600,
        )
    }

    /// Whether a backup that ended in `end_wal` is restorable: taken on the primary (it waited
    /// for its WAL to be archived), or the primary has archived that segment since.
    fn restorable(&self, status: &BackupStatus) -> bool {
        let taken_by = status
            .instance_id
            .as_ref()
            .and_then(|i| i.pod_name.as_deref());
        if taken_by.is_some() && taken_by == self.status.current_primary.as_deref() {
            return true;
        }
        let archived = self
            .status
            .wal_archive
            .as_ref()
            .and_then(|a| a.last_archived_wal.as_deref());
        match (status.end_wal.as_deref(), archived) {
            (Some(end), Some(archived)) => pgherd_postgres::wal::archived_through(end, archived),
            _ => false,
        }
    }

    /// One pass: finished jobs recorded, the next pending Backup started. Returns the names of
    /// the Backups that finished in this pass, with their phase (completed or failed), and
    /// whether the primary must close its WAL segment (a standby's backup waits for it).
    pub fn run(&self) -> Result<(Vec<(String, String)>, bool), LocalError> {
        let mut switch_wal = false;
        let mut finished = Vec::new();
        let mut busy = false;
        let backups = self.backups()?;
        for (name, backup, mut status) in backups {
            if terminal(&status) {
                continue;
            }
            if matches!(status.phase.as_deref(), Some(RUNNING | FINALIZING)) {
                let dir = job_dir(self.cluster_dir, &name);
                let report = BackupReport::read(&dir.join("report.json"));
                let alive = running_pid(&dir.join("backup.pid")).is_some();
                apply_report(&mut status, report.as_ref(), alive, &dir);
                if status.phase.as_deref() == Some(COMPLETED) && !self.restorable(&status) {
                    status.phase = Some(FINALIZING.into());
                    switch_wal = true;
                }
                if terminal(&status) {
                    finished.push((name.clone(), status.phase.clone().unwrap_or_default()));
                }
                busy |= !terminal(&status);
                self.write_status(&name, &status)?;
                continue;
            }
            if busy {
                status.phase = Some(PENDING.into());
                self.write_status(&name, &status)?;
                continue;
            }
            match self.start(&name, &backup, &mut status) {
                Ok(true) => busy = true,
                Ok(false) => {
                    // No ready instance yet (a cluster still starting): wait for one.
                    status.phase = Some(PENDING.into());
                }
                Err(message) => {
                    status.phase = Some(FAILED.into());
                    status.error = Some(message);
                    status.stopped_at = Some(pgherd_backup::timestamp::rfc3339_now());
                    finished.push((name.clone(), FAILED.to_string()));
                }
            }
            self.write_status(&name, &status)?;
        }
        Ok((finished, switch_wal))
    }

    /// Starts the backup job (`false`: no instance is ready to take it yet); the error is the
    /// Backup's `status.error`.
    fn start(
        &self,
        name: &str,
        backup: &Backup,
        status: &mut BackupStatus,
    ) -> Result<bool, String> {
        let (store, target) = pgherd_backup::store::archive_source::backup_archive(
            backup,
            self.cluster,
            self.store,
            |store| store.method == StoreMethod::Plugin,
        )?;
        let Some(instance) = self.pick_instance(target) else {
            return Ok(false);
        };
        let address = self
            .ports
            .get(&instance)
            .ok_or_else(|| format!("instance {instance} has no address yet"))?;
        let dir = job_dir(self.cluster_dir, name);
        self.user
            .own_dir(&dir, 0o700)
            .map_err(|e| format!("cannot prepare {}: {e}", dir.display()))?;
        let _ = std::fs::remove_file(dir.join("report.json"));
        let instance_dir = self.cluster_dir.join("instances").join(&instance);
        let store_file = self.cluster_dir.join(ARCHIVE_STORE_FILE);
        let port = address.postgres.to_string();
        let args: Vec<String> = vec![
            "instance".into(),
            "backup".into(),
            "--store".into(),
            store_file.display().to_string(),
            "--pgdata".into(),
            instance_dir.join("pgdata").display().to_string(),
            "--socket-dir".into(),
            crate::sockets::socket_dir(&instance_dir)
                .display()
                .to_string(),
            "--port".into(),
            port,
            "--name".into(),
            name.to_string(),
            "--report".into(),
            dir.join("report.json").display().to_string(),
        ];
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        spawn_detached(
            self.exe,
            &args,
            &dir.join("backup.log"),
            &dir.join("backup.pid"),
            Some(self.user),
            address.netns.as_deref(),
        )
        .map_err(|e| e.to_string())?;
        *status = pgherd_backup::store::archive_source::started_status(
            name,
            store.method.as_str(),
            &store.target,
            self.cluster.major_version().map(|m| m.0),
            instance,
        );
        Ok(true)
    }

    /// A ready replica for `prefer-standby` (the most caught-up), else the primary.
    fn pick_instance(&self, target: BackupTarget) -> Option<String> {
        let ready = |role: &'static str| {
            self.status
                .instances_status
                .iter()
                .filter(move |i| i.ready && i.role == role)
        };
        let standby = ready("replica").min_by_key(|i| i.lag_bytes.unwrap_or(u64::MAX));
        match (target, standby) {
            (BackupTarget::PreferStandby, Some(s)) => Some(s.name.clone()),
            _ => ready("primary").next().map(|i| i.name.clone()),
        }
    }
}

/// How often the backup catalog is read (and retention applied) without a backup finishing.
const CATALOG_EVERY: std::time::Duration = std::time::Duration::from_secs(30 * 60);

/// What a read of the backup catalog found (retention applied), or why it could not be read.
pub type CatalogOutcome = Result<crate::backups::CatalogSummary, String>;

/// How long a catalog read may take before it is given up (and tried again when next due).
const CATALOG_READ_LIMIT: std::time::Duration = std::time::Duration::from_secs(30);

/// The cluster's Backups advanced one step; its catalog read (and retention applied) after
/// a backup finishes and every half hour. The read runs beside the passes (an object store
/// that does not answer must not hold up the cluster's failover) and its result goes into the
/// status of the pass that finds it done.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn pass(
    plane: &crate::plane::Plane,
    runtime: &mut crate::control::ClusterRuntime,
    namespace: &str,
    cluster: &Cluster,
    cluster_dir: &Path,
    status: &mut LocalClusterStatus,
    ports: &BTreeMap<String, InstanceAddress>,
    archive: Option<&ClusterStore>,
    archive_problem: Option<&str>,
    controller_tls: &pgherd_instance_manager::status_client::ClientTls,
) {
    let name = cluster.metadata.name.clone().unwrap_or_default();
    let pass = crate::backup_jobs::BackupPass {
        state: &plane.state,
        namespace,
        cluster,
        cluster_dir,
        store: match archive_problem {
            Some(p) => Err(p),
            None => Ok(archive),
        },
        status,
        ports,
        exe: &plane.exe,
        user: &plane.user,
    };
    let (finished, switch_wal) = match pass.run() {
        Ok(f) => f,
        Err(e) => {
            tracing::warn!("backups: {e}");
            (Vec::new(), false)
        }
    };
    if switch_wal {
        // A standby's backup is restorable once the primary archived the segment it ends in:
        // close that segment now rather than at archive_timeout.
        let primary = status.current_primary.as_deref().and_then(|p| ports.get(p));
        if let Some(address) = primary {
            if let Err(e) = pgherd_instance_manager::status_client::switch_wal(
                &address.host.to_string(),
                address.status,
                controller_tls,
                std::time::Duration::from_secs(2),
            )
            .await
            {
                tracing::debug!("switching WAL on the primary: {e}");
            }
        }
    }
    for (b, phase) in &finished {
        tracing::info!("backup {b} {phase}");
        plane.metrics.backup_finished(namespace, &name, phase);
        runtime.catalog_read_at = None; // read it again
                                        // The cluster's status says so at once; the catalog read that follows confirms it
                                        // (and applies retention).
        let stopped_at =
            read_json::<BackupStatus>(&plane.state.status_path("Backup", namespace, b))
                .ok()
                .flatten()
                .and_then(|s| s.stopped_at);
        if let Some(at) = stopped_at {
            let completed = phase == COMPLETED;
            if completed && status.first_recoverability_point.is_none() {
                // The first backup: its end is the earliest point to recover to.
                status.first_recoverability_point = Some(at.clone());
            }
            let field = if completed {
                &mut status.last_successful_backup
            } else {
                &mut status.last_failed_backup
            };
            if field.as_ref().is_none_or(|before| *before < at) {
                *field = Some(at);
            }
            crate::backups::set_last_backup_condition(status);
        }
    }
    if let Some(read) = runtime.catalog_read.take_if(|r| r.is_finished()) {
        match read.await {
            Ok(Ok(summary)) => {
                if summary.deleted != (0, 0) {
                    tracing::info!(
                        "retention deleted {} backup(s) and {} WAL file(s)",
                        summary.deleted.0,
                        summary.deleted.1
                    );
                }
                crate::backups::apply_catalog(status, &summary);
            }
            Ok(Err(e)) => tracing::warn!("backup catalog: {e}"),
            Err(e) => tracing::warn!("backup catalog: {e}"),
        }
    }
    let Some(store) = archive else { return };
    let due = runtime
        .catalog_read_at
        .is_none_or(|t| t.elapsed() > CATALOG_EVERY);
    if !due || runtime.catalog_read.is_some() {
        return;
    }
    runtime.catalog_read_at = Some(std::time::Instant::now());
    let store = store.clone();
    runtime.catalog_read = Some(tokio::spawn(async move {
        tokio::time::timeout(
            CATALOG_READ_LIMIT,
            crate::backups::refresh_catalog(&store, true),
        )
        .await
        .unwrap_or_else(|_| {
            Err(format!(
                "no answer from the object store within {} s",
                CATALOG_READ_LIMIT.as_secs()
            ))
        })
    }));
}

/// Folds a job's report into the Backup's status.
fn apply_report(status: &mut BackupStatus, report: Option<&BackupReport>, alive: bool, dir: &Path) {
    if let Some(r) = report {
        r.fold_into(status);
    }
    if !terminal(status) && !alive {
        status.phase = Some(FAILED.into());
        status.stopped_at = Some(pgherd_backup::timestamp::rfc3339_now());
        status.error = Some(format!(
            "the backup process exited without a result; see {}",
            dir.join("backup.log").display()
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_become_status_and_a_vanished_job_fails() {
        let dir = Path::new("/nonexistent");
        let mut status = BackupStatus {
            phase: Some(RUNNING.into()),
            ..Default::default()
        };
        let running = BackupReport {
            phase: "running".into(),
            started_at: Some("2026-12-02T00:00:00Z".into()),
            ..Default::default()
        };
        apply_report(&mut status, Some(&running), true, dir);
        assert_eq!(status.phase.as_deref(), Some(RUNNING));
        let done = BackupReport {
            phase: "completed".into(),
            backup_id: Some("20261202T000000".into()),
            begin_wal: Some("000000010000000000000004".into()),
            ..running.clone()
        };
        apply_report(&mut status, Some(&done), false, dir);
        assert_eq!(status.phase.as_deref(), Some(COMPLETED));
        assert_eq!(status.backup_id.as_deref(), Some("20261202T000000"));

        let mut status = BackupStatus {
            phase: Some(RUNNING.into()),
            ..Default::default()
        };
        apply_report(&mut status, Some(&running), false, dir);
        assert_eq!(status.phase.as_deref(), Some(FAILED));
        assert!(status.error.unwrap().contains("backup.log"));
    }
}
