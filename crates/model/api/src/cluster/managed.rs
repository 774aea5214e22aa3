//! `spec.managed`: declaratively managed roles and services.

use crate::common::{LocalObjectReference, TemplateMetadata};
use k8s_openapi::api::core::v1 as core;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_with::skip_serializing_none;

/// `spec.managed`.
#[skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
pub struct ManagedConfiguration {
    /// Roles kept in the state declared here.
    pub roles: Option<Vec<RoleConfiguration>>,
    /// Services beyond the default ones.
    pub services: Option<ManagedServices>,
}

/// Whether an object must exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum EnsureOption {
    #[default]
    Present,
    Absent,
}

/// A role managed by the cluster.
#[skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RoleConfiguration {
    /// Role name.
    pub name: String,
    /// Comment on the role.
    pub comment: Option<String>,
    /// `present` or `absent`.
    pub ensure: Option<EnsureOption>,
    /// Secret (`username`, `password`) with the role's password.
    pub password_secret: Option<LocalObjectReference>,
    /// Connection limit; -1 means none.
    #[schemars(range(min = -1))]
    pub connection_limit: Option<i64>,
    /// Password expiry (RFC 3339).
    pub valid_until: Option<String>,
    /// Roles this role is a member of.
    pub in_roles: Option<Vec<String>>,
    /// Inherit the privileges of its roles.
    pub inherit: Option<bool>,
    /// Set the password to NULL.
    pub disable_password: Option<bool>,
    /// Superuser.
    pub superuser: Option<bool>,
    /// May create databases.
    pub createdb: Option<bool>,
    /// May create roles.
    pub createrole: Option<bool>,
    /// May log in.
    pub login: Option<bool>,
    /// May replicate.
    pub replication: Option<bool>,
    /// Bypasses row-level security.
    pub bypassrls: Option<bool>,
}

/// Default services that may be disabled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ServiceSelectorType {
    Rw,
    R,
    Ro,
}

/// How an additional service is updated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ServiceUpdateStrategy {
    #[default]
    Patch,
    Replace,
}

/// `spec.managed.services`.
#[skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ManagedServices {
    /// Default services not to create (`r`, `ro`).
    pub disabled_default_services: Option<Vec<ServiceSelectorType>>,
    /// Extra services.
    pub additional: Option<Vec<ManagedService>>,
}

/// An extra service.
#[skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ManagedService {
    /// Which instances it selects.
    pub selector_type: Option<ServiceSelectorType>,
    /// How it is updated.
    pub update_strategy: Option<ServiceUpdateStrategy>,
    /// The service itself.
    pub service_template: ServiceTemplateSpec,
}

/// A service template.
#[skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
pub struct ServiceTemplateSpec {
    /// Metadata (name required for additional services).
    pub metadata: Option<TemplateMetadata>,
    /// Service spec.
    pub spec: Option<core::ServiceSpec>,
}
