//! PodMonitors (`monitoring.coreos.com/v1`) for `monitoring.enablePodMonitor`: `NAME`
//! selecting the cluster's instances, `P` selecting a pooler's pods, both scraping the port
//! named `metrics`. Returned as JSON: the prometheus-operator types are not a dependency.

use crate::error::{BuildError, Result};
use crate::labels::{self, map, Base};
use crate::names;
use pgherd_api::cluster::RelabelConfig;
use pgherd_api::{Cluster, Pooler};
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// `apiVersion` of PodMonitor.
pub const POD_MONITOR_API_VERSION: &str = "monitoring.coreos.com/v1";

fn pod_monitor(
    base: &Base,
    object_labels: BTreeMap<String, String>,
    selector: BTreeMap<String, String>,
    mut endpoint: serde_json::Map<String, Value>,
    relabelings: Option<&Vec<RelabelConfig>>,
    metric_relabelings: Option<&Vec<RelabelConfig>>,
) -> Result<Value> {
    let err = |source| BuildError::Merge {
        kind: base.kind,
        owner: base.name.clone(),
        what: "the PodMonitor",
        source,
    };
    if let Some(r) = relabelings.filter(|r| !r.is_empty()) {
        endpoint.insert("relabelings".into(), serde_json::to_value(r).map_err(err)?);
    }
    if let Some(r) = metric_relabelings.filter(|r| !r.is_empty()) {
        endpoint.insert(
            "metricRelabelings".into(),
            serde_json::to_value(r).map_err(err)?,
        );
    }
    let metadata = base.meta(&base.name, object_labels, BTreeMap::new())?;
    Ok(json!({
        "apiVersion": POD_MONITOR_API_VERSION,
        "kind": "PodMonitor",
        "metadata": serde_json::to_value(metadata).map_err(err)?,
        "spec": {
            "selector": { "matchLabels": selector },
            "podMetricsEndpoints": [endpoint],
        },
    }))
}

/// The cluster's PodMonitor, when `monitoring.enablePodMonitor`. With metrics TLS the scrape
/// is HTTPS, verified against `NAME-ca` for the name `NAME-rw`.
pub fn cluster_pod_monitor(cluster: &Cluster) -> Result<Option<Value>> {
    let monitoring = cluster.spec.monitoring.clone().unwrap_or_default();
    if monitoring.enable_pod_monitor != Some(true) {
        return Ok(None);
    }
    let base = Base::of_cluster(cluster)?;
    let mut endpoint = serde_json::Map::new();
    endpoint.insert("port".into(), json!(crate::pod::METRICS_PORT_NAME));
    if monitoring.tls.as_ref().and_then(|t| t.enabled) == Some(true) {
        endpoint.insert("scheme".into(), json!("https"));
        endpoint.insert(
            "tlsConfig".into(),
            json!({
                "ca": { "secret": { "name": names::ca_secret(&base.name), "key": "ca.crt" } },
                "serverName": names::rw_service(&base.name),
                "insecureSkipVerify": true,
            }),
        );
    }
    pod_monitor(
        &base,
        labels::cluster_labels(cluster, "database"),
        map([
            (labels::CLUSTER, &base.name),
            (labels::POD_ROLE, "instance"),
        ]),
        endpoint,
        monitoring.pod_monitor_relabelings.as_ref(),
        monitoring.pod_monitor_metric_relabelings.as_ref(),
    )
    .map(Some)
}

/// The pooler's PodMonitor, when its `monitoring.enablePodMonitor`.
pub fn pooler_pod_monitor(pooler: &Pooler) -> Result<Option<Value>> {
    let Some(monitoring) = pooler
        .spec
        .monitoring
        .as_ref()
        .filter(|m| m.enable_pod_monitor == Some(true))
    else {
        return Ok(None);
    };
    let base = Base::new(pooler, "Pooler", None)?;
    let mut endpoint = serde_json::Map::new();
    endpoint.insert("port".into(), json!("metrics"));
    pod_monitor(
        &base,
        crate::pooler::pooler_labels(pooler),
        map([
            (labels::POOLER_NAME, &base.name),
            (labels::POD_ROLE, "pooler"),
        ]),
        endpoint,
        monitoring.pod_monitor_relabelings.as_ref(),
        monitoring.pod_monitor_metric_relabelings.as_ref(),
    )
    .map(Some)
}
