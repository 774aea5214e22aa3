//! `DatabaseRole` (`postgresql.cnpg.io/v1`, CloudNativePG 1.30+): one role of a cluster, with
//! the attributes of an entry of `spec.managed.roles`, as its own object.
// kube's `printcolumn(...)` repeats `type_ =` per column; clippy sees duplicated attributes.
#![allow(clippy::duplicated_attributes)]

use super::publication::ReclaimPolicy;
use crate::cluster::RoleConfiguration;
use crate::common::ClusterReference;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_with::skip_serializing_none;

/// A role kept in the declared state by the primary's instance manager.
#[skip_serializing_none]
#[derive(CustomResource, Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "postgresql.cnpg.io",
    version = "v1",
    kind = "DatabaseRole",
    namespaced,
    status = "DatabaseRoleStatus",
    derive = "PartialEq",
    derive = "Default",
    doc = "DatabaseRole is a PostgreSQL role inside a Cluster.",
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
pub struct DatabaseRoleSpec {
    /// The role's attributes, as in `spec.managed.roles` (`ensure: absent` is not allowed).
    #[serde(flatten)]
    pub role: RoleConfiguration,
    /// The cluster holding the role (immutable).
    pub cluster: ClusterReference,
    /// `retain` (default) or `delete`: whether deleting the object drops the role.
    pub database_role_reclaim_policy: Option<ReclaimPolicy>,
    /// Issue a TLS client certificate for the role (`<name>-client-cert`); needs `login`.
    pub client_certificate: Option<ClientCertificateConfiguration>,
}

/// `spec.clientCertificate`.
#[skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
pub struct ClientCertificateConfiguration {
    /// Issue the certificate; true when the block is present.
    pub enabled: Option<bool>,
}

/// Observed state of a DatabaseRole.
#[skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DatabaseRoleStatus {
    /// Generation last reconciled.
    pub observed_generation: Option<i64>,
    /// Whether the spec was applied.
    pub applied: Option<bool>,
    /// Last reconciliation message.
    pub message: Option<String>,
    /// Resource version of the password Secret last applied.
    pub secret_resource_version: Option<String>,
    /// The generated client certificate.
    pub client_certificate: Option<ClientCertificateState>,
    /// Conditions (`PasswordSecretChange`).
    pub conditions: Option<Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition>>,
}

/// Observed state of the generated client certificate.
#[skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
pub struct ClientCertificateState {
    /// Expiry (RFC 3339).
    pub expiration: Option<String>,
    /// Why issuance was skipped, if it was.
    pub message: Option<String>,
}
