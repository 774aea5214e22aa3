//! Scheduling, probes, the primary lease and maintenance windows.

use k8s_openapi::api::core::v1 as core;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_with::skip_serializing_none;
use std::collections::BTreeMap;

/// `spec.affinity`.
#[skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AffinityConfiguration {
    /// Spread instances with a pod anti-affinity rule.
    pub enable_pod_anti_affinity: Option<bool>,
    /// Topology key of the anti-affinity rule.
    pub topology_key: Option<String>,
    /// Node selector.
    pub node_selector: Option<BTreeMap<String, String>>,
    /// Node affinity.
    pub node_affinity: Option<core::NodeAffinity>,
    /// Tolerations.
    pub tolerations: Option<Vec<core::Toleration>>,
    /// `preferred` or `required`.
    pub pod_anti_affinity_type: Option<String>,
    /// Extra anti-affinity terms.
    pub additional_pod_anti_affinity: Option<core::PodAntiAffinity>,
    /// Extra affinity terms.
    pub additional_pod_affinity: Option<core::PodAffinity>,
}

/// `spec.probes`.
#[skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
pub struct ProbesConfiguration {
    /// Startup probe.
    pub startup: Option<ProbeWithStrategy>,
    /// Liveness probe.
    pub liveness: Option<LivenessProbe>,
    /// Readiness probe.
    pub readiness: Option<ProbeWithStrategy>,
}

/// How a probe decides an instance is up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ProbeStrategyType {
    /// Postgres answers `pg_isready`.
    #[serde(rename = "pg_isready")]
    PgIsReady,
    /// A replica streams with at most `maximumLag`.
    #[serde(rename = "streaming")]
    Streaming,
    /// A query succeeds.
    #[serde(rename = "query")]
    Query,
}

/// A probe with a strategy.
#[skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProbeWithStrategy {
    /// Seconds before the first probe.
    pub initial_delay_seconds: Option<i32>,
    /// Seconds before a probe times out.
    pub timeout_seconds: Option<i32>,
    /// Seconds between probes.
    pub period_seconds: Option<i32>,
    /// Successes needed to pass.
    pub success_threshold: Option<i32>,
    /// Failures needed to fail.
    pub failure_threshold: Option<i32>,
    /// Grace period after a failure.
    pub termination_grace_period_seconds: Option<i64>,
    /// Strategy.
    #[serde(rename = "type")]
    pub strategy: Option<ProbeStrategyType>,
    /// Maximum lag for the `streaming` strategy.
    pub maximum_lag: Option<Quantity>,
}

/// The liveness probe.
#[skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LivenessProbe {
    /// Seconds before the first probe.
    pub initial_delay_seconds: Option<i32>,
    /// Seconds before a probe times out.
    pub timeout_seconds: Option<i32>,
    /// Seconds between probes.
    pub period_seconds: Option<i32>,
    /// Successes needed to pass.
    pub success_threshold: Option<i32>,
    /// Failures needed to fail.
    pub failure_threshold: Option<i32>,
    /// Grace period after a failure.
    pub termination_grace_period_seconds: Option<i64>,
    /// Fail a primary that can reach neither the control plane nor its peers.
    pub isolation_check: Option<IsolationCheckConfiguration>,
}

/// Isolation check of a primary.
#[skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IsolationCheckConfiguration {
    /// Whether the check runs.
    pub enabled: Option<bool>,
    /// Milliseconds for one request.
    pub request_timeout: Option<i64>,
    /// Milliseconds to connect.
    pub connection_timeout: Option<i64>,
}

/// `spec.primaryLease`.
#[skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PrimaryLeaseConfiguration {
    /// How long a lease is valid.
    #[schemars(range(min = 1))]
    pub lease_duration_seconds: Option<i32>,
    /// How long the holder tries to renew before giving up.
    #[schemars(range(min = 1))]
    pub renew_deadline_seconds: Option<i32>,
    /// Seconds between attempts.
    #[schemars(range(min = 1))]
    pub retry_period_seconds: Option<i32>,
    /// Lease duration written when the lease is released.
    #[schemars(range(min = 1))]
    pub released_lease_duration_seconds: Option<i32>,
}

/// `spec.nodeMaintenanceWindow`.
#[skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeMaintenanceWindow {
    /// A maintenance is in progress.
    pub in_progress: Option<bool>,
    /// Reuse the volumes of instances on the node.
    #[serde(rename = "reusePVC")]
    pub reuse_pvc: Option<bool>,
}
