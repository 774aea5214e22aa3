//! Poolers on the local platform: for every stored `Pooler`, real PgBouncer processes (one per
//! `spec.instances`, run as the PostgreSQL OS user) in front of the cluster's endpoint for the
//! pooler's type, an endpoint named after the pooler that spreads connections over them, a
//! `cnpg_pgbouncer_*` exporter per instance, and the Pooler's status.
//!
//! Changes apply without dropping clients: new parameters or HBA lines are written and
//! `RELOAD`ed, `paused` becomes `PAUSE`/`RESUME`, more or fewer instances start or stop.
//!
//! During a switchover the cluster's `rw` poolers are paused before the old primary is demoted
//! and resumed once the new primary serves the `-rw` endpoint, so clients wait instead of
//! failing (cloudnative-pg#8299). The annotation `pgherd.io/pause-on-switchover: "false"` on a
//! Pooler turns it off; a pause never outlives [`SWITCHOVER_PAUSE_LIMIT`], a failover resumes
//! at once, and a user's `paused: true` is never resumed.

use crate::endpoints::{self, Backends};
use crate::pooler_files::{self as files, InstanceFiles, InstancePorts};
use crate::state::{read_json, write_json, StateDir};
use crate::status::{ClusterPooler, LocalClusterStatus};
use crate::LocalError;
use pgherd_api::kinds::pooler::PoolerType;
use pgherd_api::Pooler;
use pgherd_pooler::admin::{AdminClient, AdminTarget};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

mod switchover;

/// The longest a switchover keeps poolers paused.
pub const SWITCHOVER_PAUSE_LIMIT: Duration = Duration::from_secs(30);
/// The least time between two starts of one PgBouncer.
const RESTART_BACKOFF: Duration = Duration::from_secs(5);
/// How long a `PAUSE` may wait for running transactions before the switchover goes on.
pub const PAUSE_WAIT: Duration = Duration::from_secs(10);

/// One PgBouncer instance in a Pooler's status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PoolerInstanceStatus {
    pub name: String,
    /// PgBouncer's port on 127.0.0.1.
    pub port: u16,
    /// The exporter (`/metrics`).
    pub metrics: String,
    pub pid: Option<u32>,
    pub ready: bool,
    /// Its admin console's unix socket directory.
    pub socket_dir: String,
}

/// A Pooler's status (`pgherd local get pooler NAME`): CloudNativePG's fields (`instances`,
/// `phase`, `phaseReason`, `error`) and the local platform's (endpoint, instances).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LocalPoolerStatus {
    pub cluster: String,
    #[serde(rename = "type")]
    pub pooler_type: String,
    /// PgBouncer instances running.
    pub instances: usize,
    pub ready_instances: usize,
    /// `active`, `paused`, `pending` or `failed`.
    pub phase: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phase_reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The pooler's endpoint (stands in for its Service).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    pub paused: bool,
    /// Paused by pgherd for a switchover of the cluster.
    pub paused_for_switchover: bool,
    pub instances_status: Vec<PoolerInstanceStatus>,
}

/// What the control plane knows of one PgBouncer instance.
#[derive(Debug, Clone, Default)]
struct Applied {
    pid: u32,
    /// Its admin console answered since it started.
    ready: bool,
    paused: bool,
    /// Its files changed since its last `RELOAD`.
    reload: bool,
}

/// What the control plane keeps per pooler between passes.
#[derive(Debug)]
struct PoolerRuntime {
    cluster: String,
    rw: bool,
    pause_on_switchover: bool,
    user_paused: bool,
    port: u16,
    backends: Backends,
    server: tokio::task::JoinHandle<()>,
    applied: BTreeMap<String, Applied>,
    targets: BTreeMap<String, AdminTarget>,
    /// When each instance's PgBouncer was last started by this control plane.
    last_start: BTreeMap<String, Instant>,
    switchover_since: Option<Instant>,
    /// The primary the paused switchover hands over to: the pause ends once the cluster's
    /// status names it (a status written before the switchover started must not end it).
    switchover_to: Option<String>,
    /// The switchover under way was already paused for (it is paused once, even when the
    /// pause ended by its time limit before the switchover did).
    switchover_handled: bool,
    entry: ClusterPooler,
}

