//! Field ownership as server-side apply records it (API reference "Server-Side Apply: Field
//! Management"): the set of fields an object sets, in FieldsV1 notation (`f:spec`,
//! `k:{"name":"a"}` for keyed list items, `v:"x"` for set items), converted to and from the
//! `managedFields` JSON, and the lookups and removals apply needs on such paths.

use crate::clock;
use crate::patch::{is_primitive_merge_list, merge_key};
use serde_json::{json, Map, Value};
use std::collections::BTreeSet;

/// A path in FieldsV1 notation: `f:spec`, `k:{"name":"a"}`, `v:"x"`.
pub type FieldPath = Vec<String>;
pub type FieldSet = BTreeSet<FieldPath>;

pub(crate) const METADATA_FIELDS: [&str; 4] =
    ["labels", "annotations", "finalizers", "ownerReferences"];

/// The fields an object sets, as ownership sees them. `status`: whether this is the status
/// subresource (only `status` counts) or the main resource (`status` does not count, when the
/// kind has a status subresource: `skip_status`).
/// `keyed`: lists with a built-in merge key are maps of items (built-in kinds); custom
/// resources' lists are atomic (their CRDs declare no `x-kubernetes-list-type`).
pub fn fields_of(object: &Value, status: bool, skip_status: bool, keyed: bool) -> FieldSet {
    let mut out = FieldSet::new();
    let Value::Object(m) = object else { return out };
    for (k, v) in m {
        let counted = match k.as_str() {
            "apiVersion" | "kind" => false,
            "status" => status || !skip_status,
            _ => !status,
        };
        if !counted {
            continue;
        }
        if k == "metadata" {
            for f in METADATA_FIELDS {
                if let Some(child) = v.get(f) {
                    let mut p = vec!["f:metadata".to_string(), format!("f:{f}")];
                    collect(child, f, &mut p, &mut out, true);
                }
            }
            continue;
        }
        let mut p = vec![format!("f:{k}")];
        collect(v, k, &mut p, &mut out, keyed);
    }
    out
}

fn item_key(key: &str, item: &Value) -> String {
    format!("k:{}", json!({ key: item[key] }))
}

fn collect(v: &Value, field: &str, prefix: &mut FieldPath, out: &mut FieldSet, keyed: bool) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, c) in m {
                prefix.push(format!("f:{k}"));
                collect(c, k, prefix, out, keyed);
                prefix.pop();
            }
        }
        Value::Array(items) if keyed && is_primitive_merge_list(field) => {
            for x in items {
                prefix.push(format!("v:{x}"));
                out.insert(prefix.clone());
                prefix.pop();
            }
        }
        Value::Array(items) if keyed && items.iter().all(Value::is_object) && !items.is_empty() => {
            match merge_key(field, items) {
                Some(key) => {
                    for item in items {
                        prefix.push(item_key(key, item));
                        out.insert(prefix.clone());
                        collect(item, "", prefix, out, keyed);
                        prefix.pop();
                    }
                }
                None => {
                    out.insert(prefix.clone());
                }
            }
        }
        _ => {
            out.insert(prefix.clone());
        }
    }
}

fn find_item(items: &[Value], element: &str) -> Option<usize> {
    if let Some(k) = element.strip_prefix("k:") {
        let want: Map<String, Value> = serde_json::from_str(k).ok()?;
        items
            .iter()
            .position(|i| want.iter().all(|(kk, vv)| &i[kk] == vv))
    } else if let Some(v) = element.strip_prefix("v:") {
        let want: Value = serde_json::from_str(v).ok()?;
        items.iter().position(|i| *i == want)
    } else {
        None
    }
}

pub fn value_at<'a>(object: &'a Value, path: &[String]) -> Option<&'a Value> {
    let mut cur = object;
    for e in path {
        cur = if let Some(f) = e.strip_prefix("f:") {
            cur.get(f)?
        } else {
            let items = cur.as_array()?;
            &items[find_item(items, e)?]
        };
    }
    Some(cur)
}

