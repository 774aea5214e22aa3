//! The local control plane: one reconcile pass over every stored Cluster — certificates and
//! secrets, the controller's plan, instance specs and manager processes, endpoints, status.

use crate::endpoints::{self, Backends};
use crate::instances::{running_pid, spawn_detached, stop};
use crate::secrets::ensure_app_secret;
use crate::sql_refs;
use crate::state::{read_json, write_atomic, write_json, StateDir};
use crate::status::{LocalClusterStatus, LocalCondition};
use crate::LocalError;
use pgherd_api::cluster::replication_slot_name;
use pgherd_api::common::SqlRefs;
use pgherd_api::defaults::DEFAULT_APP_DATABASE;
use pgherd_api::Cluster;
use pgherd_controller::plan::{plan, DataSource, Observation, ObservedInstance};
use pgherd_controller::{phase, pki};
use pgherd_instance_manager::{OsUser, PgBinaries};
use pgherd_instance_protocol::{
    Bootstrap, CertificatePaths, DesiredRole, InstanceSpec, InstanceStatus, PrimaryEndpoint,
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Annotations pinning endpoint ports (`"5432"`); otherwise free ports are allocated once.
/// Annotation whose change rolls every instance (`kubectl cnpg restart`, `local restart`).
pub const RESTARTED_AT_ANNOTATION: &str = "kubectl.kubernetes.io/restartedAt";

pub const PORT_ANNOTATIONS: [(&str, &str); 3] = [
    ("rw", "pgherd.io/rw-port"),
    ("ro", "pgherd.io/ro-port"),
    ("r", "pgherd.io/r-port"),
];

/// Settings the local platform fixes, whatever the manifest says (as CloudNativePG's mandatory
/// settings).
fn mandatory_settings(
    cluster: &str,
    spec_dirs: &InstanceDirs,
    certs: &CertificatePaths,
) -> Vec<(&'static str, String)> {
    vec![
        ("listen_addresses", "127.0.0.1".to_string()),
        (
            "unix_socket_directories",
            spec_dirs.run.display().to_string(),
        ),
        ("hot_standby", "on".to_string()),
        ("restart_after_crash", "off".to_string()),
        ("ssl", "on".to_string()),
        ("ssl_cert_file", certs.server_cert.display().to_string()),
        ("ssl_key_file", certs.server_key.display().to_string()),
        ("ssl_ca_file", certs.ca.display().to_string()),
        ("cluster_name", cluster.to_string()),
        ("log_directory", spec_dirs.log.display().to_string()),
        // WAL archiving to an object store comes with backups; until then it succeeds at once.
        ("archive_command", ":".to_string()),
    ]
}

struct InstanceDirs {
    root: PathBuf,
    run: PathBuf,
    log: PathBuf,
}

impl InstanceDirs {
    fn new(root: PathBuf) -> Self {
        InstanceDirs {
            run: root.join("run"),
            log: root.join("log"),
            root,
        }
    }
}

/// Ports of one instance, allocated once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct InstancePorts {
    pub(crate) postgres: u16,
    pub(crate) status: u16,
}

fn free_port() -> Result<u16, LocalError> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(LocalError::NoPort)?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(LocalError::NoPort)
}

