//! Small reference and metadata types shared by several kinds.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_with::skip_serializing_none;
use std::collections::BTreeMap;

/// A reference to an object in the same namespace, by name.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
pub struct LocalObjectReference {
    /// Name of the referent.
    pub name: String,
}

/// A key inside a Secret in the same namespace.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
pub struct SecretKeySelector {
    /// Name of the Secret.
    pub name: String,
    /// The key to select.
    pub key: String,
}

/// A key inside a Secret, as Kubernetes' core `SecretKeySelector` (which may be `optional`).
/// Used where CloudNativePG embeds the core type rather than its own selector.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
pub struct CoreSecretKeySelector {
    /// Name of the Secret.
    pub name: Option<String>,
    /// The key to select.
    pub key: String,
    /// Whether the Secret or its key must exist.
    pub optional: Option<bool>,
}

impl CoreSecretKeySelector {
    /// The same reference as a plain selector, for reference checks.
    pub fn selector(&self) -> SecretKeySelector {
        SecretKeySelector {
            name: self.name.clone().unwrap_or_default(),
            key: self.key.clone(),
        }
    }
}

/// A key inside a ConfigMap in the same namespace.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
pub struct ConfigMapKeySelector {
    /// Name of the ConfigMap.
    pub name: String,
    /// The key to select.
    pub key: String,
}

/// Labels and annotations to put on generated objects.
#[skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
pub struct Metadata {
    /// Labels to add.
    pub labels: Option<BTreeMap<String, String>>,
    /// Annotations to add.
    pub annotations: Option<BTreeMap<String, String>>,
}

/// Metadata of an embedded object template (a ServiceAccount, a Service, ...).
#[skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
pub struct TemplateMetadata {
    /// Name of the generated object, where the template allows choosing it.
    pub name: Option<String>,
    /// Labels to add.
    pub labels: Option<BTreeMap<String, String>>,
    /// Annotations to add.
    pub annotations: Option<BTreeMap<String, String>>,
}

/// Which cluster an object belongs to (`spec.cluster` of Backup, Pooler, Database, ...).
pub type ClusterReference = LocalObjectReference;

/// Lists of secrets and config maps holding SQL to run, in order: all secrets, then all
/// config maps.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SqlRefs {
    /// Secrets with SQL.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secret_refs: Vec<SecretKeySelector>,
    /// ConfigMaps with SQL.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub config_map_refs: Vec<ConfigMapKeySelector>,
}

/// A condition, as in `metav1.Condition`.
pub type Condition = k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;

/// A point in time, as in `metav1.Time`.
pub type MetaTime = k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

/// Seconds since the epoch as the API writes a time (RFC 3339, UTC: `2023-11-14T22:13:20Z`).
pub fn rfc3339(seconds: i64) -> String {
    meta_time(seconds).0.to_string()
}

/// Seconds since the epoch as a `metav1.Time` (the epoch itself when out of range).
pub fn meta_time(seconds: i64) -> MetaTime {
    k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
        k8s_openapi::jiff::Timestamp::from_second(seconds)
            .unwrap_or(k8s_openapi::jiff::Timestamp::UNIX_EPOCH),
    )
}
