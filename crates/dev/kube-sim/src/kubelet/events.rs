//! Events the scheduler and the kubelet record about pods (API reference "Event v1 core"), so
//! `kubectl describe pod` and `kubectl get events` tell what happened: Scheduled,
//! FailedScheduling, Pulled, Created, Started, Killing, BackOff, Unhealthy, Failed.

use super::api::Api;
use crate::clock;
use serde_json::{json, Value};

/// Record one event about `object` (a pod, as last seen), reported by `component`.
pub fn record(
    api: &Api,
    object: &Value,
    type_: &str,
    reason: &str,
    message: &str,
    component: &str,
) {
    let (ns, name) = crate::store::key_of(object);
    let now = clock::now_rfc3339();
    let event = json!({
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"generateName": format!("{name}."), "namespace": ns},
        "involvedObject": {
            "apiVersion": object["apiVersion"].as_str().unwrap_or("v1"),
            "kind": object["kind"].as_str().unwrap_or("Pod"),
            "name": name, "namespace": ns, "uid": object["metadata"]["uid"],
        },
        "type": type_, "reason": reason, "message": message,
        "source": {"component": component},
        "reportingComponent": component, "reportingInstance": component,
        "firstTimestamp": now, "lastTimestamp": now, "eventTime": null, "count": 1,
    });
    let _ = api.create("events", &ns, event);
}
