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
            run: root.join("run"),
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
        // WAL archiving to an object store comes with backups; until then it succeeds at once.
        ("archive_command", ":".to_string()),
    ]
}

/// What every instance spec of one cluster shares in a pass.
pub(crate) struct ClusterContext<'a> {
    pub(crate) state: &'a StateDir,
    pub(crate) namespace: &'a str,
    pub(crate) cluster: &'a Cluster,
    pub(crate) plan: &'a Plan,
    pub(crate) bin_dir: PathBuf,
    pub(crate) major: u32,
    pub(crate) os_user: String,
    pub(crate) certificates: CertificatePaths,
    pub(crate) database: String,
    pub(crate) owner: String,
    pub(crate) password_file: PathBuf,
    pub(crate) roles: Vec<RoleSpec>,
    pub(crate) databases: Vec<DatabaseSpec>,
    pub(crate) monitoring: pgherd_instance_protocol::MonitoringSpec,
    pub(crate) ports: &'a BTreeMap<String, InstanceAddress>,
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

    fn initdb(&self) -> BootstrapInitDb {
        self.cluster
            .spec
            .bootstrap
            .as_ref()
            .and_then(|b| b.initdb.clone())
            .unwrap_or_default()
    }

    /// `bootstrap.initdb` for the first instance; the referenced SQL is only read while that
    /// instance is being created.
    fn bootstrap(&self, dirs: &InstanceDirs) -> Result<Bootstrap, LocalError> {
        let b = self.initdb();
        let creating = !dirs.root.join("pgdata/PG_VERSION").exists();
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
        for (k, v) in mandatory_settings(&name, ports.host, dirs, &self.certificates) {
            settings.insert(k.to_string(), v);
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
                DataSource::Clone => Bootstrap::Clone,
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
            pooler_auth: crate::pooler::uses_builtin_auth(self.state, self.namespace, &self.name()),
        }))
    }
}
