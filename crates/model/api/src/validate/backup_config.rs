//! Cluster: object-store configuration (credentials as barman-cloud checks them, referenced
//! Secrets), the backup stanza and CNPG-I plugins.

use super::cluster_sources::BARMAN_CLOUD_PLUGIN;
use super::Context;
use crate::barman::BarmanObjectStoreConfiguration;
use crate::cluster::Cluster;
use crate::diagnostics::{Diagnostic, FieldPath};

pub(super) fn credential_count(store: &BarmanObjectStoreConfiguration) -> usize {
    [
        store.s3_credentials.is_some(),
        store.azure_credentials.is_some(),
        store.google_credentials.is_some(),
    ]
    .iter()
    .filter(|c| **c)
    .count()
}

pub(super) fn check_store_secrets(
    store: &BarmanObjectStoreConfiguration,
    path: &FieldPath,
    ctx: &Context,
    out: &mut Vec<Diagnostic>,
) {
    if let Some(ca) = &store.endpoint_ca {
        ctx.secret_key(&path.key("endpointCA"), ca, out);
    }
    check_destination(store, path, out);
    if let Some(s3) = &store.s3_credentials {
        let p = path.key("s3Credentials");
        for (field, sel) in [
            ("accessKeyId", &s3.access_key_id),
            ("secretAccessKey", &s3.secret_access_key),
            ("region", &s3.region),
            ("sessionToken", &s3.session_token),
        ] {
            if let Some(sel) = sel {
                ctx.secret_key(&p.key(field), sel, out);
            }
        }
    }
    if let Some(az) = &store.azure_credentials {
        let p = path.key("azureCredentials");
        for (field, sel) in [
            ("connectionString", &az.connection_string),
            ("storageAccount", &az.storage_account),
            ("storageKey", &az.storage_key),
            ("storageSasToken", &az.storage_sas_token),
        ] {
            if let Some(sel) = sel {
                ctx.secret_key(&p.key(field), sel, out);
            }
        }
    }
    if let Some(sel) = store
        .google_credentials
        .as_ref()
        .and_then(|g| g.application_credentials.as_ref())
    {
        ctx.secret_key(
            &path.key("googleCredentials").key("applicationCredentials"),
            sel,
            out,
        );
    }
}

/// barman-cloud picks the provider from the credentials: the destination must be that
/// provider's URL.
fn check_destination(
    store: &BarmanObjectStoreConfiguration,
    path: &FieldPath,
    out: &mut Vec<Diagnostic>,
) {
    let scheme = store
        .destination_path
        .split_once("://")
        .map_or("", |(scheme, _)| scheme);
    let expected = if store.s3_credentials.is_some() {
        Some((
            "s3Credentials",
            &["s3"][..],
            "s3://BUCKET/PREFIX (with endpointURL for an S3-compatible service such as MinIO)",
        ))
    } else if store.azure_credentials.is_some() {
        Some(("azureCredentials", &["https", "http"][..], "https://ACCOUNT.blob.core.windows.net/CONTAINER/PREFIX, or http://HOST:PORT/ACCOUNT/CONTAINER/PREFIX for emulated storage"))
    } else if store.google_credentials.is_some() {
        Some(("googleCredentials", &["gs"][..], "gs://BUCKET/PREFIX"))
    } else {
        None
    };
    if let Some((credentials, schemes, form)) = expected {
        if !scheme.is_empty() && scheme != "file" && !schemes.contains(&scheme) {
            out.push(
                Diagnostic::error(
                    path.key("destinationPath").as_str(),
                    format!("a {scheme}:// destination does not go with {credentials}"),
                )
                .with_hint(format!("with {credentials} write {form}")),
            );
        }
    }
}

