//! The local control plane's supervision: one task per stored Cluster, each running that
//! cluster's passes on its own (`control::ClusterTask`), so one cluster's slow object store,
//! pooler or process stop never delays another cluster's failover or lease renewal; plus the
//! passes that span clusters (scheduled backups, poolers).

use crate::control::ClusterTask;
use crate::plane_metrics::PlaneMetrics;
use crate::pooler::{PoolerBoard, PoolerRuntimes};
use crate::state::{read_json, write_json, StateDir};
use crate::status::{LocalClusterStatus, LocalCondition};
use crate::LocalError;
use pgherd_api::Cluster;
use pgherd_controller::phase;
use pgherd_instance_manager::OsUser;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tracing::Instrument as _;

/// What every task of the control plane shares: its settings and the few structures that span
/// clusters. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Plane {
    pub state: StateDir,
    /// The pgherd binary (to start instance managers).
    pub exe: PathBuf,
    /// OS user for PostgreSQL and the instance managers.
    pub user: OsUser,
    /// Explicit PostgreSQL binaries directory, if any.
    pub postgres_bin: Option<PathBuf>,
    /// The control plane's own counters (`/metrics`).
    pub metrics: PlaneMetrics,
    /// The poolers' endpoints and processes (`crate::pooler`). Held by the pooler pass, and by
    /// a cluster's task only while that cluster is switching over (to pause its poolers).
    pub poolers: Arc<tokio::sync::Mutex<PoolerRuntimes>>,
    /// What the last pooler pass saw of each pooler, for the clusters' status.
    pub pooler_board: PoolerBoard,
}

impl Plane {
    pub fn new(state: StateDir, exe: PathBuf, user: OsUser, postgres_bin: Option<PathBuf>) -> Self {
        Self {
            state,
            exe,
            user,
            postgres_bin,
            metrics: PlaneMetrics::default(),
            poolers: Arc::default(),
            pooler_board: PoolerBoard::default(),
        }
    }
}

/// Pause between two passes over a cluster: short while a primary is down or changing (each
/// pass moves a failover or switchover one step), longer otherwise.
const BUSY_PAUSE: Duration = Duration::from_millis(50);
const IDLE_PAUSE: Duration = Duration::from_millis(200);

/// The control plane: a task per cluster, started when its Cluster is first seen and ended
/// when it is deleted.
#[derive(Debug)]
pub struct ControlPlane {
    pub plane: Plane,
    tasks: BTreeMap<(String, String), tokio::task::JoinHandle<()>>,
}

impl ControlPlane {
    pub fn new(plane: Plane) -> Self {
        crate::placement::remember_kept_ports(&plane.state.root);
        Self {
            plane,
            tasks: BTreeMap::new(),
        }
    }

    /// One supervision pass: scheduled backups, a running task for every stored Cluster (a
    /// task that ended, by deletion or by a panic, is replaced when its Cluster is stored),
    /// then the poolers.
    pub async fn supervise(&mut self) -> Result<(), LocalError> {
        crate::instances::reap();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        match crate::schedules::reconcile_schedules(&self.plane.state, now) {
            Ok(created) => {
                self.plane.metrics.controller_pass("scheduled-backup", true);
                for b in created {
                    tracing::info!("scheduled backup: created Backup {b}");
                }
            }
            Err(e) => {
                self.plane
                    .metrics
                    .controller_pass("scheduled-backup", false);
                tracing::warn!("scheduled backups: {e}");
            }
        }
        self.tasks.retain(|(ns, name), task| {
            if !task.is_finished() {
                return true;
            }
            if let Some(e) = panic_of(task) {
                tracing::warn!("{ns}/{name}: the cluster's task stopped: {e}");
            }
            false
        });
        for (namespace, name) in self.plane.state.list_names("Cluster")? {
            let key = (namespace.clone(), name.clone());
            if !self.tasks.contains_key(&key) {
                let plane = self.plane.clone();
                let span = tracing::info_span!("cluster", name = %format!("{namespace}/{name}"));
                self.tasks.insert(
                    key,
                    tokio::spawn(run_cluster(plane, namespace, name).instrument(span)),
                );
            }
        }
        let mut poolers = self.plane.poolers.lock().await;
        let result = crate::pooler::PoolerPass {
            state: &self.plane.state,
            user: &self.plane.user,
            exe: &self.plane.exe,
            board: &self.plane.pooler_board,
            poolers: &mut poolers,
        }
        .reconcile_poolers()
        .await;
        self.plane.pooler_board.publish(&poolers);
        self.plane.metrics.controller_pass("pooler", result.is_ok());
        result
    }
}

