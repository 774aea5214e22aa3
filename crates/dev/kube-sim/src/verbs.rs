//! The write verbs and what they mean (API reference "API Concepts": create, update, patch,
//! delete; "Resource versions"; "Generation"): names and generateName, resourceVersion
//! preconditions, generation bumped on spec changes only, the status subresource split,
//! finalizers and deletionTimestamp, field ownership, Secret `stringData`, CRD registration.
//! Garbage collection runs after every write (`gc`).

use crate::apply;
use crate::clock;
use crate::convert;
use crate::crd::{self, Validation};
use crate::defaults;
use crate::error::{ApiError, Cause};
use crate::gc;
use crate::immutable;
use crate::meta_validation;
use crate::patch;
use crate::registry::{Registry, ResourceType};
use crate::store::Store;
use base64::Engine;
use serde_json::{json, Value};
use std::sync::Arc;

/// Everything the server holds: the types it serves and the objects.
#[derive(Debug)]
pub struct State {
    pub registry: Registry,
    pub store: Store,
}

/// The object a request addresses.
#[derive(Debug, Clone)]
pub struct Target {
    pub rt: Arc<ResourceType>,
    pub namespace: String,
    pub name: String,
    /// `status`, `scale`, … or empty for the main resource.
    pub subresource: String,
}

/// Query parameters that shape writes.
#[derive(Debug, Clone, Default)]
pub struct WriteOptions {
    pub dry_run: bool,
    pub field_manager: Option<String>,
    pub force: bool,
    pub validation: Validation,
    pub user_agent: String,
}

impl WriteOptions {
    fn manager(&self) -> String {
        self.field_manager.clone().unwrap_or_else(|| {
            let ua = self.user_agent.split('/').next().unwrap_or_default();
            if ua.is_empty() {
                "unknown".into()
            } else {
                ua.into()
            }
        })
    }
}

/// A write's result: the object as stored (or as it would be, on a dry run).
#[derive(Debug)]
pub struct Written {
    pub object: Value,
    pub created: bool,
    pub warnings: Vec<String>,
}

/// The object without what does not count as spec for `generation`.
fn spec_part(o: &Value) -> Value {
    let mut o = o.clone();
    if let Some(m) = o.as_object_mut() {
        m.remove("metadata");
        m.remove("status");
    }
    o
}