impl Drop for PoolerRuntime {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// Every pooler's runtime, by (namespace, name).
#[derive(Debug, Default)]
pub struct PoolerRuntimes {
    runtimes: BTreeMap<(String, String), PoolerRuntime>,
}

/// Whether a stored Pooler with built-in authentication uses cluster `cluster` (the primary
/// then keeps `cnpg_pooler_pgbouncer` and `user_search`).
pub fn uses_builtin_auth(state: &StateDir, namespace: &str, cluster: &str) -> bool {
    state
        .list_objects::<Pooler>("Pooler")
        .unwrap_or_default()
        .iter()
        .any(|(ns, _, p)| {
            ns == namespace
                && p.spec.cluster.name == cluster
                && pgherd_pooler::config::uses_builtin_auth(p)
        })
}

fn type_name(t: PoolerType) -> &'static str {
    match t {
        PoolerType::Rw => "rw",
        PoolerType::Ro => "ro",
        PoolerType::R => "r",
    }
}

/// The admin console of `target`; a PgBouncer that does not answer within a second is
/// tried again on a later pass (the pass must not wait on it: failovers run on it too).
async fn admin(target: &AdminTarget) -> Option<AdminClient> {
    tokio::time::timeout(ADMIN_CONNECT, AdminClient::connect(target))
        .await
        .ok()?
        .ok()
}

const ADMIN_CONNECT: Duration = Duration::from_secs(1);
/// How long a user's `PAUSE` is waited for; PgBouncer goes on pausing after that, the pass
/// goes on.
const USER_PAUSE_WAIT: Duration = Duration::from_secs(2);

/// What the pooler pass and the clusters' tasks tell each other without waiting on each
/// other: each pooler as the last pooler pass saw it (for its cluster's status), and each
/// cluster's `-rw` backends (a paused pooler resumes once the new primary serves them).
#[derive(Debug, Clone, Default)]
pub struct PoolerBoard(Arc<Mutex<Board>>);

#[derive(Debug, Default)]
struct Board {
    /// (namespace, cluster) → its poolers.
    poolers: BTreeMap<(String, String), Vec<ClusterPooler>>,
    /// (namespace, cluster) → its `-rw` endpoint's backends.
    rw: BTreeMap<(String, String), Backends>,
}

impl PoolerBoard {
    fn with<T>(&self, f: impl FnOnce(&mut Board) -> T) -> T {
        // A panic while holding the lock leaves plain maps behind: still usable.
        let mut board = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut board)
    }

    /// The poolers of a cluster, for its status (`poolers`, and one endpoint each).
    pub fn cluster_entries(&self, namespace: &str, cluster: &str) -> Vec<ClusterPooler> {
        self.with(|b| {
            b.poolers
                .get(&(namespace.to_string(), cluster.to_string()))
                .cloned()
                .unwrap_or_default()
        })
    }

    /// After a pooler pass: every pooler's entry.
    pub fn publish(&self, poolers: &PoolerRuntimes) {
        let mut by_cluster: BTreeMap<(String, String), Vec<ClusterPooler>> = BTreeMap::new();
        for ((ns, _), r) in &poolers.runtimes {
            by_cluster
                .entry((ns.clone(), r.cluster.clone()))
                .or_default()
                .push(r.entry.clone());
        }
        self.with(|b| b.poolers = by_cluster);
    }

    /// A cluster's `-rw` backends, from its task (`None`: the cluster is gone).
    pub fn set_cluster_rw(&self, namespace: &str, cluster: &str, rw: Option<Backends>) {
        let key = (namespace.to_string(), cluster.to_string());
        self.with(|b| match rw {
            Some(backends) => b.rw.insert(key, backends),
            None => b.rw.remove(&key),
        });
    }

    /// Whether the cluster's `-rw` endpoint has a backend.
    fn cluster_rw_serves(&self, namespace: &str, cluster: &str) -> bool {
        self.with(|b| {
            b.rw.get(&(namespace.to_string(), cluster.to_string()))
                .is_some_and(|backends| !backends.get().is_empty())
        })
    }
}

/// One pooler pass: what it needs of the control plane.
#[derive(Debug)]
pub struct PoolerPass<'a> {
    pub state: &'a StateDir,
    pub user: &'a pgherd_instance_manager::OsUser,
    pub exe: &'a Path,
    pub board: &'a PoolerBoard,
    pub poolers: &'a mut PoolerRuntimes,
}

