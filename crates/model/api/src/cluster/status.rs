//! `Cluster.status`: what the controller and the instance managers observed.

use crate::common::Condition;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_with::skip_serializing_none;
use std::collections::BTreeMap;

/// Observed state of a cluster.
#[skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClusterStatus {
    /// One of the phase strings in [`crate::phase`].
    pub phase: Option<String>,
    /// Why the cluster is in this phase.
    pub phase_reason: Option<String>,
    /// Number of instances (volume groups).
    pub instances: Option<i64>,
    /// Number of ready instances.
    pub ready_instances: Option<i64>,
    /// Label selector of the instances (scale subresource).
    pub selector: Option<String>,
    /// Instance names by health: `healthy`, `replicating`, `failed`.
    pub instances_status: Option<BTreeMap<String, Vec<String>>>,
    /// What each instance reported.
    pub instances_reported_state: Option<BTreeMap<String, InstanceReportedState>>,
    /// All known instance names.
    pub instance_names: Option<Vec<String>>,
    /// The instance actually running as primary.
    pub current_primary: Option<String>,
    /// When it became primary.
    pub current_primary_timestamp: Option<String>,
    /// The instance that should be primary (`pending` during a failover).
    pub target_primary: Option<String>,
    /// When the target was set.
    pub target_primary_timestamp: Option<String>,
    /// Since when the primary has been failing (while waiting for `failoverDelay`).
    pub current_primary_failing_since_timestamp: Option<String>,
    /// Timeline of the primary.
    #[serde(rename = "timelineID")]
    pub timeline_id: Option<i64>,
    /// PostgreSQL system identifier.
    #[serde(rename = "systemID")]
    pub system_id: Option<String>,
    /// Last instance serial used.
    pub latest_generated_node: Option<i64>,
    /// Read-write service.
    pub write_service: Option<String>,
    /// Read service.
    pub read_service: Option<String>,
    /// Earliest point the cluster can be recovered to.
    pub first_recoverability_point: Option<String>,
    /// Last successful backup.
    pub last_successful_backup: Option<String>,
    /// Last failed backup.
    pub last_failed_backup: Option<String>,
    /// The resolved PostgreSQL image.
    pub image: Option<String>,
    /// Managed roles.
    pub managed_roles_status: Option<ManagedRoles>,
    /// Tablespaces.
    pub tablespaces_status: Option<Vec<TablespaceState>>,
    /// Demotion token (replica clusters).
    pub demotion_token: Option<String>,
    /// Last promotion token used.
    pub last_promotion_token: Option<String>,
    /// Conditions: `Ready`, `ContinuousArchiving`, `LastBackupSucceeded`, ...
    pub conditions: Option<Vec<Condition>>,
}

/// What one instance reported.
#[skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
pub struct InstanceReportedState {
    /// It runs as primary.
    #[serde(rename = "isPrimary")]
    pub is_primary: bool,
    /// Its timeline.
    #[serde(rename = "timeLineID")]
    pub timeline_id: Option<i64>,
    /// Its address.
    pub ip: Option<String>,
}

/// Status of managed roles.
#[skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ManagedRoles {
    /// Role names by state: `reconciled`, `not-managed`, `pending-reconciliation`, `reserved`.
    pub by_status: Option<BTreeMap<String, Vec<String>>>,
    /// Errors per role that could not be reconciled.
    pub cannot_reconcile: Option<BTreeMap<String, Vec<String>>>,
    /// Password secret versions applied, per role.
    pub password_status: Option<BTreeMap<String, PasswordState>>,
}

/// Which password secret version was applied to a role.
#[skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PasswordState {
    /// Transaction that applied it.
    #[serde(rename = "transactionID")]
    pub transaction_id: Option<i64>,
    /// Secret version applied.
    pub resource_version: Option<String>,
}

/// State of a tablespace.
#[skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
pub struct TablespaceState {
    /// Tablespace name.
    pub name: String,
    /// Owner.
    pub owner: Option<String>,
    /// `reconciled` or `pending`.
    pub state: String,
    /// Last error.
    pub error: Option<String>,
}
