//! The three classic patch formats (API reference "Patch operations"): JSON merge patch
//! (RFC 7386), JSON patch (RFC 6902) and strategic merge patch, the last with the list merge
//! keys and directives (`$patch`, `$setElementOrder`, `$retainKeys`,
//! `$deleteFromPrimitiveList`) that `kubectl apply` sends for the built-in kinds.

use crate::error::ApiError;
use serde_json::{Map, Value};

/// RFC 7386.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(p) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    if let Value::Object(t) = target {
        for (k, v) in p {
            if v.is_null() {
                t.remove(k);
            } else {
                merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
    }
}

fn unescape(token: &str) -> String {
    token.replace("~1", "/").replace("~0", "~")
}

fn pointer_parts(path: &str) -> Result<Vec<String>, ApiError> {
    if path.is_empty() {
        return Ok(Vec::new());
    }
    let rest = path
        .strip_prefix('/')
        .ok_or_else(|| ApiError::bad_request(format!("invalid JSON pointer {path:?}")))?;
    Ok(rest.split('/').map(unescape).collect())
}

fn bad(op: &Value, why: &str) -> ApiError {
    ApiError::new(
        422,
        "Invalid",
        format!("the JSON patch operation {op} failed: {why}"),
    )
}

fn add_at(doc: &mut Value, parts: &[String], value: Value, op: &Value) -> Result<(), ApiError> {
    let Some((last, parent)) = parts.split_last() else {
        *doc = value;
        return Ok(());
    };
    let target = walk_mut(doc, parent).ok_or_else(|| bad(op, "missing parent"))?;
    match target {
        Value::Object(m) => {
            m.insert(last.clone(), value);
            Ok(())
        }
        Value::Array(a) => {
            let idx = if last == "-" {
                a.len()
            } else {
                last.parse::<usize>().map_err(|_| bad(op, "bad index"))?
            };
            if idx > a.len() {
                return Err(bad(op, "index out of range"));
            }
            a.insert(idx, value);
            Ok(())
        }
        _ => Err(bad(op, "parent is not a container")),
    }
}

fn remove_at(doc: &mut Value, parts: &[String], op: &Value) -> Result<Value, ApiError> {
    let (last, parent) = parts
        .split_last()
        .ok_or_else(|| bad(op, "cannot remove root"))?;
    let target = walk_mut(doc, parent).ok_or_else(|| bad(op, "missing parent"))?;
    match target {
        Value::Object(m) => m.remove(last).ok_or_else(|| bad(op, "no such field")),
        Value::Array(a) => {
            let idx = last.parse::<usize>().map_err(|_| bad(op, "bad index"))?;
            if idx >= a.len() {
                return Err(bad(op, "index out of range"));
            }
            Ok(a.remove(idx))
        }
        _ => Err(bad(op, "parent is not a container")),
    }
}

fn walk_mut<'a>(doc: &'a mut Value, parts: &[String]) -> Option<&'a mut Value> {
    let mut cur = doc;
    for p in parts {
        cur = match cur {
            Value::Object(m) => m.get_mut(p)?,
            Value::Array(a) => a.get_mut(p.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(cur)
}

/// RFC 6902.
pub fn json_patch(doc: &mut Value, patch: &Value) -> Result<(), ApiError> {
    let ops = patch
        .as_array()
        .ok_or_else(|| ApiError::bad_request("a JSON patch must be a list of operations"))?;
    for op in ops {
        let path = pointer_parts(op["path"].as_str().unwrap_or_default())?;
        match op["op"].as_str().unwrap_or_default() {
            "add" => add_at(doc, &path, op["value"].clone(), op)?,
            "remove" => {
                remove_at(doc, &path, op)?;
            }
            "replace" => {
                let slot = walk_mut(doc, &path).ok_or_else(|| bad(op, "no such path"))?;
                *slot = op["value"].clone();
            }
            "move" => {
                let from = pointer_parts(op["from"].as_str().unwrap_or_default())?;
                let v = remove_at(doc, &from, op)?;
                add_at(doc, &path, v, op)?;
            }
            "copy" => {
                let from = pointer_parts(op["from"].as_str().unwrap_or_default())?;
                let v = walk_mut(doc, &from)
                    .ok_or_else(|| bad(op, "no such from path"))?
                    .clone();
                add_at(doc, &path, v, op)?;
            }
            "test" => {
                let v = walk_mut(doc, &path).ok_or_else(|| bad(op, "no such path"))?;
                if *v != op["value"] {
                    return Err(bad(op, "test failed"));
                }
            }
            other => return Err(bad(op, &format!("unknown op {other:?}"))),
        }
    }
    Ok(())
}

/// The merge key of a list field of the built-in kinds (their `patchMergeKey` tags), chosen
/// by field name; for `ports` by what the items carry (containers: `containerPort`,
/// Services: `port`). `None`: the list is replaced as a whole.
pub fn merge_key(field: &str, items: &[Value]) -> Option<&'static str> {
    Some(match field {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "env"
        | "volumes"
        | "imagePullSecrets"
        | "resourceClaims" => "name",
        "volumeMounts" => "mountPath",
        "volumeDevices" => "devicePath",
        "hostAliases" => "ip",
        "conditions" => "type",
        "ownerReferences" => "uid",
        "topologySpreadConstraints" => "topologyKey",
        "ports" => {
            if items.iter().any(|i| i.get("containerPort").is_some()) {
                "containerPort"
            } else {
                "port"
            }
        }
        _ => return None,
    })
}

/// Lists of scalars merged as sets by a strategic merge patch.
pub fn is_primitive_merge_list(field: &str) -> bool {
    field == "finalizers"
}

fn strip_directives(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, _)| !k.starts_with('$'))
                .map(|(k, v)| (k.clone(), strip_directives(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(strip_directives).collect()),
        other => other.clone(),
    }
}

