//! Checking a document against a structural OpenAPI schema the way the Kubernetes API server
//! does with strict field validation: unknown fields, wrong types, values outside an enum or a
//! range, missing required fields. Every problem is reported (not just the first), unknown
//! fields come with a did-you-mean, and the walk returns the document *pruned* of what was
//! wrong, so semantic validation can still run on the rest and report its own problems too.
//!
//! `null` is treated as absent for fields that are not nullable, as the API server does.

use crate::diagnostics::{did_you_mean, Diagnostic, FieldPath};
use serde_json::{Map, Value};

/// Check `value` against `schema`; report problems into `out`; return what survives.
pub fn check(
    value: &Value,
    schema: &Value,
    path: &FieldPath,
    out: &mut Vec<Diagnostic>,
) -> Option<Value> {
    if value.is_null() {
        return None;
    }
    let flag = |name: &str| schema.get(name).and_then(Value::as_bool) == Some(true);
    if flag("x-kubernetes-int-or-string") {
        return match value {
            Value::String(_) | Value::Number(_) => Some(value.clone()),
            other => {
                out.push(type_error(path, "a string or an integer", other));
                None
            }
        };
    }
    let ty = schema.get("type").and_then(Value::as_str);
    if ty.is_none() && flag("x-kubernetes-preserve-unknown-fields") {
        return Some(value.clone());
    }
    match ty {
        Some("object") => check_object(value, schema, path, out),
        Some("array") => check_array(value, schema, path, out),
        Some("string") => match value {
            Value::String(s) => check_string(s, schema, path, out).then(|| value.clone()),
            other => {
                let mut d = type_error(path, "a string", other);
                if let Some(allowed) = schema.get("enum").and_then(Value::as_array) {
                    let names: Vec<&str> = allowed.iter().filter_map(Value::as_str).collect();
                    d = d.with_hint(format!("one of: {}", names.join(", ")));
                } else if matches!(other, Value::Bool(_)) {
                    d = d.with_hint(
                        "put the value in quotes (\"on\", \"true\"): Kubernetes reads YAML 1.1, where unquoted on/off/yes/no/true/false are booleans",
                    );
                } else if matches!(other, Value::Number(_)) {
                    d = d.with_hint(format!(
                        "put the value in quotes as written (unquoted, it is the number {other})"
                    ));
                }
                out.push(d);
                None
            }
        },
        Some("integer") => match value {
            Value::Number(n) if n.is_i64() || n.is_u64() => {
                check_range(n, schema, path, out).then(|| value.clone())
            }
            Value::String(s) if s.trim().parse::<i64>().is_ok() => {
                out.push(
                    type_error(path, "an integer", value)
                        .with_hint(format!("remove the quotes: {}", s.trim())),
                );
                None
            }
            other => {
                out.push(type_error(path, "an integer", other));
                None
            }
        },
        Some("number") => match value {
            Value::Number(n) => check_range(n, schema, path, out).then(|| value.clone()),
            other => {
                out.push(type_error(path, "a number", other));
                None
            }
        },
        Some("boolean") => match value {
            Value::Bool(_) => Some(value.clone()),
            Value::String(s)
                if matches!(s.as_str(), "true" | "false")
                    || crate::yaml11::yaml11_bool(s).is_some() =>
            {
                out.push(
                    type_error(path, "a boolean", value)
                        .with_hint(format!("remove the quotes: {s}")),
                );
                None
            }
            other => {
                out.push(type_error(path, "true or false", other));
                None
            }
        },
        _ => Some(value.clone()),
    }
}

fn describe(value: &Value) -> String {
    match value {
        Value::Null => "null".to_string(),
        Value::Bool(b) => format!("the boolean {b}"),
        Value::Number(n) => format!("the number {n}"),
        Value::String(s) => format!("the string {s:?}"),
        Value::Array(_) => "a list".to_string(),
        Value::Object(_) => "an object".to_string(),
    }
}

fn type_error(path: &FieldPath, expected: &str, got: &Value) -> Diagnostic {
    Diagnostic::error(
        path.as_str(),
        format!("must be {expected}, got {}", describe(got)),
    )
}