/// A finished task's panic, if it panicked.
fn panic_of(task: &mut tokio::task::JoinHandle<()>) -> Option<String> {
    use std::future::Future;
    let mut context = std::task::Context::from_waker(std::task::Waker::noop());
    match std::pin::Pin::new(task).poll(&mut context) {
        std::task::Poll::Ready(Err(e)) => Some(e.to_string()),
        _ => None,
    }
}

/// The passes over one cluster until its Cluster is deleted.
async fn run_cluster(plane: Plane, namespace: String, name: String) {
    let path = plane.state.object_path("Cluster", &namespace, &name);
    let mut task = ClusterTask::new(plane.clone(), &namespace, &name);
    loop {
        let cluster: Result<Option<Cluster>, LocalError> = read_json(&path);
        let pause = match cluster {
            Ok(None) => {
                tracing::info!("{namespace}/{name}: deleted");
                plane.pooler_board.set_cluster_rw(&namespace, &name, None);
                return;
            }
            Ok(Some(mut cluster)) => {
                let started = std::time::Instant::now();
                let result =
                    match crate::catalog_image::resolve(&plane.state, &namespace, &mut cluster) {
                        Ok(()) => task.pass(&cluster).await,
                        Err(e) => Err(e),
                    };
                plane.metrics.reconciled(
                    &namespace,
                    &name,
                    result.is_ok(),
                    started.elapsed().as_secs_f64(),
                );
                match result {
                    Ok(status) if busy(&status) => BUSY_PAUSE,
                    Ok(_) => IDLE_PAUSE,
                    Err(e) => {
                        record_error(&plane.state, &namespace, &name, &e);
                        IDLE_PAUSE
                    }
                }
            }
            Err(e) => {
                record_error(&plane.state, &namespace, &name, &e);
                IDLE_PAUSE
            }
        };
        tokio::time::sleep(pause).await;
    }
}

/// Whether a cluster is changing primary or has its primary down.
fn busy(status: &LocalClusterStatus) -> bool {
    let primary_ready = status
        .instances_status
        .iter()
        .any(|i| Some(&i.name) == status.current_primary.as_ref() && i.ready);
    !primary_ready
        || status.current_primary != status.target_primary
        || status.phase == phase::FAILING_OVER
        || status.phase == phase::SWITCHOVER
}

/// The Ready condition's reason when a pass failed on a manifest that cannot work as it is.
pub const INVALID_CONFIGURATION: &str = "InvalidConfiguration";

/// A pass that failed: the cluster's status says why, the rest of its status is kept.
fn record_error(state: &StateDir, namespace: &str, name: &str, error: &LocalError) {
    let path = state.status_path("Cluster", namespace, name);
    let mut status: LocalClusterStatus =
        read_json(&path)
            .ok()
            .flatten()
            .unwrap_or(LocalClusterStatus {
                name: name.to_string(),
                namespace: namespace.to_string(),
                ..Default::default()
            });
    let message = error.to_string();
    let unchanged = status.phase == phase::CANNOT_CREATE_OBJECTS
        && status.conditions.first().map(|c| &c.message) == Some(&message);
    if !unchanged {
        tracing::warn!("{message}");
    }
    status.phase = phase::CANNOT_CREATE_OBJECTS.to_string();
    status.conditions = vec![LocalCondition {
        condition_type: "Ready".into(),
        status: "False".into(),
        // A manifest that cannot work says so (`local up` stops waiting on it).
        reason: if matches!(error, LocalError::Invalid(_)) {
            INVALID_CONFIGURATION.into()
        } else {
            "ReconcileError".into()
        },
        message: message.clone(),
    }];
    if let Err(e) = write_json(&path, &status, 0o600) {
        tracing::warn!("cannot write its status: {e}");
    }
    // CloudNativePG's status says the same.
    let path = state.resource_status_path("Cluster", namespace, name);
    let mut resource: pgherd_api::cluster::ClusterStatus =
        read_json(&path).ok().flatten().unwrap_or_default();
    resource.phase = Some(phase::CANNOT_CREATE_OBJECTS.to_string());
    resource.phase_reason = Some(message.clone());
    if let Err(e) = write_json(&path, &resource, 0o600) {
        tracing::warn!("cannot write its status: {e}");
    }
}
