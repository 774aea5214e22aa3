//! Deletion and garbage collection (API reference "Garbage Collection", "Finalizers",
//! "Owners and Dependents", "Namespaces"): objects with finalizers are marked with a
//! deletionTimestamp and kept until the finalizers are gone; dependents whose owners are all
//! gone are deleted (background), owners deleted in the foreground wait for their dependents,
//! orphaning strips the ownerReference instead; a terminating namespace empties itself; a
//! deleted CRD takes its custom objects with it. Collection runs synchronously after each
//! write, so it is immediate rather than eventually consistent.

use crate::clock;
use crate::error::ApiError;
use crate::verbs::{State, Target};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};

/// `propagationPolicy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Propagation {
    Background,
    Foreground,
    Orphan,
}

impl Propagation {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "Background" => Some(Propagation::Background),
            "Foreground" => Some(Propagation::Foreground),
            "Orphan" => Some(Propagation::Orphan),
            _ => None,
        }
    }
}

const FOREGROUND: &str = "foregroundDeletion";
const ORPHAN: &str = "orphan";

fn finalizers(o: &Value) -> Vec<String> {
    o["metadata"]["finalizers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|f| f.as_str().map(String::from))
        .collect()
}

/// Delete one object: removed at once without finalizers, otherwise marked. Returns the
/// object as it is afterwards (marked or as last seen).
pub fn delete_object(
    state: &mut State,
    storage: &str,
    ns: &str,
    name: &str,
    policy: Propagation,
) -> Option<Value> {
    let mut obj = state.store.get(storage, ns, name)?.clone();
    let mut fins = finalizers(&obj);
    let already = !obj["metadata"]["deletionTimestamp"].is_null();
    match policy {
        Propagation::Foreground if !fins.iter().any(|f| f == FOREGROUND) => {
            fins.push(FOREGROUND.into())
        }
        Propagation::Orphan if !fins.iter().any(|f| f == ORPHAN) => fins.push(ORPHAN.into()),
        _ => {}
    }
    let is_namespace = storage == "/namespaces";
    if fins.is_empty() && !is_namespace {
        return state.store.remove(storage, ns, name);
    }
    if already && fins == finalizers(&obj) {
        return Some(obj);
    }
    if !already {
        obj["metadata"]["deletionTimestamp"] = json!(clock::now_rfc3339());
        obj["metadata"]["deletionGracePeriodSeconds"] = json!(0);
    }
    if is_namespace {
        obj["status"]["phase"] = json!("Terminating");
    }
    obj["metadata"]["finalizers"] = json!(fins);
    Some(state.store.put(storage, obj))
}

/// What a DELETE asked for (API reference "DeleteOptions").
#[derive(Debug, Clone, Default)]
pub struct DeleteOptions {
    pub propagation: Option<Propagation>,
    pub precondition_uid: Option<String>,
    pub precondition_rv: Option<String>,
    pub grace_period_seconds: Option<i64>,
    pub dry_run: bool,
}

impl DeleteOptions {
    /// From the request body (a DeleteOptions object, possibly empty) and the query.
    pub fn parse(
        body: &Value,
        query: &std::collections::HashMap<String, String>,
        dry_run: bool,
    ) -> Self {
        let q = |k: &str| query.get(k).map(String::as_str);
        DeleteOptions {
            propagation: body["propagationPolicy"]
                .as_str()
                .or(q("propagationPolicy"))
                .and_then(Propagation::parse)
                .or_else(|| {
                    (body["orphanDependents"] == json!(true)).then_some(Propagation::Orphan)
                }),
            precondition_uid: body["preconditions"]["uid"].as_str().map(String::from),
            precondition_rv: body["preconditions"]["resourceVersion"]
                .as_str()
                .map(String::from),
            grace_period_seconds: body["gracePeriodSeconds"]
                .as_i64()
                .or_else(|| q("gracePeriodSeconds").and_then(|g| g.parse().ok())),
            dry_run: dry_run
                || body["dryRun"]
                    .as_array()
                    .is_some_and(|d| d.iter().any(|x| x == "All")),
        }
    }
}

impl State {
    /// DELETE: with finalizers the object is only marked (deletionTimestamp) until they are
    /// gone; dependents are collected per the propagation policy. A Pod bound to a node is
    /// deleted gracefully: marked with its grace period until its kubelet deletes it with
    /// grace 0 (API reference "Termination of Pods").
    pub fn delete(&mut self, t: &Target, opts: &DeleteOptions) -> Result<Value, ApiError> {
        let old = self.current(t)?;
        if opts
            .precondition_uid
            .as_deref()
            .is_some_and(|u| Some(u) != old["metadata"]["uid"].as_str())
        {
            return Err(ApiError::conflict(
                &t.rt.group,
                &t.rt.plural,
                &t.name,
                "Precondition failed: UID in precondition does not match the stored object",
            ));
        }
        if opts
            .precondition_rv
            .as_deref()
            .is_some_and(|r| Some(r) != old["metadata"]["resourceVersion"].as_str())
        {
            return Err(ApiError::conflict(&t.rt.group, &t.rt.plural, &t.name, "the object has been modified; please apply your changes to the latest version and try again"));
        }
        if opts.dry_run {
            return Ok(old);
        }
        if t.rt.group.is_empty() && t.rt.kind == "Pod" {
            if let Some(marked) = self.graceful_pod_deletion(t, &old, opts) {
                return Ok(marked);
            }
        }
        let default = if t.rt.group == "batch" && t.rt.kind == "Job" {
            Propagation::Orphan
        } else {
            Propagation::Background
        };
        let out = delete_object(
            self,
            &t.rt.storage_key(),
            &t.namespace,
            &t.name,
            opts.propagation.unwrap_or(default),
        );
        collect(self);
        Ok(out
            .map(|o| crate::convert::from_storage(&t.rt, o))
            .unwrap_or(old))
    }

    /// Mark a bound pod for graceful deletion; `None` when it goes at once (unbound, grace 0).
    fn graceful_pod_deletion(
        &mut self,
        t: &Target,
        old: &Value,
        opts: &DeleteOptions,
    ) -> Option<Value> {
        if old["spec"]["nodeName"].as_str().is_none_or(str::is_empty) {
            return None;
        }
        let spec_grace = old["spec"]["terminationGracePeriodSeconds"]
            .as_i64()
            .unwrap_or(30);
        let grace = opts.grace_period_seconds.unwrap_or(spec_grace).max(0);
        if grace == 0 {
            return None;
        }
        let current = old["metadata"]["deletionGracePeriodSeconds"].as_i64();
        if current.is_some_and(|c| c <= grace) {
            return Some(old.clone());
        }
        let mut o = old.clone();
        o["metadata"]["deletionTimestamp"] =
            json!(clock::format_rfc3339(clock::now_secs() + grace));
        o["metadata"]["deletionGracePeriodSeconds"] = json!(grace);
        Some(self.put(t, o))
    }
}

type Key = (String, String, String);

/// Run collection to a fixed point.
pub fn collect(state: &mut State) {
    for _ in 0..100 {
        if !pass(state) {
            return;
        }
    }
}

fn pass(state: &mut State) -> bool {
    // Custom objects of CRDs that are gone.
    let crd_names: BTreeSet<String> = state
        .registry
        .all()
        .iter()
        .filter_map(|t| t.crd.clone())
        .collect();
    for crd in crd_names {
        let key = "apiextensions.k8s.io/customresourcedefinitions";
        if state.store.get(key, "", &crd).is_none() {
            let storages: BTreeSet<String> = state
                .registry
                .all()
                .iter()
                .filter(|t| t.crd.as_deref() == Some(crd.as_str()))
                .map(|t| t.storage_key())
                .collect();
            state.registry.remove_crd(&crd);
            for s in storages {
                let keys: Vec<(String, String)> = state
                    .store
                    .objects(&s)
                    .map(|o| o.keys().cloned().collect())
                    .unwrap_or_default();
                for (ns, name) in keys {
                    state.store.remove(&s, &ns, &name);
                }
            }
            return true;
        }
    }
    let mut by_uid: BTreeMap<String, (Key, Value)> = BTreeMap::new();
    let mut all: Vec<(Key, Value)> = Vec::new();
    for s in state.store.storage_keys() {
        for ((ns, name), o) in state.store.objects(&s).into_iter().flatten() {
            let k = (s.clone(), ns.clone(), name.clone());
            if let Some(uid) = o["metadata"]["uid"].as_str() {
                by_uid.insert(uid.to_string(), (k.clone(), o.clone()));
            }
            all.push((k, o.clone()));
        }
    }
    let deleting = |o: &Value| !o["metadata"]["deletionTimestamp"].is_null();
    // Dependents.
    let mut has_dependents: BTreeSet<String> = BTreeSet::new();
    for ((s, ns, name), o) in &all {
        let refs: Vec<Value> = o["metadata"]["ownerReferences"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if refs.is_empty() {
            continue;
        }
        let owners: Vec<&Value> = refs
            .iter()
            .filter_map(|r| {
                by_uid
                    .get(r["uid"].as_str().unwrap_or_default())
                    .map(|(_, o)| o)
            })
            .collect();
        for r in &refs {
            if let Some(u) = r["uid"].as_str() {
                has_dependents.insert(u.to_string());
            }
        }
        if owners.is_empty() {
            if !deleting(o) {
                delete_object(state, s, ns, name, Propagation::Background);
                return true;
            }
            continue;
        }
        if let Some(orphaning) = owners
            .iter()
            .find(|w| deleting(w) && finalizers(w).iter().any(|f| f == ORPHAN))
        {
            let uid = orphaning["metadata"]["uid"].clone();
            let mut o = o.clone();
            let kept: Vec<Value> = refs.into_iter().filter(|r| r["uid"] != uid).collect();
            if kept.is_empty() {
                if let Some(m) = o["metadata"].as_object_mut() {
                    m.remove("ownerReferences");
                }
            } else {
                o["metadata"]["ownerReferences"] = json!(kept);
            }
            state.store.put(s, o);
            return true;
        }
        let all_owners_going = owners
            .iter()
            .all(|w| deleting(w) && finalizers(w).iter().any(|f| f == FOREGROUND));
        if all_owners_going && !deleting(o) {
            delete_object(state, s, ns, name, Propagation::Foreground);
            return true;
        }
    }
    // Owners waiting on dependents, namespaces waiting on content, finalized objects.
    for ((s, ns, name), o) in &all {
        if !deleting(o) {
            continue;
        }
        let uid = o["metadata"]["uid"].as_str().unwrap_or_default();
        let mut fins = finalizers(o);
        let before = fins.len();
        if !has_dependents.contains(uid) {
            fins.retain(|f| f != FOREGROUND && f != ORPHAN);
        }
        if s == "/namespaces" {
            let content: Vec<Key> = all
                .iter()
                .filter(|((_, ons, _), _)| ons == name)
                .map(|(k, _)| k.clone())
                .collect();
            if let Some((cs, cns, cname)) = content.iter().find(|(cs, cns, cname)| {
                state
                    .store
                    .get(cs, cns, cname)
                    .is_some_and(|c| !deleting(c))
            }) {
                delete_object(state, cs, cns, cname, Propagation::Background);
                return true;
            }
            if content.is_empty() && fins.is_empty() {
                state.store.remove(s, ns, name);
                return true;
            }
        }
        if fins.len() != before {
            let mut o = o.clone();
            o["metadata"]["finalizers"] = json!(fins);
            if fins.is_empty() && s != "/namespaces" {
                state.store.put(s, o);
                state.store.remove(s, ns, name);
            } else {
                state.store.put(s, o);
            }
            return true;
        }
        if fins.is_empty() && s != "/namespaces" {
            state.store.remove(s, ns, name);
            return true;
        }
    }
    false
}