fn check_object(
    value: &Value,
    schema: &Value,
    path: &FieldPath,
    out: &mut Vec<Diagnostic>,
) -> Option<Value> {
    let Value::Object(map) = value else {
        let expected = if schema.get("properties").is_some() {
            "an object (a set of fields)"
        } else {
            "a map"
        };
        out.push(type_error(path, expected, value));
        return None;
    };
    let properties = schema.get("properties").and_then(Value::as_object);
    let additional = schema.get("additionalProperties");
    let preserve = schema
        .get("x-kubernetes-preserve-unknown-fields")
        .and_then(Value::as_bool)
        == Some(true);
    let mut kept = Map::new();
    for (key, child) in map {
        let child_path = path.key(key);
        if let Some(child_schema) = properties.and_then(|p| p.get(key)) {
            if let Some(v) = check(child, child_schema, &child_path, out) {
                kept.insert(key.clone(), v);
            }
        } else if let Some(child_schema) = additional.filter(|a| a.is_object()) {
            if let Some(v) = check(child, child_schema, &child_path, out) {
                kept.insert(key.clone(), v);
            }
        } else if preserve || additional.and_then(Value::as_bool) == Some(true) {
            kept.insert(key.clone(), child.clone());
        } else {
            out.push(unknown_field(key, &child_path, path, properties));
        }
    }
    for required in schema
        .get("required")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Some(name) = required.as_str() {
            if !kept.contains_key(name) && map.get(name).is_none_or(Value::is_null) {
                out.push(
                    Diagnostic::error(path.key(name).as_str(), "required field is missing")
                        .with_hint(format!("add {}", path.key(name))),
                );
            }
        }
    }
    Some(Value::Object(kept))
}

/// An unknown field, with the closest known field at the same level, or the same name one
/// level further down (`recovery.backupID` → `recovery.recoveryTarget.backupID`).
fn unknown_field(
    key: &str,
    child_path: &FieldPath,
    parent: &FieldPath,
    properties: Option<&Map<String, Value>>,
) -> Diagnostic {
    let d = Diagnostic::error(child_path.as_str(), "unknown field");
    let Some(properties) = properties else {
        return d;
    };
    let nested = || {
        properties.iter().filter_map(|(name, sub)| {
            let fields = sub
                .get("properties")
                .or_else(|| sub.get("items").and_then(|i| i.get("properties")))
                .and_then(Value::as_object)?;
            let container = if sub.get("items").is_some() {
                parent.key(name).index(0)
            } else {
                parent.key(name)
            };
            Some((container, fields))
        })
    };
    // The same name one level down beats a near miss here: `recovery.backupID` is
    // `recovery.recoveryTarget.backupID`, not `recovery.backup`.
    for (container, fields) in nested() {
        if let Some(exact) = fields.keys().find(|f| f.eq_ignore_ascii_case(key)) {
            return d.with_hint(format!("did you mean {}?", container.key(exact)));
        }
    }
    if let Some(best) = did_you_mean(key, properties.keys().map(String::as_str)) {
        return d.with_hint(format!("did you mean {}?", parent.key(best)));
    }
    for (container, fields) in nested() {
        if let Some(best) = did_you_mean(key, fields.keys().map(String::as_str)) {
            return d.with_hint(format!("did you mean {}?", container.key(best)));
        }
    }
    let mut names: Vec<&str> = properties.keys().map(String::as_str).collect();
    names.sort_unstable();
    d.with_hint(format!("known fields here: {}", names.join(", ")))
}

fn check_array(
    value: &Value,
    schema: &Value,
    path: &FieldPath,
    out: &mut Vec<Diagnostic>,
) -> Option<Value> {
    let Value::Array(items) = value else {
        out.push(type_error(path, "a list", value));
        return None;
    };
    let bound = |name: &str| schema.get(name).and_then(Value::as_u64);
    if let Some(min) = bound("minItems").filter(|min| (items.len() as u64) < *min) {
        out.push(Diagnostic::error(
            path.as_str(),
            format!("must have at least {min} item(s), got {}", items.len()),
        ));
    }
    if let Some(max) = bound("maxItems").filter(|max| (items.len() as u64) > *max) {
        out.push(Diagnostic::error(
            path.as_str(),
            format!("must have at most {max} items, got {}", items.len()),
        ));
    }
    let item_schema = schema.get("items");
    let kept = items
        .iter()
        .enumerate()
        .filter_map(|(i, item)| match item_schema {
            Some(s) => check(item, s, &path.index(i), out),
            None => Some(item.clone()),
        })
        .collect();
    Some(Value::Array(kept))
}