pub(crate) fn remove_path(object: &mut Value, path: &[String]) {
    let Some((last, parent)) = path.split_last() else {
        return;
    };
    let mut cur = object;
    for e in parent {
        let next = if let Some(f) = e.strip_prefix("f:") {
            cur.get_mut(f)
        } else {
            match cur.as_array_mut() {
                Some(items) => match find_item(items, e) {
                    Some(i) => items.get_mut(i),
                    None => None,
                },
                None => None,
            }
        };
        match next {
            Some(n) => cur = n,
            None => return,
        }
    }
    if let Some(f) = last.strip_prefix("f:") {
        if let Some(m) = cur.as_object_mut() {
            m.remove(f);
        }
    } else if let Some(items) = cur.as_array_mut() {
        if let Some(i) = find_item(items, last) {
            items.remove(i);
        }
    }
}

/// `.spec.containers[name="a"].image`, as conflict messages print paths.
pub fn render_path(path: &[String]) -> String {
    let mut s = String::new();
    for e in path {
        if let Some(f) = e.strip_prefix("f:") {
            s.push('.');
            s.push_str(f);
        } else if let Some(k) = e.strip_prefix("k:") {
            let m: Map<String, Value> = serde_json::from_str(k).unwrap_or_default();
            let parts: Vec<String> = m.iter().map(|(k, v)| format!("{k}={v}")).collect();
            s.push_str(&format!("[{}]", parts.join(",")));
        } else if let Some(v) = e.strip_prefix("v:") {
            s.push_str(&format!("[={v}]"));
        }
    }
    s
}

/// FieldsV1 JSON from a set.
pub fn to_fields_v1(set: &FieldSet) -> Value {
    fn build(set: &FieldSet, prefix: &[String]) -> Value {
        let mut m = Map::new();
        if set.contains(prefix)
            && set
                .iter()
                .any(|p| p.len() > prefix.len() && p.starts_with(prefix))
        {
            m.insert(".".into(), json!({}));
        }
        let children: BTreeSet<&String> = set
            .iter()
            .filter(|p| p.len() > prefix.len() && p.starts_with(prefix))
            .map(|p| &p[prefix.len()])
            .collect();
        for c in children {
            let mut next = prefix.to_vec();
            next.push(c.clone());
            m.insert(c.clone(), build(set, &next));
        }
        Value::Object(m)
    }
    build(set, &[])
}

/// A set from FieldsV1 JSON.
pub fn from_fields_v1(v: &Value) -> FieldSet {
    let mut out = FieldSet::new();
    fn walk(v: &Value, prefix: &mut FieldPath, out: &mut FieldSet) {
        let Some(m) = v.as_object() else { return };
        if !prefix.is_empty() && (m.is_empty() || m.contains_key(".")) {
            out.insert(prefix.clone());
        }
        for (k, c) in m {
            if k != "." {
                prefix.push(k.clone());
                walk(c, prefix, out);
                prefix.pop();
            }
        }
    }
    walk(v, &mut Vec::new(), &mut out);
    out
}

/// One `managedFields` entry.
#[derive(Debug, Clone)]
pub struct Managed {
    pub manager: String,
    pub operation: String,
    pub api_version: String,
    pub subresource: String,
    pub fields: FieldSet,
    /// When the entry last changed (empty: now).
    pub time: String,
}

pub fn read_managed(object: &Value) -> Vec<Managed> {
    object["metadata"]["managedFields"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| Managed {
            manager: e["manager"].as_str().unwrap_or_default().into(),
            operation: e["operation"].as_str().unwrap_or_default().into(),
            api_version: e["apiVersion"].as_str().unwrap_or_default().into(),
            subresource: e["subresource"].as_str().unwrap_or_default().into(),
            fields: from_fields_v1(&e["fieldsV1"]),
            time: e["time"].as_str().unwrap_or_default().into(),
        })
        .collect()
}

pub fn write_managed(object: &mut Value, entries: &[Managed]) {
    let list: Vec<Value> = entries
        .iter()
        .filter(|e| !e.fields.is_empty())
        .map(|e| {
            let mut v = json!({
                "manager": e.manager, "operation": e.operation, "apiVersion": e.api_version,
                "time": if e.time.is_empty() { clock::now_rfc3339() } else { e.time.clone() },
                "fieldsType": "FieldsV1",
                "fieldsV1": to_fields_v1(&e.fields),
            });
            if !e.subresource.is_empty() {
                v["subresource"] = json!(e.subresource);
            }
            v
        })
        .collect();
    if list.is_empty() {
        if let Some(m) = object["metadata"].as_object_mut() {
            m.remove("managedFields");
        }
    } else {
        object["metadata"]["managedFields"] = Value::Array(list);
    }
}
