//! `pgherd local backup CLUSTER`: `kubectl cnpg backup` on the local platform — a `Backup`
//! object is created and, unless told not to, followed until it completes or fails.

use pgherd_api::cluster::BackupTarget;
use pgherd_api::common::ClusterReference;
use pgherd_api::kinds::backup::{
    Backup, BackupMethod, BackupPluginConfiguration, BackupSpec, BackupStatus,
};
use pgherd_local::backup_jobs::{COMPLETED, FAILED, RUNNING};
use pgherd_local::state::{read_json, write_json, StateDir};
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// What `local backup` was asked.
#[derive(Debug, Clone)]
pub struct BackupRequest {
    pub cluster: String,
    pub namespace: String,
    pub name: Option<String>,
    pub target: Option<BackupTarget>,
    pub method: Option<BackupMethod>,
    pub plugin_name: Option<String>,
    pub wait: bool,
    pub timeout: Duration,
}

/// The name `kubectl cnpg backup` gives: `<cluster>-<YYYYMMDDhhmmss>` (UTC).
fn default_name(cluster: &str) -> String {
    format!(
        "{cluster}-{}",
        pgherd_backup::timestamp::name_stamp(time::OffsetDateTime::now_utc())
    )
}

/// The WAL-archiver plugin of the stored cluster, if it archives through one.
fn plugin_archiver(state: &StateDir, namespace: &str, cluster: &str) -> Option<String> {
    let cluster: pgherd_api::Cluster =
        read_json(&state.object_path("Cluster", namespace, cluster)).ok()??;
    cluster
        .spec
        .plugins?
        .into_iter()
        .find(|p| p.is_wal_archiver == Some(true) && p.enabled != Some(false))
        .map(|p| p.name)
}