/// The credential rules barman-cloud applies to an object store that will be written to.
pub(super) fn validate_store_credentials(
    store: &BarmanObjectStoreConfiguration,
    path: &FieldPath,
    ctx: &Context,
    out: &mut Vec<Diagnostic>,
) {
    match credential_count(store) {
        // A local directory (pgherd's local platform) needs no credentials.
        0 if store.destination_path.starts_with("file://") => {}
        0 => out.push(
            Diagnostic::error(path.as_str(), "missing credentials: one and only one of s3Credentials, azureCredentials and googleCredentials is required")
                .with_hint("for S3 or MinIO add s3Credentials with accessKeyId and secretAccessKey (or inheritFromIAMRole: true)"),
        ),
        1 => {}
        _ => out.push(Diagnostic::error(path.as_str(), "too many credentials: one and only one of s3Credentials, azureCredentials and googleCredentials is allowed")),
    }
    if let Some(s3) = &store.s3_credentials {
        let p = path.key("s3Credentials");
        let keys = usize::from(s3.access_key_id.is_some() || s3.secret_access_key.is_some());
        let methods = keys + usize::from(s3.inherit_from_iam_role == Some(true));
        if s3.access_key_id.is_some() != s3.secret_access_key.is_some() {
            let missing = if s3.access_key_id.is_none() {
                "accessKeyId"
            } else {
                "secretAccessKey"
            };
            out.push(Diagnostic::error(
                p.key(missing).as_str(),
                "both accessKeyId and secretAccessKey must be provided",
            ));
        }
        match methods {
            0 => out.push(
                Diagnostic::error(p.as_str(), "no authentication method")
                    .with_hint("set accessKeyId and secretAccessKey, or inheritFromIAMRole: true"),
            ),
            1 => {}
            _ => out.push(Diagnostic::error(
                p.as_str(),
                "only one authentication method can be used: access keys or inheritFromIAMRole",
            )),
        }
    }
    if let Some(az) = &store.azure_credentials {
        let p = path.key("azureCredentials");
        let count = [
            az.inherit_from_azure_ad == Some(true),
            az.use_default_azure_credentials == Some(true),
            az.storage_key.is_some(),
            az.storage_sas_token.is_some(),
        ]
        .iter()
        .filter(|c| **c)
        .count();
        if az.connection_string.is_some() {
            if count != 0 || az.storage_account.is_some() {
                out.push(Diagnostic::error(
                    p.as_str(),
                    "with connectionString, no other Azure credential may be set",
                ));
            }
        } else if count != 1 {
            out.push(Diagnostic::error(p.as_str(), "exactly one of storageKey, storageSasToken, inheritFromAzureAD and useDefaultAzureCredentials is required without a connectionString"));
        }
        if (az.storage_key.is_some() || az.storage_sas_token.is_some())
            && az.storage_account.is_none()
        {
            out.push(Diagnostic::error(
                p.key("storageAccount").as_str(),
                "required with storageKey or storageSasToken",
            ));
        }
    }
    if let Some(g) = &store.google_credentials {
        let p = path.key("googleCredentials");
        match (
            g.gke_environment == Some(true),
            g.application_credentials.is_some(),
        ) {
            (false, false) => out.push(Diagnostic::error(
                p.as_str(),
                "set applicationCredentials or gkeEnvironment: true",
            )),
            (true, true) => out.push(Diagnostic::error(
                p.as_str(),
                "applicationCredentials cannot be used with gkeEnvironment: true",
            )),
            _ => {}
        }
    }
    check_store_secrets(store, path, ctx, out);
}

pub(super) fn validate_backup_configuration(
    cluster: &Cluster,
    ctx: &Context,
    out: &mut Vec<Diagnostic>,
) {
    let Some(backup) = &cluster.spec.backup else {
        return;
    };
    let path = FieldPath::new("spec.backup");
    if let Some(store) = &backup.barman_object_store {
        validate_store_credentials(store, &path.key("barmanObjectStore"), ctx, out);
    } else if backup.retention_policy.is_some() {
        out.push(
            Diagnostic::warning(
                path.key("retentionPolicy").as_str(),
                "only applies to spec.backup.barmanObjectStore, which is not set",
            )
            .with_hint("with the barman-cloud plugin, set retentionPolicy on the ObjectStore"),
        );
    }
    let tablespaces: Vec<&str> = cluster
        .spec
        .tablespaces
        .iter()
        .flatten()
        .map(|t| t.name.as_str())
        .collect();
    for name in backup
        .volume_snapshot
        .iter()
        .flat_map(|v| v.tablespace_class_name.iter().flatten())
        .map(|(k, _)| k)
    {
        if !tablespaces.contains(&name.as_str()) {
            out.push(Diagnostic::error(
                path.key("volumeSnapshot")
                    .key("tablespaceClassName")
                    .key(name)
                    .as_str(),
                "not a tablespace of this cluster",
            ));
        }
    }
}

