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
        let kind = object.kind();
        let namespace = object
            .metadata()
            .namespace
            .clone()
            .unwrap_or_else(|| DEFAULT_NAMESPACE.to_string());
        let name = object.metadata().name.clone().unwrap_or_default();
        match object {
            Object::Secret(secret) => crate::secrets::store(state, &namespace, secret)?,
            other => {
                let value = other
                    .to_json()
                    .map_err(|e| LocalError::Invalid(format!("{kind}/{name}: {e}")))?;
                write_json(&state.object_path(kind, &namespace, &name), &value, 0o600)?;
            }
        }
        stored.push(format!("{kind}/{namespace}/{name}"));
    }
    Ok(stored)
}

/// Set (or, with `None`, remove) an annotation on a stored Cluster (as `kubectl annotate`
/// would). Errors when the cluster does not exist.
pub fn annotate_cluster(
    state: &StateDir,
    namespace: &str,
    name: &str,
    key: &str,
    value: Option<&str>,
) -> Result<(), LocalError> {
    let path = state.object_path("Cluster", namespace, name);
    let mut cluster: pgherd_api::Cluster = crate::state::read_json(&path)?.ok_or_else(|| {
        LocalError::Invalid(format!(
            "cluster {name:?} not found in namespace {namespace}"
        ))
    })?;
    let annotations = cluster
        .metadata
        .annotations
        .get_or_insert_with(Default::default);
    match value {
        Some(v) => annotations.insert(key.to_string(), v.to_string()),
        None => annotations.remove(key),
    };
    write_json(&path, &cluster, 0o600)
}

/// The stored kind a user means by `kind` (`cluster`, `clusters`, `Cluster`, `secret`,
/// `imagecatalogs`, ...).
pub fn resolve_kind(kind: &str) -> Option<&'static str> {
    let lower = kind.to_ascii_lowercase();
    let singular = lower.strip_suffix('s').unwrap_or(&lower);
    pgherd_api::object::KINDS
        .iter()
        .copied()
        .find(|k| k.to_ascii_lowercase() == lower || k.to_ascii_lowercase() == singular)
}

/// What of `object` the local platform does not carry out (yet): said at apply time (and in
/// the object's status where it has a field for it), never silently ignored. Whatever could
/// lose data is refused by validation instead.
pub fn not_honoured(object: &Object) -> Vec<&'static str> {
    let mut notes = Vec::new();
    match object {
        Object::Cluster(c) => {
            if c.spec
                .replication_slots
                .as_ref()
                .and_then(|r| r.high_availability.as_ref())
                .and_then(|h| h.synchronize_logical_decoding)
                == Some(true)
                && c.major_version().is_some_and(|m| m.0 < 17)
            {
                notes.push(
                    "replicationSlots.highAvailability.synchronizeLogicalDecoding needs PostgreSQL 17 or newer on the local platform (pg_failover_slots is not supported yet): logical slots are not copied to the standbys, and a subscription breaks at a switchover",
                );
            }
            if c.spec.wal_storage.is_some() {
                notes.push(
                    "spec.walStorage: the local platform keeps WAL in the data directory (pg_wal); no separate WAL volume is made",
                );
            }
            if c.spec.primary_update_strategy
                == Some(pgherd_api::cluster::PrimaryUpdateStrategy::Supervised)
            {
                notes.push(
                    "spec.primaryUpdateStrategy: supervised is not carried out locally yet: a rolling restart restarts (or switches over) the primary without waiting for `local promote`",
                );
            }
            // Said when the user asked for timings of their own: the defaults (which every
            // defaulted Cluster carries) are CloudNativePG's upper bounds, which the local
            // platform's own, shorter ones stay within.
            let asked = |value: Option<i32>, default: i32| value.is_some_and(|v| v != default);
            if asked(c.spec.start_delay, 3600)
                || asked(c.spec.stop_delay, 1800)
                || asked(c.spec.smart_shutdown_timeout, 180)
                || asked(c.spec.switchover_delay, 3600)
            {
                notes.push(
                    "spec.startDelay/stopDelay/smartShutdownTimeout/switchoverDelay: the local platform uses its own timings (a fast shutdown within 10 s, then the processes killed; readiness within 120 s)",
                );
            }
            if c.spec.tablespaces.as_ref().is_some_and(|t| !t.is_empty()) {
                notes.push(
                    "spec.tablespaces: the local platform does not create declarative tablespaces yet; objects placed in them fail to be created",
                );
            }
        }
        Object::DatabaseRole(r)
            if r.spec
                .client_certificate
                .as_ref()
                .is_some_and(|c| c.enabled != Some(false)) =>
        {
            notes.push(
                "clientCertificate: the local platform does not issue client certificates yet; the role is managed without one",
            );
        }
        _ => {}
    }
    notes
}

