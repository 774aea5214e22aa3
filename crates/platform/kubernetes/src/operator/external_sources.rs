//! External clusters a Cluster connects to (`bootstrap.pg_basebackup`, a replica cluster's
//! `replica.source`): their connection parameters with their password and certificates read
//! from Secrets and pushed as files (mode 0600 in the pod, over mutual TLS) that the
//! connection string names, and a replica cluster's source object store, pushed too.

use super::references::{external_store, pushed, Secrets, REPLICA_STORE_FILE};
use super::OperatorError;
use kube::Client;
use pgherd_api::cluster::ExternalCluster;
use pgherd_api::Cluster;
use pgherd_instance_protocol::{PushedFiles, Upstream};
use std::collections::BTreeMap;

/// A replica cluster's source: its connection when it has `connectionParameters`, its object
/// store (pushed) when it has one.
pub(super) async fn replica_upstream(
    client: &Client,
    namespace: &str,
    cluster: &Cluster,
    source: &str,
    secrets: &mut Secrets,
    files: &mut PushedFiles,
) -> Result<Result<Upstream, String>, OperatorError> {
    let (field, external) =
        match pgherd_controller::external::source(cluster, source, "spec.replica.source") {
            Ok(found) => found,
            Err(problem) => return Ok(Err(problem)),
        };
    let parameters = match &external.connection_parameters {
        Some(_) => match connection(external, &field, secrets, files).await? {
            Ok(parameters) => Some(parameters),
            Err(problem) => return Ok(Err(problem)),
        },
        None => None,
    };
    let mut store_file = None;
    if external.barman_object_store.is_some() || external.plugin.is_some() {
        let target = match external_store(client, namespace, cluster, source, secrets).await {
            Ok(target) => target,
            Err(e) => return Ok(Err(e.to_string())),
        };
        let json = serde_json::to_string(&target)
            .map_err(|e| OperatorError::Invalid(format!("replica store: {e}")))?;
        files.0.insert(REPLICA_STORE_FILE.to_string(), json);
        store_file = Some(pushed(REPLICA_STORE_FILE));
    }
    Ok(
        pgherd_controller::external::upstream(cluster, parameters.as_ref(), store_file)
            .ok_or_else(|| "spec.replica.source".to_string()),
    )
}

/// The connection parameters of `external` (at `field`), its password and certificates added
/// to `files` (pushed, mode 0600 in the pod) and named by path; what the API did not give is
/// the error of the outer result.
pub(super) async fn connection(
    external: &ExternalCluster,
    field: &str,
    secrets: &mut Secrets,
    files: &mut PushedFiles,
) -> Result<Result<BTreeMap<String, String>, String>, OperatorError> {
    let mut paths = BTreeMap::new();
    for (credential, credential_field, selector) in
        pgherd_controller::external::credentials(external, field)
    {
        let name = selector.name.clone().unwrap_or_default();
        let Some(value) = secrets
            .text(&credential_field, &name, &selector.key)
            .await?
        else {
            return Ok(Err(format!(
                "{credential_field}: key {:?} of Secret {name:?} not found in the cluster's namespace",
                selector.key
            )));
        };
        let file = credential.file_name(&external.name);
        files.0.insert(file.clone(), credential.content(&value));
        paths.insert(credential, pushed(&file));
    }
    Ok(pgherd_controller::external::parameters(
        external, field, &paths, None,
    ))
}
