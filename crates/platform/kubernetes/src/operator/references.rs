//! What a Cluster's spec refers to in other objects — the Secrets of its managed roles, the
//! object store it archives to (`spec.backup.barmanObjectStore`, or the barman-cloud plugin's
//! `ObjectStore`) and that store's Secrets — read from the API and turned into what its
//! managers are pushed: role specs whose passwords are pushed files, and the archive's store
//! as a pushed file (mode 0600 in the pod, sent over mutual TLS, never in the pod template).

use super::OperatorError;
use crate::pod::INSTANCE_SPEC_PATH;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{Api, ApiResource, DynamicObject};
use kube::Client;
use pgherd_api::barman::BarmanObjectStoreConfiguration;
use pgherd_api::cluster::EnsureOption;
use pgherd_api::defaults::SKIP_EMPTY_WAL_ARCHIVE_CHECK;
use pgherd_api::kinds::backup::Backup;
use pgherd_api::kinds::object_store::ObjectStore;
use pgherd_api::Cluster;
use pgherd_backup::store::archive_source::{self, ArchiveSource};
use pgherd_backup::store::StoreTarget;
use pgherd_controller::declarative::{role_spec, PASSWORD_KEY};
use pgherd_controller::recovery::RecoverySource;
use pgherd_instance_protocol::{
    pushed_file_path, PasswordSource, PushedFiles, RoleSpec, Upstream, WalStore,
};
use std::collections::BTreeMap;

/// The pushed file holding the cluster's archive store.
pub(crate) const ARCHIVE_STORE_FILE: &str = "archive-store.json";
/// The pushed file holding `bootstrap.recovery`'s source store.
pub(crate) const RECOVERY_STORE_FILE: &str = "recovery-store.json";
/// The pushed file holding a replica cluster's source store.
pub(crate) const REPLICA_STORE_FILE: &str = "replica-store.json";

/// The cluster's archive, resolved.
#[derive(Debug, Clone)]
pub(crate) struct Archive {
    pub target: StoreTarget,
    /// `barmanObjectStore` or `plugin` (a Backup's method).
    pub method: &'static str,
    pub retention_policy: Option<String>,
    /// Where its configuration is, for messages.
    pub source: String,
}

/// What the cluster's references resolve to in one pass.
#[derive(Debug, Default)]
pub(crate) struct Resolved {
    pub roles: Vec<RoleSpec>,
    pub files: PushedFiles,
    pub wal_store: Option<WalStore>,
    pub archive: Option<Archive>,
    /// `bootstrap.recovery`'s source, pushed as a file.
    pub recovery: Option<RecoverySource>,
    /// Why the recovery source cannot be read (it matters only while the first instance is
    /// being made).
    pub recovery_problem: Option<String>,
    /// `bootstrap.initdb.postInit*SQLRefs`, read while the first instance is to be made, or
    /// why they cannot be.
    pub post_init: Option<Result<PostInitSql, String>>,
    /// How the first instance connects to `bootstrap.pg_basebackup`'s source (its credentials
    /// pushed as files), read while that instance is to be made, or why it cannot.
    pub clone: Option<Result<BTreeMap<String, String>, String>>,
    /// A replica cluster's source as its designated primary follows it, or why it cannot be
    /// resolved this pass.
    pub replica_of: Option<Result<Upstream, String>>,
}

/// The statements `bootstrap.initdb.postInit*SQLRefs` point to.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct PostInitSql {
    pub sql: Vec<String>,
    pub template: Vec<String>,
    pub application: Vec<String>,
}

/// Secrets read once per pass, as their bytes: a value that is not UTF-8 text is an error
/// where it is used, never silently changed.
pub(super) struct Secrets {
    api: Api<Secret>,
    read: BTreeMap<String, Option<BTreeMap<String, Vec<u8>>>>,
}

impl Secrets {
    async fn get(
        &mut self,
        name: &str,
    ) -> Result<Option<&BTreeMap<String, Vec<u8>>>, OperatorError> {
        if !self.read.contains_key(name) {
            let secret = self.api.get_opt(name).await?;
            let data = secret.map(|s| {
                let mut out: BTreeMap<String, Vec<u8>> = s
                    .data
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(k, v)| (k, v.0))
                    .collect();
                out.extend(
                    s.string_data
                        .unwrap_or_default()
                        .into_iter()
                        .map(|(k, v)| (k, v.into_bytes())),
                );
                out
            });
            self.read.insert(name.to_string(), data);
        }
        Ok(self.read.get(name).and_then(|d| d.as_ref()))
    }

    /// The text under `key` of Secret `name` (`None` when either is missing); `field` is the
    /// Cluster field that refers to it.
    pub(super) async fn text(
        &mut self,
        field: &str,
        name: &str,
        key: &str,
    ) -> Result<Option<String>, OperatorError> {
        match self.get(name).await?.and_then(|d| d.get(key)) {
            None => Ok(None),
            Some(bytes) => String::from_utf8(bytes.clone()).map(Some).map_err(|_| {
                OperatorError::Invalid(format!(
                    "{field}: key {key:?} of Secret {name:?} is not UTF-8 text (passwords, credentials and SQL are read as text)"
                ))
            }),
        }
    }
}

