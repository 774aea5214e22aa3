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
use std::collections::{BTreeSet, HashMap, HashSet};

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

/// A pod bound to a node and marked with a grace period: its kubelet stops its containers,
/// then deletes it with grace 0; nothing else removes it before that.
fn in_graceful_deletion(storage: &str, o: &Value) -> bool {
    storage == "/pods"
        && o["spec"]["nodeName"]
            .as_str()
            .is_some_and(|n| !n.is_empty())
        && o["metadata"]["deletionGracePeriodSeconds"]
            .as_i64()
            .is_some_and(|g| g > 0)
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
    if fins.is_empty() && !is_namespace && !in_graceful_deletion(storage, &obj) {
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
            if old["metadata"]["deletionGracePeriodSeconds"]
                .as_i64()
                .is_some_and(|g| g > 0)
            {
                // The kubelet's final delete (or a forced one): no grace left to wait for.
                let mut o = old.clone();
                o["metadata"]["deletionGracePeriodSeconds"] = json!(0);
                self.put(t, o);
            }
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

/// One step of collection, decided from a read-only look at the store (no copies of
/// objects that need nothing).
enum Step {
    /// A CRD is gone: its types and custom objects go too.
    DropCrd(String),
    Delete(Key, Propagation),
    Put(String, Value),
    Remove(Key),
}

fn pass(state: &mut State) -> bool {
    let Some(step) = next_step(state) else {
        return false;
    };
    match step {
        Step::DropCrd(crd) => {
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
        }
        Step::Delete((s, ns, name), policy) => {
            if !mark_pod_for_kubelet(state, &s, &ns, &name) {
                delete_object(state, &s, &ns, &name, policy);
            }
        }
        Step::Put(s, o) => {
            let gone = !o["metadata"]["deletionTimestamp"].is_null()
                && finalizers(&o).is_empty()
                && s != "/namespaces"
                && !in_graceful_deletion(&s, &o);
            let (ns, name) = crate::store::key_of(&o);
            state.store.put(&s, o);
            if gone {
                state.store.remove(&s, &ns, &name);
            }
        }
        Step::Remove((s, ns, name)) => {
            state.store.remove(&s, &ns, &name);
        }
    }
    true
}

/// A bound pod the collector deletes goes as any deleted pod does: marked with its
/// termination grace period for its kubelet to stop (returns false for anything else).
fn mark_pod_for_kubelet(state: &mut State, storage: &str, ns: &str, name: &str) -> bool {
    let Some(o) = state.store.get(storage, ns, name) else {
        return false;
    };
    let grace = o["spec"]["terminationGracePeriodSeconds"]
        .as_i64()
        .unwrap_or(30);
    let bound = o["spec"]["nodeName"]
        .as_str()
        .is_some_and(|n| !n.is_empty());
    if storage != "/pods" || !bound || deleting(o) || grace <= 0 {
        return false;
    }
    let mut o = o.clone();
    o["metadata"]["deletionTimestamp"] = json!(clock::format_rfc3339(clock::now_secs() + grace));
    o["metadata"]["deletionGracePeriodSeconds"] = json!(grace);
    state.store.put(storage, o);
    true
}

fn deleting(o: &Value) -> bool {
    !o["metadata"]["deletionTimestamp"].is_null()
}

fn next_step(state: &State) -> Option<Step> {
    for t in state.registry.all() {
        if let Some(crd) = &t.crd {
            if state
                .store
                .get("apiextensions.k8s.io/customresourcedefinitions", "", crd)
                .is_none()
            {
                return Some(Step::DropCrd(crd.clone()));
            }
        }
    }
    let storages = state.store.storage_keys();
    let all = || {
        storages.iter().flat_map(|s| {
            state
                .store
                .objects(s)
                .into_iter()
                .flatten()
                .map(move |((ns, name), o)| (s, ns, name, o))
        })
    };
    let key = |s: &str, ns: &str, name: &str| (s.to_string(), ns.to_string(), name.to_string());
    let by_uid: HashMap<&str, &Value> = all()
        .filter_map(|(_, _, _, o)| Some((o["metadata"]["uid"].as_str()?, o)))
        .collect();
    // Dependents.
    let mut has_dependents: HashSet<&str> = HashSet::new();
    for (s, ns, name, o) in all() {
        let Some(refs) = o["metadata"]["ownerReferences"]
            .as_array()
            .filter(|r| !r.is_empty())
        else {
            continue;
        };
        has_dependents.extend(refs.iter().filter_map(|r| r["uid"].as_str()));
        let owners: Vec<&Value> = refs
            .iter()
            .filter_map(|r| by_uid.get(r["uid"].as_str().unwrap_or_default()).copied())
            .collect();
        if owners.is_empty() {
            if !deleting(o) {
                return Some(Step::Delete(key(s, ns, name), Propagation::Background));
            }
            continue;
        }
        if let Some(orphaning) = owners
            .iter()
            .find(|w| deleting(w) && finalizers(w).iter().any(|f| f == ORPHAN))
        {
            let uid = &orphaning["metadata"]["uid"];
            let kept: Vec<Value> = refs.iter().filter(|r| r["uid"] != *uid).cloned().collect();
            let mut o = o.clone();
            if kept.is_empty() {
                if let Some(m) = o["metadata"].as_object_mut() {
                    m.remove("ownerReferences");
                }
            } else {
                o["metadata"]["ownerReferences"] = json!(kept);
            }
            return Some(Step::Put(s.clone(), o));
        }
        let all_owners_going = owners
            .iter()
            .all(|w| deleting(w) && finalizers(w).iter().any(|f| f == FOREGROUND));
        if all_owners_going && !deleting(o) {
            return Some(Step::Delete(key(s, ns, name), Propagation::Foreground));
        }
    }
    // Owners waiting on dependents, namespaces waiting on content, finalized objects.
    for (s, ns, name, o) in all().filter(|(_, _, _, o)| deleting(o)) {
        let uid = o["metadata"]["uid"].as_str().unwrap_or_default();
        let mut fins = finalizers(o);
        let before = fins.len();
        if !has_dependents.contains(uid) {
            fins.retain(|f| f != FOREGROUND && f != ORPHAN);
        }
        if s == "/namespaces" {
            let mut content = all().filter(|(_, cns, _, _)| *cns == name).peekable();
            let empty = content.peek().is_none();
            if let Some((cs, cns, cname, _)) = content.find(|(_, _, _, c)| !deleting(c)) {
                return Some(Step::Delete(key(cs, cns, cname), Propagation::Background));
            }
            if empty && fins.is_empty() {
                return Some(Step::Remove(key(s, ns, name)));
            }
        }
        if fins.len() != before {
            let mut o = o.clone();
            o["metadata"]["finalizers"] = json!(fins);
            return Some(Step::Put(s.clone(), o));
        }
        if fins.is_empty() && s != "/namespaces" && !in_graceful_deletion(s, o) {
            return Some(Step::Remove(key(s, ns, name)));
        }
    }
    None
}
