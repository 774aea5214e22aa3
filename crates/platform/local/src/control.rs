//! One cluster's pass on the local platform — certificates and secrets, the controller's plan,
//! instance specs and manager processes, endpoints, status. Each cluster has its own task
//! (`plane::ControlPlane`); work that can take long (the backup catalog, stopping removed
//! instances) runs beside the pass and is folded into a later one.

use crate::desired::{ClusterContext, InstanceDirs};
use crate::endpoints::{self, Backends};
use crate::instances::{running_pid, spawn_detached, stop};
use crate::plane::Plane;
use crate::secrets::{ensure_basic_auth_secret, BasicAuth};
use crate::state::{read_json, write_json};
use crate::status::LocalClusterStatus;
use crate::LocalError;
use pgherd_api::Cluster;
use pgherd_controller::reconcile::PassOutcome;
use pgherd_controller::{phase, pki};
use pgherd_instance_protocol::CertificatePaths;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use pgherd_controller::operations::RESTARTED_AT_ANNOTATION;

/// File in the cluster directory holding a requested switchover's target (`local promote`).
pub const PROMOTE_REQUEST: &str = "promote-request";

/// File in the cluster directory holding the single-instance restarts asked for (`local
/// restart CLUSTER INSTANCE`): a JSON object, instance name to the request's token.
pub const RESTART_REQUESTS: &str = "restart-requests.json";

pub const PORT_ANNOTATIONS: [(&str, &str); 3] = [
    ("rw", "pgherd.io/rw-port"),
    ("ro", "pgherd.io/ro-port"),
    ("r", "pgherd.io/r-port"),
];

/// What the pass knows of the data's image, a problem with it and the last major upgrade.
type UpgradeRecord = (
    Option<pgherd_api::cluster::ImageInfo>,
    Option<String>,
    Option<pgherd_controller::major_upgrade::UpgradeAttempt>,
);

/// What the control plane keeps per cluster between passes.
#[derive(Debug, Default)]
pub struct ClusterRuntime {
    pub endpoints: BTreeMap<String, (u16, Backends)>,
    /// Since when each instance has been unhealthy, and provably stopped.
    pub since: crate::observation::Since,
    /// Instances whose manager did not answer the last pass.
    pub unreachable: std::collections::BTreeSet<String>,
    /// What `spec.monitoring` could not resolve, as last logged.
    pub monitoring_problems: Vec<String>,
    /// Why the cluster's object store cannot be used, as last logged.
    pub archive_problem: Option<String>,
    /// When the backup catalog was last read.
    pub catalog_read_at: Option<std::time::Instant>,
    /// How this control plane proves it is the controller to the instance managers (see
    /// `secrets::lease_token`, `secrets::controller_certificate`), with the CA certificates
    /// its client trusts.
    pub controller: Option<(String, crate::observation::Controller)>,
    /// The endpoints' servers, stopped with the runtime (the cluster deleted).
    listeners: Vec<Listener>,
    /// The PostgreSQL binaries directory found for a major version (looked up once).
    pub(crate) bin_dir: Option<(u32, PathBuf)>,
    /// The plan's phase in the previous pass (the poolers hear of switchovers).
    pub(crate) last_phase: String,
    /// A backup catalog read under way (`backup_jobs`).
    pub catalog_read: Option<tokio::task::JoinHandle<crate::backup_jobs::CatalogOutcome>>,
    /// Removed instances being stopped and deleted.
    pub(crate) removing: BTreeMap<String, tokio::task::JoinHandle<()>>,
}

/// An endpoint's server task, aborted when dropped.
#[derive(Debug)]
struct Listener(tokio::task::JoinHandle<()>);

