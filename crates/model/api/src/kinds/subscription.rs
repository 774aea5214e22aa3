//! `Subscription` (`postgresql.cnpg.io/v1`): a logical replication subscription inside a
//! cluster's database, to a publication of one of its `externalClusters` (CloudNativePG 1.25+).
// kube's `printcolumn(...)` repeats `type_ =` per column; clippy sees duplicated attributes.
#![allow(clippy::duplicated_attributes)]

use super::publication::{ReclaimPolicy, ReplicationObjectStatus};
use crate::common::ClusterReference;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_with::skip_serializing_none;
use std::collections::BTreeMap;

/// A subscription kept in the declared state by the subscriber's primary.
#[skip_serializing_none]
#[derive(CustomResource, Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "postgresql.cnpg.io",
    version = "v1",
    kind = "Subscription",
    namespaced,
    status = "ReplicationObjectStatus",
    derive = "PartialEq",
    derive = "Default",
    doc = "Subscription is a PostgreSQL logical replication subscription inside a Cluster.",
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
pub struct SubscriptionSpec {
    /// The subscriber cluster (immutable).
    pub cluster: ClusterReference,
    /// Subscription name in PostgreSQL (immutable).
    pub name: String,
    /// Database holding the subscription (immutable).
    pub dbname: String,
    /// `WITH (...)` parameters of `CREATE SUBSCRIPTION`.
    pub parameters: Option<BTreeMap<String, String>>,
    /// The publication's name on the publisher.
    pub publication_name: String,
    /// The publisher's database; defaults to the one in the external cluster's definition.
    #[serde(rename = "publicationDBName")]
    pub publication_db_name: Option<String>,
    /// The entry of the subscriber's `spec.externalClusters` that is the publisher.
    pub external_cluster_name: String,
    /// `retain` (default) or `delete`: whether deleting the object drops the subscription.
    pub subscription_reclaim_policy: Option<ReclaimPolicy>,
}
