//! What the controller asks of one instance manager: the desired state of its PostgreSQL.
//! The local platform writes it as `instance.json` next to the instance's data; the instance
//! manager re-reads it and converges.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// A secret shared by the controller and one cluster's instance managers; never printed.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct LeaseToken(pub String);

impl std::fmt::Debug for LeaseToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LeaseToken(redacted)")
    }
}

impl LeaseToken {
    /// Whether `offered` is this token, in time independent of where they differ.
    pub fn accepts(&self, offered: &str) -> bool {
        let (a, b) = (self.0.as_bytes(), offered.as_bytes());
        a.len() == b.len()
            && !a.is_empty()
            && a.iter().zip(b).fold(0u8, |d, (x, y)| d | (x ^ y)) == 0
    }
}

/// Files the controller sends with a pushed spec (passwords, object-store credentials), by
/// name: the manager writes each, mode 0600, into [`PUSHED_FILES_DIR`] beside its spec before
/// the spec takes effect, and removes those no longer sent. Never printed.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PushedFiles(pub BTreeMap<String, String>);

impl std::fmt::Debug for PushedFiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.0.keys()).finish()
    }
}

impl PushedFiles {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether `name` may name a pushed file: a plain file name, nothing a path could hide
    /// behind (`..`, `/`, a leading dot).
    pub fn valid_name(name: &str) -> bool {
        !name.is_empty()
            && name.len() <= 100
            && !name.starts_with('.')
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    }
}

/// The directory, beside a pushed spec's file, where its [`PushedFiles`] are written.
pub const PUSHED_FILES_DIR: &str = "pushed";

/// Where the pushed files are, for the manager whose spec is at `spec_path`.
pub fn pushed_files_dir(spec_path: &std::path::Path) -> PathBuf {
    spec_path
        .parent()
        .unwrap_or(std::path::Path::new("/"))
        .join(PUSHED_FILES_DIR)
}

/// Where the pushed file `name` is, for the manager whose spec is at `spec_path`.
pub fn pushed_file_path(spec_path: &std::path::Path, name: &str) -> PathBuf {
    pushed_files_dir(spec_path).join(name)
}

/// The role the controller wants an instance to have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DesiredRole {
    Primary,
    Replica,
}

/// Where a replica streams from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PrimaryEndpoint {
    /// The primary's instance name.
    #[serde(default)]
    pub name: String,
    pub host: String,
    pub port: u16,
    /// The slot the primary keeps for this replica.
    pub slot: Option<String>,
    /// The primary's unix socket directory, when it runs on this machine (the local platform):
    /// a clone tool built without TLS support copies through it, as the PostgreSQL user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub socket_dir: Option<PathBuf>,
}

/// TLS files of the instance (all PEM, keys mode 0600, owned by the PostgreSQL user).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CertificatePaths {
    /// The cluster's own CA: the status endpoint checks the controller's client certificate
    /// against it; also the server and client CA unless those are set.
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    /// `streaming_replica` client certificate and key.
    pub replication_cert: PathBuf,
    pub replication_key: PathBuf,
    /// The CA that issued the server certificates (a user's `serverCASecret`): what replicas
    /// and peers verify an instance against. `ca` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_ca: Option<PathBuf>,
    /// The CA PostgreSQL checks client certificates against (`ssl_ca_file`; a user's
    /// `clientCASecret`). `ca` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_ca: Option<PathBuf>,
}

impl CertificatePaths {
    /// The usual file names inside `dir`, one CA for everything.
    pub fn in_dir(dir: &std::path::Path) -> Self {
        CertificatePaths {
            ca: dir.join("ca.crt"),
            server_cert: dir.join("server.crt"),
            server_key: dir.join("server.key"),
            replication_cert: dir.join("streaming_replica.crt"),
            replication_key: dir.join("streaming_replica.key"),
            server_ca: None,
            client_ca: None,
        }
    }

    /// The CA server certificates chain to.
    pub fn server_ca(&self) -> &std::path::Path {
        self.server_ca.as_deref().unwrap_or(&self.ca)
    }

    /// The CA client certificates chain to.
    pub fn client_ca(&self) -> &std::path::Path {
        self.client_ca.as_deref().unwrap_or(&self.ca)
    }
}

