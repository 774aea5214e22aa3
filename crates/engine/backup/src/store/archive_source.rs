//! Which object store a Cluster archives to, as every platform reads it: the barman-cloud
//! plugin's `ObjectStore` when a plugin entry archives WAL, else the in-tree
//! `spec.backup.barmanObjectStore`. The platform then reads the ObjectStore and the Secrets.

use pgherd_api::barman::BarmanObjectStoreConfiguration;
use pgherd_api::cluster::PluginConfiguration;
use pgherd_api::validate::BARMAN_CLOUD_PLUGIN;
use pgherd_api::Cluster;

/// The field a plugin's store is configured under, for messages.
pub const PLUGIN_FIELD: &str = "spec.plugins[barman-cloud]";
/// The in-tree store's field.
pub const IN_TREE_FIELD: &str = "spec.backup.barmanObjectStore";

/// Where a cluster's WAL and base backups go.
#[derive(Debug, Clone, PartialEq)]
pub enum ArchiveSource<'a> {
    /// `spec.backup.barmanObjectStore`.
    InTree {
        configuration: &'a BarmanObjectStoreConfiguration,
        server_name: String,
        retention_policy: Option<String>,
    },
    /// The barman-cloud plugin with the `ObjectStore` named `object_store`.
    Plugin {
        object_store: String,
        server_name: String,
    },
}

/// The barman-cloud plugin entry of `plugins` that archives WAL, if any.
pub fn wal_archiver(plugins: Option<&Vec<PluginConfiguration>>) -> Option<&PluginConfiguration> {
    plugins?.iter().find(|p| {
        p.name == BARMAN_CLOUD_PLUGIN && p.enabled != Some(false) && p.is_wal_archiver == Some(true)
    })
}

/// The ObjectStore a barman-cloud plugin entry names (`parameters.barmanObjectName`) and its
/// server folder (`parameters.serverName`, else `default_server`).
pub fn plugin_store(
    plugin: &PluginConfiguration,
    default_server: &str,
    field: &str,
) -> Result<(String, String), String> {
    let parameters = plugin.parameters.clone().unwrap_or_default();
    let name = parameters.get("barmanObjectName").ok_or_else(|| {
        format!(
            "{field}.parameters.barmanObjectName: missing (hint: name the ObjectStore the plugin uses)"
        )
    })?;
    let server = parameters
        .get("serverName")
        .cloned()
        .unwrap_or_else(|| default_server.to_string());
    Ok((name.clone(), server))
}

/// The cluster's own archive, if it has one.
pub fn archive_source(cluster: &Cluster) -> Result<Option<ArchiveSource<'_>>, String> {
    let name = cluster.metadata.name.clone().unwrap_or_default();
    if let Some(plugin) = wal_archiver(cluster.spec.plugins.as_ref()) {
        let (object_store, server_name) = plugin_store(plugin, &name, PLUGIN_FIELD)?;
        return Ok(Some(ArchiveSource::Plugin {
            object_store,
            server_name,
        }));
    }
    let Some(backup) = &cluster.spec.backup else {
        return Ok(None);
    };
    let Some(configuration) = &backup.barman_object_store else {
        return Ok(None);
    };
    Ok(Some(ArchiveSource::InTree {
        configuration,
        server_name: configuration.server_name.clone().unwrap_or(name),
        retention_policy: backup.retention_policy.clone(),
    }))
}

/// The store of the external cluster `source` (a recovery source): its barman-cloud plugin's
/// ObjectStore, else its `barmanObjectStore`; the server folder defaults to its name. The
/// second value is the field it is configured under, for messages.
pub fn external_source<'a>(
    cluster: &'a Cluster,
    source: &str,
) -> Result<(ArchiveSource<'a>, String), String> {
    let externals = cluster
        .spec
        .external_clusters
        .as_deref()
        .unwrap_or_default();
    let (index, external) = externals
        .iter()
        .enumerate()
        .find(|(_, e)| e.name == source)
        .ok_or_else(|| {
            format!(
                "spec.bootstrap.recovery.source: external cluster {source:?} not found in spec.externalClusters"
            )
        })?;
    let field = format!("spec.externalClusters[{index}]");
    if let Some(plugin) = &external.plugin {
        let field = format!("{field}.plugin");
        let (object_store, server_name) = plugin_store(plugin, &external.name, &field)?;
        return Ok((
            ArchiveSource::Plugin {
                object_store,
                server_name,
            },
            field,
        ));
    }
    let configuration = external.barman_object_store.as_ref().ok_or_else(|| {
        format!(
            "{field}: external cluster {source:?} has neither barmanObjectStore nor plugin (hint: recovery from an object store needs one of them)"
        )
    })?;
    Ok((
        ArchiveSource::InTree {
            configuration,
            server_name: configuration
                .server_name
                .clone()
                .unwrap_or_else(|| external.name.clone()),
            retention_policy: None,
        },
        format!("{field}.barmanObjectStore"),
    ))
}

