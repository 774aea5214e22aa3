//! The local control plane: one reconcile pass over every stored Cluster — certificates and
//! secrets, the controller's plan, instance specs and manager processes, endpoints, status.

use crate::desired::{ClusterContext, InstanceDirs};
use crate::endpoints::{self, Backends};
use crate::instances::{running_pid, spawn_detached, stop};
use crate::secrets::{ensure_basic_auth_secret, BasicAuth};
use crate::state::{read_json, write_json, StateDir};
use crate::status::{LocalClusterStatus, LocalCondition};
use crate::LocalError;
use pgherd_api::Cluster;
use pgherd_controller::plan::plan;
use pgherd_controller::{phase, pki};
use pgherd_instance_manager::{OsUser, PgBinaries};
use pgherd_instance_protocol::{CertificatePaths, InstanceSpec};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Annotations pinning endpoint ports (`"5432"`); otherwise free ports are allocated once.
/// Annotation whose change rolls every instance (`kubectl cnpg restart`, `local restart`).
pub const RESTARTED_AT_ANNOTATION: &str = "kubectl.kubernetes.io/restartedAt";

/// File in the cluster directory holding a requested switchover's target (`local promote`).
pub const PROMOTE_REQUEST: &str = "promote-request";

pub const PORT_ANNOTATIONS: [(&str, &str); 3] = [
    ("rw", "pgherd.io/rw-port"),
    ("ro", "pgherd.io/ro-port"),
    ("r", "pgherd.io/r-port"),
];

/// One line of the control plane's log, prefixed with the time (UTC, seconds since the epoch
/// with milliseconds: enough to follow a failover step by step).
pub(crate) fn log(line: String) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    eprintln!("{}.{:03} {line}", now.as_secs(), now.subsec_millis());
}

/// What the control plane keeps per cluster between passes.
#[derive(Debug, Default)]
pub struct ClusterRuntime {
    pub endpoints: BTreeMap<String, (u16, Backends)>,
    /// Since when each unhealthy instance has been so (forgotten on restart: a restarted
    /// control plane waits a full grace period before failing over).
    pub unhealthy_since: BTreeMap<String, std::time::Instant>,
    /// What `spec.monitoring` could not resolve, as last logged.
    pub monitoring_problems: Vec<String>,
    /// Why the cluster's object store cannot be used, as last logged.
    pub archive_problem: Option<String>,
    /// When the backup catalog was last read.
    pub catalog_read_at: Option<std::time::Instant>,
    /// The credential this control plane renews the cluster's primary lease with (see
    /// `secrets::lease_token`).
    pub lease_token: Option<pgherd_instance_protocol::LeaseToken>,
}

/// The control plane.
#[derive(Debug)]
pub struct ControlPlane {
    pub state: StateDir,
    /// The pgherd binary (to start instance managers).
    pub exe: PathBuf,
    /// OS user for PostgreSQL and the instance managers.
    pub user: OsUser,
    /// Explicit PostgreSQL binaries directory, if any.
    pub postgres_bin: Option<PathBuf>,
    pub runtimes: BTreeMap<(String, String), ClusterRuntime>,
    /// The control plane's own counters (`/metrics`).
    pub metrics: crate::plane_metrics::PlaneMetrics,
    /// The poolers' endpoints and processes (`crate::pooler`).
    pub poolers: crate::pooler::PoolerRuntimes,
}

