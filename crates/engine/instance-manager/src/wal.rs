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

/// What PostgreSQL's `pg_stat_archiver` says of the archiver.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ArchiverStat {
    /// Its last failure came after its last success (or there was none).
    pub failing: bool,
    pub failed_count: i64,
    pub last_failed_wal: Option<String>,
    /// RFC 3339.
    pub last_failed_time: Option<String>,
}

/// `report` (what `archive_command` recorded itself) corrected by `pg_stat_archiver`: a command
/// that could not even start (its executable gone, exit 127) or was killed records nothing, so
/// the report would keep saying the last success while every segment fails and piles up.
pub fn with_archiver_stat(mut report: ArchiveReport, stat: &ArchiverStat) -> ArchiveReport {
    if stat.failing && !report.failing() {
        report.last_failed_wal = stat.last_failed_wal.clone();
        report.last_failed_time = stat.last_failed_time.clone();
        report.last_error = Some(format!(
            "archive_command failed without a word ({} failures in pg_stat_archiver, the last for {}): see the PostgreSQL log",
            stat.failed_count,
            stat.last_failed_wal.as_deref().unwrap_or("-")
        ));
    }
    report
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
    /// The background shipper could not upload the file (its message).
    #[error("{0}")]
    Shipper(String),
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
                report.last_archived_time = Some(pgherd_backup::timestamp::rfc3339_now());
                report.last_error = None;
            }
            Err(e) => {
                report.last_failed_wal = Some(name);
                report.last_failed_time = Some(pgherd_backup::timestamp::rfc3339_now());
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
    let name = request
        .wal_path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if target.wal_max_parallel() > 1 {
        // pgBackRest's asynchronous archiving, in spirit: a background shipper uploads ready
        // files continuously, in parallel; this call waits for its own file.
        let shipper = Shipper {
            store_file: request.store_file.clone(),
            spool: request.spool.clone(),
            pgdata: request.pgdata.clone(),
        };
        let marker = request.spool.join(&name);
        if marker.exists()
            || (shipper.ensure_running()
                && shipper
                    .wait_for(&name)
                    .await
                    .map_err(WalCommandError::Shipper)?)
        {
            let _ = std::fs::remove_file(&marker);
            return Ok(ArchiveOutcome::PreArchived);
        }
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

/// Upload one WAL file at `path` under its own name into the cluster's store, whether or not
/// PostgreSQL marked it ready (a demoted primary's last segment, which it never completes).
pub async fn archive_segment(store: &WalStore, path: &Path) -> Result<(), WalCommandError> {
    let target = StoreTarget::read(&store.store_file)?;
    let (objects, server) =
        target.open(policy(Duration::from_secs(60)), CancellationToken::new())?;
    pgherd_backup::wal_archive::archive_wal(&objects, &server, path, target.wal_compression())
        .await?;
    Ok(())
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
        let exe = crate::process::pgherd_exe()
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
    fn a_failing_archiver_the_report_missed_is_failing() {
        let ok = ArchiveReport {
            last_archived_wal: Some("000000010000000000000023".into()),
            ..ArchiveReport::default()
        };
        let stat = ArchiverStat {
            failing: true,
            failed_count: 7,
            last_failed_wal: Some("000000010000000000000024".into()),
            last_failed_time: Some("2026-12-06T09:51:51Z".into()),
        };
        let merged = with_archiver_stat(ok.clone(), &stat);
        assert!(merged.failing());
        assert_eq!(merged.last_failed_wal, stat.last_failed_wal);
        assert_eq!(merged.last_archived_wal, ok.last_archived_wal);
        // Not failing now: the report stands.
        let healthy = ArchiverStat {
            failing: false,
            ..stat.clone()
        };
        assert_eq!(with_archiver_stat(ok.clone(), &healthy), ok);
        // The command's own account of a failure is kept as it said it.
        let own = ArchiveReport {
            last_error: Some("the store refused".into()),
            ..ok
        };
        assert_eq!(with_archiver_stat(own.clone(), &stat), own);
    }

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

/// How often the shipper looks for WAL files PostgreSQL has marked ready.
const SHIP_EVERY: Duration = Duration::from_millis(50);

/// How long the shipper rests after a failed upload.
const SHIP_REST: Duration = Duration::from_secs(5);

/// How long the shipper stays without work before it exits (the next `archive_command`
/// starts another).
const SHIP_IDLE_EXIT: Duration = Duration::from_secs(30);

/// How long `archive_command` waits for the shipper to upload its file before uploading it
/// itself.
const SHIPPED_WAIT: Duration = Duration::from_secs(60);

/// The shipper's pid file in the spool.
const SHIPPER_PID: &str = "shipper.pid";

/// The spool file recording why the shipper could not upload `name`.
fn failure_marker(name: &str) -> String {
    format!("{name}.failed")
}

/// What a background shipper works on.
#[derive(Debug, Clone)]
pub struct Shipper {
    pub store_file: PathBuf,
    pub spool: PathBuf,
    pub pgdata: PathBuf,
}

impl Shipper {
    fn running(&self) -> bool {
        std::fs::read_to_string(self.spool.join(SHIPPER_PID))
            .ok()
            .and_then(|p| p.trim().parse::<u32>().ok())
            .is_some_and(crate::process::is_alive)
    }

    /// Starts `pgherd instance wal-ship` in the background unless one runs for this spool.
    fn ensure_running(&self) -> bool {
        if self.running() {
            return true;
        }
        let Ok(exe) = crate::process::pgherd_exe() else {
            return false;
        };
        use std::os::unix::process::CommandExt as _;
        std::process::Command::new(exe)
            .args(["instance", "wal-ship", "--store"])
            .arg(&self.store_file)
            .arg("--spool")
            .arg(&self.spool)
            .arg("--pgdata")
            .arg(&self.pgdata)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            // Its own process group: PostgreSQL's archiver only waits for archive_command.
            .process_group(0)
            .spawn()
            .is_ok()
    }

    /// Waits until the shipper uploaded `name` (`Ok(true)`), failed it (`Err`), or did not get
    /// to it in time (`Ok(false)`).
    async fn wait_for(&self, name: &str) -> Result<bool, String> {
        let done = self.spool.join(name);
        let failed = self.spool.join(failure_marker(name));
        let deadline = std::time::Instant::now() + SHIPPED_WAIT;
        while std::time::Instant::now() < deadline {
            if done.exists() {
                return Ok(true);
            }
            if let Ok(message) = std::fs::read_to_string(&failed) {
                let _ = std::fs::remove_file(&failed);
                return Err(message);
            }
            if !self.running() && !done.exists() {
                return Ok(false);
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        Ok(false)
    }

    /// The shipper's loop: uploads every `.ready` WAL file as soon as it appears, up to
    /// `wal.maxParallel` at a time, leaving a marker (or a failure) in the spool for
    /// `archive_command`; exits after [`SHIP_IDLE_EXIT`] without work or when another shipper
    /// owns the spool.
    pub async fn run(&self) -> Result<(), WalCommandError> {
        use futures::StreamExt as _;
        std::fs::create_dir_all(&self.spool).map_err(|source| WalError::Local {
            what: "create the WAL archive spool",
            path: self.spool.clone(),
            source,
        })?;
        if self.running() {
            return Ok(());
        }
        let pid_file = self.spool.join(SHIPPER_PID);
        let _ = std::fs::write(&pid_file, std::process::id().to_string());
        let target = StoreTarget::read(&self.store_file)?;
        let (store, server) =
            target.open(policy(Duration::from_secs(60)), CancellationToken::new())?;
        let store = std::sync::Arc::new(store);
        let limit = target.wal_max_parallel();
        let compression = target.wal_compression();
        let status_dir = self.pgdata.join("pg_wal/archive_status");
        let mut in_flight = futures::stream::FuturesUnordered::new();
        let mut taken: std::collections::BTreeSet<String> = Default::default();
        let mut idle_since = std::time::Instant::now();
        let mut resting_until = std::time::Instant::now();
        loop {
            let owner = std::fs::read_to_string(&pid_file).ok();
            if owner.as_deref().map(str::trim) != Some(std::process::id().to_string().as_str()) {
                break; // another shipper took over
            }
            if std::time::Instant::now() >= resting_until {
                for name in pgherd_backup::wal_archive::ready_wal_files(&status_dir, &self.spool) {
                    if in_flight.len() >= limit {
                        break;
                    }
                    if !taken.insert(name.clone()) {
                        continue;
                    }
                    let path = self.pgdata.join("pg_wal").join(&name);
                    let store = store.clone();
                    let server = server.clone();
                    in_flight.push(async move {
                        let result =
                            pgherd_backup::archive_wal(&*store, &server, &path, compression).await;
                        (name, result)
                    });
                }
            }
            if in_flight.is_empty() && idle_since.elapsed() > SHIP_IDLE_EXIT {
                break;
            }
            tokio::select! {
                _ = tokio::time::sleep(SHIP_EVERY) => {}
                Some((name, result)) = in_flight.next(), if !in_flight.is_empty() => {
                    idle_since = std::time::Instant::now();
                    taken.remove(&name);
                    match result {
                        Ok(_) => {
                            let _ = std::fs::write(self.spool.join(&name), b"");
                        }
                        Err(e) => {
                            let _ = std::fs::write(self.spool.join(failure_marker(&name)), e.to_string());
                            resting_until = std::time::Instant::now() + SHIP_REST;
                        }
                    }
                }
            }
        }
        let owner = std::fs::read_to_string(&pid_file).ok();
        if owner.as_deref().map(str::trim) == Some(std::process::id().to_string().as_str()) {
            let _ = std::fs::remove_file(&pid_file);
        }
        Ok(())
    }
}
