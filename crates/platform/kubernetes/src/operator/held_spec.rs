//! The last valid spec outlives the operator (see [`crate::valid_spec`]): written when a valid
//! spec changes, read back when a spec is refused and this process has seen no valid one.

use super::OperatorError;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::{Api, Client};
use pgherd_api::Cluster;

/// Keeps `valid` (checked, with its defaults) as the cluster's last valid spec. A failure is
/// logged: the spec is still held in memory.
pub(super) async fn remember(client: &Client, valid: &Cluster) {
    let namespace = valid.metadata.namespace.as_deref().unwrap_or("default");
    let kept = match crate::valid_spec::config_map(valid) {
        Ok(map) => super::cluster_objects::apply_one(client, namespace, &map).await,
        Err(e) => Err(OperatorError::from(e)),
    };
    if let Err(e) = kept {
        tracing::warn!("cannot keep the last valid spec: {e}");
    }
}

/// The last valid spec kept for `cluster` (this Cluster's, by its uid), checked again; `None`
/// when there is none or it no longer passes.
pub(super) async fn recall(client: &Client, cluster: &Cluster) -> Option<Cluster> {
    let namespace = cluster.metadata.namespace.as_deref().unwrap_or("default");
    let name = crate::valid_spec::name(cluster.metadata.name.as_deref()?);
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    let map = match maps.get_opt(&name).await {
        Ok(map) => map?,
        Err(e) => {
            tracing::warn!("cannot read the last valid spec {name}: {e}");
            return None;
        }
    };
    let ours = map
        .metadata
        .owner_references
        .iter()
        .flatten()
        .any(|o| o.kind == "Cluster" && Some(&o.uid) == cluster.metadata.uid.as_ref());
    if !ours {
        return None;
    }
    let kept = Cluster {
        spec: crate::valid_spec::spec_of(&map)?,
        ..cluster.clone()
    };
    let checked = super::checked(&kept).ok();
    if checked.is_some() {
        tracing::info!("holding the cluster at its last valid spec, kept in {name}");
    }
    checked
}
