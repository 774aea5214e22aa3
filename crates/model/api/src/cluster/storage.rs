//! `spec.storage`, `spec.walStorage` and `spec.tablespaces`.

use k8s_openapi::api::core::v1 as core;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_with::skip_serializing_none;

/// A volume for PGDATA, WAL or a tablespace.
#[skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StorageConfiguration {
    /// Storage class of the claim.
    pub storage_class: Option<String>,
    /// Size of the volume (a quantity such as `10Gi`).
    pub size: Option<String>,
    /// Grow claims in place when `size` grows.
    pub resize_in_use_volumes: Option<bool>,
    /// Full claim template.
    pub pvc_template: Option<core::PersistentVolumeClaimSpec>,
}

/// A tablespace.
#[skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TablespaceConfiguration {
    /// Tablespace name.
    pub name: String,
    /// Its volume.
    pub storage: StorageConfiguration,
    /// Its owner.
    pub owner: Option<DatabaseRoleRef>,
    /// Use it for temporary objects.
    pub temporary: Option<bool>,
}

/// A role, by name.
#[skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
pub struct DatabaseRoleRef {
    /// Role name.
    pub name: Option<String>,
}
