//! The object stores a Cluster uses — its own archive (in-tree `spec.backup.barmanObjectStore`
//! or the barman-cloud plugin's `ObjectStore`) and its external clusters' (recovery sources) —
//! resolved with their Secret values into [`StoreTarget`]s, and written where only the
//! PostgreSQL user can read them.

use crate::state::{read_json, write_json_owned, StateDir};
use crate::LocalError;
use pgherd_api::barman::BarmanObjectStoreConfiguration;
use pgherd_api::kinds::object_store::ObjectStore;
use pgherd_api::Cluster;
use pgherd_backup::store::StoreTarget;
use pgherd_instance_manager::OsUser;
use std::path::Path;

pub use pgherd_api::defaults::SKIP_EMPTY_WAL_ARCHIVE_CHECK;

/// How a cluster reaches its archive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreMethod {
    /// `spec.backup.barmanObjectStore`.
    BarmanObjectStore,
    /// The barman-cloud plugin with an `ObjectStore`.
    Plugin,
}

impl StoreMethod {
    /// The Backup `method` this is.
    pub fn as_str(self) -> &'static str {
        match self {
            StoreMethod::BarmanObjectStore => "barmanObjectStore",
            StoreMethod::Plugin => "plugin",
        }
    }
}

/// A cluster's own archive.
#[derive(Debug, Clone)]
pub struct ClusterStore {
    pub target: StoreTarget,
    pub method: StoreMethod,
    /// `spec.backup.retentionPolicy` or the ObjectStore's `retentionPolicy`.
    pub retention_policy: Option<String>,
    /// Where the configuration came from, for messages (`spec.backup.barmanObjectStore`,
    /// `ObjectStore/NAME`).
    pub source: String,
}

fn resolve(
    state: &StateDir,
    namespace: &str,
    configuration: &BarmanObjectStoreConfiguration,
    server_name: String,
    field: &str,
) -> Result<StoreTarget, LocalError> {
    let mut secrets = std::collections::BTreeMap::new();
    for selector in StoreTarget::referenced_secrets(configuration) {
        let value = crate::key_refs::secret_key(state, namespace, field, &selector)?;
        secrets.insert(StoreTarget::secret_key(&selector), value);
    }
    let target = StoreTarget {
        configuration: configuration.clone(),
        server_name,
        secrets,
    };
    target
        .store_config()
        .map_err(|e| LocalError::Invalid(format!("{field}: {e}")))?;
    Ok(target)
}

/// The `ObjectStore` `name` resolved for the server folder `server`, with its retention policy
/// and its name for messages.
fn object_store_target(
    state: &StateDir,
    namespace: &str,
    name: &str,
    server: String,
) -> Result<(StoreTarget, Option<String>, String), LocalError> {
    let store: ObjectStore = read_json(&state.object_path("ObjectStore", namespace, name))?
        .ok_or_else(|| {
            LocalError::Invalid(format!(
                "ObjectStore {name:?} not found in namespace {namespace} (hint: apply it (apiVersion: barmancloud.cnpg.io/v1, kind: ObjectStore) before the Cluster)"
            ))
        })?;
    let source = format!("ObjectStore/{name}");
    let target = resolve(
        state,
        namespace,
        &store.spec.configuration,
        server,
        &format!("{source} spec.configuration"),
    )?;
    Ok((target, store.spec.retention_policy.clone(), source))
}

/// The cluster's own archive, if it has one.
pub fn cluster_store(
    state: &StateDir,
    namespace: &str,
    cluster: &Cluster,
) -> Result<Option<ClusterStore>, LocalError> {
    use pgherd_backup::store::archive_source::{self, ArchiveSource};
    match archive_source::archive_source(cluster).map_err(LocalError::Invalid)? {
        None => Ok(None),
        Some(ArchiveSource::Plugin {
            object_store,
            server_name,
        }) => {
            let (target, retention_policy, source) =
                object_store_target(state, namespace, &object_store, server_name).map_err(|e| {
                    LocalError::Invalid(format!(
                        "{}.parameters.barmanObjectName: {e}",
                        archive_source::PLUGIN_FIELD
                    ))
                })?;
            Ok(Some(ClusterStore {
                target,
                method: StoreMethod::Plugin,
                retention_policy,
                source,
            }))
        }
        Some(ArchiveSource::InTree {
            configuration,
            server_name,
            retention_policy,
        }) => {
            let field = archive_source::IN_TREE_FIELD;
            Ok(Some(ClusterStore {
                target: resolve(state, namespace, configuration, server_name, field)?,
                method: StoreMethod::BarmanObjectStore,
                retention_policy,
                source: field.to_string(),
            }))
        }
    }
}

