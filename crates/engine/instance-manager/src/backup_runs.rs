//! Base backups the controller starts over the instance protocol (`POST /pg/backup`), on
//! platforms where the controller cannot run one beside the data (Kubernetes): each runs as
//! its own `pgherd instance backup` process — its compression must never starve the manager
//! that renews the primary's lease — and reports through a file the controller reads back
//! (`GET /pg/backup?name=NAME`). Starting a backup that already ran returns its report.

use crate::base_backup::BackupReport;
use crate::supervisor::load_spec;
use pgherd_instance_protocol::PushedFiles;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;

/// The backups this manager started.
#[derive(Debug)]
pub struct BackupRuns {
    spec_path: PathBuf,
    children: Mutex<BTreeMap<String, Child>>,
}

impl BackupRuns {
    pub fn new(spec_path: &Path) -> Self {
        BackupRuns {
            spec_path: spec_path.to_path_buf(),
            children: Mutex::new(BTreeMap::new()),
        }
    }

    fn dir(&self) -> PathBuf {
        self.spec_path
            .parent()
            .unwrap_or(Path::new("/"))
            .join("backups")
    }

    fn report_path(&self, name: &str) -> PathBuf {
        self.dir().join(format!("{name}.json"))
    }

    /// Start the backup `name` (the Backup object's name), unless it was started before.
    pub fn start(&self, name: &str) -> Result<BackupReport, String> {
        if !PushedFiles::valid_name(name) {
            return Err(format!("{name:?} is not a valid backup name"));
        }
        if let Some(report) = self.report(name) {
            return Ok(report);
        }
        let spec = load_spec(&self.spec_path).map_err(|e| e.to_string())?;
        let store = spec.wal_store.as_ref().ok_or_else(|| {
            "this instance has no object store: the cluster configures no archive".to_string()
        })?;
        let dir = self.dir();
        std::fs::create_dir_all(&dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let exe = crate::process::pgherd_exe().map_err(|e| format!("cannot find pgherd: {e}"))?;
        let log = std::fs::File::create(dir.join(format!("{name}.log")))
            .map_err(|e| format!("cannot create the backup's log: {e}"))?;
        let report = self.report_path(name);
        let running = BackupReport {
            phase: "running".into(),
            backup_name: Some(name.to_string()),
            started_at: Some(pgherd_backup::timestamp::rfc3339_now()),
            ..Default::default()
        };
        running.write(&report).map_err(|e| e.to_string())?;
        let child = Command::new(exe)
            .args(["instance", "backup", "--store"])
            .arg(&store.store_file)
            .arg("--pgdata")
            .arg(&spec.pgdata)
            .arg("--socket-dir")
            .arg(&spec.socket_dir)
            .args(["--port", &spec.port.to_string(), "--name", name, "--report"])
            .arg(&report)
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .spawn()
            .map_err(|e| format!("cannot start the backup: {e}"))?;
        tracing::info!("backup {name} started (pid {})", child.id());
        self.lock().insert(name.to_string(), child);
        Ok(running)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Child>> {
        self.children.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The report of backup `name`: a run whose process ended without a final report failed.
    pub fn report(&self, name: &str) -> Option<BackupReport> {
        if !PushedFiles::valid_name(name) {
            return None;
        }
        let mut report = BackupReport::read(&self.report_path(name))?;
        if report.phase == "running" {
            let mut children = self.lock();
            let ended = match children.get_mut(name) {
                Some(child) => !matches!(child.try_wait(), Ok(None)),
                // Not started by this process (the manager restarted): it is not running.
                None => true,
            };
            if ended {
                children.remove(name);
                // The process may have written its last report as it exited.
                report = BackupReport::read(&self.report_path(name)).unwrap_or(report);
                if report.phase == "running" {
                    report.phase = "failed".into();
                    report.stopped_at = Some(pgherd_backup::timestamp::rfc3339_now());
                    report.error = Some(format!(
                        "the backup process ended without a result; see {}",
                        self.dir().join(format!("{name}.log")).display()
                    ));
                }
            }
        }
        Some(report)
    }
}

/// `pg_switch_wal()` on this instance when it is a primary (a base backup taken on a standby
/// ends in a WAL segment only the primary can close and archive); the LSN it returned, or
/// `None` on a standby.
pub async fn switch_wal(spec_path: &Path) -> Result<Option<String>, String> {
    let spec = load_spec(spec_path).map_err(|e| e.to_string())?;
    let mut config = tokio_postgres::Config::new();
    config
        .host_path(&spec.socket_dir)
        .port(spec.port)
        .user("postgres")
        .dbname("postgres")
        .application_name("pgherd-instance-manager")
        .connect_timeout(crate::observe::QUERY_TIMEOUT);
    let (client, connection) = crate::sql::timed("connect", config.connect(tokio_postgres::NoTls))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(connection);
    let row = crate::sql::timed(
        "pg_switch_wal",
        client.query_one(
            "SELECT CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_switch_wal()::text END",
            &[],
        ),
    )
    .await
    .map_err(|e| e.to_string())?;
    Ok(row.get(0))
}