impl Drop for Listener {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Drop for ClusterRuntime {
    fn drop(&mut self) {
        if let Some(read) = &self.catalog_read {
            read.abort();
        }
    }
}

/// One cluster's passes, run by its own task.
#[derive(Debug)]
pub struct ClusterTask {
    pub(crate) plane: Plane,
    pub(crate) namespace: String,
    pub(crate) name: String,
    pub(crate) runtime: ClusterRuntime,
}

/// What a pass prepared before observing.
#[derive(Debug)]
pub(crate) struct Prelude {
    pub cluster_dir: PathBuf,
    pub instances_dir: PathBuf,
    /// The switchover request (`local promote`).
    pub promote_file: PathBuf,
    pub certificates: CertificatePaths,
    pub database: String,
    pub owner: String,
    pub password_file: PathBuf,
    pub superuser_password: pgherd_instance_protocol::PasswordSource,
    pub controller: crate::observation::Controller,
    /// The status the previous pass wrote.
    pub previous: Option<LocalClusterStatus>,
    pub restart_annotation: String,
}

impl ClusterTask {
    pub fn new(plane: Plane, namespace: &str, name: &str) -> Self {
        Self {
            plane,
            namespace: namespace.to_string(),
            name: name.to_string(),
            runtime: ClusterRuntime::default(),
        }
    }

    fn ensure_certificates(
        &self,
        cluster_dir: &Path,
        resource: &Cluster,
    ) -> Result<crate::certificates::Certificates, LocalError> {
        let cluster = resource.metadata.name.as_deref().unwrap_or_default();
        let dir = cluster_dir.join("certs");
        let paths = CertificatePaths::in_dir(&dir);
        if !paths.replication_key.exists() {
            self.plane.user.own_dir(&dir, 0o700)?;
            let names = pki::server_names(cluster, "default", &["localhost".to_string()]);
            let generated = pki::generate(
                cluster,
                &names,
                &["127.0.0.1"
                    .parse()
                    .map_err(|_| LocalError::Invalid("address".into()))?],
                pki::DEFAULT_VALIDITY_DAYS,
            )?;
            for (path, text) in [
                (&paths.ca, &generated.ca.cert),
                (&dir.join("ca.key"), &generated.ca.key),
                (&paths.server_cert, &generated.server.cert),
                (&paths.server_key, &generated.server.key),
                (&paths.replication_cert, &generated.replication.cert),
                (&paths.replication_key, &generated.replication.key),
            ] {
                self.plane.user.write_file(path, text.as_bytes(), 0o600)?;
            }
        }
        crate::certificates::apply(&self.plane.state, resource, &dir, &self.plane.user, paths)
    }

    async fn ensure_endpoints(
        &mut self,
        cluster: &Cluster,
        cluster_dir: &Path,
    ) -> Result<(), LocalError> {
        if !self.runtime.endpoints.is_empty() {
            return Ok(());
        }
        let ports_file = cluster_dir.join("ports.json");
        let mut ports: BTreeMap<String, u16> = read_json(&ports_file)?.unwrap_or_default();
        let annotations = cluster.metadata.annotations.clone().unwrap_or_default();
        for (kind, annotation) in PORT_ANNOTATIONS {
            let pinned = annotations
                .get(annotation)
                .and_then(|p| p.parse::<u16>().ok());
            let port = match (pinned, ports.get(kind)) {
                (Some(p), _) | (None, Some(&p)) => p,
                (None, None) => crate::placement::free_port()?,
            };
            let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
                .await
                .map_err(|e| LocalError::Invalid(format!("cannot listen on 127.0.0.1:{port} for the {kind} endpoint: {e} (pin another port with the {annotation} annotation)")))?;
            ports.insert(kind.to_string(), port);
            let backends = Backends::default();
            let on_removal = if kind == "rw" {
                endpoints::OnRemoval::Close
            } else {
                endpoints::OnRemoval::Keep
            };
            self.runtime
                .listeners
                .push(Listener(tokio::spawn(endpoints::serve(
                    listener,
                    backends.clone(),
                    on_removal,
                ))));
            if kind == "rw" {
                self.plane.pooler_board.set_cluster_rw(
                    &self.namespace,
                    &self.name,
                    Some(backends.clone()),
                );
            }
            self.runtime
                .endpoints
                .insert(kind.to_string(), (port, backends));
        }
        write_json(&ports_file, &ports, 0o644)
    }

