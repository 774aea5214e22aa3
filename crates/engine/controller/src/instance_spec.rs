//! One instance's spec from the plan: what every platform writes the same way (PostgreSQL
//! settings and libraries, replication slots, peers, the primary's duties, the lease). The
//! platform supplies only where things are: the instance's directories and addresses, its
//! bootstrap (which reads platform files), certificates and password files.

use crate::plan::{DesiredInstance, Plan};
use pgherd_api::cluster::replication_slot_name;
use pgherd_api::Cluster;
use pgherd_instance_protocol::{
    Bootstrap, CertificatePaths, DatabaseSpec, DesiredRole, InstanceSpec, LeaseToken,
    MonitoringSpec, PasswordSource, Peer, PrimaryEndpoint, PublicationSpec, PushedFiles, RoleSpec,
    SubscriptionSpec, TablespaceSpec, Upstream, WalStore,
};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Where an instance can be reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Address {
    /// The address its PostgreSQL and manager listen on.
    pub host: String,
    pub port: u16,
    pub status_port: u16,
    /// 0: no metrics exporter.
    pub metrics_port: u16,
    /// Its PostgreSQL's socket directory, when other instances can reach it (one machine).
    pub socket_dir: Option<PathBuf>,
}

/// Where an instance keeps its files (as its manager sees them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    pub pgdata: PathBuf,
    /// WAL's own directory (`walStorage`), if any.
    pub wal_dir: Option<PathBuf>,
    pub socket_dir: PathBuf,
    pub log_dir: PathBuf,
    /// Where each tablespace's volume is mounted (`<dir>/<name>`), on platforms that give
    /// tablespaces volumes of their own; `None`: tablespaces are not created.
    pub tablespaces_dir: Option<PathBuf>,
}

/// What every instance spec of one cluster shares in a pass.
#[derive(Debug)]
pub struct SpecContext<'a> {
    pub cluster: &'a Cluster,
    pub plan: &'a Plan,
    pub bin_dir: PathBuf,
    pub major: u32,
    pub os_user: String,
    pub certificates: CertificatePaths,
    pub roles: Vec<RoleSpec>,
    pub databases: Vec<DatabaseSpec>,
    pub publications: Vec<PublicationSpec>,
    pub subscriptions: Vec<SubscriptionSpec>,
    pub monitoring: MonitoringSpec,
    /// Every instance's address, by name (instances not placed yet are absent).
    pub addresses: &'a BTreeMap<String, Address>,
    /// Where WAL is archived, if anywhere.
    pub wal_store: Option<WalStore>,
    /// The controller's lease credential.
    pub lease_token: Option<LeaseToken>,
    /// The `postgres` role's password (`enableSuperuserAccess`).
    pub superuser_password: PasswordSource,
    /// The cluster's poolers use the built-in authentication role.
    pub pooler_auth: bool,
    /// Files sent with every instance's spec (platforms that push specs).
    pub files: PushedFiles,
    /// Every instance runs where the declared tablespaces' volumes are mounted (no pod of an
    /// older template left): the primary may create the missing ones.
    pub tablespace_volumes_everywhere: bool,
    /// The old data of a major upgrade may go ([`crate::major_upgrade::old_data_may_go`]).
    pub discard_older_majors: bool,
    /// A replica cluster's source, as the platform reaches it: its primary follows it as the
    /// designated primary (see [`crate::external::upstream`]).
    pub replica_of: Option<Upstream>,
}

