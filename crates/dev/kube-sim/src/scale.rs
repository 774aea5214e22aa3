//! The `/scale` subresource (API reference "Scale subresource", autoscaling/v1 Scale): reads
//! and writes the replica count at the type's spec/status paths.

use crate::error::ApiError;
use crate::registry::ResourceType;
use crate::table::json_path;
use crate::verbs::{State, Target, WriteOptions};
use serde_json::{json, Value};

fn segments(path: &str) -> Vec<&str> {
    path.trim_start_matches('.')
        .split('.')
        .filter(|s| !s.is_empty())
        .collect()
}

pub fn scale_of(rt: &ResourceType, o: &Value) -> Value {
    let Some(paths) = &rt.scale else {
        return Value::Null;
    };
    let mut s = json!({
        "kind": "Scale", "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": o["metadata"]["name"], "namespace": o["metadata"]["namespace"], "uid": o["metadata"]["uid"],
            "resourceVersion": o["metadata"]["resourceVersion"], "creationTimestamp": o["metadata"]["creationTimestamp"],
        },
        "spec": { "replicas": json_path(o, &paths.spec_replicas).cloned().unwrap_or(json!(0)) },
        "status": { "replicas": json_path(o, &paths.status_replicas).cloned().unwrap_or(json!(0)) },
    });
    if let Some(sel) = paths.label_selector.as_ref().and_then(|p| json_path(o, p)) {
        s["status"]["selector"] = sel.clone();
    }
    s
}

/// Write `scale.spec.replicas` to the object.
pub fn update_scale(
    state: &mut State,
    t: &Target,
    scale: &Value,
    opts: &WriteOptions,
) -> Result<Value, ApiError> {
    let Some(paths) = &t.rt.scale else {
        return Err(ApiError::new(404, "NotFound", "no scale subresource"));
    };
    let replicas = scale["spec"]["replicas"].clone();
    if !replicas.is_i64() {
        return Err(ApiError::bad_request("spec.replicas must be an integer"));
    }
    let mut patch = replicas;
    for seg in segments(&paths.spec_replicas).into_iter().rev() {
        patch = json!({ seg: patch });
    }
    if let Some(rv) = scale["metadata"]["resourceVersion"].as_str() {
        patch["metadata"] = json!({ "resourceVersion": rv });
    }
    let main = Target {
        subresource: String::new(),
        ..t.clone()
    };
    let body = serde_json::to_vec(&patch).map_err(|e| ApiError::internal(e.to_string()))?;
    let w = state.patch(&main, "application/merge-patch+json", &body, opts)?;
    Ok(scale_of(&t.rt, &w.object))
}