/// The namespace and name of `cluster` when a Cluster of that name is stored.
fn stored(
    state: &StateDir,
    cluster: &pgherd_api::Cluster,
) -> Result<Option<(String, String)>, LocalError> {
    let namespace = cluster
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| DEFAULT_NAMESPACE.to_string());
    let name = cluster.metadata.name.clone().unwrap_or_default();
    Ok(state
        .has(&state.object_path("Cluster", &namespace, &name))?
        .then_some((namespace, name)))
}

/// Give a Cluster that is already stored a `resourceVersion`, as the Kubernetes API server
/// does, so validation tells an update from a creation (rules that only hold when a cluster is
/// created, such as a replica cluster's bootstrap, do not refuse a demotion).
pub fn mark_stored(state: &StateDir, manifest: &mut Manifest) -> Result<(), LocalError> {
    let Some(Object::Cluster(cluster)) = &mut manifest.object else {
        return Ok(());
    };
    if stored(state, cluster)?.is_some() {
        cluster
            .metadata
            .resource_version
            .get_or_insert_with(|| "1".to_string());
    }
    Ok(())
}

/// CloudNativePG's image-change rule, checked against the stored Cluster's status as its
/// webhook checks `old.status.pgDataImageInfo`: a Cluster may not ask for an older major than
/// its data (nor upgrade to a major below 16). Errors are added to the manifest.
pub fn check_image_change(state: &StateDir, manifest: &mut Manifest) -> Result<(), LocalError> {
    let Some(Object::Cluster(cluster)) = &manifest.object else {
        return Ok(());
    };
    let Some(major) = cluster.major_version() else {
        return Ok(());
    };
    let Some((namespace, name)) = stored(state, cluster)? else {
        return Ok(());
    };
    let status: Option<pgherd_api::cluster::ClusterStatus> =
        crate::state::read_json(&state.resource_status_path("Cluster", &namespace, &name))?;
    let view: Option<crate::status::LocalClusterStatus> =
        crate::state::read_json(&state.status_path("Cluster", &namespace, &name))?;
    let data = status
        .and_then(|s| s.pg_data_image_info)
        .or_else(|| view.and_then(|v| v.pg_data_image_info));
    let field =
        pgherd_controller::major_upgrade::image_field(cluster.spec.image_catalog_ref.is_some());
    for error in
        pgherd_controller::major_upgrade::image_change_errors(data.as_ref(), i64::from(major.0))
    {
        manifest
            .diagnostics
            .push(pgherd_api::diagnostics::Diagnostic::error(field, error));
    }
    Ok(())
}

/// The stored objects other documents may refer to (image catalogs, clusters), as manifests
/// to validate a new input against: a Cluster applied on its own must still name a major its
/// stored catalog has.
pub fn stored_references(state: &StateDir) -> Result<Vec<Manifest>, LocalError> {
    let mut out = Vec::new();
    let mut push = |kind: &str, object: Object| {
        let name = object.metadata().name.clone().unwrap_or_default();
        out.push(Manifest {
            index: 0,
            kind: kind.to_string(),
            name,
            object: Some(object),
            diagnostics: Vec::new(),
        });
    };
    for (_, _, c) in state.list_objects::<pgherd_api::ImageCatalog>("ImageCatalog")? {
        push("ImageCatalog", Object::ImageCatalog(Box::new(c)));
    }
    for (_, _, c) in state.list_objects::<pgherd_api::ClusterImageCatalog>("ClusterImageCatalog")? {
        push(
            "ClusterImageCatalog",
            Object::ClusterImageCatalog(Box::new(c)),
        );
    }
    for (_, _, c) in state.list_objects::<pgherd_api::Cluster>("Cluster")? {
        push("Cluster", Object::Cluster(Box::new(c)));
    }
    Ok(out)
}

