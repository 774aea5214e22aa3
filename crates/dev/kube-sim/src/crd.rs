//! CustomResourceDefinitions (API reference "CustomResourceDefinition v1" and the "Extend the
//! Kubernetes API with CRDs" task): a stored CRD becomes served types; custom objects are
//! defaulted, pruned of unknown fields (unless `x-kubernetes-preserve-unknown-fields`) and
//! validated against the version's structural schema, with `422 Invalid` and field paths.
//! The schema walk is the project's own `pgherd_api::structural`.

use crate::clock;
use crate::error::{ApiError, Cause};
use crate::registry::{PrinterColumn, ResourceType, ScalePaths};
use pgherd_api::diagnostics::{Diagnostic, FieldPath};
use serde_json::{json, Value};

/// How the request asked unknown fields to be treated (`fieldValidation`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Validation {
    Strict,
    #[default]
    Warn,
    Ignore,
}

impl Validation {
    pub fn parse(s: Option<&str>) -> Self {
        match s {
            Some("Strict") => Validation::Strict,
            Some("Ignore") => Validation::Ignore,
            _ => Validation::Warn,
        }
    }
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s.as_str().map(String::from))
        .collect()
}

/// The types a CRD object serves (one per served version), or why it is invalid.
pub fn types_of(crd: &Value) -> Result<Vec<ResourceType>, ApiError> {
    let spec = &crd["spec"];
    let name = crd["metadata"]["name"].as_str().unwrap_or_default();
    let group = spec["group"].as_str().unwrap_or_default();
    let names = &spec["names"];
    let plural = names["plural"].as_str().unwrap_or_default();
    let kind = names["kind"].as_str().unwrap_or_default();
    let mut causes = Vec::new();
    let mut need = |ok: bool, field: &str, message: &str| {
        if !ok {
            causes.push(Cause {
                field: field.into(),
                reason: "FieldValueInvalid",
                message: message.into(),
            });
        }
    };
    need(!group.is_empty(), "spec.group", "Required value");
    need(!plural.is_empty(), "spec.names.plural", "Required value");
    need(!kind.is_empty(), "spec.names.kind", "Required value");
    need(
        name == format!("{plural}.{group}"),
        "metadata.name",
        "must be spec.names.plural+\".\"+spec.group",
    );
    let versions = spec["versions"].as_array().cloned().unwrap_or_default();
    need(
        !versions.is_empty(),
        "spec.versions",
        "must have exactly one version marked as storage version",
    );
    if !causes.is_empty() {
        return Err(ApiError::invalid(
            "CustomResourceDefinition.apiextensions.k8s.io",
            name,
            "CustomResourceDefinition",
            "apiextensions.k8s.io",
            &causes,
        ));
    }
    let namespaced = spec["scope"].as_str() != Some("Cluster");
    Ok(versions
        .iter()
        .filter(|v| v["served"].as_bool() != Some(false))
        .map(|v| {
            let sub = &v["subresources"];
            let scale = sub.get("scale").map(|s| ScalePaths {
                spec_replicas: s["specReplicasPath"]
                    .as_str()
                    .unwrap_or(".spec.replicas")
                    .into(),
                status_replicas: s["statusReplicasPath"]
                    .as_str()
                    .unwrap_or(".status.replicas")
                    .into(),
                label_selector: s["labelSelectorPath"].as_str().map(String::from),
            });
            let printer_columns = v["additionalPrinterColumns"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|c| PrinterColumn {
                    name: c["name"].as_str().unwrap_or_default().into(),
                    type_: c["type"].as_str().unwrap_or("string").into(),
                    json_path: c["jsonPath"].as_str().unwrap_or_default().into(),
                    description: c["description"].as_str().unwrap_or_default().into(),
                    priority: c["priority"].as_i64().unwrap_or(0),
                    format: c["format"].as_str().unwrap_or_default().into(),
                })
                .collect();
            ResourceType {
                group: group.into(),
                version: v["name"].as_str().unwrap_or_default().into(),
                kind: kind.into(),
                plural: plural.into(),
                singular: names["singular"]
                    .as_str()
                    .map(String::from)
                    .unwrap_or_else(|| kind.to_lowercase()),
                namespaced,
                short_names: strings(&names["shortNames"]),
                categories: strings(&names["categories"]),
                status: sub.get("status").is_some(),
                scale,
                schema: v["schema"].get("openAPIV3Schema").cloned(),
                printer_columns,
                crd: Some(name.to_string()),
            }
        })
        .collect())
}

