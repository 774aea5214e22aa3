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
use pgherd_controller::plan::plan;
use pgherd_controller::{phase, pki};
use pgherd_instance_manager::PgBinaries;
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
    /// The endpoints' servers, stopped with the runtime (the cluster deleted).
    listeners: Vec<Listener>,
    /// The PostgreSQL binaries directory found for a major version (looked up once).
    bin_dir: Option<(u32, PathBuf)>,
    /// The plan's phase in the previous pass (the poolers hear of switchovers).
    last_phase: String,
    /// A backup catalog read under way (`backup_jobs`).
    pub catalog_read: Option<tokio::task::JoinHandle<crate::backup_jobs::CatalogOutcome>>,
    /// Removed instances being stopped and deleted.
    removing: BTreeMap<String, tokio::task::JoinHandle<()>>,
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
    plane: Plane,
    namespace: String,
    name: String,
    runtime: ClusterRuntime,
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
        cluster: &str,
    ) -> Result<CertificatePaths, LocalError> {
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
        Ok(paths)
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

    /// One pass over the cluster.
    pub async fn pass(&mut self, cluster: &Cluster) -> Result<LocalClusterStatus, LocalError> {
        let namespace = &self.namespace.clone();
        let name = self.name.clone();
        let cluster_dir = self.plane.state.cluster_dir(namespace, &name);
        self.plane.user.own_dir(&cluster_dir, 0o711)?;
        let certificates = self.ensure_certificates(&cluster_dir, &name)?;
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

        // Observe.
        let previous: Option<LocalClusterStatus> =
            read_json(&self.plane.state.status_path("Cluster", namespace, &name))?;
        let instances_dir = cluster_dir.join("instances");
        let restart_annotation = cluster
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(RESTARTED_AT_ANNOTATION))
            .cloned()
            .unwrap_or_default();
        let promote_file = cluster_dir.join(PROMOTE_REQUEST);
        let runtime = &mut self.runtime;
        let lease_token = match &runtime.lease_token {
            Some(token) => token.clone(),
            None => {
                let token = crate::secrets::lease_token(&self.plane.state, namespace, &name)?;
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
        // An instance being removed is no longer part of the cluster.
        observed
            .instances
            .retain(|i| !self.runtime.removing.contains_key(&i.name));
        let decided = plan(cluster, &observed);
        let mut ports_by_instance = seen.ports;
        ports_by_instance.retain(|i, _| !self.runtime.removing.contains_key(i));
        if previous.as_ref().map(|p| p.phase.as_str()) != Some(decided.phase) {
            tracing::info!(
                "{} (primary {}, target {}){}",
                decided.phase,
                decided.current_primary.as_deref().unwrap_or("-"),
                decided.target_primary.as_deref().unwrap_or("-"),
                decided
                    .blocked
                    .as_deref()
                    .map(|b| format!(": {b}"))
                    .unwrap_or_default()
            );
        }
        for i in &observed.instances {
            tracing::debug!(
                instance = %i.name,
                unhealthy_for = ?i.unhealthy_for,
                dead = i.dead,
                stopped = i.stopped,
                role = ?i.status.as_ref().map(|s| s.role),
                wal = ?i.status.as_ref().and_then(|s| s.wal_position()).map(|l| l.to_string()),
                shutdown_checkpoint = ?i.status.as_ref().and_then(|s| s.shutdown_checkpoint).map(|l| l.to_string()),
                "observed"
            );
        }
        if let (Some(before), Some(now)) = (
            previous.as_ref().and_then(|p| p.current_primary.as_deref()),
            decided.current_primary.as_deref(),
        ) {
            if before != now {
                let switchover = observed.promote_request.as_deref() == Some(now);
                self.plane
                    .metrics
                    .primary_changed(namespace, &name, switchover);
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
        // A switchover pauses the cluster's rw poolers before the old primary is demoted (the
        // poolers are locked only when a switchover starts or ends).
        if decided.phase == phase::SWITCHOVER || self.runtime.last_phase == phase::SWITCHOVER {
            self.plane
                .poolers
                .lock()
                .await
                .before_cluster_apply(namespace, &name, decided.phase)
                .await;
        }
        self.runtime.last_phase = decided.phase.to_string();
        // Fence first: nothing is promoted while a failed primary might still accept writes.
        for victim in &decided.fence {
            tracing::warn!("fencing {victim} (stopping its PostgreSQL by force)");
            let dir = instances_dir.join(victim);
            let _ = tokio::task::spawn_blocking(move || {
                crate::instances::kill_instance(&dir, Duration::from_secs(5))
            })
            .await;
        }

        let roles = crate::declarative::roles(
            &self.plane.state,
            namespace,
            cluster,
            &cluster_dir.join("role-passwords"),
            &self.plane.user,
        )?;
        let databases = crate::declarative::databases(&self.plane.state, namespace, &name)?;
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
                    &self.plane.state,
                    namespace,
                    &status.database_results,
                    applied.as_ref(),
                )?;
            }
        }

        // Apply.
        let bin_dir = match (&self.plane.postgres_bin, cluster.major_version()) {
            (Some(dir), _) => dir.clone(),
            (None, Some(major)) => match &self.runtime.bin_dir {
                Some((m, dir)) if *m == major.0 => dir.clone(),
                _ => {
                    let dir = PgBinaries::locate(major.0, None)?.dir;
                    self.runtime.bin_dir = Some((major.0, dir.clone()));
                    dir
                }
            },
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
            &self.plane.user,
        )?;
        // A query file that cannot be read must not stop the cluster: the rest applies. Said
        // once, not on every pass.
        let (monitoring, problems) =
            crate::monitoring::resolve(&self.plane.state, namespace, cluster);
        let problems: Vec<String> = problems.iter().map(ToString::to_string).collect();
        if self.runtime.monitoring_problems != problems {
            for p in &problems {
                tracing::warn!("metrics: {p}");
            }
            self.runtime.monitoring_problems = problems;
        }
        let (archive, wal_store, archive_problem) = crate::stores::prepare_archive(
            &self.plane.state,
            namespace,
            cluster,
            &cluster_dir,
            &self.plane.user,
        );
        if self.runtime.archive_problem != archive_problem {
            if let Some(p) = &archive_problem {
                tracing::warn!("WAL archive: {p}");
            }
            self.runtime.archive_problem = archive_problem.clone();
        }
        let context_has_archive = wal_store.is_some();
        let context = ClusterContext {
            state: &self.plane.state,
            namespace,
            cluster,
            plan: &decided,
            bin_dir,
            major: cluster.major_version().map_or(0, |m| m.0),
            os_user: self.plane.user.name.clone(),
            user: &self.plane.user,
            certificates: certificates.clone(),
            database: database.clone(),
            owner: owner.clone(),
            password_file: password_file.clone(),
            roles,
            databases,
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
                tracing::warn!("{}: {e}", instance.name);
                instance_errors.insert(instance.name.clone(), e.to_string());
            }
        }
        self.start_removals(&decided.remove, &instances_dir);

        let mut status = crate::view::build(
            namespace,
            &name,
            Some(&self.runtime),
            &decided,
            &observed,
            &ports_by_instance,
        );
        for i in &mut status.instances_status {
            if let Some(e) = instance_errors.remove(&i.name) {
                i.error.get_or_insert(e);
            }
        }
        // Scaled down: healthy once the removed instances are gone.
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
                configured: context_has_archive,
                problem: archive_problem.as_deref(),
                report: primary_report,
            },
            previous.as_ref(),
        );
        crate::backup_jobs::pass(
            &self.plane,
            &mut self.runtime,
            namespace,
            cluster,
            &cluster_dir,
            &mut status,
            &ports_by_instance,
            archive.as_ref(),
            archive_problem.as_deref(),
        )
        .await;
        status.restart_token = observed.restart_token.clone();
        status.restart_annotation = restart_annotation;
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
            &decided,
            &observed,
            &status,
        )?;
        Ok(status)
    }

    /// Removed instances (scaled down) are stopped and deleted beside the passes: a stop can
    /// take a minute. Until it is done the instance is no longer observed.
    fn start_removals(&mut self, removed: &[String], instances_dir: &Path) {
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
    fn apply_instance(
        &self,
        context: &ClusterContext<'_>,
        instance: &pgherd_controller::plan::DesiredInstance,
        instances_dir: &Path,
        may_start: bool,
    ) -> Result<(), LocalError> {
        let dirs = InstanceDirs::new(instances_dir.join(&instance.name));
        self.plane.user.own_dir(&dirs.root, 0o700)?;
        crate::sockets::prepare(&dirs.root, &self.plane.user)?;
        let address = &context.ports[&instance.name];
        let Some(spec) = context.instance_spec(instance, &dirs, address)? else {
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
                address.netns.as_deref(),
            )?;
        }
        Ok(())
    }
}
