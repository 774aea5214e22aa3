//! Server-side apply and field ownership (API reference "Server-Side Apply"): the fields each
//! field manager owns, kept in `metadata.managedFields` as FieldsV1; conflicts when an applier
//! sets a field another manager owns to a different value (unless forced); fields an applier
//! stops sending removed when nobody else owns them; updates (PUT, PATCH) take ownership of
//! what they change without conflicts.

use crate::clock;
use crate::error::{ApiError, Cause};
use crate::patch::{is_primitive_merge_list, merge_key};
use crate::verbs::{State, Target, WriteOptions, Written};
use serde_json::{json, Map, Value};
use std::collections::BTreeSet;

/// A path in FieldsV1 notation: `f:spec`, `k:{"name":"a"}`, `v:"x"`.
pub type FieldPath = Vec<String>;
pub type FieldSet = BTreeSet<FieldPath>;

const METADATA_FIELDS: [&str; 4] = ["labels", "annotations", "finalizers", "ownerReferences"];

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

fn remove_path(object: &mut Value, path: &[String]) {
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

/// A field another manager owns with a different value.
#[derive(Debug, Clone)]
pub struct Conflict {
    pub manager: String,
    pub api_version: String,
    pub path: String,
}

/// The apply request, for one object.
#[derive(Debug)]
pub struct ApplyRequest<'a> {
    pub manager: &'a str,
    pub api_version: &'a str,
    pub subresource: &'a str,
    pub force: bool,
    pub status: bool,
    pub skip_status: bool,
    /// Built-in kind: lists with merge keys are keyed (see [`fields_of`]).
    pub keyed: bool,
}

/// Apply `config` over `current` (`Value::Null` when creating); returns the merged object
/// with its `managedFields`, or the conflicts.
pub fn apply(current: &Value, config: &Value, req: &ApplyRequest) -> Result<Value, Vec<Conflict>> {
    let mut entries = read_managed(current);
    let new_set = fields_of(config, req.status, req.skip_status, req.keyed);
    let is_mine = |e: &Managed| {
        e.manager == req.manager && e.operation == "Apply" && e.subresource == req.subresource
    };
    let mut conflicts = Vec::new();
    for e in entries.iter().filter(|e| !is_mine(e)) {
        for p in e.fields.intersection(&new_set) {
            let here = value_at(current, p);
            let there = value_at(config, p);
            let leaf = there.is_some_and(|v| !v.is_object());
            if leaf && here != there {
                conflicts.push(Conflict {
                    manager: e.manager.clone(),
                    api_version: e.api_version.clone(),
                    path: render_path(p),
                });
            }
        }
    }
    if !conflicts.is_empty() {
        if !req.force {
            return Err(conflicts);
        }
        for e in entries.iter_mut().filter(|e| !is_mine(e)) {
            e.fields
                .retain(|p| !new_set.contains(p) || value_at(current, p) == value_at(config, p));
        }
    }
    let mut merged = if current.is_null() {
        json!({})
    } else {
        current.clone()
    };
    apply_merge(&mut merged, config, "", req.keyed);
    let old_set = entries
        .iter()
        .find(|e| is_mine(e))
        .map(|e| e.fields.clone())
        .unwrap_or_default();
    let mut dropped: Vec<&FieldPath> = old_set.difference(&new_set).collect();
    dropped.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for p in dropped {
        let owned_elsewhere = entries
            .iter()
            .filter(|e| !is_mine(e))
            .any(|e| e.fields.iter().any(|q| q.starts_with(p)));
        let still_applied = new_set.iter().any(|q| q.starts_with(p));
        if !owned_elsewhere && !still_applied {
            remove_path(&mut merged, p);
        }
    }
    // The entry keeps its time (and the object its managedFields) when nothing changed, so a
    // controller re-applying the same intent writes nothing.
    let without_managed = |o: &Value| {
        let mut o = o.clone();
        if let Some(m) = o["metadata"].as_object_mut() {
            m.remove("managedFields");
        }
        o
    };
    let unchanged = old_set == new_set && without_managed(&merged) == without_managed(current);
    let mine = Managed {
        manager: req.manager.into(),
        operation: "Apply".into(),
        api_version: req.api_version.into(),
        subresource: req.subresource.into(),
        fields: new_set,
        time: String::new(),
    };
    match entries.iter_mut().find(|e| is_mine(e)) {
        Some(e) => {
            let time = if unchanged {
                e.time.clone()
            } else {
                String::new()
            };
            *e = Managed { time, ..mine };
        }
        None => entries.push(mine),
    }
    write_managed(&mut merged, &entries);
    Ok(merged)
}

