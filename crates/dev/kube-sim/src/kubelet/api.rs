//! The controllers' way to the API: in-process reads and writes through the same verbs a
//! request goes through (resourceVersions, watch events, managedFields), under the field
//! manager of the controller that writes (`kubelet`, `kube-scheduler`, …). Admission plugins
//! are not consulted, as for the real control plane's own writes of status.

use crate::error::ApiError;
use crate::gc::DeleteOptions;
use crate::server::ApiServer;
use crate::verbs::{Target, WriteOptions};
use serde_json::Value;
use std::sync::Arc;

/// A handle for one controller.
#[derive(Debug, Clone)]
pub struct Api {
    pub server: Arc<ApiServer>,
    manager: &'static str,
}

impl Api {
    pub fn new(server: Arc<ApiServer>, manager: &'static str) -> Self {
        Api { server, manager }
    }

    fn options(&self) -> WriteOptions {
        WriteOptions {
            field_manager: Some(self.manager.into()),
            ..WriteOptions::default()
        }
    }

    fn target(&self, resource: &str, ns: &str, name: &str, sub: &str) -> Result<Target, ApiError> {
        let rt = self
            .lock()?
            .registry
            .find_storage(&storage_key(resource))
            .ok_or_else(|| ApiError::internal(format!("no resource {resource}")))?;
        Ok(Target {
            rt,
            namespace: ns.to_string(),
            name: name.to_string(),
            subresource: sub.to_string(),
        })
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, crate::verbs::State>, ApiError> {
        self.server
            .state
            .lock()
            .map_err(|_| ApiError::internal("state lock poisoned"))
    }

    /// Every object of `resource` (`pods`, `discovery.k8s.io/endpointslices`), all namespaces.
    pub fn list(&self, resource: &str) -> Vec<Value> {
        let storage = storage_key(resource);
        self.lock()
            .map(|s| {
                s.store
                    .objects(&storage)
                    .map(|o| o.values().cloned().collect())
                    .unwrap_or_default()
            })
            .unwrap_or_default()
    }

    pub fn get(&self, resource: &str, ns: &str, name: &str) -> Option<Value> {
        let storage = storage_key(resource);
        self.lock().ok()?.store.get(&storage, ns, name).cloned()
    }

    pub fn create(&self, resource: &str, ns: &str, obj: Value) -> Result<Value, ApiError> {
        let name = obj["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let t = self.target(resource, ns, &name, "")?;
        Ok(self.lock()?.create(&t, obj, &self.options())?.object)
    }

    /// Replace the object (no resourceVersion precondition unless `obj` carries one).
    pub fn update(&self, resource: &str, obj: Value) -> Result<Value, ApiError> {
        let m = &obj["metadata"];
        let t = self.target(
            resource,
            m["namespace"].as_str().unwrap_or_default(),
            m["name"].as_str().unwrap_or_default(),
            "",
        )?;
        Ok(self.lock()?.update(&t, obj, &self.options())?.object)
    }

    /// Replace the status of an object.
    pub fn update_status(
        &self,
        resource: &str,
        ns: &str,
        name: &str,
        status: Value,
    ) -> Result<Value, ApiError> {
        let t = self.target(resource, ns, name, "status")?;
        let mut state = self.lock()?;
        let mut obj = state.get(&t)?;
        if obj["status"] == status {
            return Ok(obj);
        }
        obj["status"] = status;
        if let Some(m) = obj["metadata"].as_object_mut() {
            m.remove("resourceVersion");
        }
        Ok(state.update(&t, obj, &self.options())?.object)
    }

    /// Replace the status of `obj` (as read, with its resourceVersion: `409` when it changed
    /// meanwhile, as a controller's status update).
    pub fn replace_status(&self, resource: &str, obj: Value) -> Result<Value, ApiError> {
        let m = &obj["metadata"];
        let t = self.target(
            resource,
            m["namespace"].as_str().unwrap_or_default(),
            m["name"].as_str().unwrap_or_default(),
            "status",
        )?;
        Ok(self.lock()?.update(&t, obj, &self.options())?.object)
    }

    /// A JSON merge patch of the main resource.
    pub fn merge_patch(
        &self,
        resource: &str,
        ns: &str,
        name: &str,
        patch: &Value,
    ) -> Result<Value, ApiError> {
        let t = self.target(resource, ns, name, "")?;
        let body = serde_json::to_vec(patch).map_err(|e| ApiError::internal(e.to_string()))?;
        Ok(self
            .lock()?
            .patch(&t, "application/merge-patch+json", &body, &self.options())?
            .object)
    }

    /// Delete as a client would (default grace period and propagation).
    pub fn delete(&self, resource: &str, ns: &str, name: &str) -> Result<(), ApiError> {
        let t = self.target(resource, ns, name, "")?;
        self.lock()?
            .delete(&t, &DeleteOptions::default())
            .map(|_| ())
    }

    /// Delete with grace 0 (what the kubelet does once a pod's containers are gone).
    pub fn delete_now(
        &self,
        resource: &str,
        ns: &str,
        name: &str,
        uid: &str,
    ) -> Result<(), ApiError> {
        let t = self.target(resource, ns, name, "")?;
        let opts = DeleteOptions {
            grace_period_seconds: Some(0),
            precondition_uid: Some(uid.to_string()),
            ..DeleteOptions::default()
        };
        self.lock()?.delete(&t, &opts).map(|_| ())
    }
}

/// The store key of `group/plural` or a core `plural`.
pub fn storage_key(resource: &str) -> String {
    match resource.rsplit_once('/') {
        Some((group, plural)) => format!("{group}/{plural}"),
        None => format!("/{resource}"),
    }
}