impl State {
    pub fn new(window: usize) -> Self {
        let mut s = State {
            registry: Registry::with_builtins(),
            store: Store::new(window),
        };
        for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
            let obj = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}});
            if let Some(rt) = s.registry.find("", "v1", "namespaces") {
                let t = Target {
                    rt,
                    namespace: String::new(),
                    name: ns.into(),
                    subresource: String::new(),
                };
                let _ = s.create(&t, obj, &WriteOptions::default());
            }
        }
        s
    }

    /// Kind-specific normalisation every write goes through, then the CRD schema.
    fn prepare(
        &self,
        t: &Target,
        obj: &mut Value,
        opts: &WriteOptions,
    ) -> Result<Vec<String>, ApiError> {
        if !obj.is_object() {
            return Err(ApiError::bad_request(
                "the request body must be a JSON object",
            ));
        }
        obj["apiVersion"] = json!(t.rt.api_version());
        obj["kind"] = json!(t.rt.kind);
        if !obj["metadata"].is_object() {
            obj["metadata"] = json!({});
        }
        if let Some(ns) = obj["metadata"]["namespace"].as_str() {
            if t.rt.namespaced && !ns.is_empty() && ns != t.namespace {
                return Err(ApiError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ));
            }
        }
        if t.rt.namespaced {
            obj["metadata"]["namespace"] = json!(t.namespace);
        } else if let Some(m) = obj["metadata"].as_object_mut() {
            m.remove("namespace");
        }
        match (t.rt.group.as_str(), t.rt.kind.as_str()) {
            ("", "Secret") => {
                if let Some(Value::Object(sd)) =
                    obj.as_object_mut().and_then(|m| m.remove("stringData"))
                {
                    for (k, v) in sd {
                        let enc = base64::engine::general_purpose::STANDARD
                            .encode(v.as_str().unwrap_or_default());
                        obj["data"][k.as_str()] = json!(enc);
                    }
                }
                if obj.get("type").is_none() {
                    obj["type"] = json!("Opaque");
                }
            }
            ("", "Namespace") => {
                if obj["spec"]["finalizers"].is_null() {
                    obj["spec"]["finalizers"] = json!(["kubernetes"]);
                }
                if obj["status"]["phase"].is_null() {
                    obj["status"]["phase"] = json!("Active");
                }
            }
            ("apiextensions.k8s.io", "CustomResourceDefinition") => {
                crd::types_of(obj)?;
            }
            _ => {}
        }
        defaults::apply(&t.rt, obj, &self.store);
        crd::admit(&t.rt, obj, opts.validation)
    }

    fn require_namespace(&self, t: &Target) -> Result<(), ApiError> {
        if !t.rt.namespaced {
            return Ok(());
        }
        match self.store.get("/namespaces", "", &t.namespace) {
            None => Err(ApiError::not_found("", "namespaces", &t.namespace)),
            Some(ns) if !ns["metadata"]["deletionTimestamp"].is_null() => Err(ApiError::forbidden(format!(
                "{} \"{}\" is forbidden: unable to create new content in namespace {} because it is being terminated",
                t.rt.plural, t.name, t.namespace
            ))),
            Some(_) => Ok(()),
        }
    }

    pub fn create(
        &mut self,
        t: &Target,
        mut obj: Value,
        opts: &WriteOptions,
    ) -> Result<Written, ApiError> {
        // With a status subresource, status is not the creator's to set.
        if t.rt.status {
            if let Some(m) = obj.as_object_mut() {
                m.remove("status");
            }
            if t.rt.group.is_empty()
                && matches!(t.rt.kind.as_str(), "Pod" | "PersistentVolumeClaim")
            {
                obj["status"] = json!({ "phase": "Pending" });
            }
        }
        let warnings = self.prepare(t, &mut obj, opts)?;
        let mut name = obj["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        if name.is_empty() {
            if let Some(prefix) = obj["metadata"]["generateName"].as_str() {
                name = format!("{prefix}{}", random_suffix(self.store.resource_version()));
            }
        }
        if !t.name.is_empty() && t.name != name {
            return Err(ApiError::bad_request(
                "the name of the object does not match the name on the URL",
            ));
        }
        if name.is_empty() {
            return Err(ApiError::invalid(
                &t.rt.group_kind(),
                "",
                &t.rt.kind,
                &t.rt.group,
                &[Cause {
                    field: "metadata.name".into(),
                    reason: "FieldValueRequired",
                    message: "Required value: name or generateName is required".into(),
                }],
            ));
        }
        self.require_namespace(&Target {
            name: name.clone(),
            ..t.clone()
        })?;
        let storage = t.rt.storage_key();
        if self.store.get(&storage, &t.namespace, &name).is_some() {
            return Err(ApiError::already_exists(&t.rt.group, &t.rt.plural, &name));
        }
        obj["metadata"]["name"] = json!(name);
        let problems = meta_validation::check(&t.rt, &obj);
        if !problems.is_empty() {
            return Err(ApiError::invalid(
                &t.rt.group_kind(),
                &name,
                &t.rt.kind,
                &t.rt.group,
                &problems,
            ));
        }
        let meta = &mut obj["metadata"];
        meta["uid"] = json!(self.store.new_uid());
        meta["creationTimestamp"] = json!(clock::now_rfc3339());
        if let Some(m) = meta.as_object_mut() {
            for k in [
                "resourceVersion",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "selfLink",
            ] {
                m.remove(k);
            }
        }
        if t.rt.has_generation() {
            obj["metadata"]["generation"] = json!(1);
        }
        if t.rt.group == "batch" && t.rt.kind == "Job" {
            defaults::job_selector(&mut obj);
        }
        if let Some(m) = obj["metadata"].as_object_mut() {
            m.remove("managedFields");
        }
        apply::record_update(
            &Value::Null,
            &mut obj,
            &opts.manager(),
            &t.rt.api_version(),
            false,
            t.rt.status,
            t.rt.crd.is_none(),
        );
        let object = self.commit(t, obj, opts);
        if t.rt.group.is_empty() && t.rt.kind == "Namespace" && !opts.dry_run {
            // The ServiceAccount controller's part: every namespace has `default`.
            if let Some(rt) = self.registry.find("", "v1", "serviceaccounts") {
                let sa = Target {
                    rt,
                    namespace: name.clone(),
                    name: String::new(),
                    subresource: String::new(),
                };
                let body = json!({"metadata": {"name": "default"}});
                let _ = self.create(&sa, body, &WriteOptions::default());
            }
        }
        Ok(Written {
            object,
            created: true,
            warnings,
        })
    }

    /// Store (unless dry run) and run what follows a write: CRD registration, collection.
    fn commit(&mut self, t: &Target, mut obj: Value, opts: &WriteOptions) -> Value {
        if opts.dry_run {
            return obj;
        }
        let is_crd =
            t.rt.group == "apiextensions.k8s.io" && t.rt.kind == "CustomResourceDefinition";
        if is_crd {
            if let Ok(types) = crd::types_of(&obj) {
                obj["status"] = crd::established_status(&obj);
                let name = obj["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                self.registry.set_crd_types(&name, types);
            }
        }
        let deleting = !obj["metadata"]["deletionTimestamp"].is_null();
        let no_finalizers = obj["metadata"]["finalizers"]
            .as_array()
            .is_none_or(|f| f.is_empty());
        let stored = if deleting && no_finalizers && !t.rt.kind.eq("Namespace") {
            let (ns, name) = crate::store::key_of(&obj);
            self.put(t, obj);
            let gone = self.store.remove(&t.rt.storage_key(), &ns, &name);
            convert::from_storage(&t.rt, gone.unwrap_or(Value::Null))
        } else {
            self.put(t, obj)
        };
        gc::collect(self);
        stored
    }

    /// Store an object given in `t`'s version; returns it as stored, in `t`'s version.
    pub(crate) fn put(&mut self, t: &Target, obj: Value) -> Value {
        let stored = self
            .store
            .put(&t.rt.storage_key(), convert::to_storage(&t.rt, obj));
        convert::from_storage(&t.rt, stored)
    }

    pub(crate) fn current(&self, t: &Target) -> Result<Value, ApiError> {
        self.store
            .get(&t.rt.storage_key(), &t.namespace, &t.name)
            .cloned()
            .map(|o| convert::from_storage(&t.rt, o))
            .ok_or_else(|| ApiError::not_found(&t.rt.group, &t.rt.plural, &t.name))
    }

    pub fn get(&self, t: &Target) -> Result<Value, ApiError> {
        let mut o = self.current(t)?;
        o["apiVersion"] = json!(t.rt.api_version());
        Ok(o)
    }

    /// PUT: replace the object (or its status), honouring a resourceVersion precondition.
    pub fn update(
        &mut self,
        t: &Target,
        new: Value,
        opts: &WriteOptions,
    ) -> Result<Written, ApiError> {
        let old = self.current(t)?;
        let rv = new["metadata"]["resourceVersion"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        if rv.is_empty() && t.rt.crd.is_some() {
            // Custom resources allow no unconditional update.
            return Err(ApiError::invalid(
                &t.rt.group_kind(),
                &t.name,
                &t.rt.kind,
                &t.rt.group,
                &[Cause {
                    field: "metadata.resourceVersion".into(),
                    reason: "FieldValueInvalid",
                    message: "Invalid value: 0x0: must be specified for an update".into(),
                }],
            ));
        }
        if !rv.is_empty() && Some(rv.as_str()) != old["metadata"]["resourceVersion"].as_str() {
            return Err(ApiError::conflict(&t.rt.group, &t.rt.plural, &t.name,
                "the object has been modified; please apply your changes to the latest version and try again"));
        }
        self.write_new_version(t, old, new, opts, None)
    }

    /// The common tail of update, patch and apply.
    pub(crate) fn write_new_version(
        &mut self,
        t: &Target,
        old: Value,
        mut new: Value,
        opts: &WriteOptions,
        applied_by: Option<&str>,
    ) -> Result<Written, ApiError> {
        if new["metadata"]["name"]
            .as_str()
            .is_some_and(|n| n != t.name)
        {
            return Err(ApiError::bad_request(
                "the name of the object does not match the name on the URL",
            ));
        }
        new["metadata"]["name"] = json!(t.name);
        let status_sub = t.subresource == "status";
        if status_sub {
            let status = new.get("status").cloned();
            new = old.clone();
            match status {
                Some(s) => new["status"] = s,
                None => {
                    if let Some(m) = new.as_object_mut() {
                        m.remove("status");
                    }
                }
            }
        } else if t.rt.status {
            match old.get("status") {
                Some(s) => new["status"] = s.clone(),
                None => {
                    if let Some(m) = new.as_object_mut() {
                        m.remove("status");
                    }
                }
            }
        }
        let mut warnings = self.prepare(t, &mut new, opts)?;
        if !status_sub {
            immutable::check(&t.rt, &old, &mut new)?;
            let problems = meta_validation::check(&t.rt, &new);
            if !problems.is_empty() {
                return Err(ApiError::invalid(
                    &t.rt.group_kind(),
                    &t.name,
                    &t.rt.kind,
                    &t.rt.group,
                    &problems,
                ));
            }
        }
        // Identity and system fields come from the stored object.
        for k in [
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "generation",
        ] {
            match old["metadata"].get(k) {
                Some(v) => new["metadata"][k] = v.clone(),
                None => {
                    if let Some(m) = new["metadata"].as_object_mut() {
                        m.remove(k);
                    }
                }
            }
        }
        if !old["metadata"]["deletionTimestamp"].is_null() {
            let before: Vec<Value> = old["metadata"]["finalizers"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let after: Vec<Value> = new["metadata"]["finalizers"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            if after.iter().any(|f| !before.contains(f)) {
                return Err(ApiError::forbidden(format!(
                    "{} \"{}\" is forbidden: no new finalizers can be added if the object is being deleted",
                    t.rt.plural, t.name
                )));
            }
        }
        if t.rt.has_generation() && spec_part(&old) != spec_part(&new) {
            let g = old["metadata"]["generation"].as_i64().unwrap_or(0);
            new["metadata"]["generation"] = json!(g + 1);
        }
        if applied_by.is_none() {
            new["metadata"]["managedFields"] = old["metadata"]["managedFields"].clone();
            apply::record_update(
                &old,
                &mut new,
                &opts.manager(),
                &t.rt.api_version(),
                status_sub,
                t.rt.status,
                t.rt.crd.is_none(),
            );
        }
        let mut cmp_old = old.clone();
        let mut cmp_new = new.clone();
        for o in [&mut cmp_old, &mut cmp_new] {
            if let Some(m) = o["metadata"].as_object_mut() {
                m.remove("resourceVersion");
                m.remove("managedFields");
            }
        }
        if cmp_old == cmp_new {
            // A no-op write stores nothing and keeps the resourceVersion.
            warnings.retain(|_| true);
            return Ok(Written {
                object: old,
                created: false,
                warnings,
            });
        }
        let object = self.commit(t, new, opts);
        Ok(Written {
            object,
            created: false,
            warnings,
        })
    }

    /// PATCH in any of the four formats.
    pub fn patch(
        &mut self,
        t: &Target,
        content_type: &str,
        body: &[u8],
        opts: &WriteOptions,
    ) -> Result<Written, ApiError> {
        let ct = content_type.split(';').next().unwrap_or_default().trim();
        if ct == "application/apply-patch+yaml" {
            return self.apply(t, body, opts);
        }
        let patch: Value = serde_json::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("the patch is not valid JSON: {e}")))?;
        let old = self.current(t)?;
        let mut new = old.clone();
        match ct {
            "application/merge-patch+json" => patch::merge_patch(&mut new, &patch),
            "application/json-patch+json" => patch::json_patch(&mut new, &patch)?,
            "application/strategic-merge-patch+json" => {
                if t.rt.crd.is_some() {
                    return Err(ApiError::unsupported_media(
                        "strategic merge patch is not supported for custom resources; use a merge patch",
                    ));
                }
                patch::strategic_merge(&mut new, &patch)
            }
            other => {
                return Err(ApiError::unsupported_media(format!(
                    "the patch type {other:?} is not supported"
                )))
            }
        }
        let want_rv = new["metadata"]["resourceVersion"].clone();
        if !want_rv.is_null() && want_rv != old["metadata"]["resourceVersion"] {
            return Err(ApiError::conflict(&t.rt.group, &t.rt.plural, &t.name,
                "the object has been modified; please apply your changes to the latest version and try again"));
        }
        self.write_new_version(t, old, new, opts, None)
    }
}

fn random_suffix(seed: u64) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut x = seed
        .wrapping_mul(6_364_136_223_846_793_005)
        .wrapping_add(clock::now_secs() as u64 ^ 0x5851_F42D_4C95_7F2D);
    (0..5)
        .map(|_| {
            x ^= x >> 33;
            x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
            ALPHABET[(x % ALPHABET.len() as u64) as usize] as char
        })
        .collect()
}
