//! The operator: a kube-runtime controller over Clusters (woken by the Pods they own, and
//! every [`PASS_INTERVAL`] to renew the primaries' leases). Each reconcile of a Cluster:
//!
//! 1. its Secrets (`-ca`, `-server`, `-replication`, `-app`, `-superuser`): made once, never
//!    overwritten ([`credentials`]);
//! 2. its Services, PodDisruptionBudgets, ServiceAccount, Role and RoleBinding, server-side
//!    applied with the operator's field manager ([`cluster_objects`]);
//! 3. the controller's pass (`pgherd_controller::reconcile::pass`) over [`kube_pass::KubePass`]:
//!    the same ordering and safety rules as the local platform;
//! 4. `Cluster.status` in CloudNativePG's shape ([`status`]).
//!
//! Poolers have a controller of their own ([`poolers`]), run next to this one.
//!
//! One reconcile per Cluster at a time (kube-runtime's guarantee); Clusters reconcile
//! concurrently, so one cluster's slow API calls or unreachable instances never delay another's
//! failover.

mod backups;
mod catalog;
mod cluster_objects;
mod credentials;
mod data_major;
mod databases;
mod events;
mod external_sources;
mod held_spec;
mod image_catalogs;
mod instance_objects;
mod kube_pass;
pub mod leader;
mod major_upgrade;
mod pod_monitors;
mod pods;
mod poolers;
mod references;
mod schedules;
mod spec_push;
mod status;
mod template_roll;
mod unsupported;

use crate::OperatorSettings;
use futures_util::StreamExt as _;
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::{Api, Client};
use pgherd_api::Cluster;
pub use pgherd_metrics::controller_metrics::{serve as serve_metrics, ControllerMetrics};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub use credentials::lease_token;

/// How often a Cluster is reconciled when nothing wakes it: well within the primary's lease
/// (`pgherd_controller::ha::PRIMARY_LEASE`), which each pass renews.
pub const PASS_INTERVAL: Duration = Duration::from_millis(1000);

/// How often a Cluster in transition is reconciled.
pub const TRANSITION_INTERVAL: Duration = Duration::from_millis(250);

/// The operator's field manager for server-side apply.
pub const FIELD_MANAGER: &str = "pgherd-operator";

