//! Reaching an external cluster (`spec.externalClusters[]`) from this machine: a host of the
//! form `<cluster>-rw` (or `-ro`, `-r`, optionally followed by `.<namespace>`,
//! `.<namespace>.svc`, `.<namespace>.svc.cluster.local`) naming a cluster of this state
//! directory stands for its Service, as on Kubernetes, and becomes that cluster's local
//! endpoint; the password and certificates it takes from Secrets are written to files owned by
//! the PostgreSQL user (mode 0600) that the connection string names.

use crate::state::{read_json, StateDir};
use pgherd_api::cluster::ExternalCluster;
use pgherd_controller::external::{self, Credential};
use pgherd_instance_manager::OsUser;
use std::collections::BTreeMap;
use std::path::Path;

/// The local endpoint a Service-like host stands for: `(127.0.0.1, port)`.
fn local_service(state: &StateDir, namespace: &str, host: &str) -> Option<(String, u16)> {
    let mut labels = host.split('.');
    let service = labels.next()?;
    let rest: Vec<&str> = labels.collect();
    let namespace = match rest.as_slice() {
        [] => namespace,
        [ns] | [ns, "svc"] | [ns, "svc", "cluster", "local"] => ns,
        _ => return None,
    };
    let (cluster, kind) = service.rsplit_once('-')?;
    if !matches!(kind, "rw" | "ro" | "r") {
        return None;
    }
    let ports: BTreeMap<String, u16> =
        read_json(&state.cluster_dir(namespace, cluster).join("ports.json"))
            .ok()
            .flatten()?;
    ports.get(kind).map(|p| ("127.0.0.1".to_string(), *p))
}

/// The connection parameters of `external` (at `field`, an external cluster of a Cluster in
/// `namespace`) as reached from this machine, its credential files written in `dir`. The error
/// names the field and what to do.
pub fn parameters(
    state: &StateDir,
    namespace: &str,
    external: &ExternalCluster,
    field: &str,
    dbname: Option<&str>,
    dir: &Path,
    user: &OsUser,
) -> Result<BTreeMap<String, String>, String> {
    let mut files = BTreeMap::new();
    for (credential, credential_field, selector) in external::credentials(external, field) {
        let secret = selector.name.clone().unwrap_or_default();
        let value = crate::secrets::read(state, namespace, &secret)
            .map_err(|e| e.to_string())?
            .and_then(|d| d.get(&selector.key).cloned())
            .ok_or_else(|| {
                format!(
                    "{credential_field}: key {:?} of Secret {secret:?} not found; apply the Secret",
                    selector.key
                )
            })?;
        let value = String::from_utf8(value).map_err(|_| {
            format!(
                "{credential_field}: key {:?} of Secret {secret:?} is not UTF-8 text",
                selector.key
            )
        })?;
        user.own_dir(dir, 0o700).map_err(|e| e.to_string())?;
        let path = dir.join(credential.file_name(&external.name));
        user.write_file(&path, credential.content(&value).as_bytes(), 0o600)
            .map_err(|e| e.to_string())?;
        files.insert(credential, path);
    }
    // A password file the external cluster no longer names must not linger.
    for credential in Credential::ALL {
        if !files.contains_key(&credential) {
            let _ = std::fs::remove_file(dir.join(credential.file_name(&external.name)));
        }
    }
    let mut parameters = external::parameters(external, field, &files, dbname)?;
    if let Some(host) = parameters.get("host").cloned() {
        if let Some((address, port)) = local_service(state, namespace, &host) {
            parameters.insert("host".into(), address);
            parameters.insert("port".into(), port.to_string());
        }
    }
    Ok(parameters)
}

/// A replica cluster's upstream as this machine reaches it: the source's connection (its
/// credential files in `cluster_dir/external`) when it has `connectionParameters`, and its
/// object store (written to `cluster_dir`, 0600) when it has one; `None` for other clusters.
pub fn replica_upstream(
    state: &StateDir,
    namespace: &str,
    cluster: &pgherd_api::Cluster,
    cluster_dir: &Path,
    user: &OsUser,
) -> Result<Option<pgherd_instance_protocol::Upstream>, crate::LocalError> {
    let Some(replica) = cluster
        .spec
        .replica
        .as_ref()
        .filter(|_| pgherd_controller::external::follows_source(cluster))
    else {
        return Ok(None);
    };
    let (field, source) = external::source(cluster, &replica.source, "spec.replica.source")
        .map_err(crate::LocalError::Invalid)?;
    let parameters = match &source.connection_parameters {
        Some(_) => Some(
            parameters(
                state,
                namespace,
                source,
                &field,
                None,
                &cluster_dir.join("external"),
                user,
            )
            .map_err(crate::LocalError::Invalid)?,
        ),
        None => None,
    };
    let store_file = match source.barman_object_store.is_some() || source.plugin.is_some() {
        true => {
            let store = crate::stores::external_store(state, namespace, cluster, &replica.source)?;
            let file = cluster_dir.join(REPLICA_STORE_FILE);
            crate::stores::write_target(&file, &store, user)?;
            Some(file)
        }
        false => None,
    };
    Ok(external::upstream(cluster, parameters.as_ref(), store_file))
}

/// File (in the cluster's directory) holding a replica cluster's source store.
pub const REPLICA_STORE_FILE: &str = "replica-store.json";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_like_hosts_become_local_endpoints() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::new(dir.path().to_path_buf());
        let cluster_dir = state.cluster_dir("default", "shop");
        std::fs::create_dir_all(&cluster_dir).unwrap();
        std::fs::write(
            cluster_dir.join("ports.json"),
            r#"{"rw": 7001, "ro": 7002, "r": 7003}"#,
        )
        .unwrap();
        let local = |host: &str| local_service(&state, "default", host);
        let ep = |p: u16| Some(("127.0.0.1".to_string(), p));
        assert_eq!(local("shop-rw"), ep(7001));
        assert_eq!(local("shop-ro.default"), ep(7002));
        assert_eq!(local("shop-r.default.svc"), ep(7003));
        assert_eq!(local("shop-rw.default.svc.cluster.local"), ep(7001));
        assert_eq!(local("shop-rw.other"), None);
        assert_eq!(local("shop"), None);
        assert_eq!(local("db.example.com"), None);
    }
}