pub(super) fn check_plugin_store(
    plugin: &crate::cluster::PluginConfiguration,
    path: &FieldPath,
    ctx: &Context,
    out: &mut Vec<Diagnostic>,
) {
    if plugin.name != BARMAN_CLOUD_PLUGIN || plugin.enabled == Some(false) {
        return;
    }
    match plugin
        .parameters
        .as_ref()
        .and_then(|p| p.get("barmanObjectName"))
    {
        Some(store) => {
            ctx.object_store(&path.key("parameters").key("barmanObjectName"), store, out)
        }
        None => out.push(
            Diagnostic::error(
                path.key("parameters").key("barmanObjectName").as_str(),
                "required by the barman-cloud plugin",
            )
            .with_hint("name the ObjectStore to use"),
        ),
    }
}

pub(super) fn validate_plugins(cluster: &Cluster, ctx: &Context, out: &mut Vec<Diagnostic>) {
    let plugins = cluster.spec.plugins.as_deref().unwrap_or_default();
    let archivers = plugins
        .iter()
        .filter(|p| p.enabled != Some(false) && p.is_wal_archiver == Some(true))
        .count();
    let in_tree = cluster
        .spec
        .backup
        .as_ref()
        .is_some_and(|b| b.barman_object_store.is_some());
    if archivers > 0 && in_tree {
        out.push(Diagnostic::error("spec.plugins", "a WAL archiver plugin cannot be enabled while spec.backup.barmanObjectStore is set").with_hint("keep one of the two ways of archiving WAL"));
    }
    if archivers > 1 {
        out.push(Diagnostic::error(
            "spec.plugins",
            "only one WAL archiver plugin can be enabled",
        ));
    }
    for (i, plugin) in plugins.iter().enumerate() {
        let path = FieldPath::new("spec.plugins").index(i);
        // A plugin pgherd does not have would be accepted and then ignored — for a WAL
        // archiver, every WAL file "archived" to nowhere. CloudNativePG refuses to run such a
        // cluster too ("unknown plugin being required").
        if plugin.enabled != Some(false) && plugin.name != BARMAN_CLOUD_PLUGIN {
            let what = if plugin.is_wal_archiver == Some(true) {
                "unknown plugin: no WAL would be archived"
            } else {
                "unknown plugin"
            };
            out.push(
                Diagnostic::error(path.key("name").as_str(), format!("{what} ({:?})", plugin.name))
                    .with_hint(format!(
                        "the plugin pgherd runs is {BARMAN_CLOUD_PLUGIN} (barman-cloud); remove the entry or set enabled: false"
                    )),
            );
        }
        check_plugin_store(plugin, &path, ctx, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::barman::{AzureCredentials, GoogleCredentials, S3Credentials};

    fn errors(destination: &str, credentials: &str) -> Vec<Diagnostic> {
        let mut store = BarmanObjectStoreConfiguration {
            destination_path: destination.into(),
            ..Default::default()
        };
        match credentials {
            "s3" => store.s3_credentials = Some(S3Credentials::default()),
            "azure" => store.azure_credentials = Some(AzureCredentials::default()),
            "google" => store.google_credentials = Some(GoogleCredentials::default()),
            _ => {}
        }
        let mut out = Vec::new();
        check_destination(
            &store,
            &FieldPath::new("spec.backup.barmanObjectStore"),
            &mut out,
        );
        out
    }

    #[test]
    fn the_destination_goes_with_the_credentials() {
        for (destination, credentials) in [
            ("s3://bucket/prefix", "s3"),
            ("https://acct.blob.core.windows.net/c/p", "azure"),
            ("http://azurite:10000/devstoreaccount1/c", "azure"),
            ("gs://bucket", "google"),
            ("file:///var/backups", "s3"),
            ("file:///var/backups", ""),
        ] {
            assert!(
                errors(destination, credentials).is_empty(),
                "{destination} {credentials}"
            );
        }
        let e = errors("http://minio:9000/bucket", "s3");
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].path, "spec.backup.barmanObjectStore.destinationPath");
        assert!(e[0]
            .message
            .contains("http:// destination does not go with s3Credentials"));
        assert!(e[0].hint.as_deref().unwrap_or("").contains("endpointURL"));
        assert_eq!(errors("s3://bucket", "azure").len(), 1);
        assert_eq!(errors("s3://bucket", "google").len(), 1);
    }
}