/// Whether a Backup of `method` can be taken by a cluster whose archive is the plugin's
/// (`plugin`) or the in-tree store; the error is the Backup's `status.error`.
pub fn check_method(
    method: pgherd_api::kinds::backup::BackupMethod,
    plugin: bool,
) -> Result<(), String> {
    use pgherd_api::kinds::backup::BackupMethod;
    match (method, plugin) {
        (BackupMethod::VolumeSnapshot, _) => Err(
            "method volumeSnapshot: pgherd takes no volume snapshots; use barmanObjectStore or plugin".into(),
        ),
        (BackupMethod::BarmanObjectStore, true) => Err(
            "method barmanObjectStore: the cluster archives through the barman-cloud plugin; use method: plugin with pluginConfiguration.name: barman-cloud.cloudnative-pg.io".into(),
        ),
        (BackupMethod::Plugin, false) => Err(
            "method plugin: the cluster has no barman-cloud plugin; use method: barmanObjectStore".into(),
        ),
        _ => Ok(()),
    }
}

/// What a Backup needs before an instance takes it: the cluster's archive (`Err`: why it
/// cannot be used now; `Ok(None)`: it has none), of the kind the Backup's method asks for
/// (`plugin` tells whether an archive is the barman-cloud plugin's); and which instance takes
/// it, the Backup's `target` else the cluster's `spec.backup.target`. The error is the Backup's
/// `status.error`.
pub fn backup_archive<T>(
    backup: &pgherd_api::kinds::backup::Backup,
    cluster: &Cluster,
    archive: Result<Option<T>, &str>,
    plugin: impl Fn(&T) -> bool,
) -> Result<(T, pgherd_api::cluster::BackupTarget), String> {
    let archive = match archive {
        Ok(Some(archive)) => archive,
        Ok(None) => {
            return Err(format!(
                "Cluster {:?} has no object store: configure spec.backup.barmanObjectStore or the barman-cloud plugin (spec.plugins with isWALArchiver: true)",
                backup.spec.cluster.name
            ))
        }
        Err(problem) => {
            return Err(format!(
                "the cluster's object store cannot be used: {problem}"
            ))
        }
    };
    check_method(backup.spec.method.unwrap_or_default(), plugin(&archive))?;
    let target = backup
        .spec
        .target
        .or_else(|| cluster.spec.backup.as_ref().and_then(|b| b.target))
        .unwrap_or_default();
    Ok((archive, target))
}

/// A Backup's status as it starts: taken by `instance` into `target`'s store with `method`
/// (`barmanObjectStore` or `plugin`), of a cluster running PostgreSQL `major`.
pub fn started_status(
    backup: &str,
    method: &str,
    target: &crate::store::StoreTarget,
    major: Option<u32>,
    instance: String,
) -> pgherd_api::kinds::backup::BackupStatus {
    use pgherd_api::kinds::backup::{BackupStatus, InstanceId};
    let cfg = &target.configuration;
    BackupStatus {
        phase: Some("running".into()),
        backup_name: Some(backup.to_string()),
        started_at: Some(crate::timestamp::rfc3339_now()),
        method: Some(method.into()),
        online: Some(true),
        destination_path: Some(cfg.destination_path.clone()),
        endpoint_url: cfg.endpoint_url.clone(),
        server_name: Some(target.server_name.clone()),
        major_version: major.map(i64::from),
        instance_id: Some(InstanceId {
            pod_name: Some(instance),
            ..Default::default()
        }),
        ..Default::default()
    }
}