/// Merge an applied configuration: maps field by field, keyed lists item by item, sets by
/// value, everything else replaced.
fn apply_merge(target: &mut Value, config: &Value, field: &str, keyed: bool) {
    match config {
        Value::Object(c) => {
            if !target.is_object() {
                *target = json!({});
            }
            if let Value::Object(t) = target {
                for (k, v) in c {
                    if field.is_empty() && k == "metadata" {
                        let tm = t.entry(k.clone()).or_insert_with(|| json!({}));
                        for f in METADATA_FIELDS.iter().chain(["name", "namespace"].iter()) {
                            if let Some(cv) = v.get(*f) {
                                apply_merge(&mut tm[*f], cv, f, true);
                            }
                        }
                        continue;
                    }
                    apply_merge(t.entry(k.clone()).or_insert(Value::Null), v, k, keyed);
                }
            }
        }
        Value::Array(items) => {
            let key =
                merge_key(field, items).filter(|_| keyed && items.iter().all(Value::is_object));
            match (target.as_array_mut(), key) {
                (Some(cur), Some(key)) => {
                    for item in items {
                        match cur.iter().position(|c| c[key] == item[key]) {
                            Some(i) => apply_merge(&mut cur[i], item, "", keyed),
                            None => cur.push(item.clone()),
                        }
                    }
                }
                (Some(cur), None) if keyed && is_primitive_merge_list(field) => {
                    for x in items {
                        if !cur.contains(x) {
                            cur.push(x.clone());
                        }
                    }
                }
                _ => *target = config.clone(),
            }
        }
        other => *target = other.clone(),
    }
}

/// Ownership after a non-apply write by `manager`: it takes the fields it changed (from
/// everyone else, without conflict), and fields that no longer exist are owned by nobody.
pub fn record_update(
    old: &Value,
    new: &mut Value,
    manager: &str,
    api_version: &str,
    req_status: bool,
    skip_status: bool,
    keyed: bool,
) {
    let mut entries = read_managed(old);
    let new_fields = fields_of(new, req_status, skip_status, keyed);
    let changed: FieldSet = new_fields
        .iter()
        .filter(|p| value_at(old, p) != value_at(new, p))
        .cloned()
        .collect();
    let subresource = if req_status { "status" } else { "" };
    for e in entries.iter_mut() {
        if e.subresource == subresource {
            e.fields.retain(|p| new_fields.contains(p));
        }
        if !(e.manager == manager && e.operation == "Update") {
            e.fields.retain(|p| !changed.contains(p));
        }
    }
    if !changed.is_empty() {
        match entries.iter_mut().find(|e| {
            e.manager == manager && e.operation == "Update" && e.subresource == subresource
        }) {
            Some(e) => {
                e.fields.extend(changed);
                e.time = String::new();
            }
            None => entries.push(Managed {
                manager: manager.into(),
                operation: "Update".into(),
                api_version: api_version.into(),
                subresource: subresource.into(),
                fields: changed,
                time: String::new(),
            }),
        }
    }
    write_managed(new, &entries);
}

