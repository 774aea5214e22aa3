//! `Publication` (`postgresql.cnpg.io/v1`): a logical replication publication inside a
//! cluster's database (CloudNativePG 1.25+).
// kube's `printcolumn(...)` repeats `type_ =` per column; clippy sees duplicated attributes.
#![allow(clippy::duplicated_attributes)]

use crate::common::ClusterReference;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_with::skip_serializing_none;
use std::collections::BTreeMap;

/// What deleting the object does to its PostgreSQL counterpart: `retain` (default) keeps it,
/// `delete` drops it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ReclaimPolicy {
    /// Keep it.
    #[default]
    Retain,
    /// Drop it.
    Delete,
}

/// A publication kept in the declared state by the publisher's primary.
#[skip_serializing_none]
#[derive(CustomResource, Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "postgresql.cnpg.io",
    version = "v1",
    kind = "Publication",
    namespaced,
    status = "ReplicationObjectStatus",
    derive = "PartialEq",
    derive = "Default",
    doc = "Publication is a PostgreSQL logical replication publication inside a Cluster.",
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
pub struct PublicationSpec {
    /// The publisher cluster (immutable).
    pub cluster: ClusterReference,
    /// Publication name in PostgreSQL (immutable).
    pub name: String,
    /// Database holding the publication (immutable).
    pub dbname: String,
    /// `WITH (...)` parameters of `CREATE PUBLICATION`.
    pub parameters: Option<BTreeMap<String, String>>,
    /// What is published.
    pub target: PublicationTarget,
    /// `retain` (default) or `delete`: whether deleting the object drops the publication.
    pub publication_reclaim_policy: Option<ReclaimPolicy>,
}

/// What a publication publishes: all tables, or a list of objects (exactly one of the two).
#[skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PublicationTarget {
    /// `FOR ALL TABLES` (immutable).
    pub all_tables: Option<bool>,
    /// `FOR TABLE ...` / `FOR TABLES IN SCHEMA ...`.
    #[schemars(length(max = 100000))]
    pub objects: Option<Vec<PublicationTargetObject>>,
}

/// One published object: a schema's tables or one table (exactly one of the two).
#[skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PublicationTargetObject {
    /// `TABLES IN SCHEMA <name>`, including tables created later.
    pub tables_in_schema: Option<String>,
    /// `TABLE <name>`.
    pub table: Option<PublicationTargetTable>,
}

/// A published table.
#[skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
pub struct PublicationTargetTable {
    /// `ONLY`: the table without its descendants.
    pub only: Option<bool>,
    /// Table name.
    pub name: String,
    /// Schema name.
    pub schema: Option<String>,
    /// Column list.
    pub columns: Option<Vec<String>>,
}

/// Observed state of a Publication or Subscription.
#[skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReplicationObjectStatus {
    /// Generation last reconciled.
    pub observed_generation: Option<i64>,
    /// Whether the spec was applied.
    pub applied: Option<bool>,
    /// Last reconciliation message.
    pub message: Option<String>,
}