    /// One pass over the cluster: what the platform prepares (certificates, endpoints,
    /// secrets), the controller's pass (`pgherd_controller::reconcile::pass`, through
    /// [`crate::local_pass::LocalPass`]), then the status, archiving and backups.
    pub async fn pass(&mut self, cluster: &Cluster) -> Result<LocalClusterStatus, LocalError> {
        let cluster = &self.with_recorded_status(cluster);
        let prelude = self.prelude(cluster).await?;
        let (data, problem, attempt) =
            match crate::major_upgrade::step(self, cluster, &prelude).await? {
                crate::major_upgrade::Upgrade::UnderWay(status) => {
                    return self.write_upgrade_status(*status);
                }
                crate::major_upgrade::Upgrade::Continue {
                    data,
                    problem,
                    attempt,
                } => (data, problem, attempt),
            };
        let major = data
            .as_ref()
            .and_then(|d| u32::try_from(d.major_version).ok());
        let mut local = crate::local_pass::LocalPass::new(self, &prelude, major);
        let outcome = pgherd_controller::reconcile::pass(&mut local, cluster).await?;
        let applied = local.finish();
        let upgrade = (data, problem, attempt);
        self.postlude(cluster, &prelude, &outcome, applied, upgrade)
            .await
    }

    /// `cluster` with what the controller reads back from its status (the promotion token it
    /// was last promoted with), from the status the previous pass recorded.
    fn with_recorded_status(&self, cluster: &Cluster) -> Cluster {
        let mut cluster = cluster.clone();
        let path = self
            .plane
            .state
            .resource_status_path("Cluster", &self.namespace, &self.name);
        let recorded: Option<pgherd_api::cluster::ClusterStatus> =
            crate::state::read_json(&path).ok().flatten();
        if let Some(token) = recorded.and_then(|s| s.last_promotion_token) {
            cluster
                .status
                .get_or_insert_with(Default::default)
                .last_promotion_token = Some(token);
        }
        cluster
    }

    /// What every pass needs before observing: the cluster's directory, certificates,
    /// endpoints, application and superuser secrets, lease token, previous status.
    async fn prelude(&mut self, cluster: &Cluster) -> Result<Prelude, LocalError> {
        let namespace = &self.namespace.clone();
        let name = self.name.clone();
        let cluster_dir = self.plane.state.cluster_dir(namespace, &name);
        self.plane.user.own_dir(&cluster_dir, 0o711)?;
        let crate::certificates::Certificates {
            paths: certificates,
            trust,
        } = self.ensure_certificates(&cluster_dir, cluster)?;
        self.ensure_endpoints(cluster, &cluster_dir).await?;
        let rw_port = self
            .runtime
            .endpoints
            .get("rw")
            .map(|e| e.0)
            .unwrap_or_default();
        let (database, owner, secret_name) = crate::desired::application(cluster);
        let credentials = ensure_basic_auth_secret(
            &self.plane.state,
            &BasicAuth {
                namespace,
                secret_name: &secret_name,
                owner: &owner,
                database: &database,
                host: "127.0.0.1",
                port: rw_port,
                user_type: "app",
            },
        )?;
        let password_file = cluster_dir.join("app-password");
        self.plane
            .user
            .write_file(&password_file, credentials.password.as_bytes(), 0o600)?;
        let superuser_password = crate::declarative::superuser_password(
            &self.plane.state,
            namespace,
            cluster,
            &self.plane.user,
            rw_port,
        )?;
        // The managers' status port presents PostgreSQL's server certificate: trusted through
        // the platform's CA and the server CA (the user's, with spec.certificates).
        let controller = match &self.runtime.controller {
            Some((trusted, controller)) if *trusted == trust => controller.clone(),
            _ => {
                let state = &self.plane.state;
                let (cert, key) = crate::secrets::controller_certificate(
                    state,
                    namespace,
                    &name,
                    &cluster_dir.join("certs"),
                )?;
                let tls = pgherd_instance_manager::tls::client_config_from_pem(
                    &trust,
                    &crate::secrets::read_required(&cert)?,
                    &crate::secrets::read_required(&key)?,
                )
                .map_err(|e| LocalError::Invalid(format!("cluster {name}: {e}")))?;
                let controller = crate::observation::Controller {
                    lease_token: crate::secrets::lease_token(state, namespace, &name)?,
                    tls: std::sync::Arc::new(tls),
                };
                self.runtime.controller = Some((trust, controller.clone()));
                controller
            }
        };
        Ok(Prelude {
            instances_dir: cluster_dir.join("instances"),
            promote_file: cluster_dir.join(PROMOTE_REQUEST),
            cluster_dir,
            certificates,
            database,
            owner,
            password_file,
            superuser_password,
            controller,
            previous: read_json(&self.plane.state.status_path("Cluster", namespace, &name))?,
            restart_annotation: cluster
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(RESTARTED_AT_ANNOTATION))
                .cloned()
                .unwrap_or_default(),
        })
    }

