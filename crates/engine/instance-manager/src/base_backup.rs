//! Base backups of this instance to its object store, and restoring one into an empty PGDATA:
//! what `pgherd instance backup` and the recovery bootstrap run. A backup records its progress
//! and outcome in a report file the platform turns into the `Backup` object's status.

use crate::InstanceError;
use pgherd_backup::backup_session::{take_base_backup, BaseBackupOptions};
use pgherd_backup::base_backup::{estimated_size, Progress};
use pgherd_backup::catalog::{BackupCatalog, RecoveryPoint};
use pgherd_backup::restore::restore_backup;
use pgherd_backup::store::{RetryPolicy, StoreTarget};
use pgherd_backup::BackupInfo;
use pgherd_instance_protocol::TablespaceSpec;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use tokio_util::sync::CancellationToken;

/// A backup's progress and outcome (CloudNativePG's Backup status fields).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BackupReport {
    /// `running`, `completed` or `failed`.
    pub phase: String,
    #[serde(rename = "backupId", default, skip_serializing_if = "Option::is_none")]
    pub backup_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub begin_wal: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_wal: Option<String>,
    #[serde(rename = "beginLSN", default, skip_serializing_if = "Option::is_none")]
    pub begin_lsn: Option<String>,
    #[serde(rename = "endLSN", default, skip_serializing_if = "Option::is_none")]
    pub end_lsn: Option<String>,
    /// Bytes of PGDATA (and tablespaces) uploaded, before compression.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// While running: bytes put into the tarballs so far, and about how many there will be.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_done: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_total: Option<u64>,
}

impl BackupReport {
    /// The report of a finished backup.
    pub fn from_info(id: &str, info: &BackupInfo) -> BackupReport {
        let rfc3339 = |t: Option<time::OffsetDateTime>| t.map(pgherd_backup::timestamp::rfc3339);
        BackupReport {
            phase: if info.error().is_some() {
                "failed"
            } else {
                "completed"
            }
            .into(),
            backup_id: Some(id.to_string()),
            backup_name: info.backup_name().map(str::to_string),
            started_at: rfc3339(info.begin_time()),
            stopped_at: rfc3339(info.end_time()),
            begin_wal: info.begin_wal().map(str::to_string),
            end_wal: info.end_wal().map(str::to_string),
            begin_lsn: info.begin_xlog().map(str::to_string),
            end_lsn: info.end_xlog().map(str::to_string),
            size: info.size(),
            error: info.error().map(str::to_string),
            bytes_done: None,
            bytes_total: None,
        }
    }

    /// This report folded into the Backup's status (CloudNativePG's phases `completed` and
    /// `failed`; a running report leaves the phase as it is).
    pub fn fold_into(&self, status: &mut pgherd_api::kinds::backup::BackupStatus) {
        status.backup_id = self.backup_id.clone().or(status.backup_id.take());
        status.begin_wal = self.begin_wal.clone();
        status.end_wal = self.end_wal.clone();
        status.begin_lsn = self.begin_lsn.clone();
        status.end_lsn = self.end_lsn.clone();
        if let Some(started) = &self.started_at {
            status.started_at = Some(started.clone());
        }
        status.stopped_at = self.stopped_at.clone();
        status.error = self.error.clone();
        if matches!(self.phase.as_str(), "completed" | "failed") {
            status.phase = Some(self.phase.clone());
        }
    }

    /// Reads a report (`None` when there is none yet or it is unreadable).
    pub fn read(path: &Path) -> Option<BackupReport> {
        serde_json::from_slice(&std::fs::read(path).ok()?).ok()
    }

    /// Writes the report atomically.
    pub fn write(&self, path: &Path) -> Result<(), InstanceError> {
        let tmp = path.with_extension("tmp");
        let text = serde_json::to_vec_pretty(self).map_err(|e| {
            InstanceError::io("cannot encode", path, std::io::Error::other(e.to_string()))
        })?;
        std::fs::write(&tmp, text).map_err(|e| InstanceError::io("cannot write", &tmp, e))?;
        std::fs::rename(&tmp, path).map_err(|e| InstanceError::io("cannot write", path, e))
    }
}