pub(super) fn pushed(name: &str) -> std::path::PathBuf {
    pushed_file_path(INSTANCE_SPEC_PATH.as_ref(), name)
}

/// Resolve `cluster`'s references in `namespace`.
pub(crate) async fn resolve(
    client: &Client,
    namespace: &str,
    cluster: &Cluster,
) -> Result<Resolved, OperatorError> {
    let mut secrets = Secrets {
        api: Api::namespaced(client.clone(), namespace),
        read: BTreeMap::new(),
    };
    let mut out = Resolved::default();
    for (i, r) in cluster
        .spec
        .managed
        .iter()
        .flat_map(|m| m.roles.iter().flatten())
        .enumerate()
    {
        let mut password = PasswordSource::Unchanged;
        if let Some(secret) = &r.password_secret {
            // A Secret not there yet (ExternalSecrets) leaves the password alone.
            let field = format!("spec.managed.roles[{i}].passwordSecret");
            if let Some(value) = secrets.text(&field, &secret.name, PASSWORD_KEY).await? {
                let file = format!("role-{i}");
                out.files.0.insert(file.clone(), value);
                password = PasswordSource::File {
                    path: pushed(&file),
                };
            }
        }
        let present = r.ensure != Some(EnsureOption::Absent);
        out.roles.push(role_spec(r, present, password));
    }
    if let Some(archive) = archive(client, namespace, cluster, &mut secrets).await? {
        let json = serde_json::to_string(&archive.target)
            .map_err(|e| OperatorError::Invalid(format!("archive store: {e}")))?;
        out.files.0.insert(ARCHIVE_STORE_FILE.to_string(), json);
        out.wal_store = Some(WalStore {
            store_file: pushed(ARCHIVE_STORE_FILE),
            skip_empty_check: cluster
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(SKIP_EMPTY_WAL_ARCHIVE_CHECK))
                .is_some_and(|v| v == "enabled"),
        });
        out.archive = Some(archive);
    }
    match recovery_source(client, namespace, cluster, &mut secrets).await {
        Ok(None) => {}
        Ok(Some((target, backup_id))) => {
            let json = serde_json::to_string(&target)
                .map_err(|e| OperatorError::Invalid(format!("recovery store: {e}")))?;
            out.files.0.insert(RECOVERY_STORE_FILE.to_string(), json);
            out.recovery = Some(RecoverySource {
                store_file: pushed(RECOVERY_STORE_FILE),
                backup_id,
            });
        }
        Err(e) => out.recovery_problem = Some(e.to_string()),
    }
    // The SQL is needed only to make the first instance: once an instance has been ready,
    // the referenced objects may be gone (CloudNativePG reads them once too). What cannot be
    // read matters only if the first instance is still to be made.
    let ready_once = cluster
        .status
        .as_ref()
        .is_some_and(|s| s.ready_instances.unwrap_or(0) > 0);
    if !ready_once {
        out.post_init = post_init_sql(client, namespace, cluster, &mut secrets).await?;
        out.clone = match cluster
            .spec
            .bootstrap
            .as_ref()
            .and_then(|b| b.pg_basebackup.as_ref())
        {
            Some(clone) => Some(
                match pgherd_controller::external::source(
                    cluster,
                    &clone.source,
                    "spec.bootstrap.pg_basebackup.source",
                ) {
                    Ok((field, external)) => {
                        super::external_sources::connection(
                            external,
                            &field,
                            &mut secrets,
                            &mut out.files,
                        )
                        .await?
                    }
                    Err(problem) => Err(problem),
                },
            ),
            None => None,
        };
    }
    if let Some(replica) = cluster
        .spec
        .replica
        .as_ref()
        .filter(|_| pgherd_controller::external::follows_source(cluster))
    {
        out.replica_of = Some(
            super::external_sources::replica_upstream(
                client,
                namespace,
                cluster,
                &replica.source,
                &mut secrets,
                &mut out.files,
            )
            .await?,
        );
    }
    Ok(out)
}

