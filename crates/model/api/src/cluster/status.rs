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
    /// Number of volume claims.
    #[serde(rename = "pvcCount")]
    pub pvc_count: Option<i64>,
    /// Number of jobs.
    pub job_count: Option<i64>,
    /// Claims of no instance.
    #[serde(rename = "danglingPVC")]
    pub dangling_pvc: Option<Vec<String>>,
    /// Claims being resized.
    #[serde(rename = "resizingPVC")]
    pub resizing_pvc: Option<Vec<String>>,
    /// Claims being initialized.
    #[serde(rename = "initializingPVC")]
    pub initializing_pvc: Option<Vec<String>>,
    /// Healthy claims.
    #[serde(rename = "healthyPVC")]
    pub healthy_pvc: Option<Vec<String>>,
    /// Claims that cannot be used.
    #[serde(rename = "unusablePVC")]
    pub unusable_pvc: Option<Vec<String>>,
    /// Earliest recovery point per backup method.
    pub first_recoverability_point_by_method: Option<BTreeMap<String, String>>,
    /// Last successful backup per backup method.
    pub last_successful_backup_by_method: Option<BTreeMap<String, String>>,
    /// Certificates in use and their expirations.
    pub certificates: Option<CertificatesStatus>,
    /// The image PGDATA was created with.
    pub pg_data_image_info: Option<ImageInfo>,
    /// The image PGDATA is being moved to.
    pub target_pg_data_image_info: Option<ImageInfo>,
    /// Where instances run.
    pub topology: Option<Topology>,
    /// Versions of the secrets in use.
    pub secrets_resource_version: Option<SecretsResourceVersion>,
    /// Versions of the config maps in use.
    pub config_map_resource_version: Option<ConfigMapResourceVersion>,
    /// Addresses matched by `spec.podSelectorRefs`.
    pub pod_selector_refs: Option<Vec<PodSelectorRefStatus>>,
    /// A replica-cluster switch in progress.
    pub switch_replica_cluster_status: Option<SwitchReplicaClusterStatus>,
    /// Whether instance managers are updated in place.
    pub online_update_enabled: Option<bool>,
    /// Plugins in use and what they can do.
    pub plugin_status: Option<Vec<PluginStatus>>,
    /// Secrets created for poolers of this cluster.
    pub pooler_integrations: Option<PoolerIntegrations>,
}

/// A plugin in use and what it can do.
#[skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PluginStatus {
    /// Plugin name.
    pub name: String,
    /// Plugin version.
    pub version: Option<String>,
    /// What it implements.
    pub capabilities: Option<Vec<String>>,
    /// Operator services it implements.
    pub operator_capabilities: Option<Vec<String>>,
    /// WAL services it implements.
    pub wal_capabilities: Option<Vec<String>>,
    /// Backup services it implements.
    pub backup_capabilities: Option<Vec<String>>,
    /// Restore job hooks it implements.
    pub restore_job_hook_capabilities: Option<Vec<String>>,
    /// Its own status.
    pub status: Option<String>,
}

/// Secrets created for poolers of this cluster.
#[skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PoolerIntegrations {
    /// PgBouncer integration.
    pub pg_bouncer_integration: Option<PgBouncerIntegration>,
}

/// PgBouncer integration secrets.
#[skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
pub struct PgBouncerIntegration {
    /// Secret names.
    pub secrets: Option<Vec<String>>,
}

/// Certificates in use.
#[skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
pub struct CertificatesStatus {
    /// The effective configuration.
    #[serde(flatten)]
    pub configuration: crate::cluster::CertificatesConfiguration,
    /// Expiration date per secret.
    pub expirations: Option<BTreeMap<String, String>>,
}

/// An image and the PostgreSQL major it runs.
#[skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ImageInfo {
    /// The image.
    pub image: String,
    /// Its PostgreSQL major version.
    pub major_version: i64,
}

/// Where instances run.
#[skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Topology {
    /// Labels of each instance's host.
    pub instances: Option<BTreeMap<String, BTreeMap<String, String>>>,
    /// Number of hosts used.
    pub nodes_used: Option<i64>,
    /// Whether the topology could be read.
    pub successfully_extracted: Option<bool>,
}

/// Addresses matched by a named pod selector.
#[skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
pub struct PodSelectorRefStatus {
    /// Selector name.
    pub name: String,
    /// Matched addresses.
    pub ips: Option<Vec<String>>,
}

/// A replica-cluster switch.
#[skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SwitchReplicaClusterStatus {
    /// Whether a switch is in progress.
    pub in_progress: Option<bool>,
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

/// Versions of the secrets a cluster uses, to notice changes.
#[skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretsResourceVersion {
    /// Superuser secret.
    pub superuser_secret_version: Option<String>,
    /// Replication certificate secret.
    pub replication_secret_version: Option<String>,
    /// Application user secret.
    pub application_secret_version: Option<String>,
    /// Managed roles' password secrets, by role.
    pub managed_role_secret_version: Option<BTreeMap<String, String>>,
    /// CA secret.
    pub ca_secret_version: Option<String>,
    /// Client CA secret.
    pub client_ca_secret_version: Option<String>,
    /// Server CA secret.
    pub server_ca_secret_version: Option<String>,
    /// Server certificate secret.
    pub server_secret_version: Option<String>,
    /// Object store endpoint CA.
    #[serde(rename = "barmanEndpointCA")]
    pub barman_endpoint_ca: Option<String>,
    /// External clusters' secrets.
    pub external_cluster_secret_version: Option<BTreeMap<String, String>>,
    /// Custom metrics query secrets.
    pub metrics: Option<BTreeMap<String, String>>,
}

/// Versions of the config maps a cluster uses.
#[skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
pub struct ConfigMapResourceVersion {
    /// Custom metrics query config maps.
    pub metrics: Option<BTreeMap<String, String>>,
}