fn check_string(s: &str, schema: &Value, path: &FieldPath, out: &mut Vec<Diagnostic>) -> bool {
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array) {
        let names: Vec<&str> = allowed.iter().filter_map(Value::as_str).collect();
        if !names.contains(&s) {
            let mut d = Diagnostic::error(
                path.as_str(),
                format!(
                    "unsupported value {s:?}; must be one of: {}",
                    names.join(", ")
                ),
            );
            if let Some(best) = did_you_mean(s, names.iter().copied()) {
                d = d.with_hint(format!("did you mean {best:?}?"));
            }
            out.push(d);
            return false;
        }
    }
    if let Some(pattern) = schema.get("pattern").and_then(Value::as_str) {
        if let Ok(re) = regex::Regex::new(pattern) {
            if !re.is_match(s) {
                out.push(Diagnostic::error(
                    path.as_str(),
                    format!("{s:?} does not match the pattern {pattern}"),
                ));
                return false;
            }
        }
    }
    let len = s.chars().count() as u64;
    if let Some(min) = schema.get("minLength").and_then(Value::as_u64) {
        if len < min {
            let msg = if min == 1 {
                "must not be empty".to_string()
            } else {
                format!("must be at least {min} characters")
            };
            out.push(Diagnostic::error(path.as_str(), msg));
            return false;
        }
    }
    if let Some(max) = schema.get("maxLength").and_then(Value::as_u64) {
        if len > max {
            out.push(Diagnostic::error(
                path.as_str(),
                format!("must be at most {max} characters, got {len}"),
            ));
            return false;
        }
    }
    true
}

fn check_range(
    n: &serde_json::Number,
    schema: &Value,
    path: &FieldPath,
    out: &mut Vec<Diagnostic>,
) -> bool {
    let Some(v) = n.as_f64() else { return true };
    if let Some(min) = schema.get("minimum").and_then(Value::as_f64) {
        if v < min {
            out.push(
                Diagnostic::error(path.as_str(), format!("must be >= {min}, got {n}"))
                    .with_hint(format!("set {path} to {min} or more")),
            );
            return false;
        }
    }
    if let Some(max) = schema.get("maximum").and_then(Value::as_f64) {
        if v > max {
            out.push(
                Diagnostic::error(path.as_str(), format!("must be <= {max}, got {n}"))
                    .with_hint(format!("set {path} to {max} or less")),
            );
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> Value {
        json!({
            "type": "object",
            "required": ["spec"],
            "properties": {
                "spec": {
                    "type": "object",
                    "properties": {
                        "instances": {"type": "integer", "minimum": 1},
                        "mode": {"type": "string", "enum": ["session", "transaction"]},
                        "params": {"type": "object", "additionalProperties": {"type": "string"}},
                        "bootstrap": {"type": "object", "properties": {
                            "recovery": {"type": "object", "properties": {
                                "source": {"type": "string"},
                                "recoveryTarget": {"type": "object", "properties": {"backupID": {"type": "string"}}}
                            }}
                        }},
                        "size": {"x-kubernetes-int-or-string": true},
                        "list": {"type": "array", "items": {"type": "boolean"}}
                    }
                }
            }
        })
    }

    fn run(doc: Value) -> (Option<Value>, Vec<Diagnostic>) {
        let mut out = Vec::new();
        let kept = check(&doc, &schema(), &FieldPath::root(), &mut out);
        (kept, out)
    }

    #[test]
    fn reports_everything_at_once() {
        let (kept, errs) = run(json!({"spec": {
            "instaces": 3, "instances": -1, "mode": "transacton",
            "params": {"max_connections": 200}, "list": [true, "x"],
        }}));
        let paths: Vec<&str> = errs.iter().map(|d| d.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "spec.instaces",
                "spec.instances",
                "spec.mode",
                "spec.params.max_connections",
                "spec.list[1]"
            ]
        );
        assert_eq!(
            errs[0].hint.as_deref(),
            Some("did you mean spec.instances?")
        );
        assert_eq!(
            errs[2].hint.as_deref(),
            Some("did you mean \"transaction\"?")
        );
        assert!(errs[3].hint.as_deref().unwrap_or("").contains("quotes"));
        assert_eq!(kept, Some(json!({"spec": {"params": {}, "list": [true]}})));
    }

    #[test]
    fn suggests_a_field_one_level_down() {
        let (_, errs) = run(json!({"spec": {"bootstrap": {"recovery": {"backupID": "x"}}}}));
        assert_eq!(errs[0].path, "spec.bootstrap.recovery.backupID");
        assert_eq!(
            errs[0].hint.as_deref(),
            Some("did you mean spec.bootstrap.recovery.recoveryTarget.backupID?")
        );
    }

    #[test]
    fn required_and_null() {
        let (_, errs) = run(json!({"spec": null}));
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].path, "spec");
        let (_, errs) = run(json!({"spec": {"instances": null, "size": "10Gi"}}));
        assert!(errs.is_empty());
    }
}
