//! `metadata` of a manifest, checked as the API server does: known fields only, string labels
//! and annotations, valid names.

use crate::diagnostics::{did_you_mean, Diagnostic, FieldPath};
use crate::validate;
use serde_json::{json, Value};

const METADATA_FIELDS: &[&str] = &[
    "name",
    "namespace",
    "labels",
    "annotations",
    "generateName",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "finalizers",
    "ownerReferences",
    "managedFields",
    "selfLink",
];

/// Check `metadata` and return what can be kept of it (fields of the wrong type are dropped,
/// so one bad label does not stop the rest of the object from being validated).
pub(crate) fn check_metadata(doc: &Value, out: &mut Vec<Diagnostic>) -> Value {
    let path = FieldPath::new("metadata");
    let Some(meta) = doc.get("metadata") else {
        out.push(
            Diagnostic::error("metadata", "required field is missing")
                .with_hint("add metadata.name"),
        );
        return json!({});
    };
    let Some(meta) = meta.as_object() else {
        out.push(Diagnostic::error("metadata", "must be an object"));
        return json!({});
    };
    let mut kept = serde_json::Map::new();
    for (key, value) in meta {
        if !METADATA_FIELDS.contains(&key.as_str()) {
            let mut d = Diagnostic::error(path.key(key).as_str(), "unknown field");
            if let Some(best) = did_you_mean(key, METADATA_FIELDS.iter().copied()) {
                d = d.with_hint(format!("did you mean metadata.{best}?"));
            }
            out.push(d);
        } else if matches!(key.as_str(), "labels" | "annotations") {
            match value.as_object() {
                Some(map) => {
                    let mut strings = serde_json::Map::new();
                    for (k, v) in map {
                        if v.is_string() {
                            strings.insert(k.clone(), v.clone());
                        } else {
                            out.push(
                                Diagnostic::error(
                                    path.key(key).key(k).as_str(),
                                    "must be a string",
                                )
                                .with_hint(format!("put the value in quotes: \"{v}\"")),
                            );
                        }
                    }
                    kept.insert(key.clone(), Value::Object(strings));
                }
                None if value.is_null() => {}
                None => out.push(Diagnostic::error(
                    path.key(key).as_str(),
                    "must be a map of strings",
                )),
            }
        } else if matches!(key.as_str(), "name" | "namespace" | "generateName")
            && !value.is_string()
        {
            out.push(Diagnostic::error(
                path.key(key).as_str(),
                "must be a string",
            ));
        } else if matches!(key.as_str(), "name" | "namespace" | "generateName") {
            kept.insert(key.clone(), value.clone());
        }
        // Server-owned fields (uid, resourceVersion, managedFields, ...) are accepted and
        // dropped, as `kubectl apply` of an exported object does.
    }
    let name = meta.get("name").and_then(Value::as_str).unwrap_or_default();
    if name.is_empty() {
        out.push(Diagnostic::error(
            "metadata.name",
            "required field is missing",
        ));
    } else if !validate::is_dns1123_subdomain(name) {
        out.push(
            Diagnostic::error(
                "metadata.name",
                format!("{name:?} is not a valid object name"),
            )
            .with_hint("use lowercase letters, digits, '-' and '.'"),
        );
    }
    if let Some(ns) = meta.get("namespace").and_then(Value::as_str) {
        if !validate::is_dns1035_label(ns) && !validate::is_dns1123_subdomain(ns) {
            out.push(Diagnostic::error(
                "metadata.namespace",
                format!("{ns:?} is not a valid namespace"),
            ));
        }
    }
    Value::Object(kept)
}