/// Why a reconcile failed.
#[derive(Debug, thiserror::Error)]
pub enum OperatorError {
    #[error("Kubernetes API: {0}")]
    Api(#[from] kube::Error),
    #[error(transparent)]
    Build(#[from] crate::BuildError),
    #[error("{0}")]
    Invalid(String),
    #[error("certificates: {0}")]
    Pki(#[from] pgherd_controller::pki::PkiError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// What the operator remembers about one Cluster between passes (lost on restart: each item
/// is rebuilt from the API and the instances).
#[derive(Default)]
pub(crate) struct ClusterRuntime {
    /// Why what the Cluster asks for does not run, as last said (said once per change).
    pub(crate) refusal: Option<String>,
    /// The last spec that passed the checks, with its defaults: a running cluster whose new
    /// spec is refused keeps being reconciled (and failed over) with it.
    pub(crate) last_valid: Option<Cluster>,
    /// The switchover target the rw poolers were last paused for.
    pub(crate) poolers_paused_for: Option<String>,
    /// Since when each instance has been unhealthy.
    pub(crate) unhealthy_since: BTreeMap<String, Instant>,
    /// Since when each instance's manager has reported its PostgreSQL stopped under a spec
    /// that keeps it stopped (lease-expiry evidence is counted from the last report).
    pub(crate) stopped_since: BTreeMap<String, Instant>,
    /// When each instance's manager last answered (and so had its lease renewed).
    pub(crate) last_report: BTreeMap<String, Instant>,
    /// When this operator first reconciled the Cluster (an instance never heard from counts
    /// from here).
    pub(crate) since: Option<Instant>,
    /// The spec last given to each instance, with its generation.
    pub(crate) pushed: BTreeMap<String, pgherd_instance_protocol::InstanceSpec>,
    /// The target primary the operator last wrote to status (a different one there is a
    /// user's switchover request: `kubectl cnpg promote`).
    pub(crate) written_target: Option<String>,
    /// The target primary the controller last decided (while a user's request stands, the
    /// status shows the request, as CloudNativePG's does, and this is the controller's own).
    pub(crate) decided_target: Option<String>,
    /// The primary this operator last decided (its own memory: the cached Cluster's status
    /// may lag behind its own writes): a change of primary is counted and reported once.
    pub(crate) last_primary: Option<String>,
    /// A user's pending switchover (`kubectl cnpg promote` wrote `status.targetPrimary`),
    /// until that instance is primary or the controller gives the request up.
    pub(crate) requested_primary: Option<String>,
    /// In-place restarts of single instances the user asked for (`kubectl cnpg restart
    /// CLUSTER --primary`, or naming the primary): instance → request token.
    pub(crate) instance_restarts: BTreeMap<String, String>,
    /// The controller's client certificate, for the CA that issued it.
    pub(crate) controller: Option<credentials::ControllerIdentity>,
    /// The Cluster's other objects as last applied.
    pub(crate) objects: cluster_objects::Applied,
    /// Reads of its backup catalog.
    pub(crate) catalog: catalog::CatalogReads,
    /// A Pooler with the built-in authentication uses the cluster: its primary keeps
    /// PgBouncer's auth role and `user_search` (set before each pass).
    pub(crate) pooler_auth: bool,
}

/// A Cluster's namespace and name.
type ClusterKey = (String, String);

/// The operator's shared state.
pub struct Operator {
    client: Client,
    settings: OperatorSettings,
    clusters: Mutex<HashMap<ClusterKey, Arc<tokio::sync::Mutex<ClusterRuntime>>>>,
    /// Every Pooler, as the Pooler controller watches them.
    poolers: std::sync::OnceLock<kube::runtime::reflector::Store<pgherd_api::Pooler>>,
    /// Reconciles, failovers, switchovers and backups, served on `/metrics`.
    metrics: ControllerMetrics,
    /// Events on Clusters.
    events: events::Events,
}

impl std::fmt::Debug for Operator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Operator")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl Operator {
    pub fn new(client: Client, settings: OperatorSettings, metrics: ControllerMetrics) -> Self {
        Operator {
            settings,
            clusters: Mutex::new(HashMap::new()),
            poolers: std::sync::OnceLock::new(),
            metrics,
            events: events::Events::new(client.clone()),
            client,
        }
    }

    fn runtime(&self, key: &ClusterKey) -> Arc<tokio::sync::Mutex<ClusterRuntime>> {
        let mut clusters = self
            .clusters
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        clusters.entry(key.clone()).or_default().clone()
    }

    fn forget(&self, key: &ClusterKey) {
        self.clusters
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(key);
    }
}

/// A client for the API server the environment names: `KUBECONFIG` (or `~/.kube/config`), else
/// the pod's service account.
pub async fn connect() -> Result<Client, OperatorError> {
    // One TLS provider for the process (the workspace's).
    let _ = rustls::crypto::ring::default_provider().install_default();
    Ok(Client::try_default().await?)
}

/// Lead (see [`leader`]) and run the operator while leading; returns `Err` when leadership is
/// lost (the caller exits: a restarted process is a candidate again), `Ok` on SIGTERM/ctrl-c.
pub async fn run_leading(
    client: Client,
    settings: OperatorSettings,
    metrics: ControllerMetrics,
    namespace: &str,
    identity: String,
) -> Result<(), String> {
    let mut candidate = leader::Candidate::new(client.clone(), namespace, identity);
    tracing::info!("{}: waiting to lead", candidate.identity());
    tokio::select! {
        () = candidate.acquire() => {}
        _ = tokio::signal::ctrl_c() => return Ok(()),
    }
    tracing::info!("{}: leading", candidate.identity());
    tokio::select! {
        () = run(client, settings, metrics) => {
            // Stopped by a signal: the other replica leads at once.
            candidate.release().await;
            Ok(())
        }
        () = candidate.keep() => Err("leadership lost".to_string()),
    }
}

/// Run the operator until SIGTERM/ctrl-c.
pub async fn run(client: Client, settings: OperatorSettings, metrics: ControllerMetrics) {
    let (pooler_controller, pooler_store) = poolers::controller(&client);
    let operator = Operator::new(client.clone(), settings.clone(), metrics);
    let _ = operator.poolers.set(pooler_store);
    let operator = Arc::new(operator);
    let pooler_task = tokio::spawn(poolers::run(pooler_controller, client.clone(), settings));
    let marker = tokio::spawn(unsupported::run(client.clone()));
    let schedules = tokio::spawn(schedules::run(client.clone()));
    let orphans = tokio::spawn(databases::release_orphans(client.clone()));
    let clusters = Api::<Cluster>::all(client.clone());
    let pods = Api::<Pod>::all(client);
    Controller::new(clusters, watcher::Config::default())
        .owns(
            pods,
            watcher::Config::default().labels(crate::labels::CLUSTER),
        )
        .shutdown_on_signal()
        .run(reconcile, error_policy, operator)
        .for_each(|outcome| async move {
            if let Err(e) = outcome {
                tracing::debug!("reconcile: {e}");
            }
        })
        .await;
    marker.abort();
    schedules.abort();
    orphans.abort();
    pooler_task.abort();
}

fn key_of(cluster: &Cluster) -> ClusterKey {
    (
        cluster
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into()),
        cluster.metadata.name.clone().unwrap_or_default(),
    )
}

async fn reconcile(
    cluster: Arc<Cluster>,
    operator: Arc<Operator>,
) -> Result<Action, OperatorError> {
    let key = key_of(&cluster);
    if cluster.metadata.deletion_timestamp.is_some() {
        // Everything it made is owned by it: the garbage collector removes it.
        operator.forget(&key);
        return Ok(Action::await_change());
    }
    let runtime = operator.runtime(&key);
    let mut runtime = runtime.lock().await;
    let span = tracing::info_span!("cluster", name = %format!("{}/{}", key.0, key.1));
    use tracing::Instrument as _;
    let started = Instant::now();
    let phase = async {
        let result = reconcile_cluster(&cluster, &operator, &mut runtime).await;
        operator.metrics.reconciled(
            &key.0,
            &key.1,
            result.is_ok(),
            started.elapsed().as_secs_f64(),
        );
        if let Err(e) = &result {
            tracing::warn!("{e}");
            // Said where `kubectl get cluster` and `kubectl cnpg status` show it.
            let _ = status::write_error(&operator.client, &cluster, &e.to_string()).await;
        }
        result
    }
    .instrument(span)
    .await?;
    // A cluster in transition (failover, switchover, new instances) is looked at again soon:
    // each step of a transition waits for the next pass.
    Ok(Action::requeue(
        if phase == pgherd_controller::phase::HEALTHY {
            PASS_INTERVAL
        } else {
            TRANSITION_INTERVAL
        },
    ))
}

/// One pass; the phase it decided.
async fn reconcile_cluster(
    cluster: &Cluster,
    operator: &Operator,
    runtime: &mut ClusterRuntime,
) -> Result<&'static str, OperatorError> {
    let client = &operator.client;
    let (valid, spec_refusal) = match checked(cluster) {
        Ok(valid) => {
            if runtime.last_valid.as_ref().map(|c| &c.spec) != Some(&valid.spec) {
                held_spec::remember(client, &valid).await;
            }
            runtime.last_valid = Some(valid.clone());
            (valid, None)
        }
        Err(refused) => {
            if runtime.last_valid.is_none() {
                // Refused since before this process started: the spec kept by the last one.
                runtime.last_valid = held_spec::recall(client, cluster).await;
            }
            match hold_last_valid(cluster, runtime.last_valid.as_ref()) {
                Some(held) => (held, Some(refused.to_string())),
                None => return Err(refused),
            }
        }
    };
    let cluster = &image_catalogs::resolve(client, &valid).await?;
    let mut held = data_major::hold(cluster);
    let asked = held.upgrade.clone();
    // No upgrade asked for, an upgrade Job may still exist: one running (or about to) when the
    // image was set back, which nothing may start beside; or a finished one to tidy.
    let jobs = asked.is_none() && major_upgrade::jobs_exist(client, cluster).await?;
    let check = match (&asked, &held.data) {
        (Some(wanted), _) => Some(wanted.clone()),
        (None, Some(data)) if jobs => Some(data.clone()),
        _ => None,
    };
    if let Some(wanted) = check {
        let settings = &operator.settings;
        match major_upgrade::step(client, settings, cluster, &held, &wanted).await? {
            major_upgrade::Upgrade::UnderWay { reason, to, event } => {
                if let Some(event) = event {
                    operator.events.publish(cluster, event).await;
                }
                status::write_upgrade(client, cluster, &reason, &to).await?;
                return Ok(pgherd_controller::phase::MAJOR_UPGRADE);
            }
            major_upgrade::Upgrade::Continue {
                cluster: running,
                data,
                problem,
                event,
            } => {
                if let Some(event) = event {
                    operator.events.publish(cluster, event).await;
                }
                if asked.is_some() {
                    held.cluster = *running;
                    held.data = Some(data);
                    held.refusal = problem;
                } else if held.data.as_ref().map(|d| d.major_version) != Some(data.major_version) {
                    // A Job that was running when the image was set back finished: the data
                    // is the new major now, and the older image asked for is a downgrade.
                    let mut moved = cluster.clone();
                    moved
                        .status
                        .get_or_insert_with(Default::default)
                        .pg_data_image_info = Some(data);
                    held = data_major::hold(&moved);
                }
            }
        }
    }
    if jobs {
        // Only a Job whose major the stored status records: the data is that major for any
        // later pass, whatever Cluster it reads.
        major_upgrade::tidy(client, cluster).await?;
    }
    let refusal = match (spec_refusal, held.refusal.clone()) {
        (Some(a), Some(b)) => Some(format!("{a}; {b}")),
        (a, b) => a.or(b),
    };
    if refusal != runtime.refusal {
        if let Some(note) = refusal.clone() {
            tracing::warn!("{note}");
            let event = events::OperatorEvent::NotCarriedOut { note };
            operator.events.publish(cluster, event).await;
        }
        runtime.refusal = refusal.clone();
    }
    let cluster = &held.cluster;
    let credentials = credentials::ensure(client, cluster, &operator.settings).await?;
    runtime.pooler_auth = poolers::uses_builtin_auth(
        client,
        operator.poolers.get(),
        cluster.metadata.namespace.as_deref().unwrap_or("default"),
        cluster.metadata.name.as_deref().unwrap_or_default(),
    )
    .await;
    if let Some(note) = cluster_objects::apply(client, cluster, &mut runtime.objects).await? {
        let event = events::OperatorEvent::NotCarriedOut { note };
        operator.events.publish(cluster, event).await;
    }
    let controller = credentials::controller_identity(runtime, &credentials)?;
    let mut platform = kube_pass::KubePass::new(
        client.clone(),
        cluster,
        &operator.settings,
        runtime,
        controller,
        credentials.lease_token.clone(),
    );
    let outcome = pgherd_controller::reconcile::pass(&mut platform, cluster).await?;
    let addresses = platform.pod_addresses();
    let backups = platform.backup_pass(&outcome.plan, &addresses).run().await;
    platform.write_database_status(&outcome.plan).await;
    let conditions = platform.conditions();
    let managed_roles = platform.managed_roles_status(&outcome.plan);
    let tablespaces = platform.tablespaces_status(cluster, &outcome.plan);
    let archive = platform.archive().cloned();
    let requested = platform.request_seen();
    drop(platform);
    report(operator, cluster, runtime, &outcome, &backups, requested).await;
    let catalog = runtime
        .catalog
        .step(archive.as_ref(), !backups.is_empty())
        .await;
    let facts = status::PassFacts {
        conditions,
        managed_roles,
        tablespaces,
        addresses,
        backups,
        catalog,
        certificates: certificates_status(cluster, credentials.expirations.clone()),
        pg_data_image_info: held.data.clone(),
        refusal,
    };
    runtime.written_target =
        pgherd_controller::cluster_status::status_target(&outcome.plan, &outcome.observation);
    runtime.decided_target = outcome.plan.target_primary.clone();
    status::write(client, cluster, &outcome, facts).await?;
    Ok(outcome.plan.phase)
}

/// `status.certificates` as CloudNativePG writes it: which Secrets serve as CAs and
/// certificates, the server's extra names, and when each certificate expires.
fn certificates_status(
    cluster: &Cluster,
    expirations: BTreeMap<String, String>,
) -> pgherd_api::cluster::CertificatesStatus {
    let secrets = crate::secret::CertificateSecrets::of(cluster);
    pgherd_api::cluster::CertificatesStatus {
        configuration: pgherd_api::cluster::CertificatesConfiguration {
            server_ca_secret: Some(secrets.server_ca),
            server_tls_secret: Some(secrets.server_tls),
            replication_tls_secret: Some(secrets.replication_tls),
            client_ca_secret: Some(secrets.client_ca),
            server_alt_dns_names: cluster
                .spec
                .certificates
                .as_ref()
                .and_then(|c| c.server_alt_dns_names.clone()),
        },
        expirations: Some(expirations),
    }
}

/// Count and publish what a pass did: finished backups, and a change of primary (as a
/// switchover when it went where a user asked).
async fn report(
    operator: &Operator,
    cluster: &Cluster,
    runtime: &mut ClusterRuntime,
    outcome: &pgherd_controller::reconcile::PassOutcome,
    backups: &[backups::Finished],
    requested: Option<String>,
) {
    let (namespace, name) = key_of(cluster);
    for finished in backups {
        let phase = if finished.completed {
            "completed"
        } else {
            "failed"
        };
        operator.metrics.backup_finished(&namespace, &name, phase);
        let event = events::OperatorEvent::BackupFinished {
            name: finished.name.clone(),
            completed: finished.completed,
        };
        operator.events.publish(cluster, event).await;
    }
    let change = match (&runtime.last_primary, &outcome.plan.current_primary) {
        (Some(before), Some(now)) if before != now => Some(requested.as_ref() == Some(now)),
        _ => None,
    };
    if outcome.plan.current_primary.is_some() {
        runtime.last_primary = outcome.plan.current_primary.clone();
    }
    if let Some(switchover) = change {
        operator
            .metrics
            .primary_changed(&namespace, &name, switchover);
        let promoted = outcome.plan.current_primary.clone().unwrap_or_default();
        let event = if switchover {
            events::OperatorEvent::SwitchedOver { promoted }
        } else {
            events::OperatorEvent::FailedOver { promoted }
        };
        operator.events.publish(cluster, event).await;
    }
}

/// A running cluster whose spec is refused: the last valid spec, with the refused object's
/// metadata (its requests: fencing, restarts, hibernation) and status, so its passes — and its
/// failovers — go on. `None` for a cluster not running yet, or none valid known.
fn hold_last_valid(cluster: &Cluster, last_valid: Option<&Cluster>) -> Option<Cluster> {
    let running = cluster
        .status
        .as_ref()
        .is_some_and(|s| s.current_primary.is_some());
    let mut held = last_valid.filter(|_| running)?.clone();
    held.metadata = cluster.metadata.clone();
    held.status = cluster.status.clone();
    Some(held)
}

/// `cluster` with its defaults, if it is valid and pgherd runs everything it asks for on
/// Kubernetes; else every problem, each with its field path.
fn checked(cluster: &Cluster) -> Result<Cluster, OperatorError> {
    use pgherd_api::defaults::Defaults as _;
    let mut cluster = cluster.clone();
    cluster.apply_defaults();
    let context = pgherd_api::validate::Context {
        namespace: cluster.metadata.namespace.clone(),
        ..Default::default()
    };
    let mut problems: Vec<String> = pgherd_api::validate::validate_cluster(&cluster, &context)
        .into_iter()
        .filter(|d| d.is_error())
        .map(|d| d.to_string())
        .collect();
    problems.extend(
        crate::not_run::cluster_fields(&cluster)
            .iter()
            .map(crate::not_run::NotRun::message),
    );
    if problems.is_empty() {
        Ok(cluster)
    } else {
        Err(OperatorError::Invalid(problems.join("; ")))
    }
}

fn error_policy(
    _cluster: Arc<Cluster>,
    _error: &OperatorError,
    _operator: Arc<Operator>,
) -> Action {
    Action::requeue(PASS_INTERVAL)
}
