//! `Database` (`postgresql.cnpg.io/v1`): a database inside a cluster.
// kube's `printcolumn(...)` repeats `type_ =` per column; clippy sees duplicated attributes.
#![allow(clippy::duplicated_attributes)]

use crate::cluster::EnsureOption;
use crate::common::ClusterReference;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_with::skip_serializing_none;

/// What happens to the PostgreSQL database when the Database object is deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum DatabaseReclaimPolicy {
    /// Keep it.
    #[default]
    Retain,
    /// Drop it.
    Delete,
}

/// A database kept in the declared state by the primary's instance manager.
#[skip_serializing_none]
#[derive(CustomResource, Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "postgresql.cnpg.io",
    version = "v1",
    kind = "Database",
    namespaced,
    status = "DatabaseStatus",
    derive = "PartialEq",
    derive = "Default",
    doc = "Database is a PostgreSQL database inside a Cluster.",
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    ),
    printcolumn(name = "Cluster", type_ = "string", json_path = ".spec.cluster.name"),
    printcolumn(name = "PG Name", type_ = "string", json_path = ".spec.name"),
    printcolumn(name = "Applied", type_ = "boolean", json_path = ".status.applied"),
    printcolumn(
        name = "Message",
        type_ = "string",
        json_path = ".status.message",
        description = "Latest reconciliation message"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct DatabaseSpec {
    /// The cluster holding the database.
    pub cluster: ClusterReference,
    /// `present` or `absent`.
    pub ensure: Option<EnsureOption>,
    /// Database name in PostgreSQL.
    pub name: String,
    /// Owner role.
    pub owner: String,
    /// Template to copy (create only).
    pub template: Option<String>,
    /// Encoding (create only).
    pub encoding: Option<String>,
    /// Locale (create only).
    pub locale: Option<String>,
    /// Locale provider (create only).
    pub locale_provider: Option<String>,
    /// `LC_COLLATE` (create only).
    pub locale_collate: Option<String>,
    /// `LC_CTYPE` (create only).
    #[serde(rename = "localeCType")]
    pub locale_ctype: Option<String>,
    /// ICU locale (create only).
    pub icu_locale: Option<String>,
    /// ICU rules (create only).
    pub icu_rules: Option<String>,
    /// Builtin locale (create only).
    pub builtin_locale: Option<String>,
    /// Collation version (create only).
    pub collation_version: Option<String>,
    /// Mark it as a template.
    pub is_template: Option<bool>,
    /// Allow connections.
    pub allow_connections: Option<bool>,
    /// Connection limit; -1 means none.
    #[schemars(range(min = -1))]
    pub connection_limit: Option<i64>,
    /// Default tablespace.
    pub tablespace: Option<String>,
    /// `retain` or `delete`.
    pub database_reclaim_policy: Option<DatabaseReclaimPolicy>,
    /// Schemas.
    pub schemas: Option<Vec<SchemaSpec>>,
    /// Extensions.
    pub extensions: Option<Vec<ExtensionSpec>>,
    /// Foreign data wrappers.
    pub fdws: Option<Vec<FdwSpec>>,
    /// Foreign servers.
    pub servers: Option<Vec<ServerSpec>>,
}

/// Whether a privilege is granted or revoked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum UsageType {
    #[default]
    Grant,
    Revoke,
}

/// USAGE on a foreign data wrapper or server for a role.
#[skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
pub struct UsageSpec {
    /// Role name.
    #[schemars(length(min = 1))]
    pub name: String,
    /// `grant` or `revoke`.
    #[serde(rename = "type")]
    pub usage_type: Option<UsageType>,
}

/// An option of a foreign data wrapper or server.
#[skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
pub struct OptionSpec {
    /// Option name.
    pub name: String,
    /// Option value.
    pub value: String,
    /// `present` or `absent`.
    pub ensure: Option<EnsureOption>,
}

/// A foreign data wrapper.
#[skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
pub struct FdwSpec {
    /// Wrapper name.
    pub name: String,
    /// `present` or `absent`.
    pub ensure: Option<EnsureOption>,
    /// Handler function.
    pub handler: Option<String>,
    /// Validator function.
    pub validator: Option<String>,
    /// Owner role.
    pub owner: Option<String>,
    /// Options.
    pub options: Option<Vec<OptionSpec>>,
    /// USAGE grants.
    pub usage: Option<Vec<UsageSpec>>,
}

/// A foreign server.
#[skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
pub struct ServerSpec {
    /// Server name.
    pub name: String,
    /// `present` or `absent`.
    pub ensure: Option<EnsureOption>,
    /// Its foreign data wrapper.
    #[schemars(length(min = 1))]
    pub fdw: String,
    /// Options.
    pub options: Option<Vec<OptionSpec>>,
    /// USAGE grants.
    pub usage: Option<Vec<UsageSpec>>,
}

/// A schema inside the database.
#[skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
pub struct SchemaSpec {
    /// Schema name.
    pub name: String,
    /// `present` or `absent`.
    pub ensure: Option<EnsureOption>,
    /// Owner role.
    pub owner: Option<String>,
}

/// An extension inside the database.
#[skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
pub struct ExtensionSpec {
    /// Extension name.
    pub name: String,
    /// `present` or `absent`.
    pub ensure: Option<EnsureOption>,
    /// Version.
    pub version: Option<String>,
    /// Schema to install it in.
    pub schema: Option<String>,
}

/// Observed state of a database.
#[skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DatabaseStatus {
    /// Generation last reconciled.
    pub observed_generation: Option<i64>,
    /// Whether the spec was applied.
    pub applied: Option<bool>,
    /// Last message.
    pub message: Option<String>,
    /// Per-schema results.
    pub schemas: Option<Vec<ObjectApplyStatus>>,
    /// Per-extension results.
    pub extensions: Option<Vec<ObjectApplyStatus>>,
    /// Per-wrapper results.
    pub fdws: Option<Vec<ObjectApplyStatus>>,
    /// Per-server results.
    pub servers: Option<Vec<ObjectApplyStatus>>,
}

/// Whether one sub-object was applied.
#[skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
pub struct ObjectApplyStatus {
    /// Object name.
    pub name: String,
    /// Applied.
    pub applied: bool,
    /// Message.
    pub message: Option<String>,
}
