//! The spec each instance manager gets (`instance.json`): the controller's decision for that
//! instance, rendered with the local platform's directories, ports, certificates and the
//! settings it fixes.

use crate::key_refs;
use crate::state::StateDir;
use crate::LocalError;
use pgherd_api::cluster::{replication_slot_name, BootstrapInitDb};
use pgherd_api::common::SqlRefs;
use pgherd_api::Cluster;
use pgherd_controller::plan::{DataSource, DesiredInstance, Plan};
use pgherd_instance_protocol::{
    Bootstrap, CertificatePaths, DatabaseSpec, DesiredRole, InstanceSpec, Peer, PrimaryEndpoint,
    RoleSpec,
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;

/// Where one instance listens: allocated once, kept in its `ports.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceAddress {
    pub postgres: u16,
    pub status: u16,
    /// The metrics exporter's port (0 in files written before it existed).
    #[serde(default)]
    pub metrics: u16,
    /// Loopback, or the instance's own address in its network namespace.
    #[serde(default = "loopback")]
    pub host: IpAddr,
    /// The network namespace the instance runs in (see `NETNS_PREFIX_ANNOTATION`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub netns: Option<String>,
}

fn loopback() -> IpAddr {
    IpAddr::V4(Ipv4Addr::LOCALHOST)
}

impl InstanceAddress {
    pub fn postgres_addr(&self) -> SocketAddr {
        SocketAddr::new(self.host, self.postgres)
    }
}

/// An instance's directories.
pub(crate) struct InstanceDirs {
    pub(crate) root: PathBuf,
    pub(crate) run: PathBuf,
    pub(crate) log: PathBuf,
}

impl InstanceDirs {
    pub(crate) fn new(root: PathBuf) -> Self {
        InstanceDirs {
            run: crate::sockets::socket_dir(&root),
            log: root.join("log"),
            root,
        }
    }
}

/// Settings the local platform fixes, whatever the manifest says (as CloudNativePG's mandatory
/// settings).
fn mandatory_settings(
    cluster: &str,
    host: IpAddr,
    dirs: &InstanceDirs,
    certs: &CertificatePaths,
) -> Vec<(&'static str, String)> {
    vec![
        ("listen_addresses", host.to_string()),
        ("unix_socket_directories", dirs.run.display().to_string()),
        ("hot_standby", "on".to_string()),
        ("restart_after_crash", "off".to_string()),
        ("ssl", "on".to_string()),
        ("ssl_cert_file", certs.server_cert.display().to_string()),
        ("ssl_key_file", certs.server_key.display().to_string()),
        ("ssl_ca_file", certs.ca.display().to_string()),
        ("cluster_name", cluster.to_string()),
        ("log_directory", dirs.log.display().to_string()),
        // Without an object store WAL is not archived; with one the instance manager sets the
        // command.
        ("archive_command", ":".to_string()),
    ]
}

/// The application database, its owner and the Secret with the owner's credentials, from
/// `bootstrap.initdb` or `bootstrap.recovery` (default `app`, `app`, `<cluster>-app`).
pub fn application(cluster: &Cluster) -> (String, String, String) {
    let name = cluster.metadata.name.clone().unwrap_or_default();
    let bootstrap = cluster.spec.bootstrap.as_ref();
    let (database, owner, secret) = match bootstrap.and_then(|b| b.recovery.as_ref()) {
        Some(r) => (
            r.database.clone(),
            r.owner.clone(),
            r.secret.as_ref().map(|s| s.name.clone()),
        ),
        None => {
            let i = bootstrap.and_then(|b| b.initdb.clone()).unwrap_or_default();
            (i.database, i.owner, i.secret.map(|s| s.name))
        }
    };
    let database =
        database.unwrap_or_else(|| pgherd_api::defaults::DEFAULT_APP_DATABASE.to_string());
    let owner = owner.unwrap_or_else(|| database.clone());
    (
        database,
        owner,
        secret.unwrap_or_else(|| format!("{name}-app")),
    )
}

/// Where new replicas get their data: `primary` (a copy of it, the default) or
/// `object-store` (the latest backup, then the archived WAL, then streaming).
pub const REPLICA_SOURCE_ANNOTATION: &str = "pgherd.io/replica-source";

/// File (in the cluster's directory) holding the recovery source's store.
pub const RECOVERY_STORE_FILE: &str = "recovery-store.json";