/// Stored objects of `kind` (optionally one `name`), Kubernetes-shaped, with their status.
pub fn get(
    state: &StateDir,
    kind: &str,
    namespace: &str,
    name: Option<&str>,
) -> Result<Vec<serde_json::Value>, LocalError> {
    let mut out = Vec::new();
    if kind == "Secret" {
        let dir = state.root.join("secrets").join(namespace);
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            let stem = path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            if name.is_none_or(|n| n == stem) {
                if let Some(v) = crate::state::read_json::<serde_json::Value>(&path)? {
                    out.push(v);
                }
            }
        }
        return Ok(out);
    }
    for (ns, object_name, mut value) in state.list_objects::<serde_json::Value>(kind)? {
        if ns != namespace || name.is_some_and(|n| n != object_name) {
            continue;
        }
        // CloudNativePG's status where the local view differs (a Cluster), else the view.
        let resource_status = state.resource_status_path(kind, &ns, &object_name);
        let status_path = if resource_status.exists() {
            resource_status
        } else {
            state.status_path(kind, &ns, &object_name)
        };
        if let Some(status) = crate::state::read_json::<serde_json::Value>(&status_path)? {
            if let Some(map) = value.as_object_mut() {
                map.insert("status".to_string(), status);
            }
        }
        out.push(value);
    }
    Ok(out)
}

/// Remove a stored object. Data is kept: a deleted Cluster's instances are stopped by the
/// caller, their data stays until `local destroy`.
pub fn delete(
    state: &StateDir,
    kind: &str,
    namespace: &str,
    name: &str,
) -> Result<bool, LocalError> {
    let path = state.object_path(kind, namespace, name);
    let drops_first = match kind {
        "Publication" | "Subscription" => crate::logical::drops_on_delete(kind, &path)?,
        "DatabaseRole" => crate::database_roles::drops_on_delete(&path)?,
        _ => false,
    };
    if drops_first {
        // Like a finalizer: the primary drops it, then the control plane removes the object
        // (at once when its cluster is gone: nothing is left to drop it from).
        let value = crate::state::read_json::<serde_json::Value>(&path)?;
        let cluster = value
            .as_ref()
            .and_then(|v| v.pointer("/spec/cluster/name"))
            .and_then(serde_json::Value::as_str)
            .unwrap_or_default();
        let cluster_exists = state.has(&state.object_path("Cluster", namespace, cluster))?;
        if let Some(mut value) = value.filter(|_| cluster_exists) {
            if let Some(meta) = value.get_mut("metadata").and_then(|m| m.as_object_mut()) {
                let annotations = meta
                    .entry("annotations")
                    .or_insert_with(|| serde_json::json!({}));
                if let Some(a) = annotations.as_object_mut() {
                    a.insert(
                        crate::declarative::DELETING_ANNOTATION.to_string(),
                        "true".into(),
                    );
                }
            }
            write_json(&path, &value, 0o600)?;
            return Ok(true);
        }
    }
    if kind == "Database" {
        let path = state.object_path(kind, namespace, name);
        if let Some(mut db) =
            crate::state::read_json::<pgherd_api::kinds::database::Database>(&path)?
        {
            if db.spec.database_reclaim_policy
                == Some(pgherd_api::kinds::database::DatabaseReclaimPolicy::Delete)
            {
                // Like a finalizer: the control plane drops the database, then the object.
                db.metadata
                    .annotations
                    .get_or_insert_with(Default::default)
                    .insert(
                        crate::declarative::DELETING_ANNOTATION.to_string(),
                        "true".to_string(),
                    );
                write_json(&path, &db, 0o600)?;
                return Ok(true);
            }
        }
    }
    let path = if kind == "Secret" {
        state.secret_path(namespace, name)
    } else {
        state.object_path(kind, namespace, name)
    };
    match std::fs::remove_file(&path) {
        Ok(()) => {
            let _ = std::fs::remove_file(state.status_path(kind, namespace, name));
            let _ = std::fs::remove_file(state.resource_status_path(kind, namespace, name));
            Ok(true)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(LocalError::io("cannot remove", &path, e)),
    }
}
