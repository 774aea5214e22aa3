//! The admission extension point (API reference "Admission Control" and "Dynamic Admission
//! Control"): when plugins are registered with [`ApiServer::add_admission`], every create,
//! update and patch (main resource and status) is computed first as a dry run, shown to each
//! plugin in turn (a mutating plugin returns a changed object, a validating one returns it
//! unchanged or an error, which fails the request), and then stored if nothing changed in
//! between (a patch is recomputed and retried on such a race, as the API server does). The
//! webhook client (`webhook`, calling Mutating/ValidatingWebhookConfigurations over TLS) is
//! such a plugin, registered at server start; while no plugin is active (no webhook
//! configured) writes go straight to the store.

use crate::error::ApiError;
use crate::rbac::User;
use crate::registry::ResourceType;
use crate::routes::{object_response, parse_body};
use crate::server::{ApiServer, Body, BoxFuture};
use crate::verbs::{Target, WriteOptions};
use bytes::Bytes;
use hyper::Response;
use serde_json::{json, Value};
use std::sync::Arc;

/// `CREATE` or `UPDATE` (patches are updates, as in AdmissionReview).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Create,
    Update,
}

/// What a plugin is asked to admit.
#[derive(Debug, Clone)]
pub struct AdmissionRequest {
    pub operation: Operation,
    pub resource: Arc<ResourceType>,
    pub namespace: String,
    pub name: String,
    pub subresource: String,
    pub user: User,
    pub dry_run: bool,
    /// The object as it would be stored.
    pub object: Value,
    pub old_object: Option<Value>,
}

/// An admission plugin.
pub trait Admission: Send + Sync + std::fmt::Debug {
    /// The object to store (changed by a mutating plugin), or why the request is refused.
    fn admit(&self, request: AdmissionRequest) -> BoxFuture<Result<Value, ApiError>>;

    /// Whether the plugin has anything to do now (while none has, writes skip admission).
    fn active(&self) -> bool {
        true
    }

    /// [`Admission::admit`], with warnings for the client (`Warning` headers).
    fn admit_with_warnings(
        &self,
        request: AdmissionRequest,
    ) -> BoxFuture<Result<(Value, Vec<String>), ApiError>> {
        let admitted = self.admit(request);
        Box::pin(async move { admitted.await.map(|object| (object, Vec::new())) })
    }
}

/// A write waiting for admission.
#[derive(Debug)]
pub struct PendingWrite {
    pub target: Target,
    pub verb: String,
    pub opts: WriteOptions,
    pub content_type: String,
    pub accept: String,
    pub body: Bytes,
    pub user: User,
}

fn lock(server: &ApiServer) -> Result<std::sync::MutexGuard<'_, crate::verbs::State>, ApiError> {
    server
        .state
        .lock()
        .map_err(|_| ApiError::internal("state lock poisoned"))
}

/// Dry run, admission, store.
pub async fn admitted_write(
    server: &Arc<ApiServer>,
    w: PendingWrite,
) -> Result<Response<Body>, ApiError> {
    let t = &w.target;
    let dry = WriteOptions {
        dry_run: true,
        ..w.opts.clone()
    };
    let unnamed = Target {
        name: String::new(),
        ..t.clone()
    };
    for _attempt in 0..5 {
        let (candidate, old, warnings) = {
            let mut state = lock(server)?;
            let old = state.current(t).ok();
            let written = match w.verb.as_str() {
                "create" => state.create(&unnamed, parse_body(&w.body)?, &dry)?,
                "update" => state.update(t, parse_body(&w.body)?, &dry)?,
                _ => state.patch(t, &w.content_type, &w.body, &dry)?,
            };
            let old = old.filter(|_| w.verb != "create");
            (written.object, old, written.warnings)
        };
        let mut object = candidate;
        let mut warnings = warnings;
        for plugin in server.admissions() {
            let admitted;
            (object, admitted) = plugin
                .admit_with_warnings(AdmissionRequest {
                    operation: if old.is_some() {
                        Operation::Update
                    } else {
                        Operation::Create
                    },
                    resource: t.rt.clone(),
                    namespace: t.namespace.clone(),
                    name: object["metadata"]["name"]
                        .as_str()
                        .unwrap_or(&t.name)
                        .to_string(),
                    subresource: t.subresource.clone(),
                    user: w.user.clone(),
                    dry_run: w.opts.dry_run,
                    object: object.clone(),
                    old_object: old.clone(),
                })
                .await?;
            warnings.extend(admitted);
        }
        let mut state = lock(server)?;
        let old_rv = old
            .as_ref()
            .map(|o| o["metadata"]["resourceVersion"].clone());
        let stored = state.commit_admitted(t, object, old_rv, &w.opts);
        match stored {
            Err(e)
                if e.code == 409
                    && w.verb == "patch"
                    && e.reason == "Conflict"
                    && old.is_some() =>
            {
                continue
            }
            Err(e) => return Err(e),
            Ok(written) => {
                let code = if old.is_none() { 201 } else { 200 };
                let mut all = warnings;
                all.extend(written.warnings);
                return Ok(object_response(
                    &w.accept,
                    &t.rt,
                    code,
                    &written.object,
                    &all,
                ));
            }
        }
    }
    Err(ApiError::conflict(
        &t.rt.group,
        &t.rt.plural,
        &t.name,
        "the object kept changing during admission",
    ))
}

impl crate::verbs::State {
    /// Store an admitted object: created, or written over `old_rv` (409 if it moved on).
    pub(crate) fn commit_admitted(
        &mut self,
        t: &Target,
        object: Value,
        old_rv: Option<Value>,
        opts: &WriteOptions,
    ) -> Result<crate::verbs::Written, ApiError> {
        let managed = object["metadata"]["managedFields"].clone();
        let Some(rv) = old_rv else {
            let unnamed = Target {
                name: String::new(),
                ..t.clone()
            };
            let mut w = self.create(&unnamed, object, opts)?;
            if !opts.dry_run && managed.is_array() {
                let name = w.object["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                let mut o = w.object.clone();
                o["metadata"]["managedFields"] = managed;
                w.object = self.put(&Target { name, ..t.clone() }, o);
            }
            return Ok(w);
        };
        let old = self.current(t)?;
        if old["metadata"]["resourceVersion"] != rv {
            return Err(ApiError::conflict(&t.rt.group, &t.rt.plural, &t.name,
                "the object has been modified; please apply your changes to the latest version and try again"));
        }
        let mut object = object;
        object["metadata"]["resourceVersion"] = json!(rv);
        self.write_new_version(t, old, object, opts, Some("admission"))
    }
}