/// What every instance spec of one cluster shares in a pass.
pub(crate) struct ClusterContext<'a> {
    pub(crate) state: &'a StateDir,
    pub(crate) namespace: &'a str,
    pub(crate) cluster: &'a Cluster,
    pub(crate) plan: &'a Plan,
    pub(crate) bin_dir: PathBuf,
    pub(crate) major: u32,
    pub(crate) os_user: String,
    pub(crate) user: &'a pgherd_instance_manager::OsUser,
    pub(crate) certificates: CertificatePaths,
    pub(crate) database: String,
    pub(crate) owner: String,
    pub(crate) password_file: PathBuf,
    pub(crate) roles: Vec<RoleSpec>,
    pub(crate) databases: Vec<DatabaseSpec>,
    pub(crate) publications: Vec<pgherd_instance_protocol::PublicationSpec>,
    pub(crate) subscriptions: Vec<pgherd_instance_protocol::SubscriptionSpec>,
    pub(crate) monitoring: pgherd_instance_protocol::MonitoringSpec,
    pub(crate) ports: &'a BTreeMap<String, InstanceAddress>,
    /// Where WAL is archived, if anywhere.
    pub(crate) wal_store: Option<pgherd_instance_protocol::WalStore>,
    /// The control plane's lease credential (see `ClusterRuntime::lease_token`).
    pub(crate) lease_token: &'a pgherd_instance_protocol::LeaseToken,
    /// The `postgres` role's password (`enableSuperuserAccess`).
    pub(crate) superuser_password: pgherd_instance_protocol::PasswordSource,
}