/// The application database, its owner and the Secret holding the owner's password (the
/// bootstrap's, else `NAME-app`).
pub fn application(cluster: &Cluster) -> (String, String, String) {
    let name = cluster.metadata.name.clone().unwrap_or_default();
    let bootstrap = cluster.spec.bootstrap.as_ref();
    let recovery = bootstrap.and_then(|b| b.recovery.as_ref());
    let clone = bootstrap.and_then(|b| b.pg_basebackup.as_ref());
    let (database, owner, secret) = match (recovery, clone) {
        (Some(r), _) => (
            r.database.clone(),
            r.owner.clone(),
            r.secret.as_ref().map(|s| s.name.clone()),
        ),
        (None, Some(c)) => (
            c.database.clone(),
            c.owner.clone(),
            c.secret.as_ref().map(|s| s.name.clone()),
        ),
        (None, None) => {
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

/// Settings pgherd fixes whatever the manifest says (as CloudNativePG's mandatory settings).
fn mandatory_settings(
    cluster: &str,
    host: &str,
    place: &Placement,
    certs: &CertificatePaths,
) -> Vec<(&'static str, String)> {
    vec![
        ("listen_addresses", host.to_string()),
        (
            "unix_socket_directories",
            place.socket_dir.display().to_string(),
        ),
        ("hot_standby", "on".to_string()),
        ("restart_after_crash", "off".to_string()),
        ("ssl", "on".to_string()),
        ("ssl_cert_file", certs.server_cert.display().to_string()),
        ("ssl_key_file", certs.server_key.display().to_string()),
        ("ssl_ca_file", certs.client_ca().display().to_string()),
        ("cluster_name", cluster.to_string()),
        ("log_directory", place.log_dir.display().to_string()),
        ("archive_command", ":".to_string()),
    ]
}

impl SpecContext<'_> {
    fn name(&self) -> String {
        self.cluster.metadata.name.clone().unwrap_or_default()
    }

    /// The prefix of the replication slots the controller owns.
    pub fn slot_prefix(&self) -> String {
        self.cluster
            .spec
            .replication_slots
            .as_ref()
            .and_then(|r| r.high_availability.as_ref())
            .and_then(|h| h.slot_prefix.clone())
            .unwrap_or_else(|| "_cnpg_".to_string())
    }

    fn settings(&self, instance: &DesiredInstance, host: &str, place: &Placement) -> Settings {
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
        for (k, v) in mandatory_settings(&self.name(), host, place, &self.certificates) {
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
        // `replica.minApplyDelay`: every instance of a replica cluster applies the source's
        // WAL that much later (gone once it is promoted).
        if let Some(delay) = self
            .cluster
            .spec
            .replica
            .as_ref()
            .filter(|_| self.cluster.is_replica())
            .and_then(|r| r.min_apply_delay.as_deref())
            .and_then(|d| pgherd_api::duration::parse_go_duration(d).ok())
        {
            settings.insert(
                "recovery_min_apply_delay".into(),
                format!("{}ms", delay.as_millis()),
            );
        }
        let temporary = temporary_tablespaces(self.cluster, place);
        if !temporary.is_empty() {
            settings.insert("temp_tablespaces".into(), temporary);
        }
        if instance.role == DesiredRole::Primary {
            settings.insert(
                "synchronous_standby_names".into(),
                self.plan.synchronous_standby_names.clone(),
            );
        }
        Settings {
            settings,
            managed_extensions,
        }
    }

    /// The spec of `instance` placed at `place` and reachable at `addresses[instance]`, or
    /// `None` while it cannot be written yet (it has no address, or it is a replica whose
    /// upstream has none).
    pub fn instance_spec(
        &self,
        instance: &DesiredInstance,
        place: &Placement,
        bootstrap: Bootstrap,
    ) -> Option<InstanceSpec> {
        let address = self.addresses.get(&instance.name)?;
        let slot_prefix = self.slot_prefix();
        let postgresql = self.cluster.spec.postgresql.as_ref();
        let Settings {
            settings,
            managed_extensions,
        } = self.settings(instance, &address.host, place);
        let upstream = match (&instance.upstream, instance.role) {
            (Some(up), DesiredRole::Replica) => {
                let p = self.addresses.get(up)?;
                Some(PrimaryEndpoint {
                    name: up.clone(),
                    host: p.host.clone(),
                    port: p.port,
                    slot: Some(replication_slot_name(&slot_prefix, &instance.name)),
                    socket_dir: p.socket_dir.clone(),
                })
            }
            _ => None,
        };
        // A replica cluster's designated primary cannot write: no roles, databases or
        // subscriptions to apply until it is promoted.
        let designated = (instance.role == DesiredRole::Primary)
            .then(|| self.replica_of.clone())
            .flatten();
        if instance.role == DesiredRole::Primary
            && crate::external::follows_source(self.cluster)
            && designated.is_none()
        {
            // Without its source a replica cluster's primary (or one promoted with a token it
            // has not reached) would be told to accept writes at once (a promotion): its spec
            // waits until the platform can say what it follows.
            return None;
        }
        let primary_duties = instance.role == DesiredRole::Primary && designated.is_none();
        Some(InstanceSpec {
            cluster: self.name(),
            name: instance.name.clone(),
            generation: 0,
            pgdata: place.pgdata.clone(),
            wal_dir: place.wal_dir.clone(),
            socket_dir: place.socket_dir.clone(),
            log_dir: place.log_dir.clone(),
            listen_host: address.host.clone(),
            port: address.port,
            status_port: address.status_port,
            metrics_port: address.metrics_port,
            monitoring: self.monitoring.clone(),
            bin_dir: self.bin_dir.clone(),
            major: self.major,
            os_user: self.os_user.clone(),
            role: instance.role,
            bootstrap,
            primary: upstream,
            upstream: designated,
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
            roles: duty(primary_duties, &self.roles),
            tablespaces: tablespaces(self.cluster, place)
                .into_iter()
                .map(|t| TablespaceSpec {
                    creatable: self.tablespace_volumes_everywhere,
                    ..t
                })
                .collect(),
            tablespace_volumes: place.tablespaces_dir.is_some(),
            databases: duty(primary_duties, &self.databases),
            publications: duty(primary_duties, &self.publications),
            subscriptions: duty(primary_duties, &self.subscriptions),
            peers: self
                .plan
                .instances
                .iter()
                .filter(|i| i.name != instance.name)
                .filter_map(|i| {
                    self.addresses.get(&i.name).map(|p| Peer {
                        name: i.name.clone(),
                        host: p.host.clone(),
                        status_port: p.status_port,
                    })
                })
                .collect(),
            lease_ms: u64::try_from(crate::ha::PRIMARY_LEASE.as_millis()).unwrap_or(u64::MAX),
            lease_token: self.lease_token.clone(),
            superuser_password: primary_duties.then(|| self.superuser_password.clone()),
            managed_extensions: if primary_duties {
                managed_extensions
            } else {
                BTreeMap::new()
            },
            wal_store: self.wal_store.clone(),
            pooler_auth: self.pooler_auth,
            discard_older_majors: self.discard_older_majors,
            files: self.files.clone(),
        })
    }
}

/// `spec.tablespaces` where `place` mounts their volumes: `<dir>/<name>/data`, a directory
/// inside the volume (as CloudNativePG lays them out), never the mount point itself.
pub fn tablespaces(cluster: &Cluster, place: &Placement) -> Vec<TablespaceSpec> {
    let Some(dir) = &place.tablespaces_dir else {
        return Vec::new();
    };
    cluster
        .spec
        .tablespaces
        .iter()
        .flatten()
        .map(|t| TablespaceSpec {
            name: t.name.clone(),
            owner: t.owner.as_ref().and_then(|o| o.name.clone()),
            location: dir.join(&t.name).join("data"),
            temporary: t.temporary == Some(true),
            creatable: false,
        })
        .collect()
}

/// `temp_tablespaces` for the tablespaces marked `temporary` (quoted identifiers), or empty.
fn temporary_tablespaces(cluster: &Cluster, place: &Placement) -> String {
    tablespaces(cluster, place)
        .iter()
        .filter(|t| t.temporary)
        .filter_map(|t| pgherd_postgres::quote::quote_identifier(&t.name).ok())
        .collect::<Vec<_>>()
        .join(",")
}

/// What only the primary does: the rest get nothing.
fn duty<T: Clone>(primary: bool, all: &[T]) -> Vec<T> {
    if primary {
        all.to_vec()
    } else {
        Vec::new()
    }
}

struct Settings {
    settings: BTreeMap<String, String>,
    managed_extensions: BTreeMap<String, bool>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn place(tablespaces_dir: Option<&str>) -> Placement {
        Placement {
            pgdata: "/d".into(),
            wal_dir: None,
            socket_dir: "/s".into(),
            log_dir: "/l".into(),
            tablespaces_dir: tablespaces_dir.map(PathBuf::from),
        }
    }

    #[test]
    fn tablespaces_live_in_a_data_directory_on_their_volume() {
        let cluster: Cluster = serde_json::from_value(serde_json::json!({
            "apiVersion": "postgresql.cnpg.io/v1", "kind": "Cluster",
            "metadata": {"name": "pg"},
            "spec": {"instances": 2, "storage": {"size": "1Gi"}, "tablespaces": [
                {"name": "reports", "owner": {"name": "app"}, "storage": {"size": "1Gi"}},
                {"name": "Scratch", "temporary": true, "storage": {"size": "1Gi"}},
                {"name": "tmp2", "temporary": true, "storage": {"size": "1Gi"}}
            ]}
        }))
        .unwrap();
        let at = place(Some("/var/lib/postgresql/tablespaces"));
        let t = tablespaces(&cluster, &at);
        assert_eq!(
            t[0],
            TablespaceSpec {
                name: "reports".into(),
                owner: Some("app".into()),
                location: "/var/lib/postgresql/tablespaces/reports/data".into(),
                temporary: false,
                creatable: false,
            }
        );
        assert_eq!(
            t[1].location,
            PathBuf::from("/var/lib/postgresql/tablespaces/Scratch/data")
        );
        assert_eq!(temporary_tablespaces(&cluster, &at), "\"Scratch\",\"tmp2\"");
        // A platform without tablespace volumes creates none and sets nothing.
        assert!(tablespaces(&cluster, &place(None)).is_empty());
        assert!(temporary_tablespaces(&cluster, &place(None)).is_empty());
    }

    #[test]
    fn a_replica_clusters_primary_follows_its_source_or_waits_for_it() {
        let cluster: Cluster = serde_json::from_value(serde_json::json!({
            "apiVersion": "postgresql.cnpg.io/v1", "kind": "Cluster",
            "metadata": {"name": "mirror"},
            "spec": {"instances": 2, "storage": {"size": "1Gi"},
                "replica": {"enabled": true, "source": "shop", "minApplyDelay": "1h30m"},
                "bootstrap": {"pg_basebackup": {"source": "shop"}},
                "externalClusters": [{"name": "shop", "connectionParameters": {"host": "shop-rw"}}]}
        }))
        .unwrap();
        let instance = |serial: u32, role| DesiredInstance {
            serial,
            name: format!("mirror-{serial}"),
            role,
            data_source: crate::plan::DataSource::Clone,
            restart_token: String::new(),
            upstream: (role == DesiredRole::Replica).then(|| "mirror-1".to_string()),
            fenced: false,
        };
        let plan = Plan {
            instances: vec![
                instance(1, DesiredRole::Primary),
                instance(2, DesiredRole::Replica),
            ],
            remove: vec![],
            phase: crate::phase::HEALTHY,
            current_primary: Some("mirror-1".into()),
            target_primary: Some("mirror-1".into()),
            ready_instances: 2,
            latest_serial: 2,
            fence: vec![],
            synchronous_standby_names: String::new(),
            blocked: None,
            hibernation: Default::default(),
        };
        let addresses: BTreeMap<String, Address> = (1..=2)
            .map(|i| {
                (
                    format!("mirror-{i}"),
                    Address {
                        host: format!("10.0.0.{i}"),
                        port: 5432,
                        status_port: 8000,
                        metrics_port: 9187,
                        socket_dir: None,
                    },
                )
            })
            .collect();
        let upstream = Upstream {
            source: "shop".into(),
            conninfo: Some("host='shop-rw'".into()),
            store_file: None,
            demote: false,
            promotion_token: None,
        };
        let mut context = SpecContext {
            cluster: &cluster,
            plan: &plan,
            bin_dir: "/bin".into(),
            major: 16,
            os_user: "postgres".into(),
            certificates: CertificatePaths::in_dir("/c".as_ref()),
            roles: vec![],
            databases: vec![],
            publications: vec![],
            subscriptions: vec![],
            monitoring: MonitoringSpec::default(),
            addresses: &addresses,
            wal_store: None,
            lease_token: None,
            superuser_password: PasswordSource::Unchanged,
            pooler_auth: false,
            files: PushedFiles::default(),
            tablespace_volumes_everywhere: true,
            discard_older_majors: false,
            replica_of: None,
        };
        let spec = |context: &SpecContext<'_>, i: usize| {
            context.instance_spec(&plan.instances[i], &place(None), Bootstrap::Clone)
        };
        // Without its source the primary's spec is not written (it would promote it).
        assert!(spec(&context, 0).is_none());
        context.replica_of = Some(upstream.clone());
        let primary = spec(&context, 0).unwrap();
        assert_eq!(primary.upstream, Some(upstream));
        let replica = spec(&context, 1).unwrap();
        assert_eq!(replica.upstream, None);
        assert_eq!(replica.primary.unwrap().name, "mirror-1");
        for s in [&primary.settings, &replica.settings] {
            assert_eq!(s["recovery_min_apply_delay"], "5400000ms");
        }
    }
}
