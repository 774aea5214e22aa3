//! The spec each instance manager gets (`instance.json`): the controller's decision for that
//! instance, rendered with the local platform's directories, ports, certificates and the
//! settings it fixes.

use crate::key_refs;
use crate::state::StateDir;
use crate::LocalError;
use pgherd_api::cluster::BootstrapInitDb;
use pgherd_api::common::SqlRefs;
use pgherd_controller::instance_spec::{Address, Placement, SpecContext};
use pgherd_controller::plan::{DataSource, DesiredInstance};
use pgherd_instance_protocol::{Bootstrap, InstanceSpec};
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

pub use pgherd_controller::instance_spec::application;

/// Where new replicas get their data: `primary` (a copy of it, the default) or
/// `object-store` (the latest backup, then the archived WAL, then streaming).
pub const REPLICA_SOURCE_ANNOTATION: &str = "pgherd.io/replica-source";

/// File (in the cluster's directory) holding the recovery source's store.
pub const RECOVERY_STORE_FILE: &str = "recovery-store.json";

/// What every instance spec of one cluster shares in a pass: the platform-neutral part
/// ([`SpecContext`]) and where the local platform keeps things.
pub(crate) struct ClusterContext<'a> {
    pub(crate) state: &'a StateDir,
    pub(crate) namespace: &'a str,
    pub(crate) user: &'a pgherd_instance_manager::OsUser,
    pub(crate) database: String,
    pub(crate) owner: String,
    pub(crate) password_file: PathBuf,
    pub(crate) ports: &'a BTreeMap<String, InstanceAddress>,
    pub(crate) spec: SpecContext<'a>,
}

/// The controller's view of the local instances' addresses (each with its socket directory,
/// which replicas on this machine may use).
pub(crate) fn addresses(
    ports: &BTreeMap<String, InstanceAddress>,
    instances_dir: &std::path::Path,
) -> BTreeMap<String, Address> {
    ports
        .iter()
        .map(|(name, p)| {
            (
                name.clone(),
                Address {
                    host: p.host.to_string(),
                    port: p.postgres,
                    status_port: p.status,
                    metrics_port: p.metrics,
                    socket_dir: Some(crate::sockets::socket_dir(&instances_dir.join(name))),
                },
            )
        })
        .collect()
}