/// The status the API server gives an accepted CRD.
pub fn established_status(crd: &Value) -> Value {
    let now = clock::now_rfc3339();
    let storage: Vec<Value> = crd["spec"]["versions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|v| v["storage"].as_bool() == Some(true))
        .map(|v| v["name"].clone())
        .collect();
    let cond = |t: &str, reason: &str, message: &str| json!({ "type": t, "status": "True", "lastTransitionTime": now, "reason": reason, "message": message });
    json!({
        "conditions": [
            cond("NamesAccepted", "NoConflicts", "no conflicts found"),
            cond("Established", "InitialNamesAccepted", "the initial names have been accepted"),
        ],
        "acceptedNames": crd["spec"]["names"],
        "storedVersions": storage,
    })
}

/// Fill in schema defaults for absent fields, recursively.
pub fn apply_defaults(value: &mut Value, schema: &Value) {
    match value {
        Value::Object(map) => {
            if let Some(props) = schema["properties"].as_object() {
                for (k, ps) in props {
                    if !map.contains_key(k) {
                        if let Some(d) = ps.get("default") {
                            map.insert(k.clone(), d.clone());
                        }
                    }
                    if let Some(child) = map.get_mut(k) {
                        apply_defaults(child, ps);
                    }
                }
            } else if let Some(ap) = schema.get("additionalProperties").filter(|a| a.is_object()) {
                for child in map.values_mut() {
                    apply_defaults(child, ap);
                }
            }
        }
        Value::Array(items) => {
            if let Some(is) = schema.get("items") {
                for i in items {
                    apply_defaults(i, is);
                }
            }
        }
        _ => {}
    }
}

/// Default, prune and validate a custom object in place; returns the warnings to send.
pub fn admit(
    rt: &ResourceType,
    object: &mut Value,
    validation: Validation,
) -> Result<Vec<String>, ApiError> {
    let Some(schema) = &rt.schema else {
        return Ok(Vec::new());
    };
    let name = object["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let preserve_root = schema["x-kubernetes-preserve-unknown-fields"].as_bool() == Some(true);
    let Value::Object(map) = object.clone() else {
        return Err(ApiError::bad_request("the object must be a JSON object"));
    };
    let mut diags: Vec<Diagnostic> = Vec::new();
    for (k, v) in &map {
        if matches!(k.as_str(), "apiVersion" | "kind" | "metadata") {
            continue;
        }
        let path = FieldPath::root().key(k);
        match schema["properties"].get(k) {
            Some(ps) => {
                let mut v = v.clone();
                apply_defaults(&mut v, ps);
                match pgherd_api::structural::check(&v, ps, &path, &mut diags) {
                    Some(kept) => object[k.as_str()] = kept,
                    None => {
                        if let Some(m) = object.as_object_mut() {
                            m.remove(k);
                        }
                    }
                }
            }
            None if preserve_root => {}
            None => {
                diags.push(Diagnostic::error(path.as_str(), "unknown field"));
                if let Some(m) = object.as_object_mut() {
                    m.remove(k);
                }
            }
        }
    }
    // Absent top-level fields with defaults (e.g. `spec: {}` defaulted).
    if let Some(props) = schema["properties"].as_object() {
        for (k, ps) in props {
            if object.get(k).is_none() {
                if let Some(d) = ps.get("default") {
                    let mut d = d.clone();
                    apply_defaults(&mut d, ps);
                    object[k.as_str()] = d;
                }
            }
        }
    }
    let (unknown, problems): (Vec<_>, Vec<_>) = diags
        .into_iter()
        .filter(Diagnostic::is_error)
        .partition(|d| d.message == "unknown field");
    let mut warnings = Vec::new();
    if !unknown.is_empty() {
        let fields: Vec<String> = unknown
            .iter()
            .map(|d| format!("unknown field \"{}\"", d.path))
            .collect();
        match validation {
            Validation::Strict => {
                return Err(ApiError::bad_request(format!(
                    "strict decoding error: {}",
                    fields.join(", ")
                )))
            }
            Validation::Warn => warnings = fields,
            Validation::Ignore => {}
        }
    }
    if !problems.is_empty() {
        let causes: Vec<Cause> = problems
            .iter()
            .map(|d| Cause {
                field: d.path.clone(),
                reason: if d.message.contains("required") {
                    "FieldValueRequired"
                } else {
                    "FieldValueInvalid"
                },
                message: d.message.clone(),
            })
            .collect();
        return Err(ApiError::invalid(
            &rt.group_kind(),
            &name,
            &rt.kind,
            &rt.group,
            &causes,
        ));
    }
    Ok(warnings)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prunes_defaults_and_rejects() {
        let crd = json!({"metadata": {"name": "widgets.example.io"}, "spec": {
            "group": "example.io", "scope": "Namespaced",
            "names": {"plural": "widgets", "kind": "Widget"},
            "versions": [{"name": "v1", "served": true, "storage": true, "subresources": {"status": {}},
              "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                "spec": {"type": "object", "properties": {
                   "size": {"type": "integer", "minimum": 1, "default": 3},
                   "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}}}}}]}});
        let rt = &types_of(&crd).unwrap()[0];
        let mut o = json!({"metadata": {"name": "a"}, "spec": {"junk": 1, "free": {"x": 1}}});
        let w = admit(rt, &mut o, Validation::Warn).unwrap();
        assert_eq!(o["spec"], json!({"size": 3, "free": {"x": 1}}));
        assert_eq!(w.len(), 1);
        let mut bad = json!({"metadata": {"name": "a"}, "spec": {"size": 0}});
        let e = admit(rt, &mut bad, Validation::Warn).unwrap_err();
        assert_eq!(e.code, 422);
        assert!(e.message.contains("spec.size"), "{}", e.message);
    }
}