/// Fetch `/pg/status` from an instance manager. A fixed one-line request on loopback with a
/// short timeout; a full HTTP client would add weight for nothing here.
pub async fn fetch_status(port: u16) -> Option<InstanceStatus> {
    let attempt = async {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .ok()?;
        stream
            .write_all(b"GET /pg/status HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
            .await
            .ok()?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await.ok()?;
        let text = String::from_utf8(response).ok()?;
        let (head, body) = text.split_once("\r\n\r\n")?;
        let ok = head.split_whitespace().nth(1) == Some("200");
        ok.then(|| serde_json::from_str(body).ok())?
    };
    tokio::time::timeout(Duration::from_secs(2), attempt)
        .await
        .ok()
        .flatten()
}

/// What the control plane keeps per cluster between passes.
#[derive(Debug, Default)]
pub struct ClusterRuntime {
    pub endpoints: BTreeMap<String, (u16, Backends)>,
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
}

fn serial_of(cluster: &str, instance: &str) -> Option<u32> {
    instance
        .strip_prefix(cluster)?
        .strip_prefix('-')?
        .parse()
        .ok()
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
                write_atomic(path, text.as_bytes(), 0o600)?;
                self.user.own_file(path)?;
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
                (None, None) => free_port()?,
            };
            let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
                .await
                .map_err(|e| LocalError::Invalid(format!("cannot listen on 127.0.0.1:{port} for the {kind} endpoint: {e} (pin another port with the {annotation} annotation)")))?;
            ports.insert(kind.to_string(), port);
            let backends = Backends::default();
            tokio::spawn(endpoints::serve(listener, backends.clone()));
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

        let bootstrap = cluster
            .spec
            .bootstrap
            .as_ref()
            .and_then(|b| b.initdb.clone())
            .unwrap_or_default();
        let database = bootstrap
            .database
            .clone()
            .unwrap_or_else(|| DEFAULT_APP_DATABASE.to_string());
        let owner = bootstrap.owner.clone().unwrap_or_else(|| database.clone());
        let secret_name = bootstrap
            .secret
            .as_ref()
            .map(|s| s.name.clone())
            .unwrap_or_else(|| format!("{name}-app"));
        let credentials = ensure_app_secret(
            &self.state,
            namespace,
            &secret_name,
            &owner,
            &database,
            "127.0.0.1",
            rw_port,
        )?;
        let password_file = cluster_dir.join("app-password");
        write_atomic(&password_file, credentials.password.as_bytes(), 0o600)?;
        self.user.own_file(&password_file)?;

        // Observe.
        let previous: Option<LocalClusterStatus> =
            read_json(&self.state.status_path("Cluster", namespace, &name))?;
        let instances_dir = cluster_dir.join("instances");
        let mut observed = Observation {
            latest_serial: previous.as_ref().map_or(0, |p| p.latest_generated_node),
            current_primary: previous
                .as_ref()
                .and_then(|p| p.current_primary.clone().or(p.target_primary.clone())),
            instances: Vec::new(),
            restart_token: previous
                .as_ref()
                .map(|p| p.restart_token.clone())
                .unwrap_or_default(),
        };
        let restart_annotation = cluster
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(RESTARTED_AT_ANNOTATION))
            .cloned()
            .unwrap_or_default();
        if previous
            .as_ref()
            .is_some_and(|p| p.restart_annotation != restart_annotation)
        {
            // `local restart` (or kubectl cnpg restart): roll every instance.
            observed.restart_token = restart_annotation.clone();
        }
        let mut ports_by_instance = BTreeMap::new();
        if let Ok(entries) = std::fs::read_dir(&instances_dir) {
            for entry in entries.flatten() {
                let instance = entry.file_name().to_string_lossy().into_owned();
                let Some(serial) = serial_of(&name, &instance) else {
                    continue;
                };
                let ports: Option<InstancePorts> = read_json(&entry.path().join("ports.json"))?;
                let status = match ports {
                    Some(p) => fetch_status(p.status).await,
                    None => None,
                };
                if let Some(p) = ports {
                    ports_by_instance.insert(instance.clone(), p);
                }
                let spec_restart_token =
                    read_json::<InstanceSpec>(&entry.path().join("instance.json"))?
                        .map(|s| s.restart_token)
                        .unwrap_or_default();
                observed.instances.push(ObservedInstance {
                    serial,
                    name: instance,
                    status,
                    spec_restart_token,
                });
            }
        }
        // A setting that needs a restart: roll the cluster once every instance runs the
        // current token.
        let rollout_done = observed.instances.iter().all(|i| {
            i.status
                .as_ref()
                .is_some_and(|s| s.restart_token == observed.restart_token)
        });
        if rollout_done
            && observed
                .instances
                .iter()
                .any(|i| i.status.as_ref().is_some_and(|s| s.pending_restart))
        {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            observed.restart_token = format!("pending-restart-{now}");
        }
        let decided = plan(cluster, &observed);

        let roles = crate::declarative::roles(
            &self.state,
            namespace,
            cluster,
            &cluster_dir.join("role-passwords"),
            &self.user,
        )?;
        let databases = crate::declarative::databases(&self.state, namespace, &name)?;
        if let Some(primary) = decided
            .current_primary
            .as_deref()
            .and_then(|p| observed.instances.iter().find(|i| i.name == p))
        {
            if let Some(status) = &primary.status {
                crate::declarative::write_database_status(
                    &self.state,
                    namespace,
                    &status.database_results,
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
        let major = cluster.major_version().map_or(0, |m| m.0);
        let primary_name = decided.target_primary.clone();
        let slot_prefix = cluster
            .spec
            .replication_slots
            .as_ref()
            .and_then(|r| r.high_availability.as_ref())
            .and_then(|h| h.slot_prefix.clone())
            .unwrap_or_else(|| "_cnpg_".to_string());
        for instance in &decided.instances {
            let dirs = InstanceDirs::new(instances_dir.join(&instance.name));
            self.user.own_dir(&dirs.root, 0o700)?;
            let ports = match ports_by_instance.get(&instance.name) {
                Some(p) => *p,
                None => {
                    let p = InstancePorts {
                        postgres: free_port()?,
                        status: free_port()?,
                    };
                    write_json(&dirs.root.join("ports.json"), &p, 0o644)?;
                    ports_by_instance.insert(instance.name.clone(), p);
                    p
                }
            };
            let primary_ports = primary_name
                .as_ref()
                .and_then(|p| ports_by_instance.get(p))
                .copied();
            let mut settings: BTreeMap<String, String> = cluster
                .spec
                .postgresql
                .as_ref()
                .and_then(|p| p.parameters.clone())
                .unwrap_or_default();
            for (k, v) in mandatory_settings(&name, &dirs, &certificates) {
                settings.insert(k.to_string(), v);
            }
            let spec = InstanceSpec {
                cluster: name.clone(),
                name: instance.name.clone(),
                generation: 0,
                pgdata: dirs.root.join("pgdata"),
                socket_dir: dirs.run.clone(),
                log_dir: dirs.log.clone(),
                port: ports.postgres,
                status_port: ports.status,
                bin_dir: bin_dir.clone(),
                major,
                os_user: self.user.name.clone(),
                role: instance.role,
                bootstrap: match instance.data_source {
                    DataSource::Initdb => {
                        // The referenced SQL is only read while the primary is being created.
                        let creating = !dirs.root.join("pgdata/PG_VERSION").exists();
                        let refs = |field: &str, refs: Option<&SqlRefs>| {
                            if creating {
                                sql_refs::resolve(&self.state, namespace, field, refs)
                            } else {
                                Ok(Vec::new())
                            }
                        };
                        let with_refs =
                            |mut inline: Vec<String>, field: &str, r: Option<&SqlRefs>| {
                                inline.extend(refs(field, r)?);
                                Ok::<_, LocalError>(inline)
                            };
                        Bootstrap::Initdb {
                            initdb_args: pgherd_instance_manager::InitDbOptions::from_spec(
                                &bootstrap,
                            )
                            .args()?,
                            database: database.clone(),
                            owner: owner.clone(),
                            owner_password_file: Some(password_file.clone()),
                            post_init_sql: with_refs(
                                bootstrap.post_init_sql.clone().unwrap_or_default(),
                                "spec.bootstrap.initdb.postInitSQLRefs",
                                bootstrap.post_init_sql_refs.as_ref(),
                            )?,
                            post_init_template_sql: with_refs(
                                bootstrap.post_init_template_sql.clone().unwrap_or_default(),
                                "spec.bootstrap.initdb.postInitTemplateSQLRefs",
                                bootstrap.post_init_template_sql_refs.as_ref(),
                            )?,
                            post_init_application_sql: with_refs(
                                bootstrap
                                    .post_init_application_sql
                                    .clone()
                                    .unwrap_or_default(),
                                "spec.bootstrap.initdb.postInitApplicationSQLRefs",
                                bootstrap.post_init_application_sql_refs.as_ref(),
                            )?,
                        }
                    }
                    DataSource::Clone => Bootstrap::Clone,
                },
                primary: match (instance.role, primary_ports) {
                    (DesiredRole::Replica, Some(p)) => Some(PrimaryEndpoint {
                        host: "127.0.0.1".into(),
                        port: p.postgres,
                        slot: Some(replication_slot_name(&slot_prefix, &instance.name)),
                    }),
                    _ => None,
                },
                settings,
                pg_hba: cluster
                    .spec
                    .postgresql
                    .as_ref()
                    .and_then(|p| p.pg_hba.clone())
                    .unwrap_or_default(),
                pg_ident: cluster
                    .spec
                    .postgresql
                    .as_ref()
                    .and_then(|p| p.pg_ident.clone())
                    .unwrap_or_default(),
                certificates: certificates.clone(),
                replica_slots: decided
                    .instances
                    .iter()
                    .filter(|i| i.role == DesiredRole::Replica)
                    .map(|i| replication_slot_name(&slot_prefix, &i.name))
                    .collect(),
                slot_prefix: slot_prefix.clone(),
                fenced: false,
                restart_token: instance.restart_token.clone(),
                roles: if instance.role == DesiredRole::Primary {
                    roles.clone()
                } else {
                    Vec::new()
                },
                databases: if instance.role == DesiredRole::Primary {
                    databases.clone()
                } else {
                    Vec::new()
                },
            };
            if instance.role == DesiredRole::Replica && spec.primary.is_none() {
                continue; // the primary has no ports yet
            }
            self.write_spec(&dirs.root, spec)?;
            let pid_file = dirs.root.join(crate::instances::MANAGER_PID);
            if running_pid(&pid_file).is_none() {
                let spec_path = dirs.root.join("instance.json");
                let spec_arg = spec_path.display().to_string();
                spawn_detached(
                    &self.exe,
                    &["instance", "run", "--spec", &spec_arg],
                    &dirs.root.join("manager.log"),
                    &pid_file,
                    Some(&self.user),
                )?;
            }
        }
        for removed in &decided.remove {
            let dir = instances_dir.join(removed);
            if let Some(pid) = running_pid(&dir.join(crate::instances::MANAGER_PID)) {
                stop(pid, Duration::from_secs(60));
            }
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
        status.restart_token = observed.restart_token.clone();
        status.restart_annotation = restart_annotation;
        write_json(
            &self.state.status_path("Cluster", namespace, &name),
            &status,
            0o644,
        )?;
        Ok(status)
    }

    /// Write `instance.json` when its content changes, bumping the generation.
    fn write_spec(&self, dir: &Path, mut spec: InstanceSpec) -> Result<(), LocalError> {
        let path = dir.join("instance.json");
        let old: Option<InstanceSpec> = read_json(&path)?;
        if let Some(old) = &old {
            spec.generation = old.generation;
            if old == &spec {
                return Ok(());
            }
        }
        spec.generation += 1;
        write_json(&path, &spec, 0o644)?;
        Ok(self.user.own_file(&path)?)
    }

    /// One pass over every stored cluster.
    pub async fn reconcile_all(&mut self) -> Result<(), LocalError> {
        crate::instances::reap();
        let clusters: Vec<(String, String, Cluster)> = self.state.list_objects("Cluster")?;
        for (namespace, _, cluster) in clusters {
            let name = cluster.metadata.name.clone().unwrap_or_default();
            if let Err(e) = self.reconcile_cluster(&namespace, &cluster).await {
                let mut status: LocalClusterStatus = read_json(
                    &self.state.status_path("Cluster", &namespace, &name),
                )?
                .unwrap_or(LocalClusterStatus {
                    name: name.clone(),
                    namespace: namespace.clone(),
                    phase: String::new(),
                    instances: 0,
                    ready_instances: 0,
                    current_primary: None,
                    target_primary: None,
                    timeline: None,
                    endpoints: BTreeMap::new(),
                    instances_status: Vec::new(),
                    latest_generated_node: 0,
                    conditions: Vec::new(),
                    managed_roles_status: Default::default(),
                    restart_token: String::new(),
                    restart_annotation: String::new(),
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
                    0o644,
                )?;
            }
        }
        Ok(())
    }
}
