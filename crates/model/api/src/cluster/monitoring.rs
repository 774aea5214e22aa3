//! `spec.monitoring`.

use crate::common::{ConfigMapKeySelector, SecretKeySelector};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_with::skip_serializing_none;

/// Metrics exporter configuration.
#[skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MonitoringConfiguration {
    /// Turn off the default queries.
    pub disable_default_queries: Option<bool>,
    /// ConfigMaps with custom queries.
    pub custom_queries_config_map: Option<Vec<ConfigMapKeySelector>>,
    /// Secrets with custom queries.
    pub custom_queries_secret: Option<Vec<SecretKeySelector>>,
    /// Create a PodMonitor (deprecated).
    pub enable_pod_monitor: Option<bool>,
    /// TLS for the metrics endpoint.
    pub tls: Option<ClusterMonitoringTls>,
    /// Metric relabelings of the PodMonitor.
    pub pod_monitor_metric_relabelings: Option<Vec<RelabelConfig>>,
    /// Relabelings of the PodMonitor.
    pub pod_monitor_relabelings: Option<Vec<RelabelConfig>>,
    /// How long query results are cached (a duration such as `30s`).
    #[serde(rename = "metricsQueriesTTL")]
    pub metrics_queries_ttl: Option<String>,
}

/// TLS for the metrics endpoint.
#[skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
pub struct ClusterMonitoringTls {
    /// Serve metrics over TLS.
    pub enabled: Option<bool>,
}

/// A Prometheus relabel rule (prometheus-operator's `RelabelConfig`).
#[skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RelabelConfig {
    /// Source labels.
    pub source_labels: Option<Vec<String>>,
    /// Separator.
    pub separator: Option<String>,
    /// Target label.
    pub target_label: Option<String>,
    /// Regular expression.
    pub regex: Option<String>,
    /// Modulus.
    pub modulus: Option<i64>,
    /// Replacement.
    pub replacement: Option<String>,
    /// Action.
    pub action: Option<String>,
}