/// The statements of `bootstrap.initdb.postInit*SQLRefs`, if the Cluster has any.
async fn post_init_sql(
    client: &Client,
    namespace: &str,
    cluster: &Cluster,
    secrets: &mut Secrets,
) -> Result<Option<Result<PostInitSql, String>>, OperatorError> {
    use pgherd_controller::key_refs::{self, Found, Source};
    let Some(initdb) = cluster
        .spec
        .bootstrap
        .as_ref()
        .and_then(|b| b.initdb.as_ref())
    else {
        return Ok(None);
    };
    let fields = initdb.post_init_refs();
    if fields.iter().all(|(_, refs)| refs.is_none()) {
        return Ok(None);
    }
    // Every referenced object read once, then the statements in CloudNativePG's order.
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    let mut config_maps: BTreeMap<String, Option<BTreeMap<String, String>>> = BTreeMap::new();
    for (_, refs) in &fields {
        for (source, name) in key_refs::referenced(*refs) {
            match source {
                Source::Secret => {
                    secrets.get(&name).await?;
                }
                Source::ConfigMap if !config_maps.contains_key(&name) => {
                    let data = maps
                        .get_opt(&name)
                        .await?
                        .map(|m| m.data.unwrap_or_default());
                    config_maps.insert(name, data);
                }
                Source::ConfigMap => {}
            }
        }
    }
    let [sql, template, application] = fields.map(|(field, refs)| {
        key_refs::sql(field, namespace, refs, |source, name, key| match source {
            Source::Secret => {
                Found::from_bytes(secrets.read.get(name).and_then(Option::as_ref), key)
            }
            Source::ConfigMap => {
                Found::from_text(config_maps.get(name).and_then(Option::as_ref), key)
            }
        })
    });
    // The first field's problem first, as they are listed.
    let read = sql.and_then(|sql| {
        Ok(PostInitSql {
            sql,
            template: template?,
            application: application?,
        })
    });
    Ok(Some(read))
}

/// The cluster's archive with its Secrets, if it has one.
async fn archive(
    client: &Client,
    namespace: &str,
    cluster: &Cluster,
    secrets: &mut Secrets,
) -> Result<Option<Archive>, OperatorError> {
    match archive_source::archive_source(cluster).map_err(OperatorError::Invalid)? {
        None => Ok(None),
        Some(ArchiveSource::InTree {
            configuration,
            server_name,
            retention_policy,
        }) => Ok(Some(Archive {
            target: target(
                configuration,
                server_name,
                secrets,
                archive_source::IN_TREE_FIELD,
            )
            .await?,
            method: "barmanObjectStore",
            retention_policy,
            source: archive_source::IN_TREE_FIELD.to_string(),
        })),
        Some(ArchiveSource::Plugin {
            object_store,
            server_name,
        }) => {
            let field = format!(
                "{}.parameters.barmanObjectName",
                archive_source::PLUGIN_FIELD
            );
            let (target, retention_policy) = object_store_target(
                client,
                namespace,
                &object_store,
                server_name,
                secrets,
                &field,
            )
            .await?;
            Ok(Some(Archive {
                target,
                method: "plugin",
                retention_policy,
                source: format!("ObjectStore/{object_store}"),
            }))
        }
    }
}

/// The `ObjectStore` `name` for the server folder `server`, with its retention policy.
async fn object_store_target(
    client: &Client,
    namespace: &str,
    name: &str,
    server: String,
    secrets: &mut Secrets,
    field: &str,
) -> Result<(StoreTarget, Option<String>), OperatorError> {
    let resource = ApiResource::erase::<ObjectStore>(&());
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, &resource);
    let object = api.get_opt(name).await?.ok_or_else(|| {
        OperatorError::Invalid(format!(
            "{field}: ObjectStore {name:?} not found in namespace {namespace} (hint: apply it: apiVersion barmancloud.cnpg.io/v1, kind ObjectStore)"
        ))
    })?;
    let store: ObjectStore = serde_json::to_value(&object)
        .and_then(serde_json::from_value)
        .map_err(|e| OperatorError::Invalid(format!("ObjectStore {name}: {e}")))?;
    let target = target(
        &store.spec.configuration,
        server,
        secrets,
        &format!("ObjectStore/{name} spec.configuration"),
    )
    .await?;
    Ok((target, store.spec.retention_policy.clone()))
}