impl ClusterContext<'_> {
    fn name(&self) -> String {
        self.cluster.metadata.name.clone().unwrap_or_default()
    }

    fn slot_prefix(&self) -> String {
        self.cluster
            .spec
            .replication_slots
            .as_ref()
            .and_then(|r| r.high_availability.as_ref())
            .and_then(|h| h.slot_prefix.clone())
            .unwrap_or_else(|| "_cnpg_".to_string())
    }

    /// Whether new replicas start from the object store's latest backup
    /// ([`REPLICA_SOURCE_ANNOTATION`] `object-store`) rather than a copy of the primary.
    fn replicas_from_store(&self) -> bool {
        self.cluster
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(REPLICA_SOURCE_ANNOTATION))
            .is_some_and(|v| v == "object-store")
    }

    fn initdb(&self) -> BootstrapInitDb {
        self.cluster
            .spec
            .bootstrap
            .as_ref()
            .and_then(|b| b.initdb.clone())
            .unwrap_or_default()
    }

    /// `bootstrap.recovery` for the first instance: the source's store written next to the
    /// cluster (0600), the backup and the recovery settings.
    fn recovery(
        &self,
        recovery: &pgherd_api::cluster::BootstrapRecovery,
    ) -> Result<Bootstrap, LocalError> {
        let target = recovery.recovery_target.as_ref();
        let mut backup_id = target.and_then(|t| t.backup_id.clone());
        let store = match (&recovery.source, &recovery.backup) {
            (Some(source), _) => {
                crate::stores::external_store(self.state, self.namespace, self.cluster, source)?
            }
            (None, Some(backup)) => {
                // The data's major must be the image's: refused before anything is restored
                // (it used to restore, then fail with "database files are incompatible").
                let status: Option<pgherd_api::kinds::backup::BackupStatus> = crate::state::read_json(
                    &self.state.status_path("Backup", self.namespace, &backup.name),
                )?;
                if let Some(taken) = status.and_then(|s| s.major_version) {
                    if taken != i64::from(self.major) {
                        return Err(LocalError::Invalid(format!(
                            "spec.bootstrap.recovery.backup: Backup {:?} holds PostgreSQL {taken} data, but spec.imageName runs PostgreSQL {}: set spec.imageName to a PostgreSQL {taken} image (e.g. ghcr.io/cloudnative-pg/postgresql:{taken})",
                            backup.name, self.major
                        )));
                    }
                }
                let (store, id) = crate::stores::backup_store(self.state, self.namespace, &backup.name)?;
                backup_id = backup_id.or(Some(id));
                store
            }
            (None, None) => {
                return Err(LocalError::Invalid(
                    "spec.bootstrap.recovery: needs source (an external cluster with an object store) or backup.name (hint: volumeSnapshots are not available on the local platform)".into(),
                ))
            }
        };
        let store_file = self
            .state
            .cluster_dir(self.namespace, &self.name())
            .join(RECOVERY_STORE_FILE);
        crate::stores::write_target(&store_file, &store, self.user)?;
        let recovery_settings =
            pgherd_controller::recovery::recovery_settings(target).map_err(LocalError::Invalid)?;
        Ok(Bootstrap::Recovery {
            store_file,
            backup_id,
            target_time: target
                .and_then(|t| t.target_time.as_deref())
                .map(pgherd_controller::recovery::parse_target_time)
                .transpose()
                .map_err(LocalError::Invalid)?
                .and_then(|t| {
                    t.format(&time::format_description::well_known::Rfc3339)
                        .ok()
                }),
            target_lsn: target.and_then(|t| t.target_lsn.clone()),
            recovery_settings,
            database: self.database.clone(),
            owner: self.owner.clone(),
            owner_password_file: Some(self.password_file.clone()),
        })
    }

    /// `bootstrap.initdb` (or `bootstrap.recovery`) for the first instance; the referenced SQL
    /// and the recovery source are only read while that instance is being created.
    fn bootstrap(&self, dirs: &InstanceDirs) -> Result<Bootstrap, LocalError> {
        let b = self.initdb();
        let creating = !dirs.root.join("pgdata/PG_VERSION").exists();
        if let Some(recovery) = self
            .cluster
            .spec
            .bootstrap
            .as_ref()
            .and_then(|b| b.recovery.as_ref())
        {
            let store_file = self
                .state
                .cluster_dir(self.namespace, &self.name())
                .join(RECOVERY_STORE_FILE);
            if creating || !store_file.exists() {
                return self.recovery(recovery);
            }
            // Recovered already: keep the spec as it was (the store is not read again).
            return Ok(Bootstrap::Recovery {
                store_file,
                backup_id: recovery
                    .recovery_target
                    .as_ref()
                    .and_then(|t| t.backup_id.clone()),
                target_time: None,
                target_lsn: None,
                recovery_settings: pgherd_controller::recovery::recovery_settings(
                    recovery.recovery_target.as_ref(),
                )
                .map_err(LocalError::Invalid)?,
                database: self.database.clone(),
                owner: self.owner.clone(),
                owner_password_file: Some(self.password_file.clone()),
            });
        }
        let with_refs = |inline: &Option<Vec<String>>, field: &str, refs: Option<&SqlRefs>| {
            let mut all = inline.clone().unwrap_or_default();
            if creating {
                all.extend(key_refs::sql(self.state, self.namespace, field, refs)?);
            }
            Ok::<_, LocalError>(all)
        };
        Ok(Bootstrap::Initdb {
            initdb_args: pgherd_instance_manager::InitDbOptions::from_spec(&b).args()?,
            database: self.database.clone(),
            owner: self.owner.clone(),
            owner_password_file: Some(self.password_file.clone()),
            post_init_sql: with_refs(
                &b.post_init_sql,
                "spec.bootstrap.initdb.postInitSQLRefs",
                b.post_init_sql_refs.as_ref(),
            )?,
            post_init_template_sql: with_refs(
                &b.post_init_template_sql,
                "spec.bootstrap.initdb.postInitTemplateSQLRefs",
                b.post_init_template_sql_refs.as_ref(),
            )?,
            post_init_application_sql: with_refs(
                &b.post_init_application_sql,
                "spec.bootstrap.initdb.postInitApplicationSQLRefs",
                b.post_init_application_sql_refs.as_ref(),
            )?,
        })
    }

    /// The spec of `instance`, or `None` while it cannot be written yet (a replica whose
    /// upstream has no ports).
    pub(crate) fn instance_spec(
        &self,
        instance: &DesiredInstance,
        dirs: &InstanceDirs,
        ports: &InstanceAddress,
    ) -> Result<Option<InstanceSpec>, LocalError> {
        let name = self.name();
        let slot_prefix = self.slot_prefix();
        let postgresql = self.cluster.spec.postgresql.as_ref();
        let mut settings: BTreeMap<String, String> = postgresql
            .and_then(|p| p.parameters.clone())
            .unwrap_or_default();
        let user_libraries = postgresql
            .and_then(|p| p.shared_preload_libraries.clone())
            .unwrap_or_default();
        let libraries = pgherd_postgres::guc::preload_libraries(
            settings.keys().map(String::as_str),
            &user_libraries,
        );
        // Created where their parameters are set, dropped where not (as CloudNativePG does).
        let managed =
            pgherd_postgres::guc::preload_libraries(settings.keys().map(String::as_str), &[]);
        let managed_extensions: BTreeMap<String, bool> =
            pgherd_postgres::guc::MANAGED_EXTENSIONS_CREATED
                .iter()
                .map(|e| ((*e).to_string(), managed.iter().any(|l| l == e)))
                .collect();
        if !libraries.is_empty() {
            settings.insert("shared_preload_libraries".into(), libraries.join(","));
        }
        for (k, v) in mandatory_settings(&name, ports.host, dirs, &self.certificates) {
            settings.insert(k.to_string(), v);
        }
        // synchronizeLogicalDecoding: standbys keep copies of the failover-enabled logical
        // slots (PostgreSQL 17+), so a subscription follows a switchover of its publisher.
        let synchronize_logical = self
            .cluster
            .spec
            .replication_slots
            .as_ref()
            .and_then(|r| r.high_availability.as_ref())
            .and_then(|h| h.synchronize_logical_decoding)
            == Some(true);
        if synchronize_logical && self.major >= 17 {
            settings.insert("sync_replication_slots".into(), "on".into());
            settings.insert("hot_standby_feedback".into(), "on".into());
        }
        // A replica whose primary changed reconnects within a second, not PostgreSQL's 5 s
        // (a switchover needs its target streaming). The user's value wins.
        settings
            .entry("wal_retrieve_retry_interval".to_string())
            .or_insert_with(|| "1s".to_string());
        if instance.role == DesiredRole::Primary {
            settings.insert(
                "synchronous_standby_names".into(),
                self.plan.synchronous_standby_names.clone(),
            );
        }
        let upstream = match (&instance.upstream, instance.role) {
            (Some(up), DesiredRole::Replica) => match self.ports.get(up) {
                Some(p) => Some(PrimaryEndpoint {
                    name: up.clone(),
                    host: p.host.to_string(),
                    port: p.postgres,
                    slot: Some(replication_slot_name(&slot_prefix, &instance.name)),
                    socket_dir: dirs
                        .root
                        .parent()
                        .map(|instances| crate::sockets::socket_dir(&instances.join(up))),
                }),
                None => return Ok(None),
            },
            _ => None,
        };
        let primary_duties = instance.role == DesiredRole::Primary;
        Ok(Some(InstanceSpec {
            cluster: name,
            name: instance.name.clone(),
            generation: 0,
            pgdata: dirs.root.join("pgdata"),
            socket_dir: dirs.run.clone(),
            log_dir: dirs.log.clone(),
            listen_host: ports.host.to_string(),
            port: ports.postgres,
            status_port: ports.status,
            metrics_port: ports.metrics,
            monitoring: self.monitoring.clone(),
            bin_dir: self.bin_dir.clone(),
            major: self.major,
            os_user: self.os_user.clone(),
            role: instance.role,
            bootstrap: match instance.data_source {
                DataSource::Initdb => self.bootstrap(dirs)?,
                DataSource::Clone => match (&self.wal_store, self.replicas_from_store()) {
                    (Some(store), true) => Bootstrap::FromObjectStore {
                        store_file: store.store_file.clone(),
                    },
                    _ => Bootstrap::Clone,
                },
            },
            primary: upstream,
            settings,
            pg_hba: postgresql
                .and_then(|p| p.pg_hba.clone())
                .unwrap_or_default(),
            pg_ident: postgresql
                .and_then(|p| p.pg_ident.clone())
                .unwrap_or_default(),
            certificates: self.certificates.clone(),
            // Every other instance may stream from whichever instance is primary.
            replica_slots: self
                .plan
                .instances
                .iter()
                .filter(|i| i.name != instance.name)
                .map(|i| replication_slot_name(&slot_prefix, &i.name))
                .collect(),
            slot_prefix,
            fenced: instance.fenced,
            restart_token: instance.restart_token.clone(),
            roles: if primary_duties {
                self.roles.clone()
            } else {
                Vec::new()
            },
            databases: if primary_duties {
                self.databases.clone()
            } else {
                Vec::new()
            },
            publications: if primary_duties {
                self.publications.clone()
            } else {
                Vec::new()
            },
            subscriptions: if primary_duties {
                self.subscriptions.clone()
            } else {
                Vec::new()
            },
            peers: self
                .plan
                .instances
                .iter()
                .filter(|i| i.name != instance.name)
                .filter_map(|i| {
                    self.ports.get(&i.name).map(|p| Peer {
                        name: i.name.clone(),
                        host: p.host.to_string(),
                        status_port: p.status,
                    })
                })
                .collect(),
            lease_ms: u64::try_from(pgherd_controller::ha::PRIMARY_LEASE.as_millis())
                .unwrap_or(u64::MAX),
            lease_token: Some(self.lease_token.clone()),
            superuser_password: primary_duties.then(|| self.superuser_password.clone()),
            managed_extensions: if primary_duties {
                managed_extensions
            } else {
                BTreeMap::new()
            },
            wal_store: self.wal_store.clone(),
            pooler_auth: crate::pooler::uses_builtin_auth(self.state, self.namespace, &self.name()),
        }))
    }
}