/// Strategic merge patch for the built-in kinds.
pub fn strategic_merge(target: &mut Value, patch: &Value) {
    let Value::Object(p) = patch else {
        *target = patch.clone();
        return;
    };
    if p.get("$patch").and_then(Value::as_str) == Some("replace") {
        *target = strip_directives(patch);
        return;
    }
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let Value::Object(t) = target else { return };
    for (k, v) in p {
        if let Some(field) = k.strip_prefix("$deleteFromPrimitiveList/") {
            if let (Some(Value::Array(list)), Some(gone)) = (t.get_mut(field), v.as_array()) {
                list.retain(|x| !gone.contains(x));
            }
            continue;
        }
        if k.starts_with('$') {
            continue;
        }
        if v.is_null() {
            t.remove(k);
            continue;
        }
        match v {
            Value::Object(_) => {
                if v.get("$patch").and_then(Value::as_str) == Some("delete") {
                    t.remove(k);
                } else {
                    strategic_merge(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
            Value::Array(items) => {
                let current = t.get(k).and_then(Value::as_array).cloned();
                let merged = merge_list(k, current.unwrap_or_default(), items);
                t.insert(k.clone(), merged);
            }
            other => {
                t.insert(k.clone(), other.clone());
            }
        }
    }
    if let Some(Value::Array(keep)) = p.get("$retainKeys") {
        let keep: Vec<&str> = keep.iter().filter_map(Value::as_str).collect();
        t.retain(|k, _| keep.contains(&k.as_str()));
    }
}

fn merge_list(field: &str, mut current: Vec<Value>, items: &[Value]) -> Value {
    if is_primitive_merge_list(field) {
        for i in items {
            if !current.contains(i) {
                current.push(i.clone());
            }
        }
        return Value::Array(current);
    }
    let object_items = items.iter().all(Value::is_object);
    let Some(key) = merge_key(field, items).filter(|_| object_items) else {
        return strip_directives(&Value::Array(items.to_vec()));
    };
    if items
        .iter()
        .any(|i| i.get("$patch").and_then(Value::as_str) == Some("replace"))
    {
        return strip_directives(&Value::Array(
            items
                .iter()
                .filter(|i| i.get("$patch").is_none())
                .cloned()
                .collect(),
        ));
    }
    for item in items {
        let id = &item[key];
        let pos = current.iter().position(|c| &c[key] == id);
        if item.get("$patch").and_then(Value::as_str) == Some("delete") {
            if let Some(pos) = pos {
                current.remove(pos);
            }
        } else if let Some(pos) = pos {
            strategic_merge(&mut current[pos], item);
        } else {
            current.push(strip_directives(item));
        }
    }
    Value::Array(current)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn strategic_merges_containers_by_name() {
        let mut pod = json!({"spec": {"containers": [
            {"name": "a", "image": "x", "env": [{"name": "A", "value": "1"}]},
            {"name": "b", "image": "y"}]}});
        let patch = json!({"spec": {"$setElementOrder/containers": [{"name": "a"}, {"name": "b"}],
            "containers": [{"name": "a", "env": [{"name": "B", "value": "2"}]},
                           {"name": "b", "$patch": "delete"}]}});
        strategic_merge(&mut pod, &patch);
        assert_eq!(pod["spec"]["containers"].as_array().unwrap().len(), 1);
        assert_eq!(
            pod["spec"]["containers"][0]["env"]
                .as_array()
                .unwrap()
                .len(),
            2
        );
        assert_eq!(pod["spec"]["containers"][0]["image"], "x");
    }

    #[test]
    fn json_patch_ops() {
        let mut d = json!({"a": [1, 2]});
        json_patch(
            &mut d,
            &json!([{"op": "add", "path": "/a/-", "value": 3},
            {"op": "replace", "path": "/b", "value": 1}]),
        )
        .unwrap_err();
        json_patch(
            &mut d,
            &json!([{"op": "add", "path": "/b", "value": {"c": 1}},
            {"op": "test", "path": "/b/c", "value": 1}, {"op": "remove", "path": "/a/0"}]),
        )
        .unwrap();
        assert_eq!(d, json!({"a": [2, 3], "b": {"c": 1}}));
    }
}