    /// After the controller's pass: the status view (and the endpoints' backends), archiving,
    /// backups, CloudNativePG's status.
    async fn postlude(
        &mut self,
        cluster: &Cluster,
        prelude: &Prelude,
        outcome: &PassOutcome,
        applied: crate::local_pass::Applied,
        upgrade: UpgradeRecord,
    ) -> Result<LocalClusterStatus, LocalError> {
        let namespace = &self.namespace.clone();
        let name = self.name.clone();
        let (decided, observed) = (&outcome.plan, &outcome.observation);
        if let Some(switchover) = outcome.primary_changed {
            self.plane
                .metrics
                .primary_changed(namespace, &name, switchover);
        }
        let mut status = crate::view::build(
            namespace,
            &name,
            Some(&self.runtime),
            decided,
            observed,
            &applied.ports,
        );
        for i in &mut status.instances_status {
            if let Some(e) = outcome.instance_errors.get(&i.name) {
                i.error.get_or_insert(e.clone());
            }
            if let Some(e) = applied.manager_errors.get(&i.name) {
                i.error.get_or_insert(e.clone());
            }
        }
        // Hibernation: every instance's PostgreSQL stopped (the managers stay, idle).
        let all_stopped = observed.instances.iter().all(|i| i.stopped());
        if let Some(c) = pgherd_controller::hibernation::condition(cluster, decided, all_stopped) {
            status.conditions.push(c.into());
        }
        // Scaled down: healthy once the removed instances are gone.
        self.runtime.removing.retain(|_, job| !job.is_finished());
        if status.phase == phase::HEALTHY && !self.runtime.removing.is_empty() {
            status.phase = phase::WAITING_FOR_INSTANCES.to_string();
        }
        let primary_report = decided
            .current_primary
            .as_deref()
            .and_then(|p| observed.instances.iter().find(|i| i.name == p))
            .and_then(|i| i.status.as_ref())
            .and_then(|s| s.archive.as_ref());
        crate::backups::apply_archive_status(
            &mut status,
            &crate::backups::ArchiveView {
                configured: applied.archive_configured,
                problem: applied.archive_problem.as_deref(),
                report: primary_report,
            },
            prelude.previous.as_ref(),
        );
        crate::backup_jobs::pass(
            &self.plane,
            &mut self.runtime,
            namespace,
            cluster,
            &prelude.cluster_dir,
            &mut status,
            &applied.ports,
            applied.archive.as_ref(),
            applied.archive_problem.as_deref(),
            &prelude.controller.tls,
        )
        .await;
        self.plane.metrics.controller_pass("backup", true);
        status.restart_token = observed.restart_token.clone();
        status.restart_annotation = prelude.restart_annotation.clone();
        let (data, problem, attempt) = upgrade;
        crate::major_upgrade::after_pass(
            &mut status,
            &prelude.instances_dir,
            data,
            problem,
            attempt,
        );
        status.image = cluster.image_name();
        status.poolers = self.plane.pooler_board.cluster_entries(namespace, &name);
        for p in &status.poolers {
            status.endpoints.insert(p.name.clone(), p.endpoint.clone());
        }
        write_json(
            &self.plane.state.status_path("Cluster", namespace, &name),
            &status,
            0o600,
        )?;
        crate::status::write_resource_status(
            &self.plane.state,
            cluster,
            decided,
            observed,
            &status,
        )?;
        Ok(status)
    }