impl State {
    /// Server-side apply: create or merge, owning fields per field manager.
    pub(crate) fn apply(
        &mut self,
        t: &Target,
        body: &[u8],
        opts: &WriteOptions,
    ) -> Result<Written, ApiError> {
        let config: Value = serde_yaml_ng::from_slice(body).map_err(|e| {
            ApiError::bad_request(format!("the applied configuration is not valid YAML: {e}"))
        })?;
        let Some(manager) = opts.field_manager.clone() else {
            return Err(ApiError::bad_request(
                "PATCH with apply requires the fieldManager query parameter",
            ));
        };
        let current = self.current(t).ok();
        let status_sub = t.subresource == "status";
        let req = ApplyRequest {
            manager: &manager,
            api_version: &t.rt.api_version(),
            subresource: if status_sub { "status" } else { "" },
            force: opts.force,
            status: status_sub,
            skip_status: t.rt.status,
            keyed: t.rt.crd.is_none(),
        };
        let base = current.clone().unwrap_or(Value::Null);
        let merged = apply(&base, &config, &req).map_err(|conflicts| {
            let causes: Vec<Cause> = conflicts
                .iter()
                .map(|c| Cause {
                    field: c.path.clone(),
                    reason: "FieldManagerConflict",
                    message: format!("conflict with \"{}\" using {}", c.manager, c.api_version),
                })
                .collect();
            let lines: Vec<String> = causes.iter().map(|c| format!("{}: {}", c.message, c.field)).collect();
            let mut e = ApiError::new(409, "Conflict", format!(
                "Apply failed with {} conflict{}: {}",
                causes.len(),
                if causes.len() == 1 { "" } else { "s" },
                lines.join("\n")
            ));
            e.details = Some(json!({
                "name": t.name, "kind": t.rt.plural, "group": t.rt.group,
                "causes": causes.iter().map(|c| json!({"reason": c.reason, "message": c.message, "field": c.field})).collect::<Vec<_>>(),
            }));
            e
        })?;
        match current {
            None => {
                let opts = WriteOptions {
                    field_manager: Some(manager.clone()),
                    ..opts.clone()
                };
                let managed = merged["metadata"]["managedFields"].clone();
                let mut w = self.create(t, merged, &opts)?;
                if !opts.dry_run {
                    let mut obj = w.object.clone();
                    obj["metadata"]["managedFields"] = managed;
                    w.object = self.put(t, obj);
                }
                Ok(w)
            }
            Some(old) => {
                let mut w = self.write_new_version(t, old, merged.clone(), opts, Some(&manager))?;
                // A no-op apply may still change ownership (a second manager sharing fields);
                // only then is it written.
                let ownership = |o: &Value| {
                    let mut m = o["metadata"]["managedFields"].clone();
                    for e in m.as_array_mut().into_iter().flatten() {
                        if let Some(e) = e.as_object_mut() {
                            e.remove("time");
                        }
                    }
                    m
                };
                if !opts.dry_run && ownership(&w.object) != ownership(&merged) {
                    let mut obj = w.object.clone();
                    obj["metadata"]["managedFields"] = merged["metadata"]["managedFields"].clone();
                    if self
                        .store
                        .get(&t.rt.storage_key(), &t.namespace, &t.name)
                        .is_some()
                    {
                        w.object = self.put(t, obj);
                    }
                }
                Ok(w)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req<'a>(manager: &'a str, force: bool) -> ApplyRequest<'a> {
        ApplyRequest {
            manager,
            api_version: "v1",
            subresource: "",
            force,
            status: false,
            skip_status: true,
            keyed: true,
        }
    }

    #[test]
    fn conflicts_and_removal() {
        let a =
            json!({"metadata": {"name": "x", "labels": {"a": "1"}}, "data": {"k": "v", "j": "w"}});
        let obj = apply(&Value::Null, &a, &req("one", false)).unwrap();
        let b = json!({"metadata": {"name": "x"}, "data": {"k": "other"}});
        let c = apply(&obj, &b, &req("two", false)).unwrap_err();
        assert_eq!(c[0].path, ".data.k");
        let obj = apply(&obj, &b, &req("two", true)).unwrap();
        assert_eq!(obj["data"]["k"], "other");
        // "one" stops sending data.j: removed; data.k is now two's and stays.
        let a2 = json!({"metadata": {"name": "x", "labels": {"a": "1"}}});
        let obj = apply(&obj, &a2, &req("one", false)).unwrap();
        assert_eq!(obj["data"], json!({"k": "other"}));
        let set = fields_of(&obj, false, true, true);
        assert_eq!(from_fields_v1(&to_fields_v1(&set)), set);
    }

    #[test]
    fn custom_resource_lists_are_atomic() {
        let mut r = req("one", false);
        r.keyed = false;
        let a = json!({"metadata": {"name": "x", "finalizers": ["a/b"]}, "spec": {"env": [{"name": "A"}, {"name": "B"}]}});
        let obj = apply(&Value::Null, &a, &r).unwrap();
        let set = fields_of(&obj, false, true, false);
        assert!(set.contains(&vec!["f:spec".to_string(), "f:env".to_string()]));
        assert!(set.contains(&vec![
            "f:metadata".to_string(),
            "f:finalizers".to_string(),
            "v:\"a/b\"".to_string()
        ]));
        let b = json!({"metadata": {"name": "x"}, "spec": {"env": [{"name": "A"}]}});
        let obj = apply(&obj, &b, &r).unwrap();
        assert_eq!(obj["spec"]["env"], json!([{"name": "A"}]));
    }
}
