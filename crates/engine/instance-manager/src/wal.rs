//! The commands PostgreSQL runs to move WAL to and from the cluster's object store
//! (`archive_command`, `restore_command`): one file per call, with the other ready files
//! uploaded alongside and the next segments prefetched, and a report of the last outcome that
//! the instance manager publishes (CloudNativePG's `ContinuousArchiving` condition).

use crate::InstanceError;
use pgherd_backup::store::{RetryPolicy, StoreTarget};
use pgherd_backup::{archive_with_ready, check_empty_archive, restore_wal_prefetching};
use pgherd_backup::{ArchiveOutcome, WalError};
use pgherd_instance_protocol::{ArchiveReport, WalStore};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Flag file in PGDATA of a cluster that has not archived yet: its first archive checks that
/// the folder holds no WAL (never archive into another cluster's history).
pub const CHECK_EMPTY_WAL_ARCHIVE: &str = ".check-empty-wal-archive";

/// File (in the instance's run directory) where `wal-archive` records its last outcome.
pub const ARCHIVE_REPORT: &str = "wal-archive.json";

fn read_report(path: &Path) -> ArchiveReport {
    std::fs::read(path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

fn write_report(report: &ArchiveReport, path: &Path) {
    let tmp = path.with_extension("tmp");
    let ok = serde_json::to_vec(report)
        .ok()
        .is_some_and(|b| std::fs::write(&tmp, b).is_ok());
    if ok {
        let _ = std::fs::rename(&tmp, path);
    }
}

/// The last outcome recorded in the instance's run directory (none yet: the default).
pub fn last_archive_report(run_dir: &Path) -> ArchiveReport {
    read_report(&run_dir.join(ARCHIVE_REPORT))
}

fn now() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// How long one `archive_command` or `restore_command` call may retry the store before it
/// fails (PostgreSQL calls it again).
fn policy(deadline: Duration) -> RetryPolicy {
    RetryPolicy {
        attempts: 3,
        initial_backoff: Duration::from_millis(200),
        max_backoff: Duration::from_secs(2),
        call_timeout: deadline,
        stream_timeout: deadline,
    }
}

/// One `archive_command` call.
#[derive(Debug, Clone)]
pub struct ArchiveRequest {
    /// The object store file (mode 0600).
    pub store_file: PathBuf,
    /// `%p`: the WAL file, relative to PGDATA (PostgreSQL runs the command there).
    pub wal_path: PathBuf,
    /// PGDATA (the working directory when PostgreSQL runs the command).
    pub pgdata: PathBuf,
    /// Where files uploaded ahead of their turn are remembered.
    pub spool: PathBuf,
    /// Where the outcome is recorded.
    pub report: Option<PathBuf>,
    /// `cnpg.io/skipEmptyWalArchiveCheck: enabled`.
    pub skip_empty_check: bool,
}

/// Why archiving failed.
#[derive(Debug, thiserror::Error)]
pub enum WalCommandError {
    #[error(transparent)]
    Target(#[from] pgherd_backup::store::TargetError),
    #[error(transparent)]
    Store(#[from] pgherd_backup::StoreError),
    #[error(transparent)]
    Wal(#[from] WalError),
}

/// Archives `%p` (and up to `wal.maxParallel - 1` other ready files).
pub async fn archive(request: &ArchiveRequest) -> Result<ArchiveOutcome, WalCommandError> {
    let name = request
        .wal_path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let result = archive_inner(request).await;
    if let Some(path) = &request.report {
        let mut report = read_report(path);
        match &result {
            Ok(_) => {
                report.last_archived_wal = Some(name);
                report.last_archived_time = Some(now());
                report.last_error = None;
            }
            Err(e) => {
                report.last_failed_wal = Some(name);
                report.last_failed_time = Some(now());
                report.last_error = Some(e.to_string());
            }
        }
        write_report(&report, path);
    }
    result
}

async fn archive_inner(request: &ArchiveRequest) -> Result<ArchiveOutcome, WalCommandError> {
    let target = StoreTarget::read(&request.store_file)?;
    let (store, server) = target.open(policy(Duration::from_secs(60)), CancellationToken::new())?;
    let flag = request.pgdata.join(CHECK_EMPTY_WAL_ARCHIVE);
    if flag.exists() {
        if !request.skip_empty_check {
            check_empty_archive(&store, &server).await?;
        }
        let _ = std::fs::remove_file(&flag);
    }
    let wal_path = if request.wal_path.is_absolute() {
        request.wal_path.clone()
    } else {
        request.pgdata.join(&request.wal_path)
    };
    Ok(archive_with_ready(
        &store,
        &server,
        &wal_path,
        target.wal_compression(),
        target.wal_max_parallel(),
        &request.spool,
    )
    .await?)
}

/// One `restore_command` call: `%f` to `%p`. `Ok(false)` when the archive does not have it
/// (PostgreSQL then tries streaming or ends recovery).
pub async fn restore(
    store_file: &Path,
    name: &str,
    dest: &Path,
    spool: &Path,
    segment_size: u64,
) -> Result<bool, WalCommandError> {
    let target = StoreTarget::read(store_file)?;
    let (store, server) = target.open(policy(Duration::from_secs(60)), CancellationToken::new())?;
    match restore_wal_prefetching(
        &store,
        &server,
        name,
        dest,
        spool,
        target.wal_max_parallel(),
        segment_size,
    )
    .await
    {
        Ok(_) => Ok(true),
        Err(WalError::NotInArchive { .. }) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// `archive_command` and `restore_command` running this program's `instance wal-archive` and
/// `instance wal-restore`.
#[derive(Debug)]
pub struct WalCommands {
    exe: PathBuf,
    store: WalStore,
    run_dir: PathBuf,
}

/// `s` as one word for `/bin/sh`.
fn shell_word(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

impl WalCommands {
    /// Commands for `store`, keeping their spools and report in `run_dir`.
    pub fn new(store: &WalStore, run_dir: &Path) -> Result<Self, InstanceError> {
        let exe = std::env::current_exe()
            .map_err(|e| InstanceError::io("cannot find", "the pgherd executable", e))?;
        Ok(WalCommands {
            exe,
            store: store.clone(),
            run_dir: run_dir.to_path_buf(),
        })
    }

    fn word(path: &Path) -> String {
        shell_word(&path.display().to_string())
    }

    /// `archive_command`.
    pub fn archive_command(&self) -> String {
        format!(
            "{} instance wal-archive --store {} --spool {} --report {}{} %p",
            Self::word(&self.exe),
            Self::word(&self.store.store_file),
            Self::word(&self.run_dir.join("wal-archive-spool")),
            Self::word(&self.run_dir.join(ARCHIVE_REPORT)),
            if self.store.skip_empty_check {
                " --skip-empty-check"
            } else {
                ""
            }
        )
    }

    /// `restore_command`.
    pub fn restore_command(&self) -> String {
        format!(
            "{} instance wal-restore --store {} --spool {} %f %p",
            Self::word(&self.exe),
            Self::word(&self.store.store_file),
            Self::word(&self.run_dir.join("wal-restore-spool")),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_quote_their_paths_for_the_shell() {
        let commands = WalCommands {
            exe: PathBuf::from("/usr/bin/pgherd"),
            store: WalStore {
                store_file: PathBuf::from("/state/it's/store.json"),
                skip_empty_check: true,
            },
            run_dir: PathBuf::from("/state/run"),
        };
        assert_eq!(
            commands.archive_command(),
            "'/usr/bin/pgherd' instance wal-archive --store '/state/it'\\''s/store.json' \
             --spool '/state/run/wal-archive-spool' --report '/state/run/wal-archive.json' \
             --skip-empty-check %p"
        );
        assert!(commands
            .restore_command()
            .ends_with("'/state/run/wal-restore-spool' %f %p"));
    }
}
