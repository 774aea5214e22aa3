//! Fields the API server refuses to change after creation (API reference, per kind: "Pod
//! update" rules, PersistentVolumeClaim resize, Job template, Service clusterIP, workload
//! selectors, RoleBinding roleRef, immutable ConfigMaps and Secrets): an update that changes
//! them gets `422 Invalid` with the field path.

use crate::error::{ApiError, Cause};
use crate::registry::ResourceType;
use serde_json::Value;

fn remove(v: &mut Value, path: &[&str]) {
    match path {
        [] => {}
        [last] => {
            if let Some(m) = v.as_object_mut() {
                m.remove(*last);
            }
        }
        [first, rest @ ..] => {
            if let Some(child) = v.get_mut(*first) {
                remove(child, rest);
            }
        }
    }
}

fn strip(v: &Value, paths: &[&[&str]]) -> Value {
    let mut v = v.clone();
    for path in paths {
        remove(&mut v, path);
    }
    v
}

fn images_blanked(spec: &Value) -> Value {
    let mut s = strip(
        spec,
        &[
            &["activeDeadlineSeconds"],
            &["tolerations"],
            &["schedulingGates"],
        ],
    );
    for k in ["containers", "initContainers"] {
        for c in s[k].as_array_mut().into_iter().flatten() {
            if let Some(m) = c.as_object_mut() {
                m.remove("image");
            }
        }
    }
    s
}

/// Check an update of `old` to `new` (main resource, not status).
pub fn check(rt: &ResourceType, old: &Value, new: &mut Value) -> Result<(), ApiError> {
    if rt.crd.is_some() {
        return Ok(());
    }
    let mut causes = Vec::new();
    let mut forbid = |field: &str, message: &str| {
        causes.push(Cause {
            field: field.into(),
            reason: "FieldValueForbidden",
            message: message.into(),
        });
    };
    let immutable = |field: &str| format!("{field}: field is immutable");
    let (o, n) = (&old["spec"], &new["spec"]);
    match (rt.group.as_str(), rt.kind.as_str()) {
        ("", "Pod") if images_blanked(o) != images_blanked(n) => {
            forbid("spec", "Forbidden: pod updates may not change fields other than `spec.containers[*].image`, `spec.initContainers[*].image`, `spec.activeDeadlineSeconds`, `spec.tolerations` (only additions to existing tolerations) or `spec.schedulingGates`");
        }
        ("", "PersistentVolumeClaim") => {
            let keep: &[&[&str]] = &[&["resources", "requests"], &["volumeAttributesClassName"]];
            if strip(o, keep) != strip(n, keep) {
                forbid("spec", "Forbidden: spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims");
            }
            let size = |v: &Value| {
                v["resources"]["requests"]["storage"]
                    .as_str()
                    .and_then(pgherd_api::quantity::parse)
            };
            if let (Some(a), Some(b)) = (size(o), size(n)) {
                if b < a {
                    forbid(
                        "spec.resources.requests.storage",
                        "Forbidden: field can not be less than status.capacity",
                    );
                }
            }
        }
        ("batch", "Job") => {
            for f in ["template", "selector", "completions"] {
                if o.get(f) != n.get(f) {
                    forbid(&format!("spec.{f}"), &immutable(&format!("spec.{f}")));
                }
            }
        }
        ("apps", "Deployment" | "ReplicaSet") if o.get("selector") != n.get("selector") => {
            forbid("spec.selector", &immutable("spec.selector"));
        }
        ("", "Service") => {
            if n["clusterIP"].as_str().is_none_or(str::is_empty) && o.get("clusterIP").is_some() {
                new["spec"]["clusterIP"] = o["clusterIP"].clone();
                new["spec"]["clusterIPs"] = o["clusterIPs"].clone();
            } else if o.get("clusterIP").is_some()
                && o.get("clusterIP") != new["spec"].get("clusterIP")
            {
                forbid("spec.clusterIP", &immutable("spec.clusterIP"));
            }
        }
        ("rbac.authorization.k8s.io", "RoleBinding" | "ClusterRoleBinding")
            if old.get("roleRef") != new.get("roleRef") =>
        {
            forbid("roleRef", "Invalid value: cannot change roleRef");
        }
        ("", "ConfigMap" | "Secret") if old["immutable"] == Value::Bool(true) => {
            for f in ["data", "binaryData", "immutable"] {
                if old.get(f) != new.get(f) {
                    forbid(f, &immutable(f));
                }
            }
        }
        _ => {}
    }
    if causes.is_empty() {
        return Ok(());
    }
    let name = old["metadata"]["name"].as_str().unwrap_or_default();
    Err(ApiError::invalid(
        &rt.group_kind(),
        name,
        &rt.kind,
        &rt.group,
        &causes,
    ))
}
