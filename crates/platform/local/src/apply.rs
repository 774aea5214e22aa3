//! Storing applied objects, as the API server would: each valid object under
//! `objects/<Kind>/<namespace>/<name>.json` (defaulted), Secrets as secret files.

use crate::state::{write_json, StateDir, DEFAULT_NAMESPACE};
use crate::LocalError;
use pgherd_api::manifest::{Manifest, Object};

/// Store every object of `manifests` (callers validate first; documents with errors are not
/// stored). Returns `Kind/namespace/name` of what was stored.
pub fn store(state: &StateDir, manifests: &[Manifest]) -> Result<Vec<String>, LocalError> {
    let mut stored = Vec::new();
    for m in manifests.iter().filter(|m| !m.has_errors()) {
        let Some(object) = &m.object else { continue };
        let (kind, namespace, name) = match object {
            Object::Cluster(o) => (
                "Cluster",
                o.metadata.namespace.clone(),
                o.metadata.name.clone(),
            ),
            Object::Backup(o) => (
                "Backup",
                o.metadata.namespace.clone(),
                o.metadata.name.clone(),
            ),
            Object::ScheduledBackup(o) => (
                "ScheduledBackup",
                o.metadata.namespace.clone(),
                o.metadata.name.clone(),
            ),
            Object::Pooler(o) => (
                "Pooler",
                o.metadata.namespace.clone(),
                o.metadata.name.clone(),
            ),
            Object::Database(o) => (
                "Database",
                o.metadata.namespace.clone(),
                o.metadata.name.clone(),
            ),
            Object::ObjectStore(o) => (
                "ObjectStore",
                o.metadata.namespace.clone(),
                o.metadata.name.clone(),
            ),
            Object::Secret(o) => (
                "Secret",
                o.metadata.namespace.clone(),
                o.metadata.name.clone(),
            ),
            Object::ConfigMap(o) => (
                "ConfigMap",
                o.metadata.namespace.clone(),
                o.metadata.name.clone(),
            ),
        };
        let namespace = namespace.unwrap_or_else(|| DEFAULT_NAMESPACE.to_string());
        let name = name.unwrap_or_default();
        let path = state.object_path(kind, &namespace, &name);
        match object {
            Object::Cluster(o) => write_json(&path, o, 0o600)?,
            Object::Backup(o) => write_json(&path, o, 0o600)?,
            Object::ScheduledBackup(o) => write_json(&path, o, 0o600)?,
            Object::Pooler(o) => write_json(&path, o, 0o600)?,
            Object::Database(o) => write_json(&path, o, 0o600)?,
            Object::ObjectStore(o) => write_json(&path, o, 0o600)?,
            Object::ConfigMap(o) => write_json(&path, o, 0o600)?,
            Object::Secret(o) => crate::secrets::store(state, &namespace, o)?,
        }
        stored.push(format!("{kind}/{namespace}/{name}"));
    }
    Ok(stored)
}

/// Set an annotation on a stored Cluster (as `kubectl annotate` would). Errors when the
/// cluster does not exist.
pub fn annotate_cluster(
    state: &StateDir,
    namespace: &str,
    name: &str,
    key: &str,
    value: &str,
) -> Result<(), LocalError> {
    let path = state.object_path("Cluster", namespace, name);
    let mut cluster: pgherd_api::Cluster = crate::state::read_json(&path)?.ok_or_else(|| {
        LocalError::Invalid(format!(
            "cluster {name:?} not found in namespace {namespace}"
        ))
    })?;
    cluster
        .metadata
        .annotations
        .get_or_insert_with(Default::default)
        .insert(key.to_string(), value.to_string());
    write_json(&path, &cluster, 0o600)
}