/// One base backup.
#[derive(Debug, Clone)]
pub struct BackupRequest {
    pub store_file: PathBuf,
    pub pgdata: PathBuf,
    /// PostgreSQL's socket directory and port (the backup connects as `postgres`, peer).
    pub socket_dir: PathBuf,
    pub port: u16,
    /// Recorded as `backup_name` (CloudNativePG: the Backup object's name).
    pub backup_name: Option<String>,
    /// Where progress and outcome are written.
    pub report: PathBuf,
}

/// Takes the backup; the report says how it went (also when this returns an error).
pub async fn run_backup(request: &BackupRequest) -> Result<BackupReport, InstanceError> {
    let failed = |e: String| BackupReport {
        phase: "failed".into(),
        backup_name: request.backup_name.clone(),
        stopped_at: Some(pgherd_backup::timestamp::rfc3339_now()),
        error: Some(e),
        ..Default::default()
    };
    let mut running = BackupReport {
        phase: "running".into(),
        backup_name: request.backup_name.clone(),
        started_at: Some(pgherd_backup::timestamp::rfc3339_now()),
        ..Default::default()
    };
    running.write(&request.report)?;
    let progress = Progress::default();
    running.bytes_total = Some(data_size(&request.pgdata));
    let backup = backup(request, progress.clone());
    tokio::pin!(backup);
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    let result = loop {
        tokio::select! {
            result = &mut backup => break result,
            _ = tick.tick() => {
                running.bytes_done = Some(progress.bytes());
                // Progress is for people watching; a failed write of it is not the backup's.
                let _ = running.write(&request.report);
            }
        }
    };
    let report = match &result {
        Ok(report) => report.clone(),
        Err(e) => failed(e.to_string()),
    };
    report.write(&request.report)?;
    result
}