impl PoolerPass<'_> {
    /// One pass over every stored Pooler (after the clusters' pass).
    pub async fn reconcile_poolers(&mut self) -> Result<(), LocalError> {
        let poolers: Vec<(String, String, Pooler)> = self.state.list_objects("Pooler")?;
        let keys: Vec<(String, String)> = poolers
            .iter()
            .map(|(ns, n, _)| (ns.clone(), n.clone()))
            .collect();
        // Deleted poolers: processes stopped, directory removed.
        let gone: Vec<(String, String)> = self
            .poolers
            .runtimes
            .keys()
            .filter(|k| !keys.contains(k))
            .cloned()
            .collect();
        for key in gone {
            if let Some(r) = self.poolers.runtimes.remove(&key) {
                self.remove_pooler(&key.0, &r.cluster, &key.1);
            }
        }
        self.remove_orphans(&keys);
        for (namespace, name, pooler) in poolers {
            let mut status = self
                .reconcile_pooler(&namespace, &name, &pooler)
                .await
                .unwrap_or_else(|e| LocalPoolerStatus {
                    cluster: pooler.spec.cluster.name.clone(),
                    pooler_type: type_name(pooler.spec.pooler_type.unwrap_or_default()).into(),
                    phase: "failed".into(),
                    error: Some(e.to_string()),
                    ..LocalPoolerStatus::default()
                });
            if let Some(r) = self
                .poolers
                .runtimes
                .get_mut(&(namespace.clone(), name.clone()))
            {
                status.endpoint = Some(format!("127.0.0.1:{}", r.port));
                r.entry = ClusterPooler {
                    name: name.clone(),
                    pooler_type: status.pooler_type.clone(),
                    endpoint: format!("127.0.0.1:{}", r.port),
                    instances: status.instances,
                    ready_instances: status.ready_instances,
                    phase: status.phase.clone(),
                    paused: status.paused,
                };
            }
            let path = self.state.status_path("Pooler", &namespace, &name);
            if read_json::<LocalPoolerStatus>(&path)
                .ok()
                .flatten()
                .as_ref()
                != Some(&status)
            {
                if let Some(e) = &status.error {
                    tracing::warn!("{namespace}/{name}: {e}");
                }
                write_json(&path, &status, 0o600)?;
            }
        }
        Ok(())
    }

    fn remove_pooler(&self, namespace: &str, cluster: &str, name: &str) {
        let dir = files::pooler_dir(self.state, namespace, cluster, name);
        for instance in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            if instance.path().is_dir() {
                files::stop_instance(&instance.path());
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
        tracing::info!("{namespace}/{name}: pooler removed");
    }

    /// Pooler directories with no stored Pooler (deleted while the control plane was down).
    fn remove_orphans(&self, keys: &[(String, String)]) {
        let clusters = self.state.root.join("clusters");
        for ns in std::fs::read_dir(&clusters).into_iter().flatten().flatten() {
            let namespace = ns.file_name().to_string_lossy().into_owned();
            for cluster in std::fs::read_dir(ns.path()).into_iter().flatten().flatten() {
                for pooler in std::fs::read_dir(cluster.path().join("poolers"))
                    .into_iter()
                    .flatten()
                    .flatten()
                {
                    let name = pooler.file_name().to_string_lossy().into_owned();
                    if !keys.contains(&(namespace.clone(), name.clone())) {
                        self.remove_pooler(
                            &namespace,
                            &cluster.file_name().to_string_lossy(),
                            &name,
                        );
                    }
                }
            }
        }
    }

    async fn reconcile_pooler(
        &mut self,
        namespace: &str,
        name: &str,
        pooler: &Pooler,
    ) -> Result<LocalPoolerStatus, LocalError> {
        let cluster = pooler.spec.cluster.name.clone();
        let pooler_type = pooler.spec.pooler_type.unwrap_or_default();
        let mut status = LocalPoolerStatus {
            cluster: cluster.clone(),
            pooler_type: type_name(pooler_type).into(),
            phase: "pending".into(),
            ..LocalPoolerStatus::default()
        };
        let problems: Vec<String> = pgherd_api::validate::validate_pooler(pooler)
            .iter()
            .filter(|d| d.is_error())
            .map(|d| format!("Pooler {name}: {d}"))
            .collect();
        if !problems.is_empty() {
            return Err(LocalError::Invalid(problems.join("; ")));
        }
        let Some(cluster_status) = read_json::<LocalClusterStatus>(
            &self.state.status_path("Cluster", namespace, &cluster),
        )?
        .filter(|_| {
            self.state
                .object_path("Cluster", namespace, &cluster)
                .exists()
        }) else {
            status.phase_reason = Some(format!(
                "waiting for cluster {cluster} (spec.cluster.name) to exist"
            ));
            return Ok(status);
        };
        let Some(upstream_port) = cluster_status
            .endpoints
            .get(type_name(pooler_type))
            .and_then(|a| a.rsplit_once(':'))
            .and_then(|(_, p)| p.parse::<u16>().ok())
        else {
            status.phase_reason = Some(format!(
                "waiting for the {}-{} endpoint",
                cluster,
                type_name(pooler_type)
            ));
            return Ok(status);
        };
        let certs = self.state.cluster_dir(namespace, &cluster).join("certs");
        let (pooler_cert, pooler_key) =
            files::ensure_certificate(self.state, namespace, &cluster, self.user)?;
        let dir = files::pooler_dir(self.state, namespace, &cluster, name);
        self.user.own_dir(&dir, 0o700)?;
        let password = files::admin_password(&dir, self.user)?;
        let wanted: Vec<String> = (1..=pooler.spec.instances.unwrap_or(1).max(0))
            .map(|i| format!("{name}-{i}"))
            .collect();
        let mut ports = files::ensure_ports(&dir, &wanted)?;
        let key = (namespace.to_string(), name.to_string());
        if !self.poolers.runtimes.contains_key(&key) {
            let listener = tokio::net::TcpListener::bind(("127.0.0.1", ports.endpoint))
                .await
                .map_err(|e| LocalError::Invalid(format!("Pooler {name}: cannot listen on 127.0.0.1:{} for its endpoint: {e}; delete {} to get another port", ports.endpoint, dir.join("ports.json").display())))?;
            let backends = Backends::default();
            let server = tokio::spawn(endpoints::serve(
                listener,
                backends.clone(),
                endpoints::OnRemoval::Keep,
            ));
            self.poolers.runtimes.insert(
                key.clone(),
                PoolerRuntime {
                    cluster: cluster.clone(),
                    rw: pooler_type == PoolerType::Rw,
                    pause_on_switchover: true,
                    user_paused: false,
                    port: ports.endpoint,
                    backends,
                    server,
                    applied: BTreeMap::new(),
                    targets: BTreeMap::new(),
                    last_start: BTreeMap::new(),
                    switchover_since: None,
                    switchover_to: None,
                    switchover_handled: false,
                    entry: ClusterPooler::default(),
                },
            );
        }
        // Instances no longer wanted.
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let instance = entry.file_name().to_string_lossy().into_owned();
            if entry.path().is_dir() && !wanted.contains(&instance) {
                files::stop_instance(&entry.path());
                std::fs::remove_dir_all(entry.path())
                    .map_err(|e| LocalError::io("cannot remove", entry.path(), e))?;
                tracing::info!("{namespace}/{name}: stopped {instance}");
            }
        }
        files::forget_ports(&dir, &mut ports, &wanted)?;

        let rw_has_primary = self.board.cluster_rw_serves(namespace, &cluster);
        let Some(runtime) = self.poolers.runtimes.get_mut(&key) else {
            return Ok(status);
        };
        runtime.user_paused = pooler.spec.pgbouncer.paused.unwrap_or(false);
        runtime.pause_on_switchover = pgherd_pooler::pause_on_switchover(pooler);
        runtime.applied.retain(|k, _| wanted.contains(k));
        runtime.targets.retain(|k, _| wanted.contains(k));
        runtime.last_start.retain(|k, _| wanted.contains(k));
        switchover::end_pause(runtime, &cluster_status, rw_has_primary, namespace, name).await;
        let want_paused = runtime.user_paused || runtime.switchover_since.is_some();
        let exe = self.exe.to_path_buf();
        let mut ready = Vec::new();
        for instance in &wanted {
            let Some(&instance_ports) = ports.instances.get(instance) else {
                continue;
            };
            let files = InstanceFiles::new(dir.join(instance));
            self.user.own_dir(&files.root, 0o700)?;
            let paths = pgherd_pooler::ConfigPaths {
                listen_addr: "127.0.0.1".into(),
                listen_port: instance_ports.pgbouncer,
                unix_socket_dir: files.run.clone(),
                hba_file: files.hba.clone(),
                auth_file: files.auth_file.clone(),
                server_ca: certs.join("server-ca.crt"),
                server_cert: pooler_cert.clone(),
                server_key: pooler_key.clone(),
                client_cert: certs.join("server.crt"),
                client_key: certs.join("server.key"),
                client_ca: certs.join("client-ca.crt"),
            };
            let upstream = pgherd_pooler::Upstream {
                host: "127.0.0.1".into(),
                port: upstream_port,
            };
            let rendered = pgherd_pooler::render(pooler, &upstream, &paths)
                .map_err(|e| LocalError::Invalid(e.to_string()))?;
            let mut changed = files::write_if_changed(&files.ini, &rendered.ini, self.user)?;
            changed |= files::write_if_changed(&files.hba, &rendered.hba, self.user)?;
            changed |= files::write_if_changed(
                &files.auth_file,
                &pgherd_pooler::config::render_auth_file(&password),
                self.user,
            )?;
            // A PgBouncer that exits at once (a bad setting) is started again at most every
            // RESTART_BACKOFF, and its log is pointed at.
            let running = crate::instances::running_pid(&files.root.join(files::PGBOUNCER_PID));
            if running.is_none() {
                if let Some(at) = runtime.last_start.get(instance) {
                    status.phase_reason = Some(format!(
                        "PgBouncer {instance} exited; see {}",
                        files.root.join("pgbouncer.log").display()
                    ));
                    if at.elapsed() < RESTART_BACKOFF {
                        status.instances_status.push(instance_status(
                            instance,
                            instance_ports,
                            None,
                            false,
                            &files.run,
                        ));
                        continue;
                    }
                }
            }
            let (pid, started) = files::ensure_pgbouncer(&files, self.user)?;
            if started {
                runtime.last_start.insert(instance.clone(), Instant::now());
            }
            files::ensure_exporter(
                &exe,
                &files,
                instance_ports,
                &dir.join("admin-password"),
                self.user,
            )?;
            let target = AdminTarget {
                socket_dir: files.run.clone(),
                port: instance_ports.pgbouncer,
                password: password.clone(),
            };
            runtime.targets.insert(instance.clone(), target.clone());
            let applied = runtime.applied.entry(instance.clone()).or_default();
            if applied.pid != pid {
                if !started && applied.pid == 0 {
                    // Found running (the control plane restarted): its state is unknown.
                    *applied = Applied {
                        pid,
                        ready: false,
                        paused: !want_paused,
                        reload: true,
                    };
                } else {
                    *applied = Applied {
                        pid,
                        ..Applied::default()
                    };
                }
                if started {
                    tracing::info!(
                        "{namespace}/{name}: started PgBouncer {instance} (pid {pid}, port {})",
                        instance_ports.pgbouncer
                    );
                }
            }
            // A PgBouncer just started is not listening yet: the next pass talks to it.
            applied.reload |= changed && !started;
            if !started && (applied.reload || !applied.ready || applied.paused != want_paused) {
                if let Some(client) = admin(&target).await {
                    applied.ready = true;
                    if applied.reload {
                        client.reload().await.map_err(|e| {
                            LocalError::Invalid(format!("Pooler {name}: {instance}: {e}"))
                        })?;
                        applied.reload = false;
                        tracing::info!("{namespace}/{name}: {instance}: configuration reloaded");
                    }
                    if applied.paused != want_paused {
                        let result = if want_paused {
                            client.pause(USER_PAUSE_WAIT).await
                        } else {
                            client.resume().await
                        };
                        match result {
                            // Still pausing (transactions running): it will be paused.
                            Ok(()) | Err(pgherd_pooler::AdminError::Timeout { .. }) => {
                                applied.paused = want_paused;
                                tracing::info!(
                                    "{namespace}/{name}: {instance}: {}",
                                    if want_paused { "paused" } else { "resumed" }
                                );
                            }
                            Err(e) => tracing::warn!("{namespace}/{name}: {instance}: {e}"),
                        }
                    }
                }
            }
            if applied.ready {
                ready.push(std::net::SocketAddr::from((
                    [127, 0, 0, 1],
                    instance_ports.pgbouncer,
                )));
            }
            status.instances_status.push(instance_status(
                instance,
                instance_ports,
                Some(pid),
                applied.ready,
                &files.run,
            ));
        }
        runtime.backends.set(ready.clone());
        status.instances = status
            .instances_status
            .iter()
            .filter(|i| i.pid.is_some())
            .count();
        status.ready_instances = ready.len();
        status.paused = runtime.user_paused;
        status.paused_for_switchover = runtime.switchover_since.is_some();
        status.phase = if status.paused || status.paused_for_switchover {
            "paused"
        } else if ready.len() == wanted.len() {
            "active"
        } else {
            "pending"
        }
        .into();
        Ok(status)
    }
}

fn instance_status(
    name: &str,
    ports: InstancePorts,
    pid: Option<u32>,
    ready: bool,
    run: &std::path::Path,
) -> PoolerInstanceStatus {
    PoolerInstanceStatus {
        name: name.to_string(),
        port: ports.pgbouncer,
        metrics: format!("127.0.0.1:{}", ports.metrics),
        pid,
        ready,
        socket_dir: PathBuf::from(run).display().to_string(),
    }
}
