//! `Cluster` (`postgresql.cnpg.io/v1`): a PostgreSQL cluster of one primary and its replicas.
// kube's `printcolumn(...)` repeats `type_ =` per column; clippy sees duplicated attributes.
#![allow(clippy::duplicated_attributes)]

mod availability;
mod backup;
mod bootstrap;
mod external;
mod managed;
mod monitoring;
mod postgres;
mod status;
mod storage;

pub use availability::*;
pub use backup::*;
pub use bootstrap::*;
pub use external::*;
pub use managed::*;
pub use monitoring::*;
pub use postgres::*;
pub use status::*;
pub use storage::*;

use crate::common::{LocalObjectReference, Metadata};
use k8s_openapi::api::core::v1 as core;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_with::skip_serializing_none;

/// Desired state of a PostgreSQL cluster.
#[skip_serializing_none]
#[derive(CustomResource, Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "postgresql.cnpg.io",
    version = "v1",
    kind = "Cluster",
    namespaced,
    status = "ClusterStatus",
    derive = "PartialEq",
    derive = "Default",
    doc = "Cluster defines the API schema for a highly available PostgreSQL database cluster managed by pgherd (CloudNativePG compatible).",
    scale(
        spec_replicas_path = ".spec.instances",
        status_replicas_path = ".status.instances",
        label_selector_path = ".status.selector"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    ),
    printcolumn(
        name = "Instances",
        type_ = "integer",
        json_path = ".status.instances",
        description = "Number of instances"
    ),
    printcolumn(
        name = "Ready",
        type_ = "integer",
        json_path = ".status.readyInstances",
        description = "Number of ready instances"
    ),
    printcolumn(
        name = "Status",
        type_ = "string",
        json_path = ".status.phase",
        description = "Cluster current status"
    ),
    printcolumn(
        name = "Primary",
        type_ = "string",
        json_path = ".status.currentPrimary",
        description = "Primary pod"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct ClusterSpec {
    /// Free-text description.
    pub description: Option<String>,
    /// Labels and annotations copied onto every generated object.
    pub inherited_metadata: Option<Metadata>,
    /// PostgreSQL container image (`repository:tag`); the tag names the major version.
    pub image_name: Option<String>,
    /// Pick the image from an image catalog instead of `imageName`.
    pub image_catalog_ref: Option<ImageCatalogRef>,
    /// Image pull policy.
    pub image_pull_policy: Option<String>,
    /// Pull secrets for the image.
    pub image_pull_secrets: Option<Vec<LocalObjectReference>>,
    /// Scheduler for the instance pods.
    pub scheduler_name: Option<String>,
    /// UID Postgres runs as.
    #[serde(rename = "postgresUID")]
    pub postgres_uid: Option<i64>,
    /// GID Postgres runs as.
    #[serde(rename = "postgresGID")]
    pub postgres_gid: Option<i64>,
    /// Number of instances (one primary, the rest replicas).
    #[schemars(range(min = 1))]
    pub instances: Option<i64>,
    /// Legacy quorum synchronous replication: minimum synchronous replicas.
    #[schemars(range(min = 0))]
    pub min_sync_replicas: Option<i64>,
    /// Legacy quorum synchronous replication: maximum synchronous replicas.
    #[schemars(range(min = 0))]
    pub max_sync_replicas: Option<i64>,
    /// PostgreSQL configuration.
    pub postgresql: Option<PostgresConfiguration>,
    /// Named pod selectors usable as `${podselector:NAME}` in `pg_hba`.
    pub pod_selector_refs: Option<Vec<PodSelectorRef>>,
    /// Replication slots management.
    pub replication_slots: Option<ReplicationSlotsConfiguration>,
    /// How to create the cluster's data: exactly one of initdb, recovery, pg_basebackup.
    pub bootstrap: Option<BootstrapConfiguration>,
    /// Run as a replica of another cluster.
    pub replica: Option<ReplicaClusterConfiguration>,
    /// Secret with the `postgres` superuser's credentials.
    pub superuser_secret: Option<LocalObjectReference>,
    /// Give the `postgres` superuser a password and publish it in `<cluster>-superuser`.
    pub enable_superuser_access: Option<bool>,
    /// TLS certificates.
    pub certificates: Option<CertificatesConfiguration>,
    /// Storage for PGDATA.
    pub storage: Option<StorageConfiguration>,
    /// Separate storage for `pg_wal`.
    pub wal_storage: Option<StorageConfiguration>,
    /// Tablespaces, each with its own storage.
    pub tablespaces: Option<Vec<TablespaceConfiguration>>,
    /// Metadata of the generated ServiceAccount.
    pub service_account_template: Option<ServiceAccountTemplate>,
    /// Use an existing ServiceAccount.
    pub service_account_name: Option<String>,
    /// Ephemeral volume replacing the scratch directory.
    pub ephemeral_volume_source: Option<core::EphemeralVolumeSource>,
    /// Size limits of ephemeral volumes.
    pub ephemeral_volumes_size_limit: Option<EphemeralVolumesSizeLimitConfiguration>,
    /// Seconds allowed for an instance to start.
    pub start_delay: Option<i32>,
    /// Seconds allowed for an instance to stop.
    pub stop_delay: Option<i32>,
    /// Seconds of smart shutdown before a fast shutdown.
    pub smart_shutdown_timeout: Option<i32>,
    /// Seconds allowed for a demoted primary to shut down during a switchover.
    pub switchover_delay: Option<i32>,
    /// Seconds the primary must be unhealthy before a failover starts.
    pub failover_delay: Option<i32>,
    /// Seconds before the liveness probe declares an instance dead.
    pub liveness_probe_timeout: Option<i32>,
    /// Startup, readiness and liveness probes.
    pub probes: Option<ProbesConfiguration>,
    /// The primary's lease (safe promotion).
    pub primary_lease: Option<PrimaryLeaseConfiguration>,
    /// Scheduling affinity.
    pub affinity: Option<AffinityConfiguration>,
    /// Topology spread constraints for instance pods.
    pub topology_spread_constraints: Option<Vec<core::TopologySpreadConstraint>>,
    /// Resources of the Postgres container.
    pub resources: Option<core::ResourceRequirements>,
    /// Priority class of instance pods.
    pub priority_class_name: Option<String>,
    /// Who restarts the primary during a rolling update: `unsupervised` or `supervised`.
    pub primary_update_strategy: Option<PrimaryUpdateStrategy>,
    /// How the primary is updated: `restart` or `switchover`.
    pub primary_update_method: Option<PrimaryUpdateMethod>,
    /// Backups and WAL archiving.
    pub backup: Option<BackupConfiguration>,
    /// Node maintenance window.
    pub node_maintenance_window: Option<NodeMaintenanceWindow>,
    /// Metrics and monitoring.
    pub monitoring: Option<MonitoringConfiguration>,
    /// Other clusters this cluster can bootstrap or replicate from.
    pub external_clusters: Option<Vec<ExternalCluster>>,
    /// Instance manager log level.
    pub log_level: Option<LogLevel>,
    /// Projected volume mounted at `/projected`.
    pub projected_volume_template: Option<core::ProjectedVolumeSource>,
    /// Extra environment variables.
    pub env: Option<Vec<core::EnvVar>>,
    /// Extra environment sources.
    pub env_from: Option<Vec<core::EnvFromSource>>,
    /// Declaratively managed roles and services.
    pub managed: Option<ManagedConfiguration>,
    /// Seccomp profile of instance pods.
    pub seccomp_profile: Option<core::SeccompProfile>,
    /// Pod security context.
    pub pod_security_context: Option<core::PodSecurityContext>,
    /// Container security context.
    pub security_context: Option<core::SecurityContext>,
    /// Create PodDisruptionBudgets.
    #[serde(rename = "enablePDB")]
    pub enable_pdb: Option<bool>,
    /// CNPG-I plugins.
    pub plugins: Option<Vec<PluginConfiguration>>,
}

/// A reference to an image catalog entry.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ImageCatalogRef {
    /// API group of the catalog (`postgresql.cnpg.io`).
    pub api_group: Option<String>,
    /// `ImageCatalog` or `ClusterImageCatalog`.
    pub kind: String,
    /// Name of the catalog.
    pub name: String,
    /// Major version to pick.
    pub major: i64,
}