/// About how many bytes a backup of `pgdata` puts into its tarballs (PGDATA and tablespaces).
fn data_size(pgdata: &Path) -> u64 {
    let tablespaces = std::fs::read_dir(pgdata.join("pg_tblspc"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|link| std::fs::read_link(link.path()).ok())
        .map(|location| estimated_size(&location, false));
    estimated_size(pgdata, true) + tablespaces.sum::<u64>()
}

async fn backup(
    request: &BackupRequest,
    progress: Progress,
) -> Result<BackupReport, InstanceError> {
    let target = StoreTarget::read(&request.store_file).map_err(store_error)?;
    let (store, server) = target
        .open(RetryPolicy::default(), CancellationToken::new())
        .map_err(store_error)?;
    let mut config = tokio_postgres::Config::new();
    config
        .host_path(&request.socket_dir)
        .port(request.port)
        .user("postgres")
        .dbname("postgres")
        .application_name("pgherd-backup");
    let (client, connection) =
        config
            .connect(tokio_postgres::NoTls)
            .await
            .map_err(|e| InstanceError::Sql {
                context: "connect for the backup",
                message: e.to_string(),
            })?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    let options = BaseBackupOptions {
        backup_name: request.backup_name.clone(),
        compression: target.data_compression(),
        immediate_checkpoint: target.immediate_checkpoint(),
        jobs: target.data_jobs(),
        progress,
    };
    let (id, info) = take_base_backup(&client, &store, &server, &request.pgdata, &options)
        .await
        .map_err(|e| InstanceError::Backup(e.to_string()))?;
    Ok(BackupReport::from_info(id.as_str(), &info))
}

fn store_error(e: impl std::fmt::Display) -> InstanceError {
    InstanceError::Backup(e.to_string())
}

/// Flushes the filesystem holding `dir` to disk (a restored data directory must be on disk
/// before anything relies on it; PostgreSQL itself only syncs at its first start).
pub fn sync_filesystem(dir: &Path) -> Result<(), InstanceError> {
    let handle = std::fs::File::open(dir).map_err(|e| InstanceError::io("cannot open", dir, e))?;
    nix::unistd::syncfs(&handle)
        .map_err(|e| InstanceError::io("cannot sync", dir, std::io::Error::from(e)))
}

/// Restores into the empty `pgdata` the backup `selector` (an id, a name, `latest`) or, without
/// one, the backup CloudNativePG would pick for `point`. Returns its info. With `major` (the
/// binaries that will run it), a backup of another PostgreSQL major is refused before anything
/// is downloaded, naming the image to use; a server folder with no backup to use names the
/// server folders (and their backups) the store does hold.
pub async fn restore(
    target: &StoreTarget,
    selector: Option<&str>,
    point: &RecoveryPoint,
    timeline: Option<u32>,
    pgdata: &Path,
    major: Option<u32>,
    tablespaces: Option<&[TablespaceSpec]>,
) -> Result<BackupInfo, InstanceError> {
    let (store, server) = target
        .open(RetryPolicy::default(), CancellationToken::new())
        .map_err(store_error)?;
    let catalog = BackupCatalog::load(&store, &server)
        .await
        .map_err(store_error)?;
    let entry = match selector {
        Some(s) => catalog.find(s),
        None => catalog.for_recovery(point, timeline),
    };
    let Some(entry) = entry else {
        let servers = pgherd_backup::catalog::servers_beside(&store, &server)
            .await
            .map(|s| pgherd_backup::catalog::describe_servers(&s))
            .unwrap_or_else(|e| format!("unknown (cannot list them: {e})"));
        let what = match selector {
            Some(s) => format!("no backup {s:?} in {}", server.root()),
            None => format!(
                "no completed backup in {} can reach the recovery target",
                server.root()
            ),
        };
        // Trying again finds the same: the recovery source or target must change.
        return Err(InstanceError::InvalidSetting(format!(
            "spec.bootstrap.recovery: {what} ({} backups listed); server names in the store: {servers} (hint: check the source's serverName, take a backup first or choose a later target)",
            catalog.done().count()
        )));
    };
    if let (Some(major), Some(version)) = (major, entry.info.version()) {
        let taken = if version >= 100_000 {
            version / 10_000
        } else {
            version / 100
        };
        if taken != major {
            return Err(InstanceError::InvalidSetting(format!(
                "spec.bootstrap.recovery: backup {} in {} holds PostgreSQL {taken} data, but spec.imageName runs PostgreSQL {major}: set spec.imageName to a PostgreSQL {taken} image (e.g. ghcr.io/cloudnative-pg/postgresql:{taken})",
                entry.id.as_str(),
                server.root()
            )));
        }
    }
    let locations = match tablespaces {
        Some(declared) => declared_locations(&entry.info, declared, server.root())?,
        None => BTreeMap::new(),
    };
    let id = entry.id.as_str().to_string();
    restore_backup(&store, &server, &id, pgdata, &locations)
        .await
        .map_err(store_error)
}

/// Where a backup's tablespaces go on a platform that mounts a volume per declared
/// tablespace: each must be declared (as CloudNativePG requires), never written where no
/// volume is.
fn declared_locations(
    info: &BackupInfo,
    declared: &[TablespaceSpec],
    root: &str,
) -> Result<BTreeMap<String, PathBuf>, InstanceError> {
    let in_backup = info.tablespaces().unwrap_or_default();
    let missing: Vec<&str> = in_backup
        .iter()
        .filter(|t| !declared.iter().any(|d| d.name == t.name))
        .map(|t| t.name.as_str())
        .collect();
    if !missing.is_empty() {
        return Err(InstanceError::InvalidSetting(format!(
            "spec.tablespaces: backup {} in {root} holds tablespaces {missing:?}; declare each (name and storage) in spec.tablespaces so it gets a volume",
            info.backup_name().unwrap_or("-")
        )));
    }
    Ok(declared
        .iter()
        .map(|d| (d.name.clone(), d.location.clone()))
        .collect())
}
