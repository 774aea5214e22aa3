//! The instance protocol: what an instance manager reports about its PostgreSQL (served as
//! JSON at `/pg/status`, CloudNativePG's path) and what the controller asks of it. Shared by
//! both sides so they cannot drift apart.
//!
//! Pure data: depends only on the model crates and serde.
//!
//! Imports: pgherd-postgres.

mod declarative;
mod logical;
mod spec;

pub use declarative::{
    ApplyResult, DatabaseSpec, ExtensionSpec, PasswordSource, RoleSpec, SchemaSpec, TablespaceSpec,
};
pub use logical::{PublicationObject, PublicationSpec, PublicationTarget, SubscriptionSpec};
pub use spec::{pushed_file_path, pushed_files_dir};
pub use spec::{
    BackupFacts, Bootstrap, CertificatePaths, CustomQueries, DesiredRole, InstanceSpec, LeaseToken,
    MonitoringSpec, Peer, PrimaryEndpoint, PushedFiles, Upstream, WalStore, PUSHED_FILES_DIR,
};

use pgherd_postgres::Lsn;
use serde::{Deserialize, Serialize};

/// Path of the status endpoint.
pub const STATUS_PATH: &str = "/pg/status";

/// Path where a manager that takes its spec over the protocol (on Kubernetes) receives it
/// (`PUT`, JSON [`InstanceSpec`]); only the controller's certificate may write it.
pub const SPEC_PATH: &str = "/pg/spec";
/// Start (`POST`) or read (`GET`) a base backup: `?name=NAME`, the Backup object's name;
/// only from the controller's certificate.
pub const BACKUP_PATH: &str = "/pg/backup";
/// `POST`: a primary closes its current WAL segment (`pg_switch_wal()`), so the segment a
/// standby's backup ends in is archived; only from the controller's certificate.
pub const SWITCH_WAL_PATH: &str = "/pg/switch-wal";

/// The common name of the controller's client certificate (signed by the cluster CA): the
/// status endpoint renews a primary's lease only for a client presenting it.
pub const CONTROLLER_COMMON_NAME: &str = "pgherd-controller";

/// The role an instance plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Primary,
    Replica,
    /// PostgreSQL is not running (stopped, fenced, crashed, bootstrapping).
    Down,
}

/// One instance's report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InstanceStatus {
    /// Instance name (`<cluster>-<serial>`), CloudNativePG's `pod`.
    pub pod: String,
    pub role: Role,
    /// Whether it runs as primary (not in recovery).
    pub is_primary: bool,
    /// A replica cluster's designated primary: a standby of the external source that leads
    /// this cluster (its replicas follow it, `-rw` points at it) without accepting writes.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub designated_primary: bool,
    /// The token this instance issued when its primary cluster was demoted (what
    /// `status.demotionToken` shows).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub demotion_token: Option<String>,
    /// The promotion token this instance was promoted with (`status.lastPromotionToken`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promoted_with: Option<String>,
    /// Whether it accepts connections and, for a replica, streams.
    pub ready: bool,
    /// Primary: the current write position. Replica: the last replayed one.
    pub current_lsn: Option<Lsn>,
    /// Replica: the last WAL position received from the primary.
    pub received_lsn: Option<Lsn>,
    /// Replica: the last WAL position replayed.
    pub replay_lsn: Option<Lsn>,
    #[serde(rename = "timeLineID")]
    pub timeline_id: Option<u32>,
    /// PostgreSQL system identifier (as a decimal string).
    #[serde(rename = "systemID")]
    pub system_id: Option<String>,
    pub is_wal_receiver_active: bool,
    pub replay_paused: bool,
    /// A changed setting needs a restart.
    pub pending_restart: bool,
    /// The postmaster's process id.
    pub postmaster_pid: Option<u32>,
    /// Primary: its streaming replicas.
    #[serde(default)]
    pub replication_info: Vec<ReplicationInfo>,
    /// Primary: its replication slots (`pg_replication_slots`), the controller's and others.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub replication_slots: Vec<ReplicationSlotInfo>,
    pub instance_manager_version: String,
    /// The spec generation last applied.
    #[serde(default)]
    pub applied_generation: u64,
    /// The restart token of the spec PostgreSQL was last (re)started with.
    #[serde(default)]
    pub restart_token: String,
    /// What went wrong last, if anything (no secrets).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// `error` will not go away by trying again: the spec (or the machine) must change.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stuck: bool,
    /// Primary: the result of applying each managed role.
    #[serde(default)]
    pub role_results: Vec<ApplyResult>,
    /// Primary: the result of applying each Database.
    #[serde(default)]
    pub database_results: Vec<ApplyResult>,
    /// Primary: the result of applying each tablespace (by name).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tablespace_results: Vec<ApplyResult>,
    /// Primary: the result of applying each Publication (by object name).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub publication_results: Vec<ApplyResult>,
    /// Primary: the result of applying each Subscription (by object name).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subscription_results: Vec<ApplyResult>,
    /// Down after a clean shutdown: where its shutdown checkpoint record starts. A replica that
    /// received WAL past this point has everything the stopped primary committed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shutdown_checkpoint: Option<Lsn>,
    /// How long ago (milliseconds) the instance manager last looked at PostgreSQL: a report
    /// that stops getting fresher means PostgreSQL (or the manager) is stuck.
    #[serde(default)]
    pub observed_ms_ago: u64,
    /// Replica: the instance its spec says to stream from (a peer's endorsement of that
    /// primary when it also streams).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub following: Option<String>,
    /// Replica: how long ago (milliseconds) its manager last reached the primary's manager
    /// (and found it primary). Absent from managers that do not probe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream_seen_ms_ago: Option<u64>,
    /// Primary: stopped by itself because its lease ran out (isolated from the controller and
    /// from a majority of its peers).
    #[serde(default)]
    pub self_fenced: bool,
    /// Its data directory's filesystem is (nearly) full: it cannot be relied on to write.
    #[serde(default)]
    pub disk_full: bool,
    /// Primary with WAL archiving: the last outcome of `archive_command`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archive: Option<ArchiveReport>,
}