/// How an empty instance gets its data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "method")]
pub enum Bootstrap {
    /// `initdb`, then the application database.
    Initdb {
        /// Raw `initdb` arguments (computed by the controller from `bootstrap.initdb`).
        initdb_args: Vec<String>,
        /// Application database and owner.
        database: String,
        owner: String,
        /// File holding the owner's password (mode 0600).
        owner_password_file: Option<PathBuf>,
        /// SQL run in `postgres`, `template1` and the application database, in order.
        #[serde(default)]
        post_init_sql: Vec<String>,
        #[serde(default)]
        post_init_template_sql: Vec<String>,
        #[serde(default)]
        post_init_application_sql: Vec<String>,
    },
    /// Copy of the primary (`pg_basebackup`).
    Clone,
    /// A copy of another PostgreSQL server (`bootstrap.pg_basebackup`): `pg_basebackup` over
    /// the external cluster's connection, then started as this cluster's primary on the
    /// source's timeline; the application role's password and database are then ensured.
    CloneSource {
        /// The external cluster's name (for messages).
        source: String,
        /// Its libpq connection string (credentials only as file paths: `passfile`,
        /// `sslcert`, `sslkey`, `sslrootcert`).
        conninfo: String,
        database: String,
        owner: String,
        owner_password_file: Option<PathBuf>,
    },
    /// A replica made from the latest base backup in the cluster's object store, which then
    /// replays the archived WAL and streams from the primary (no base backup load on it).
    FromObjectStore {
        /// The cluster's store (JSON, mode 0600).
        store_file: PathBuf,
    },
    /// A base backup from an object store, then WAL replayed from its archive up to the
    /// recovery target, then promoted (`bootstrap.recovery`).
    Recovery {
        /// The source's store (configuration and secrets; JSON, mode 0600).
        store_file: PathBuf,
        /// `recoveryTarget.backupID` (or the Backup object's id); else chosen by the target.
        backup_id: Option<String>,
        /// `recoveryTarget.targetTime` / `targetLSN`, for choosing the backup.
        target_time: Option<String>,
        target_lsn: Option<String>,
        /// `recovery_target_*` settings while recovering.
        recovery_settings: BTreeMap<String, String>,
        /// Application database and owner (`recovery.database` / `recovery.owner`).
        database: String,
        owner: String,
        owner_password_file: Option<PathBuf>,
    },
}

/// What a replica cluster's designated primary follows (`spec.replica.source`): it streams over
/// `conninfo` and/or restores WAL from the source's object store, and never accepts writes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Upstream {
    /// The external cluster's name (for messages).
    pub source: String,
    /// Its libpq connection string (credentials only as file paths), when it streams.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conninfo: Option<String>,
    /// Its object store (JSON, mode 0600), when WAL is restored from there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store_file: Option<PathBuf>,
    /// The cluster was a primary cluster demoted into a replica of this source (the
    /// distributed topology): a data directory that ran as a writable primary is shut down
    /// cleanly, its demotion token issued, and then follows. Without it such a data directory
    /// is refused (its WAL could have diverged from the source's).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub demote: bool,
    /// A promotion token (`spec.replica.promotionToken`): promote once past its checkpoint,
    /// on its timeline of its system, and follow the source until then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promotion_token: Option<String>,
}

