//! The machine-readable view of a local cluster (`pgherd local status CLUSTER -o json`); its
//! top-level keys are a stable contract (DESIGN.md).

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One instance in the local status view.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LocalInstanceStatus {
    pub name: String,
    /// `primary`, `replica` or `down`.
    pub role: String,
    pub ready: bool,
    pub lsn: Option<String>,
    pub lag_bytes: Option<u64>,
    /// The address PostgreSQL listens on (loopback unless in a network namespace).
    pub host: String,
    pub port: u16,
    /// The postmaster's pid.
    pub pid: Option<u32>,
    /// The instance manager's status endpoint.
    pub status_endpoint: String,
    /// The metrics exporter (`/metrics`).
    #[serde(default)]
    pub metrics: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A cluster's local status.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LocalClusterStatus {
    pub name: String,
    pub namespace: String,
    pub phase: String,
    pub instances: usize,
    pub ready_instances: usize,
    pub current_primary: Option<String>,
    pub target_primary: Option<String>,
    pub timeline: Option<u32>,
    /// `rw`, `ro`, `r` → `127.0.0.1:PORT`.
    pub endpoints: BTreeMap<String, String>,
    pub instances_status: Vec<LocalInstanceStatus>,
    /// Highest instance serial used (serials are never reused).
    pub latest_generated_node: u32,
    #[serde(default)]
    pub conditions: Vec<LocalCondition>,
    /// Managed roles: which are reconciled, which cannot be and why.
    #[serde(default)]
    pub managed_roles_status: ManagedRolesStatus,
    /// The restart token every instance should run under.
    #[serde(default)]
    pub restart_token: String,
    /// The restart annotation value last acted on.
    #[serde(default)]
    pub restart_annotation: String,
    /// The primary's last WAL archive outcome (`lastArchivedWAL`, `lastFailedWAL`, ...), when
    /// the cluster archives to an object store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wal_archive: Option<pgherd_instance_protocol::ArchiveReport>,
    /// The oldest point the cluster can be recovered to (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_recoverability_point: Option<String>,
    /// When the last successful backup ended (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_successful_backup: Option<String>,
    /// When the last failed backup ended (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_failed_backup: Option<String>,
    /// The Poolers in front of the cluster (their endpoints are also in `endpoints`, under
    /// the pooler's name).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub poolers: Vec<ClusterPooler>,
}

/// A Pooler in its cluster's status.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterPooler {
    pub name: String,
    #[serde(rename = "type")]
    pub pooler_type: String,
    pub endpoint: String,
    pub instances: usize,
    pub ready_instances: usize,
    pub phase: String,
    pub paused: bool,
}

/// CloudNativePG's `managedRolesStatus`, reduced to what the local platform knows.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ManagedRolesStatus {
    #[serde(default)]
    pub reconciled: Vec<String>,
    #[serde(default)]
    pub cannot_reconcile: BTreeMap<String, Vec<String>>,
}

/// A condition (`Ready`, ...).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LocalCondition {
    #[serde(rename = "type")]
    pub condition_type: String,
    pub status: String,
    pub reason: String,
    pub message: String,
}