    /// A pass taken by a major upgrade: its status, as CloudNativePG shows it.
    fn write_upgrade_status(
        &self,
        status: LocalClusterStatus,
    ) -> Result<LocalClusterStatus, LocalError> {
        let state = &self.plane.state;
        write_json(
            &state.status_path("Cluster", &self.namespace, &self.name),
            &status,
            0o600,
        )?;
        let path = state.resource_status_path("Cluster", &self.namespace, &self.name);
        let mut resource: pgherd_api::cluster::ClusterStatus =
            read_json(&path)?.unwrap_or_default();
        resource.phase = Some(status.phase.clone());
        resource.phase_reason = status.phase_reason.clone();
        resource.ready_instances = Some(0);
        resource.target_pg_data_image_info = status.major_upgrade.as_ref().map(|a| a.to.clone());
        if let Some(conditions) = resource.conditions.as_mut() {
            for c in conditions.iter_mut().filter(|c| c.type_ == "Ready") {
                if c.status != "False" {
                    c.last_transition_time = pgherd_api::common::meta_time(
                        std::time::SystemTime::now()
                            .duration_since(std::time::UNIX_EPOCH)
                            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(0)),
                    );
                }
                c.status = "False".into();
                c.reason = "ClusterIsNotReady".into();
                c.message = status.phase_reason.clone().unwrap_or_default();
            }
        }
        write_json(&path, &resource, 0o600)?;
        Ok(status)
    }

    /// Removed instances (scaled down) are stopped and deleted beside the passes: a stop can
    /// take a minute. Until it is done the instance is no longer observed.
    pub(crate) fn start_removals(&mut self, removed: &[String], instances_dir: &Path) {
        self.runtime.removing.retain(|_, job| !job.is_finished());
        for name in removed {
            if self.runtime.removing.contains_key(name) {
                continue;
            }
            let dir = instances_dir.join(name);
            let log_name = format!("{}/{}: {name}", self.namespace, self.name);
            let job = tokio::task::spawn_blocking(move || {
                if let Some(pid) = running_pid(&dir.join(crate::instances::MANAGER_PID)) {
                    stop(pid, Duration::from_secs(60));
                }
                crate::sockets::remove(&dir);
                match std::fs::remove_dir_all(&dir) {
                    Ok(()) => tracing::info!("{log_name}: removed"),
                    Err(e) => tracing::warn!("{log_name}: cannot remove {}: {e}", dir.display()),
                }
            });
            self.runtime.removing.insert(name.clone(), job);
        }
    }

    /// Write one instance's spec and start its manager when it may be started.
    pub(crate) fn apply_instance(
        &self,
        context: &ClusterContext<'_>,
        instance: &pgherd_controller::plan::DesiredInstance,
        instances_dir: &Path,
        may_start: bool,
    ) -> Result<(), LocalError> {
        let dirs = InstanceDirs::new(instances_dir.join(&instance.name));
        self.plane.user.own_dir(&dirs.root, 0o700)?;
        crate::sockets::prepare(&dirs.root, &self.plane.user)?;
        let Some(spec) = context.instance_spec(instance, &dirs)? else {
            return Ok(()); // its upstream has no ports yet
        };
        crate::spec_file::write_spec(&self.plane.user, &dirs.root, spec)?;
        let pid_file = dirs.root.join(crate::instances::MANAGER_PID);
        if may_start && running_pid(&pid_file).is_none() {
            let spec_path = dirs.root.join("instance.json");
            let spec_arg = spec_path.display().to_string();
            spawn_detached(
                &self.plane.exe,
                &["instance", "run", "--spec", &spec_arg],
                &dirs.root.join("manager.log"),
                &pid_file,
                Some(&self.plane.user),
                context
                    .ports
                    .get(&instance.name)
                    .and_then(|a| a.netns.as_deref()),
            )?;
        }
        Ok(())
    }
}