/// Who restarts the primary during a rolling update.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum PrimaryUpdateStrategy {
    /// The operator does it.
    #[default]
    Unsupervised,
    /// The operator waits for the user.
    Supervised,
}

/// How the primary is updated during a rolling update.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum PrimaryUpdateMethod {
    /// Restart it in place.
    #[default]
    Restart,
    /// Switch over to a replica first.
    Switchover,
}

/// Instance manager log level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    Error,
    Warning,
    #[default]
    Info,
    Debug,
    Trace,
}

/// A named pod selector.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
pub struct PodSelectorRef {
    /// Name used in `${podselector:NAME}`.
    pub name: String,
    /// Which pods.
    pub selector: k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector,
}

/// Metadata of the generated ServiceAccount.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
pub struct ServiceAccountTemplate {
    /// Metadata to apply.
    pub metadata: crate::common::TemplateMetadata,
}

/// Size limits of ephemeral volumes.
#[skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EphemeralVolumesSizeLimitConfiguration {
    /// Limit of `/dev/shm`.
    pub shm: Option<Quantity>,
    /// Limit of the scratch directory.
    pub temporary_data: Option<Quantity>,
}

/// A CNPG-I plugin enabled for the cluster.
#[skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PluginConfiguration {
    /// Plugin name, e.g. `barman-cloud.cloudnative-pg.io`.
    pub name: String,
    /// Whether the plugin is enabled.
    pub enabled: Option<bool>,
    /// Whether this plugin archives WAL.
    #[serde(rename = "isWALArchiver")]
    pub is_wal_archiver: Option<bool>,
    /// Plugin parameters.
    pub parameters: Option<std::collections::BTreeMap<String, String>>,
}

/// The physical replication slot the primary keeps for `instance`: `prefix` + instance name,
/// lowercased, with every character outside `[a-z0-9_]` replaced by `_` (`_cnpg_pg_2`).
pub fn replication_slot_name(prefix: &str, instance: &str) -> String {
    format!("{prefix}{instance}")
        .to_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn slot_names() {
        assert_eq!(super::replication_slot_name("_cnpg_", "pg-2"), "_cnpg_pg_2");
        assert_eq!(
            super::replication_slot_name("_cnpg_", "Cluster-Example-10"),
            "_cnpg_cluster_example_10"
        );
    }
}