/// Where `bootstrap.recovery` takes its data from: an external cluster's store, or the store
/// and id of a completed Backup (whose major must be the image's).
async fn recovery_source(
    client: &Client,
    namespace: &str,
    cluster: &Cluster,
    secrets: &mut Secrets,
) -> Result<Option<(StoreTarget, Option<String>)>, OperatorError> {
    let Some(recovery) = cluster
        .spec
        .bootstrap
        .as_ref()
        .and_then(|b| b.recovery.as_ref())
    else {
        return Ok(None);
    };
    if let Some(source) = &recovery.source {
        let target = external_store(client, namespace, cluster, source, secrets).await?;
        return Ok(Some((target, None)));
    }
    let Some(backup) = &recovery.backup else {
        return Err(OperatorError::Invalid(
            "spec.bootstrap.recovery: needs source (an external cluster with an object store) or backup.name (hint: volumeSnapshots are not supported by pgherd)".into(),
        ));
    };
    let field = "spec.bootstrap.recovery.backup.name";
    let found = Api::<Backup>::namespaced(client.clone(), namespace)
        .get_opt(&backup.name)
        .await?
        .ok_or_else(|| {
            OperatorError::Invalid(format!(
                "{field}: Backup {:?} not found in namespace {namespace} (hint: kubectl get backups)",
                backup.name
            ))
        })?;
    let status = found.status.clone().unwrap_or_default();
    let id = status
        .backup_id
        .clone()
        .filter(|_| status.phase.as_deref() == Some("completed"))
        .ok_or_else(|| {
            OperatorError::Invalid(format!(
                "{field}: Backup {:?} has not completed (phase {:?})",
                backup.name,
                status.phase.as_deref().unwrap_or("new")
            ))
        })?;
    pgherd_controller::recovery::check_backup_major(
        &backup.name,
        status.major_version,
        cluster.major_version().map_or(0, |m| m.0),
    )
    .map_err(OperatorError::Invalid)?;
    let source = Api::<Cluster>::namespaced(client.clone(), namespace)
        .get_opt(&found.spec.cluster.name)
        .await?
        .ok_or_else(|| {
            OperatorError::Invalid(format!(
                "{field}: Backup {:?} was taken of Cluster {:?}, which no longer exists; recover from its object store with recovery.source and spec.externalClusters instead",
                backup.name, found.spec.cluster.name
            ))
        })?;
    let archive = archive(client, namespace, &source, secrets)
        .await?
        .ok_or_else(|| {
            OperatorError::Invalid(format!(
                "{field}: Cluster {:?} has no object store any more",
                found.spec.cluster.name
            ))
        })?;
    Ok(Some((archive.target, Some(id))))
}

/// The object store of external cluster `source` (in-tree or the plugin's ObjectStore), with
/// its Secrets' values.
pub(super) async fn external_store(
    client: &Client,
    namespace: &str,
    cluster: &Cluster,
    source: &str,
    secrets: &mut Secrets,
) -> Result<StoreTarget, OperatorError> {
    let (found, field) =
        archive_source::external_source(cluster, source).map_err(OperatorError::Invalid)?;
    match found {
        ArchiveSource::Plugin {
            object_store,
            server_name,
        } => {
            let field = format!("{field}.parameters.barmanObjectName");
            Ok(object_store_target(
                client,
                namespace,
                &object_store,
                server_name,
                secrets,
                &field,
            )
            .await?
            .0)
        }
        ArchiveSource::InTree {
            configuration,
            server_name,
            ..
        } => target(configuration, server_name, secrets, &field).await,
    }
}

/// A store configuration with the values of the Secret keys it names.
async fn target(
    configuration: &BarmanObjectStoreConfiguration,
    server_name: String,
    secrets: &mut Secrets,
    field: &str,
) -> Result<StoreTarget, OperatorError> {
    let mut values = BTreeMap::new();
    for selector in StoreTarget::referenced_secrets(configuration) {
        let value = secrets
            .text(field, &selector.name, &selector.key)
            .await?
            .ok_or_else(|| {
                OperatorError::Invalid(format!(
                    "{field}: key {:?} of Secret {:?} not found in the cluster's namespace",
                    selector.key, selector.name
                ))
            })?;
        values.insert(StoreTarget::secret_key(&selector), value);
    }
    let target = StoreTarget {
        configuration: configuration.clone(),
        server_name,
        secrets: values,
    };
    target
        .store_config()
        .map_err(|e| OperatorError::Invalid(format!("{field}: {e}")))?;
    Ok(target)
}

/// What to push when the references cannot be read this pass: what was pushed before (its
/// files, archive and roles), and an archive that still points at its file even when none was
/// ever sent, so `archive_command` fails and PostgreSQL keeps its WAL rather than discarding
/// it.
pub(crate) fn fallback<'a>(
    cluster: &Cluster,
    previous: impl Iterator<Item = &'a pgherd_instance_protocol::InstanceSpec>,
) -> Resolved {
    let mut out = Resolved::default();
    for spec in previous {
        if out.files.is_empty() {
            out.files = spec.files.clone();
        }
        if spec.role == pgherd_instance_protocol::DesiredRole::Primary {
            out.roles = spec.roles.clone();
            // A replica cluster's primary keeps following its source (never promoted because
            // a Secret could not be read).
            out.replica_of = spec.upstream.clone().map(Ok);
        }
    }
    if archive_source::archive_source(cluster).is_ok_and(|a| a.is_some())
        || out.files.0.contains_key(ARCHIVE_STORE_FILE)
    {
        out.wal_store = Some(WalStore {
            store_file: pushed(ARCHIVE_STORE_FILE),
            skip_empty_check: false,
        });
    }
    out
}
