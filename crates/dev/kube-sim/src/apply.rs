//! Server-side apply and field ownership (API reference "Server-Side Apply"): the fields each
//! field manager owns, kept in `metadata.managedFields` as FieldsV1; conflicts when an applier
//! sets a field another manager owns to a different value (unless forced); fields an applier
//! stops sending removed when nobody else owns them; updates (PUT, PATCH) take ownership of
//! what they change without conflicts.

use crate::error::{ApiError, Cause};
use crate::managed_fields::{
    fields_of, read_managed, remove_path, render_path, value_at, write_managed, FieldPath,
    FieldSet, Managed, METADATA_FIELDS,
};
use crate::patch::{is_primitive_merge_list, merge_key};
use crate::verbs::{State, Target, WriteOptions, Written};
use serde_json::{json, Value};

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
    use crate::managed_fields::{from_fields_v1, to_fields_v1};

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