impl ClusterContext<'_> {
    fn name(&self) -> String {
        self.spec.cluster.metadata.name.clone().unwrap_or_default()
    }

    /// Whether new replicas start from the object store's latest backup
    /// ([`REPLICA_SOURCE_ANNOTATION`] `object-store`) rather than a copy of the primary.
    fn replicas_from_store(&self) -> bool {
        self.spec
            .cluster
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(REPLICA_SOURCE_ANNOTATION))
            .is_some_and(|v| v == "object-store")
    }

    fn initdb(&self) -> BootstrapInitDb {
        self.spec
            .cluster
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
        let mut backup_id = None;
        let store = match (&recovery.source, &recovery.backup) {
            (Some(source), _) => {
                crate::stores::external_store(self.state, self.namespace, self.spec.cluster, source)?
            }
            (None, Some(backup)) => {
                let status: Option<pgherd_api::kinds::backup::BackupStatus> = crate::state::read_json(
                    &self.state.status_path("Backup", self.namespace, &backup.name),
                )?;
                pgherd_controller::recovery::check_backup_major(
                    &backup.name,
                    status.and_then(|s| s.major_version),
                    self.spec.major,
                )
                .map_err(LocalError::Invalid)?;
                let (store, id) = crate::stores::backup_store(self.state, self.namespace, &backup.name)?;
                backup_id = Some(id);
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
        pgherd_controller::recovery::bootstrap(
            recovery,
            pgherd_controller::recovery::RecoverySource {
                store_file,
                backup_id,
            },
            self.database.clone(),
            self.owner.clone(),
            self.password_file.clone(),
        )
        .map_err(LocalError::Invalid)
    }

    /// How the first instance reaches `bootstrap.pg_basebackup`'s source from this machine.
    fn clone_parameters(&self, source: &str) -> Result<BTreeMap<String, String>, LocalError> {
        let (field, external) = pgherd_controller::external::source(
            self.spec.cluster,
            source,
            "spec.bootstrap.pg_basebackup.source",
        )
        .map_err(LocalError::Invalid)?;
        let dir = self
            .state
            .cluster_dir(self.namespace, &self.name())
            .join("external");
        crate::external::parameters(
            self.state,
            self.namespace,
            external,
            &field,
            None,
            &dir,
            self.user,
        )
        .map_err(LocalError::Invalid)
    }

    /// `bootstrap.initdb` (or `bootstrap.recovery`) for the first instance; the referenced SQL
    /// and the recovery source are only read while that instance is being created.
    fn bootstrap(&self, dirs: &InstanceDirs) -> Result<Bootstrap, LocalError> {
        let b = self.initdb();
        let creating = !dirs.root.join("pgdata/PG_VERSION").exists();
        if let Some(recovery) = self
            .spec
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
        if let Some(clone) = self
            .spec
            .cluster
            .spec
            .bootstrap
            .as_ref()
            .and_then(|b| b.pg_basebackup.as_ref())
        {
            // The source is read only while the copy is to be made (it may be gone after).
            let parameters = if creating {
                self.clone_parameters(&clone.source)?
            } else {
                BTreeMap::new()
            };
            return pgherd_controller::external::clone_bootstrap(
                self.spec.cluster,
                &parameters,
                self.password_file.clone(),
            )
            .ok_or_else(|| LocalError::Invalid("spec.bootstrap.pg_basebackup: missing".into()));
        }
        let with_refs = |inline: &Option<Vec<String>>, (field, refs): (&str, Option<&SqlRefs>)| {
            let mut all = inline.clone().unwrap_or_default();
            if creating {
                all.extend(key_refs::sql(self.state, self.namespace, field, refs)?);
            }
            Ok::<_, LocalError>(all)
        };
        let [sql_refs, template_refs, application_refs] = b.post_init_refs();
        Ok(Bootstrap::Initdb {
            initdb_args: pgherd_instance_manager::InitDbOptions::from_spec(&b).args()?,
            database: self.database.clone(),
            owner: self.owner.clone(),
            owner_password_file: Some(self.password_file.clone()),
            post_init_sql: with_refs(&b.post_init_sql, sql_refs)?,
            post_init_template_sql: with_refs(&b.post_init_template_sql, template_refs)?,
            post_init_application_sql: with_refs(&b.post_init_application_sql, application_refs)?,
        })
    }

    /// The spec of `instance`, or `None` while it cannot be written yet (a replica whose
    /// upstream has no ports).
    pub(crate) fn instance_spec(
        &self,
        instance: &DesiredInstance,
        dirs: &InstanceDirs,
    ) -> Result<Option<InstanceSpec>, LocalError> {
        let bootstrap = match instance.data_source {
            DataSource::Initdb => self.bootstrap(dirs)?,
            DataSource::Clone => match (&self.spec.wal_store, self.replicas_from_store()) {
                (Some(store), true) => Bootstrap::FromObjectStore {
                    store_file: store.store_file.clone(),
                },
                _ => Bootstrap::Clone,
            },
        };
        let place = Placement {
            // One machine, one filesystem: walStorage's size has no volume to size here.
            wal_dir: None,
            pgdata: dirs.root.join("pgdata"),
            socket_dir: dirs.run.clone(),
            log_dir: dirs.log.clone(),
            // Instances on one machine share one filesystem, and WAL replay of `CREATE
            // TABLESPACE` uses the primary's path on every standby: no tablespaces here (said
            // at `local apply`).
            tablespaces_dir: None,
        };
        Ok(self.spec.instance_spec(instance, &place, bootstrap))
    }
}