impl ControlPlane {
    fn ensure_certificates(
        &self,
        cluster_dir: &Path,
        cluster: &str,
    ) -> Result<CertificatePaths, LocalError> {
        let dir = cluster_dir.join("certs");
        let paths = CertificatePaths::in_dir(&dir);
        if !paths.replication_key.exists() {
            self.user.own_dir(&dir, 0o700)?;
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
                self.user.write_file(path, text.as_bytes(), 0o600)?;
            }
        }
        Ok(paths)
    }

    async fn ensure_endpoints(
        &mut self,
        key: &(String, String),
        cluster: &Cluster,
        cluster_dir: &Path,
    ) -> Result<(), LocalError> {
        if self
            .runtimes
            .get(key)
            .is_some_and(|r| !r.endpoints.is_empty())
        {
            return Ok(());
        }
        let ports_file = cluster_dir.join("ports.json");
        let mut ports: BTreeMap<String, u16> = read_json(&ports_file)?.unwrap_or_default();
        let annotations = cluster.metadata.annotations.clone().unwrap_or_default();
        let mut runtime = ClusterRuntime::default();
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
            tokio::spawn(endpoints::serve(listener, backends.clone(), on_removal));
            runtime.endpoints.insert(kind.to_string(), (port, backends));
        }
        write_json(&ports_file, &ports, 0o644)?;
        self.runtimes.insert(key.clone(), runtime);
        Ok(())
    }

    /// One pass over one cluster.
    pub async fn reconcile_cluster(
        &mut self,
        namespace: &str,
        cluster: &Cluster,
    ) -> Result<LocalClusterStatus, LocalError> {
        let name = cluster.metadata.name.clone().unwrap_or_default();
        let key = (namespace.to_string(), name.clone());
        let cluster_dir = self.state.cluster_dir(namespace, &name);
        self.user.own_dir(&cluster_dir, 0o711)?;
        let certificates = self.ensure_certificates(&cluster_dir, &name)?;
        self.ensure_endpoints(&key, cluster, &cluster_dir).await?;
        let rw_port = self
            .runtimes
            .get(&key)
            .and_then(|r| r.endpoints.get("rw"))
            .map(|e| e.0)
            .unwrap_or_default();

        let (database, owner, secret_name) = crate::desired::application(cluster);
        let credentials = ensure_basic_auth_secret(
            &self.state,
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
        self.user
            .write_file(&password_file, credentials.password.as_bytes(), 0o600)?;
        let superuser_password = crate::declarative::superuser_password(
            &self.state,
            namespace,
            cluster,
            &self.user,
            rw_port,
        )?;

        // Observe.
        let previous: Option<LocalClusterStatus> =
            read_json(&self.state.status_path("Cluster", namespace, &name))?;
        let instances_dir = cluster_dir.join("instances");
        let restart_annotation = cluster
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(RESTARTED_AT_ANNOTATION))
            .cloned()
            .unwrap_or_default();
        let promote_file = cluster_dir.join(PROMOTE_REQUEST);
        let runtime = self.runtimes.entry(key.clone()).or_default();
        let lease_token = match &runtime.lease_token {
            Some(token) => token.clone(),
            None => {
                let token = crate::secrets::lease_token(&self.state, namespace, &name)?;
                runtime.lease_token = Some(token.clone());
                token
            }
        };
        let (mut observed, seen) = crate::observation::observe(
            &name,
            cluster,
            &instances_dir,
            previous.as_ref(),
            &restart_annotation,
            crate::state::read_text(&promote_file)
                .ok()
                .flatten()
                .map(|s| s.trim().to_string()),
            &mut runtime.unhealthy_since,
            &lease_token,
        )
        .await?;
        let decided = plan(cluster, &observed);
        let mut ports_by_instance = seen.ports;
        if previous.as_ref().map(|p| p.phase.as_str()) != Some(decided.phase) {
            log(format!(
                "{namespace}/{name}: {} (primary {}, target {}){}",
                decided.phase,
                decided.current_primary.as_deref().unwrap_or("-"),
                decided.target_primary.as_deref().unwrap_or("-"),
                decided
                    .blocked
                    .as_deref()
                    .map(|b| format!(": {b}"))
                    .unwrap_or_default()
            ));
        }
        if std::env::var_os("PGHERD_DEBUG_OBSERVATION").is_some() {
            for i in &observed.instances {
                eprintln!(
                    "  {} unhealthy_for={:?} dead={} stopped={} role={:?} wal={:?} shutdown_checkpoint={:?}",
                    i.name,
                    i.unhealthy_for,
                    i.dead,
                    i.stopped,
                    i.status.as_ref().map(|s| s.role),
                    i.status.as_ref().and_then(|s| s.wal_position()).map(|l| l.to_string()),
                    i.status.as_ref().and_then(|s| s.shutdown_checkpoint).map(|l| l.to_string()),
                );
            }
        }
        if let (Some(before), Some(now)) = (
            previous.as_ref().and_then(|p| p.current_primary.as_deref()),
            decided.current_primary.as_deref(),
        ) {
            if before != now {
                let switchover = observed.promote_request.as_deref() == Some(now);
                self.metrics.primary_changed(namespace, &name, switchover);
            }
        }
        let request_gone = observed
            .promote_request
            .as_ref()
            .is_some_and(|r| !observed.instances.iter().any(|i| &i.name == r));
        if observed.promote_request.is_some()
            && (observed.promote_request == decided.current_primary || request_gone)
        {
            // Done (or impossible: the instance no longer exists).
            let _ = std::fs::remove_file(&promote_file);
            observed.promote_request = None;
        }
        // A switchover pauses the cluster's rw poolers before the old primary is demoted.
        self.poolers
            .before_cluster_apply(namespace, &name, decided.phase)
            .await;
        // Fence first: nothing is promoted while a failed primary might still accept writes.
        for victim in &decided.fence {
            log(format!(
                "{namespace}/{name}: fencing {victim} (stopping its PostgreSQL by force)"
            ));
            crate::instances::kill_instance(&instances_dir.join(victim), Duration::from_secs(5));
        }

        let roles = crate::declarative::roles(
            &self.state,
            namespace,
            cluster,
            &cluster_dir.join("role-passwords"),
            &self.user,
        )?;
        let databases = crate::declarative::databases(&self.state, namespace, &name)?;
        let publications = crate::logical::publications(&self.state, namespace, &name)?;
        let (subscriptions, unspecified) = crate::logical::subscriptions(
            &self.state,
            namespace,
            cluster,
            &cluster_dir.join("external"),
            &self.user,
        )?;
        crate::logical::write_status(
            &self.state,
            "Subscription",
            namespace,
            &unspecified,
            &|_| false,
        )?;
        if let Some(primary) = decided
            .current_primary
            .as_deref()
            .and_then(|p| observed.instances.iter().find(|i| i.name == p))
        {
            if let Some(status) = &primary.status {
                let spec: Option<InstanceSpec> =
                    read_json(&instances_dir.join(&primary.name).join("instance.json"))?;
                let applied = spec.filter(|s| status.applied_generation >= s.generation);
                crate::declarative::write_database_status(
                    &self.state,
                    namespace,
                    &status.database_results,
                    applied.as_ref(),
                )?;
                crate::logical::write_results(&self.state, namespace, status, applied.as_ref())?;
                crate::database_roles::write_status(
                    &self.state,
                    namespace,
                    cluster,
                    &status.role_results,
                    applied.as_ref(),
                )?;
            }
        }

        // Apply.
        let bin_dir = match (&self.postgres_bin, cluster.major_version()) {
            (Some(dir), _) => dir.clone(),
            (None, Some(major)) => PgBinaries::locate(major.0, None)?.dir,
            (None, None) => {
                return Err(LocalError::Invalid(format!(
                    "cluster {name}: cannot tell the PostgreSQL major version from spec.imageName"
                )))
            }
        };
        crate::placement::place_instances(
            cluster,
            &decided.instances,
            &instances_dir,
            &mut ports_by_instance,
            &self.user,
        )?;
        // A query file that cannot be read must not stop the cluster: the rest applies. Said
        // once, not on every pass.
        let (mut monitoring, problems) =
            crate::monitoring::resolve(&self.state, namespace, cluster);
        monitoring.backups = crate::monitoring::backup_facts(previous.as_ref());
        let problems: Vec<String> = problems.iter().map(ToString::to_string).collect();
        if let Some(runtime) = self.runtimes.get_mut(&key) {
            if runtime.monitoring_problems != problems {
                for p in &problems {
                    log(format!("{namespace}/{name}: metrics: {p}"));
                }
                runtime.monitoring_problems = problems;
            }
        }
        let (archive, wal_store, archive_problem) = crate::stores::prepare_archive(
            &self.state,
            namespace,
            cluster,
            &cluster_dir,
            &self.user,
        );
        if let Some(runtime) = self.runtimes.get_mut(&key) {
            if runtime.archive_problem != archive_problem {
                if let Some(p) = &archive_problem {
                    log(format!("{namespace}/{name}: WAL archive: {p}"));
                }
                runtime.archive_problem = archive_problem.clone();
            }
        }
        let context_has_archive = wal_store.is_some();
        let context = ClusterContext {
            state: &self.state,
            namespace,
            cluster,
            plan: &decided,
            bin_dir,
            major: cluster.major_version().map_or(0, |m| m.0),
            os_user: self.user.name.clone(),
            user: &self.user,
            certificates: certificates.clone(),
            database: database.clone(),
            owner: owner.clone(),
            password_file: password_file.clone(),
            roles,
            databases,
            publications,
            subscriptions,
            monitoring,
            ports: &ports_by_instance,
            wal_store,
            lease_token: &lease_token,
            superuser_password,
        };
        // One instance's trouble (its disk is full, say) must not stop the others' specs: a
        // failover away from it is exactly what needs writing then.
        let mut instance_errors: BTreeMap<String, String> = BTreeMap::new();
        // The primary being replaced stays down until its successor is promoted: a manager
        // restarted meanwhile would make it look alive (just unreachable, when partitioned)
        // and get it fenced again on every pass, with the promotion never allowed to finish.
        let replaced = decided
            .current_primary
            .as_deref()
            .filter(|c| decided.target_primary.as_deref() != Some(*c));
        for instance in &decided.instances {
            let started = observed.instances.iter().any(|i| i.name == instance.name);
            let may_start = (!started || seen.managers_down.contains(&instance.name))
                && replaced != Some(instance.name.as_str());
            if let Err(e) = self.apply_instance(&context, instance, &instances_dir, may_start) {
                log(format!("{namespace}/{name}: {}: {e}", instance.name));
                instance_errors.insert(instance.name.clone(), e.to_string());
            }
        }
        for removed in &decided.remove {
            let dir = instances_dir.join(removed);
            if let Some(pid) = running_pid(&dir.join(crate::instances::MANAGER_PID)) {
                stop(pid, Duration::from_secs(60));
            }
            crate::sockets::remove(&dir);
            std::fs::remove_dir_all(&dir).map_err(|e| LocalError::io("cannot remove", &dir, e))?;
        }

        let mut status = crate::view::build(
            namespace,
            &name,
            self.runtimes.get(&key),
            &decided,
            &observed,
            &ports_by_instance,
        );
        for i in &mut status.instances_status {
            if let Some(e) = instance_errors.remove(&i.name) {
                i.error.get_or_insert(e);
            }
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
                configured: context_has_archive,
                problem: archive_problem.as_deref(),
                report: primary_report,
            },
            previous.as_ref(),
        );
        crate::backup_jobs::pass(
            self,
            namespace,
            cluster,
            &cluster_dir,
            &mut status,
            &ports_by_instance,
            archive.as_ref(),
            archive_problem.as_deref(),
        )
        .await;
        self.metrics.controller_pass("backup", true);
        status.restart_token = observed.restart_token.clone();
        status.restart_annotation = restart_annotation;
        status.poolers = self.poolers.cluster_entries(namespace, &name);
        for p in &status.poolers {
            status.endpoints.insert(p.name.clone(), p.endpoint.clone());
        }
        write_json(
            &self.state.status_path("Cluster", namespace, &name),
            &status,
            0o600,
        )?;
        Ok(status)
    }

    /// Write one instance's spec and start its manager when it may be started.
    fn apply_instance(
        &self,
        context: &ClusterContext<'_>,
        instance: &pgherd_controller::plan::DesiredInstance,
        instances_dir: &Path,
        may_start: bool,
    ) -> Result<(), LocalError> {
        let dirs = InstanceDirs::new(instances_dir.join(&instance.name));
        self.user.own_dir(&dirs.root, 0o700)?;
        crate::sockets::prepare(&dirs.root, &self.user)?;
        let address = &context.ports[&instance.name];
        let Some(spec) = context.instance_spec(instance, &dirs, address)? else {
            return Ok(()); // its upstream has no ports yet
        };
        crate::spec_file::write_spec(&self.user, &dirs.root, spec)?;
        let pid_file = dirs.root.join(crate::instances::MANAGER_PID);
        if may_start && running_pid(&pid_file).is_none() {
            let spec_path = dirs.root.join("instance.json");
            let spec_arg = spec_path.display().to_string();
            spawn_detached(
                &self.exe,
                &["instance", "run", "--spec", &spec_arg],
                &dirs.root.join("manager.log"),
                &pid_file,
                Some(&self.user),
                address.netns.as_deref(),
            )?;
        }
        Ok(())
    }

    /// One pass over every stored cluster.
    /// Returns whether a cluster is changing primary or has its primary down: the caller
    /// then passes again sooner.
    pub async fn reconcile_all(&mut self) -> Result<bool, LocalError> {
        crate::instances::reap();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        match crate::schedules::reconcile_schedules(&self.state, now) {
            Ok(created) => {
                self.metrics.controller_pass("scheduledbackup", true);
                for b in created {
                    log(format!("scheduled backup: created Backup {b}"));
                }
            }
            Err(e) => {
                self.metrics.controller_pass("scheduledbackup", false);
                log(format!("scheduled backups: {e}"));
            }
        }
        let clusters: Vec<(String, String, Cluster)> = self.state.list_objects("Cluster")?;
        let mut busy = false;
        for (namespace, _, cluster) in clusters {
            let name = cluster.metadata.name.clone().unwrap_or_default();
            let started = std::time::Instant::now();
            let result = self.reconcile_cluster(&namespace, &cluster).await;
            self.metrics.reconciled(
                &namespace,
                &name,
                result.is_ok(),
                started.elapsed().as_secs_f64(),
            );
            if let Ok(status) = &result {
                let primary_ready = status
                    .instances_status
                    .iter()
                    .any(|i| Some(&i.name) == status.current_primary.as_ref() && i.ready);
                busy |= !primary_ready
                    || status.current_primary != status.target_primary
                    || status.phase == phase::FAILING_OVER
                    || status.phase == phase::SWITCHOVER;
            }
            if let Err(e) = result {
                let mut status: LocalClusterStatus = read_json(
                    &self.state.status_path("Cluster", &namespace, &name),
                )?
                .unwrap_or(LocalClusterStatus {
                    name: name.clone(),
                    namespace: namespace.clone(),
                    ..Default::default()
                });
                status.phase = phase::CANNOT_CREATE_OBJECTS.to_string();
                status.conditions = vec![LocalCondition {
                    condition_type: "Ready".into(),
                    status: "False".into(),
                    reason: "ReconcileError".into(),
                    message: e.to_string(),
                }];
                write_json(
                    &self.state.status_path("Cluster", &namespace, &name),
                    &status,
                    0o600,
                )?;
            }
        }
        let poolers = self.reconcile_poolers().await;
        self.metrics.controller_pass("pooler", poolers.is_ok());
        if let Err(e) = poolers {
            log(format!("poolers: {e}"));
        }
        Ok(busy)
    }
}