/// The last outcome of the instance's `archive_command` (CloudNativePG's `lastArchivedWAL`,
/// `lastFailedWAL`, ... and the `ContinuousArchiving` condition).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ArchiveReport {
    #[serde(
        rename = "lastArchivedWAL",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub last_archived_wal: Option<String>,
    #[serde(
        rename = "lastArchivedWALTime",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub last_archived_time: Option<String>,
    #[serde(
        rename = "lastFailedWAL",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub last_failed_wal: Option<String>,
    #[serde(
        rename = "lastFailedWALTime",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub last_failed_time: Option<String>,
    /// The last failure's message (no secrets); cleared by the next success.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

impl ArchiveReport {
    /// Whether the last attempt failed.
    pub fn failing(&self) -> bool {
        self.last_error.is_some()
    }
}

/// The query parameter with which the controller renews a primary's lease when it fetches
/// the status (`/pg/status?lease=1`); the request must carry the spec's lease token as
/// `Authorization: Bearer TOKEN`.
pub const LEASE_QUERY: &str = "lease";

/// The query parameter with which the controller asks for WAL positions sampled for this
/// request (`/pg/status?fresh=1`): the manager asks PostgreSQL before it answers (waiting a
/// bounded time), so that a failover compares positions taken after the old primary stopped.
pub const FRESH_QUERY: &str = "fresh";

/// One streaming replica as the primary sees it (`pg_stat_replication`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReplicationInfo {
    pub application_name: String,
    pub state: String,
    pub sync_state: String,
    pub sent_lsn: Option<Lsn>,
    pub write_lsn: Option<Lsn>,
    pub flush_lsn: Option<Lsn>,
    pub replay_lsn: Option<Lsn>,
    /// `write_lag`, `flush_lag` and `replay_lag` as PostgreSQL prints an interval
    /// (`00:00:00.000814`), zero when it has none (an idle standby). Absent from older managers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub write_lag: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flush_lag: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replay_lag: Option<String>,
    /// Its priority as a synchronous standby (0: asynchronous).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync_priority: Option<i32>,
}

/// One replication slot as the primary sees it (`pg_replication_slots`; CloudNativePG's
/// `replicationSlotsInfo`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReplicationSlotInfo {
    pub slot_name: String,
    /// `physical` or `logical`.
    pub slot_type: String,
    pub active: bool,
    /// Logical slots: the output plugin, the database and its OID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plugin: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub datoid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub xmin: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub catalog_xmin: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart_lsn: Option<Lsn>,
    /// `reserved`, `extended`, `unreserved` or `lost`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wal_status: Option<String>,
    /// Bytes of WAL that can still be written before the slot is in danger of losing WAL
    /// (`NULL`, absent, without `max_slot_wal_keep_size`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub safe_wal_size: Option<i64>,
}