/// The desired state of one instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InstanceSpec {
    pub cluster: String,
    /// Instance name (`<cluster>-<serial>`).
    pub name: String,
    /// Bumped by the controller on every change, echoed in status once applied.
    pub generation: u64,
    pub pgdata: PathBuf,
    /// Where WAL is kept when it has a volume of its own (`walStorage`): PGDATA's `pg_wal`
    /// links there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wal_dir: Option<PathBuf>,
    pub socket_dir: PathBuf,
    pub log_dir: PathBuf,
    /// The address PostgreSQL and the instance manager listen on (loopback unless the
    /// instance runs in its own network namespace).
    #[serde(default = "loopback")]
    pub listen_host: String,
    /// PostgreSQL's TCP port (on `listen_host`).
    pub port: u16,
    /// The instance manager's HTTP status port (on `listen_host`).
    pub status_port: u16,
    /// The metrics exporter's port (on `listen_host`); 0: no exporter.
    #[serde(default)]
    pub metrics_port: u16,
    /// What the metrics exporter runs.
    #[serde(default)]
    pub monitoring: MonitoringSpec,
    /// Directory of the PostgreSQL server binaries.
    pub bin_dir: PathBuf,
    pub major: u32,
    /// Operating-system user PostgreSQL runs as.
    pub os_user: String,
    pub role: DesiredRole,
    pub bootstrap: Bootstrap,
    /// For a replica: where to stream from.
    pub primary: Option<PrimaryEndpoint>,
    /// For the primary of a replica cluster (its designated primary): the external cluster it
    /// follows as a standby instead of accepting writes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream: Option<Upstream>,
    /// `postgresql.conf` settings.
    pub settings: BTreeMap<String, String>,
    /// User `pg_hba` lines (after the fixed rules).
    #[serde(default)]
    pub pg_hba: Vec<String>,
    /// User `pg_ident` lines.
    #[serde(default)]
    pub pg_ident: Vec<String>,
    pub certificates: CertificatePaths,
    /// For a primary: slots to keep for its replicas (others with the same prefix are dropped).
    #[serde(default)]
    pub replica_slots: Vec<String>,
    /// Slot name prefix owned by the operator.
    pub slot_prefix: String,
    /// Keep PostgreSQL stopped.
    #[serde(default)]
    pub fenced: bool,
    /// Changing it restarts PostgreSQL (rolling restarts, settings that need a restart).
    #[serde(default)]
    pub restart_token: String,
    /// For a primary: managed roles to keep in the declared state.
    #[serde(default)]
    pub roles: Vec<crate::RoleSpec>,
    /// For a primary: databases to keep in the declared state.
    #[serde(default)]
    pub databases: Vec<crate::DatabaseSpec>,
    /// Every instance makes their locations; the primary creates them (never drops one).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tablespaces: Vec<crate::TablespaceSpec>,
    /// The platform mounts a volume per declared tablespace: a restored backup's tablespaces
    /// must be among `tablespaces` and go to their locations (else to the paths the backup
    /// recorded).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub tablespace_volumes: bool,
    /// For a primary: publications to keep in the declared state.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub publications: Vec<crate::PublicationSpec>,
    /// For a primary: subscriptions to keep in the declared state.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subscriptions: Vec<crate::SubscriptionSpec>,
    /// The other instances' managers (a primary renews its lease through a majority of them
    /// when the controller is away).
    #[serde(default)]
    pub peers: Vec<Peer>,
    /// For a primary: how long (milliseconds) it may accept writes without hearing from the
    /// controller or a majority of its peers; 0 disables self-fencing.
    #[serde(default)]
    pub lease_ms: u64,
    /// The controller's credential for renewing the lease: a renewal without it is refused, so
    /// no other local user can keep an isolated primary writable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_token: Option<LeaseToken>,
    /// For a primary: the `postgres` role's password (`enableSuperuserAccess`): from a file,
    /// or none at all (`PASSWORD NULL`) when superuser access is disabled; `None` leaves it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub superuser_password: Option<crate::PasswordSource>,
    /// For a primary: extensions CloudNativePG manages (`pg_stat_statements`, `pgaudit`), by
    /// name: `true` to create in every database that accepts connections (their parameters
    /// are set), `false` to drop.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub managed_extensions: BTreeMap<String, bool>,
    /// The object store WAL is archived to (and replicas restore from); `None`:
    /// `archive_command` does nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wal_store: Option<WalStore>,
    /// Files sent with a pushed spec (see [`PushedFiles`]); empty where the platform writes
    /// files itself (local).
    #[serde(default, skip_serializing_if = "PushedFiles::is_empty")]
    pub files: PushedFiles,
    /// For a primary: keep PgBouncer's authentication role `cnpg_pooler_pgbouncer` and
    /// `public.user_search(text)` (a Pooler with built-in authentication uses the cluster);
    /// false drops them.
    #[serde(default)]
    pub pooler_auth: bool,
    /// The cluster runs healthy on this major after a major upgrade: data of older majors
    /// set aside beside PGDATA (`pgdata.major-N`) and their tablespace directories may go.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub discard_older_majors: bool,
}

/// An object store folder for WAL, as the commands PostgreSQL runs see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WalStore {
    /// The store's configuration and secrets (JSON, mode 0600, readable by `os_user`).
    pub store_file: PathBuf,
    /// Archive even into a folder that already holds WAL
    /// (`cnpg.io/skipEmptyWalArchiveCheck: enabled`).
    #[serde(default)]
    pub skip_empty_check: bool,
}

/// The metrics exporter's queries (`spec.monitoring` with its references resolved).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MonitoringSpec {
    /// Serve only the custom queries and the collector's own metrics.
    #[serde(default)]
    pub disable_default_queries: bool,
    /// Custom query files (CloudNativePG's YAML format), in the order they apply.
    #[serde(default)]
    pub custom_queries: Vec<CustomQueries>,
    /// How long query results are cached, in seconds (`metricsQueriesTTL`); 0: not cached.
    #[serde(default)]
    pub queries_ttl_seconds: u64,
    /// What the platform knows of the cluster's backups (from its catalog).
    #[serde(default)]
    pub backups: BackupFacts,
}

/// The cluster's backups as the `cnpg_collector_*backup*` metrics report them, in seconds since
/// the epoch; `None` (no backup yet) is reported as 0, as CloudNativePG does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BackupFacts {
    pub first_recoverability_point: Option<i64>,
    pub last_available_backup: Option<i64>,
    pub last_failed_backup: Option<i64>,
}

/// One custom query file and where it came from (for error messages).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CustomQueries {
    /// `ConfigMap/NAME key KEY` or `Secret/NAME key KEY`.
    pub source: String,
    pub yaml: String,
}

fn loopback() -> String {
    "127.0.0.1".to_string()
}

/// Another instance's manager.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Peer {
    pub name: String,
    pub host: String,
    /// Its instance-protocol (status) port.
    pub status_port: u16,
}