pub fn backup(state: &StateDir, request: &BackupRequest) -> anyhow::Result<ExitCode> {
    let ns = &request.namespace;
    if !state.has(&state.object_path("Cluster", ns, &request.cluster))? {
        eprintln!("cluster {:?} not found in namespace {ns}", request.cluster);
        return Ok(ExitCode::from(1));
    }
    let name = request
        .name
        .clone()
        .unwrap_or_else(|| default_name(&request.cluster));
    let path = state.object_path("Backup", ns, &name);
    if path.exists() {
        eprintln!("Backup {name:?} already exists in namespace {ns}; choose another --backup-name");
        return Ok(ExitCode::from(1));
    }
    // Without --method: the way the cluster archives (kubectl cnpg backup's default is
    // barmanObjectStore, which a plugin-only cluster rejects).
    let (method, plugin_name) = match (request.method, &request.plugin_name) {
        (None, None) => match plugin_archiver(state, ns, &request.cluster) {
            Some(name) => (Some(BackupMethod::Plugin), Some(name)),
            None => (None, None),
        },
        (method, name) => (method, name.clone()),
    };
    let mut backup = Backup::new(
        &name,
        BackupSpec {
            cluster: ClusterReference {
                name: request.cluster.clone(),
            },
            target: request.target,
            method,
            plugin_configuration: plugin_name.map(|n| BackupPluginConfiguration {
                name: n,
                parameters: None,
            }),
            ..Default::default()
        },
    );
    backup.metadata.namespace = Some(ns.clone());
    write_json(&path, &backup, 0o600)?;
    outln!("Backup/{ns}/{name} created");
    if !request.wait {
        return Ok(ExitCode::SUCCESS);
    }
    let started = Instant::now();
    let mut last = String::new();
    let mut shown = Progress::default();
    let mut running_since: Option<Instant> = None;
    let mut told_checkpoint = false;
    while started.elapsed() < request.timeout {
        let status: BackupStatus =
            read_json(&state.status_path("Backup", ns, &name))?.unwrap_or_default();
        let phase = status.phase.clone().unwrap_or_else(|| "new".into());
        if phase != last {
            shown.end_line();
            let on = status
                .instance_id
                .as_ref()
                .and_then(|i| i.pod_name.as_deref())
                .map(|p| format!(" on {p}"))
                .unwrap_or_default();
            outln!(
                "{name}: {phase}{on} ({:.1} s)",
                started.elapsed().as_secs_f64()
            );
            last = phase.clone();
        }
        match phase.as_str() {
            COMPLETED | FAILED => shown.end_line(),
            RUNNING => {
                let running_since = *running_since.get_or_insert_with(Instant::now);
                let progress =
                    pgherd_local::backup_jobs::progress(state, ns, &request.cluster, &name);
                if let Some((done, total)) = progress {
                    shown.show(&name, done, total, started.elapsed());
                }
                let uploading = progress.is_some_and(|(done, _)| done > 0);
                if !uploading && !told_checkpoint && running_since.elapsed() > CHECKPOINT_HINT_AFTER
                {
                    // pg_backup_start has not returned: PostgreSQL is checkpointing (a
                    // restartpoint on a standby), spread unless asked to be immediate.
                    told_checkpoint = true;
                    shown.end_line();
                    outln!("{name}: waiting for PostgreSQL's backup-start checkpoint (a restartpoint on a standby); without immediateCheckpoint it is spread over checkpoint_completion_target x checkpoint_timeout (4.5 min by default): set immediateCheckpoint: true in the object store's data section to start at once");
                }
            }
            _ => {}
        }
        match phase.as_str() {
            COMPLETED => {
                outln!(
                    "{name}: backup {} from {} ({}) to {} ({})",
                    status.backup_id.as_deref().unwrap_or("-"),
                    status.begin_wal.as_deref().unwrap_or("-"),
                    status.begin_lsn.as_deref().unwrap_or("-"),
                    status.end_wal.as_deref().unwrap_or("-"),
                    status.end_lsn.as_deref().unwrap_or("-"),
                );
                return Ok(ExitCode::SUCCESS);
            }
            FAILED => {
                eprintln!(
                    "{name}: failed: {}",
                    status.error.as_deref().unwrap_or("no reason given")
                );
                return Ok(ExitCode::from(1));
            }
            _ => std::thread::sleep(Duration::from_millis(200)),
        }
    }
    eprintln!(
        "{name}: not finished after {} s; follow it with `pgherd local get backup {name}`",
        request.timeout.as_secs()
    );
    Ok(ExitCode::from(1))
}

/// How long a backup may run without uploading before `local backup` says it waits for the
/// backup-start checkpoint.
const CHECKPOINT_HINT_AFTER: Duration = Duration::from_secs(5);

/// The progress of a running backup on the terminal: one line rewritten in place on a
/// terminal, a line every 10 s otherwise (logs, pipes).
#[derive(Debug, Default)]
struct Progress {
    /// A line is being rewritten in place (a newline ends it).
    open: bool,
    last: Option<Instant>,
}

impl Progress {
    fn show(&mut self, name: &str, done: u64, total: Option<u64>, elapsed: Duration) {
        use std::io::{IsTerminal, Write};
        let tty = std::io::stdout().is_terminal();
        let every = if tty {
            Duration::from_millis(200)
        } else {
            Duration::from_secs(10)
        };
        if self.last.is_some_and(|t| t.elapsed() < every) {
            return;
        }
        self.last = Some(Instant::now());
        let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
        let of = match total {
            Some(t) if t > 0 => format!(
                " of ~{:.0} MiB ({:.0} %)",
                mib(t),
                (done as f64 * 100.0 / t as f64).min(100.0)
            ),
            _ => String::new(),
        };
        let rate = mib(done) / elapsed.as_secs_f64().max(0.001);
        let line = format!("{name}: {:.0} MiB{of}, {rate:.0} MiB/s", mib(done));
        if tty {
            print!("\r{line}\x1b[K");
            let _ = std::io::stdout().flush();
            self.open = true;
        } else {
            outln!("{line}");
        }
    }

    fn end_line(&mut self) {
        if std::mem::take(&mut self.open) {
            outln!("");
        }
    }
}