impl InstanceStatus {
    /// The report of `pod` in `role` before anything is observed, from an instance manager of
    /// version `manager_version`.
    pub fn nothing_observed(pod: &str, role: Role, manager_version: &str) -> InstanceStatus {
        InstanceStatus {
            pod: pod.to_string(),
            role,
            is_primary: false,
            designated_primary: false,
            demotion_token: None,
            promoted_with: None,
            ready: false,
            current_lsn: None,
            received_lsn: None,
            replay_lsn: None,
            timeline_id: None,
            system_id: None,
            is_wal_receiver_active: false,
            replay_paused: false,
            pending_restart: false,
            postmaster_pid: None,
            replication_info: Vec::new(),
            replication_slots: Vec::new(),
            instance_manager_version: manager_version.to_string(),
            applied_generation: 0,
            restart_token: String::new(),
            error: None,
            stuck: false,
            role_results: Vec::new(),
            database_results: Vec::new(),
            tablespace_results: Vec::new(),
            publication_results: Vec::new(),
            subscription_results: Vec::new(),
            shutdown_checkpoint: None,
            observed_ms_ago: 0,
            following: None,
            upstream_seen_ms_ago: None,
            self_fenced: false,
            disk_full: false,
            archive: None,
        }
    }

    /// Whether it leads its cluster: a primary, or a replica cluster's designated primary.
    pub fn leads(&self) -> bool {
        self.is_primary || self.designated_primary
    }

    /// The furthest WAL position this instance has (received for a replica, written for a
    /// primary): what failover compares.
    pub fn wal_position(&self) -> Option<Lsn> {
        match self.role {
            Role::Primary => self.current_lsn,
            _ => self.received_lsn.max(self.replay_lsn),
        }
    }
}

/// How recently a replica must have reached its primary's manager for its streaming to count
/// as following that primary (see [`InstanceStatus::follows`]).
pub const UPSTREAM_REACH_MAX_AGE_MS: u64 = 1000;

impl InstanceStatus {
    /// This replica follows `primary`: its spec says to stream from it, its WAL receiver is
    /// active, and (when it reports it) it reached `primary`'s manager within
    /// [`UPSTREAM_REACH_MAX_AGE_MS`]. A WAL receiver stays "active" for its whole timeout after
    /// a partition; the reach does not.
    pub fn follows(&self, primary: &str) -> bool {
        self.following.as_deref() == Some(primary)
            && self.is_wal_receiver_active
            && self
                .upstream_seen_ms_ago
                .is_none_or(|ms| ms <= UPSTREAM_REACH_MAX_AGE_MS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_shape_is_stable() {
        let status = InstanceStatus {
            pod: "cluster-example-2".into(),
            role: Role::Replica,
            is_primary: false,
            designated_primary: false,
            demotion_token: None,
            promoted_with: None,
            ready: true,
            current_lsn: Some("0/3000148".parse().unwrap_or_default()),
            received_lsn: Some("0/3000200".parse().unwrap_or_default()),
            replay_lsn: Some("0/3000148".parse().unwrap_or_default()),
            timeline_id: Some(1),
            system_id: Some("7300000000000000001".into()),
            is_wal_receiver_active: true,
            replay_paused: false,
            pending_restart: false,
            postmaster_pid: Some(42),
            replication_info: vec![],
            replication_slots: vec![],
            instance_manager_version: "0.1.0".into(),
            applied_generation: 3,
            restart_token: String::new(),
            error: None,
            stuck: false,
            role_results: vec![],
            database_results: vec![],
            tablespace_results: vec![],
            publication_results: vec![],
            subscription_results: vec![],
            shutdown_checkpoint: None,
            observed_ms_ago: 0,
            following: None,
            upstream_seen_ms_ago: None,
            self_fenced: false,
            disk_full: false,
            archive: None,
        };
        let json = serde_json::to_value(&status).unwrap_or_default();
        assert_eq!(json["receivedLsn"], "0/3000200");
        assert_eq!(json["timeLineID"], 1);
        assert_eq!(json["role"], "replica");
        let back: InstanceStatus = serde_json::from_value(json).unwrap_or_else(|_| status.clone());
        assert_eq!(back, status);
        assert_eq!(
            status.wal_position().map(|l| l.to_string()).as_deref(),
            Some("0/3000200")
        );
    }

    #[test]
    fn a_replica_follows_its_primary_only_while_it_reaches_it() {
        let mut s = InstanceStatus::nothing_observed("pg-2", Role::Replica, "test");
        s.following = Some("pg-1".into());
        s.is_wal_receiver_active = true;
        assert!(
            s.follows("pg-1"),
            "a manager that does not report the reach"
        );
        assert!(!s.follows("pg-3"));
        s.upstream_seen_ms_ago = Some(200);
        assert!(s.follows("pg-1"));
        // Cut off: its WAL receiver still says active until its own timeout.
        s.upstream_seen_ms_ago = Some(UPSTREAM_REACH_MAX_AGE_MS + 1);
        assert!(!s.follows("pg-1"));
        s.upstream_seen_ms_ago = Some(0);
        s.is_wal_receiver_active = false;
        assert!(!s.follows("pg-1"));
    }
}
