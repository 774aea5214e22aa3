//! `spec.postgresql` and `spec.replicationSlots`.

use k8s_openapi::api::core::v1 as core;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_with::skip_serializing_none;
use std::collections::BTreeMap;

/// PostgreSQL configuration of the cluster.
#[skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PostgresConfiguration {
    /// Configuration parameters (values are strings).
    pub parameters: Option<BTreeMap<String, String>>,
    /// Lines added to `pg_hba.conf` after the operator's fixed rules.
    #[serde(rename = "pg_hba")]
    pub pg_hba: Option<Vec<String>>,
    /// Lines added to `pg_ident.conf`.
    #[serde(rename = "pg_ident")]
    pub pg_ident: Option<Vec<String>>,
    /// Explicit synchronous replication.
    pub synchronous: Option<SynchronousReplicaConfiguration>,
    /// Legacy synchronous replica election constraint.
    pub sync_replica_election_constraint: Option<SyncReplicaElectionConstraints>,
    /// Extra libraries to preload.
    #[serde(rename = "shared_preload_libraries")]
    pub shared_preload_libraries: Option<Vec<String>>,
    /// LDAP authentication.
    pub ldap: Option<LdapConfig>,
    /// Seconds allowed for a promotion.
    pub promotion_timeout: Option<i32>,
    /// Allow `ALTER SYSTEM`.
    pub enable_alter_system: Option<bool>,
    /// Extensions mounted from images.
    pub extensions: Option<Vec<ExtensionConfiguration>>,
}

/// How many synchronous standbys to wait for, and which.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum SynchronousReplicaMethod {
    /// Quorum: any `number` of the listed standbys.
    Any,
    /// Priority: the first `number` available standbys.
    First,
}

/// What to do when too few synchronous standbys are available.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum DataDurability {
    /// Block writes until enough standbys confirm (never lose an acknowledged commit).
    #[default]
    Required,
    /// Wait only for the standbys that are available.
    Preferred,
}

/// `spec.postgresql.synchronous`.
#[skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SynchronousReplicaConfiguration {
    /// `any` or `first`.
    pub method: SynchronousReplicaMethod,
    /// Number of synchronous standbys.
    pub number: i64,
    /// Cap on the number of cluster instances listed.
    pub max_standby_names_from_cluster: Option<i64>,
    /// Standby names listed before the cluster's instances.
    pub standby_names_pre: Option<Vec<String>>,
    /// Standby names listed after the cluster's instances.
    pub standby_names_post: Option<Vec<String>>,
    /// `required` or `preferred`.
    pub data_durability: Option<DataDurability>,
    /// Use the failover quorum.
    pub failover_quorum: Option<bool>,
    /// Pod labels whose values must differ between the primary and its synchronous standbys.
    pub pod_failure_domain_keys: Option<Vec<String>>,
    /// Node labels whose values must differ between the primary and its synchronous standbys.
    pub node_failure_domain_keys: Option<Vec<String>>,
}

/// Legacy synchronous replica election constraint.
#[skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SyncReplicaElectionConstraints {
    /// Whether the constraint is applied.
    pub enabled: bool,
    /// Node labels that must differ from the primary's.
    pub node_labels_anti_affinity: Option<Vec<String>>,
}

/// LDAP scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum LdapScheme {
    Ldap,
    Ldaps,
}

/// LDAP authentication settings.
#[skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LdapConfig {
    /// LDAP server.
    pub server: Option<String>,
    /// LDAP port.
    pub port: Option<i64>,
    /// `ldap` or `ldaps`.
    pub scheme: Option<LdapScheme>,
    /// Use StartTLS.
    pub tls: Option<bool>,
    /// Simple bind.
    pub bind_as_auth: Option<LdapBindAsAuth>,
    /// Search and bind.
    pub bind_search_auth: Option<LdapBindSearchAuth>,
}

/// LDAP simple bind.
#[skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
pub struct LdapBindAsAuth {
    /// Prefix of the bind DN.
    pub prefix: Option<String>,
    /// Suffix of the bind DN.
    pub suffix: Option<String>,
}

/// LDAP search and bind.
#[skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
pub struct LdapBindSearchAuth {
    /// Base DN.
    #[serde(rename = "baseDN")]
    pub base_dn: Option<String>,
    /// Bind DN.
    #[serde(rename = "bindDN")]
    pub bind_dn: Option<String>,
    /// Bind password.
    #[serde(rename = "bindPassword")]
    pub bind_password: Option<crate::common::CoreSecretKeySelector>,
    /// Attribute to search.
    #[serde(rename = "searchAttribute")]
    pub search_attribute: Option<String>,
    /// Search filter.
    #[serde(rename = "searchFilter")]
    pub search_filter: Option<String>,
}

/// An extension mounted from an image.
#[skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExtensionConfiguration {
    /// Extension name.
    pub name: String,
    /// Image holding the extension.
    pub image: core::ImageVolumeSource,
    /// Directories added to `extension_control_path`.
    #[serde(rename = "extension_control_path")]
    pub extension_control_path: Option<Vec<String>>,
    /// Directories added to `dynamic_library_path`.
    #[serde(rename = "dynamic_library_path")]
    pub dynamic_library_path: Option<Vec<String>>,
    /// Directories added to `LD_LIBRARY_PATH`.
    #[serde(rename = "ld_library_path")]
    pub ld_library_path: Option<Vec<String>>,
    /// Directories added to `PATH`.
    #[serde(rename = "bin_path")]
    pub bin_path: Option<Vec<String>>,
    /// Environment variables.
    pub env: Option<Vec<ExtensionEnvVar>>,
}

/// An environment variable for an image extension.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
pub struct ExtensionEnvVar {
    /// Variable name.
    pub name: String,
    /// Value; `${image_root}` is replaced by the extension's mount point.
    pub value: String,
}

/// `spec.replicationSlots`.
#[skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReplicationSlotsConfiguration {
    /// Slots for the cluster's own replicas.
    pub high_availability: Option<ReplicationSlotsHaConfiguration>,
    /// Seconds between standby slot updates.
    pub update_interval: Option<i64>,
    /// Copy user-defined physical slots to the standbys.
    pub synchronize_replicas: Option<SynchronizeReplicasConfiguration>,
}

/// High-availability replication slots.
#[skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReplicationSlotsHaConfiguration {
    /// Keep one physical slot per standby on the primary.
    pub enabled: Option<bool>,
    /// Prefix of slot names.
    #[schemars(regex(pattern = r"^[0-9a-z_]*$"))]
    pub slot_prefix: Option<String>,
    /// Synchronize logical decoding slots to the standbys.
    pub synchronize_logical_decoding: Option<bool>,
}

/// Synchronization of user-defined physical slots.
#[skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SynchronizeReplicasConfiguration {
    /// Whether user slots are synchronized.
    pub enabled: Option<bool>,
    /// Regular expressions of slot names to leave alone.
    pub exclude_patterns: Option<Vec<String>>,
}
