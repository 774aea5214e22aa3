//! `ObjectStore` (`barmancloud.cnpg.io/v1`): an object store for the barman-cloud plugin.

use crate::barman::BarmanObjectStoreConfiguration;
use k8s_openapi::api::core::v1 as core;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_with::skip_serializing_none;
use std::collections::BTreeMap;

/// An object store that clusters archive WAL and backups to through the barman-cloud plugin.
#[skip_serializing_none]
#[derive(CustomResource, Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "barmancloud.cnpg.io",
    version = "v1",
    kind = "ObjectStore",
    namespaced,
    status = "ObjectStoreStatus",
    derive = "PartialEq",
    derive = "Default",
    doc = "ObjectStore is an object store used by the barman-cloud plugin."
)]
#[serde(rename_all = "camelCase")]
pub struct ObjectStoreSpec {
    /// Where and how to store (no `serverName` here: clusters choose theirs).
    pub configuration: BarmanObjectStoreConfiguration,
    /// Recovery window: `30d`, `4w`, `6m`.
    #[schemars(regex(pattern = r"^[1-9][0-9]*[dwm]$"))]
    pub retention_policy: Option<String>,
    /// Settings of the plugin's sidecar in each instance.
    pub instance_sidecar_configuration: Option<InstanceSidecarConfiguration>,
}

/// Settings of the plugin's sidecar.
#[skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct InstanceSidecarConfiguration {
    /// Environment variables.
    pub env: Option<Vec<core::EnvVar>>,
    /// Seconds between retention runs.
    pub retention_policy_interval_seconds: Option<i32>,
    /// Resources of the sidecar.
    pub resources: Option<core::ResourceRequirements>,
    /// Extra arguments of the sidecar.
    pub additional_container_args: Option<Vec<String>>,
    /// Log level.
    pub log_level: Option<String>,
}

/// Observed state of an object store.
#[skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ObjectStoreStatus {
    /// Recoverability per server name.
    pub server_recovery_window: Option<BTreeMap<String, RecoveryWindow>>,
}

/// Recoverability of one server in the store.
#[skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RecoveryWindow {
    /// Earliest recoverable point.
    pub first_recoverability_point: Option<String>,
    /// Last successful backup.
    pub last_successful_backup_time: Option<String>,
    /// Last failed backup.
    pub last_failed_backup_time: Option<String>,
}