/// The store of the external cluster `source` (a recovery source).
pub fn external_store(
    state: &StateDir,
    namespace: &str,
    cluster: &Cluster,
    source: &str,
) -> Result<StoreTarget, LocalError> {
    use pgherd_backup::store::archive_source::{external_source, ArchiveSource};
    let (found, field) = external_source(cluster, source).map_err(LocalError::Invalid)?;
    match found {
        ArchiveSource::Plugin {
            object_store,
            server_name,
        } => Ok(
            object_store_target(state, namespace, &object_store, server_name)
                .map_err(|e| {
                    LocalError::Invalid(format!("{field}.parameters.barmanObjectName: {e}"))
                })?
                .0,
        ),
        ArchiveSource::InTree {
            configuration,
            server_name,
            ..
        } => resolve(state, namespace, configuration, server_name, &field),
    }
}

/// Writes `target` to `path` (0600, owned by `user`) when its content changed.
pub fn write_target(path: &Path, target: &StoreTarget, user: &OsUser) -> Result<(), LocalError> {
    write_json_owned(path, target, 0o600, user)
}

/// File (in the cluster's directory) holding the cluster's own archive target.
pub const ARCHIVE_STORE_FILE: &str = "archive-store.json";

/// The instance specs' [`WalStore`] for `cluster`, its store written to `cluster_dir`; and why
/// it could not be resolved, if so. A store that cannot be resolved still gets a `WalStore`
/// (pointing at the last good file, or at none): archiving then fails and WAL stays in
/// `pg_wal` until the problem is fixed, rather than being thrown away.
pub fn prepare_archive(
    state: &StateDir,
    namespace: &str,
    cluster: &Cluster,
    cluster_dir: &Path,
    user: &OsUser,
) -> (
    Option<ClusterStore>,
    Option<pgherd_instance_protocol::WalStore>,
    Option<String>,
) {
    let path = cluster_dir.join(ARCHIVE_STORE_FILE);
    let skip_empty_check = cluster
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(SKIP_EMPTY_WAL_ARCHIVE_CHECK))
        .is_some_and(|v| v == "enabled");
    let wal_store = pgherd_instance_protocol::WalStore {
        store_file: path.clone(),
        skip_empty_check,
    };
    match cluster_store(state, namespace, cluster) {
        Ok(None) => (None, None, None),
        Ok(Some(store)) => match ensure_local_destination(&store, user)
            .and_then(|()| write_target(&path, &store.target, user))
        {
            Ok(()) => (Some(store), Some(wal_store), None),
            Err(e) => (Some(store), Some(wal_store), Some(e.to_string())),
        },
        Err(e) => (None, Some(wal_store), Some(e.to_string())),
    }
}

/// The store and backup id of the Backup object `name` (`bootstrap.recovery.backup.name`): the
/// store of the cluster it was taken from.
pub fn backup_store(
    state: &StateDir,
    namespace: &str,
    name: &str,
) -> Result<(StoreTarget, String), LocalError> {
    use pgherd_api::kinds::backup::{Backup, BackupStatus};
    let field = "spec.bootstrap.recovery.backup.name";
    let backup: Backup = read_json(&state.object_path("Backup", namespace, name))?.ok_or_else(|| {
        LocalError::Invalid(format!(
            "{field}: Backup {name:?} not found in namespace {namespace} (hint: `pgherd local get backup` lists them)"
        ))
    })?;
    let status: BackupStatus =
        read_json(&state.status_path("Backup", namespace, name))?.unwrap_or_default();
    let id = status
        .backup_id
        .filter(|_| status.phase.as_deref() == Some("completed"))
        .ok_or_else(|| {
            LocalError::Invalid(format!(
                "{field}: Backup {name:?} has not completed (phase {:?})",
                status.phase.as_deref().unwrap_or("new")
            ))
        })?;
    let source: Cluster = read_json(&state.object_path("Cluster", namespace, &backup.spec.cluster.name))?
        .ok_or_else(|| {
            LocalError::Invalid(format!(
                "{field}: Backup {name:?} was taken of Cluster {:?}, which no longer exists; recover from its object store with recovery.source and spec.externalClusters instead",
                backup.spec.cluster.name
            ))
        })?;
    let store = cluster_store(state, namespace, &source)?.ok_or_else(|| {
        LocalError::Invalid(format!(
            "{field}: Cluster {:?} has no object store any more",
            backup.spec.cluster.name
        ))
    })?;
    Ok((store.target, id))
}

/// A `file://` destination that does not exist yet is created for the PostgreSQL user (who
/// archives into it); an existing one is left as it is.
fn ensure_local_destination(store: &ClusterStore, user: &OsUser) -> Result<(), LocalError> {
    let Some(dir) = store
        .target
        .configuration
        .destination_path
        .strip_prefix("file://")
    else {
        return Ok(());
    };
    let dir = Path::new(dir);
    if !dir.exists() {
        user.own_dir(dir, 0o700)?;
    }
    Ok(())
}
