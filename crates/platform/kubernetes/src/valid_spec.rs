//! The last valid spec of a Cluster, kept in a ConfigMap the Cluster owns
//! (`NAME-valid-spec`, key `spec.json`). An operator holds a running cluster whose spec it
//! refuses at the last valid one, so its passes and failovers go on; kept only in memory, that
//! spec was gone when the operator restarted, and the cluster was then not reconciled at all
//! (no failover) until its spec was fixed. Read back, the spec is checked again like any other.

use crate::error::Result;
use crate::labels::{self, Base};
use k8s_openapi::api::core::v1::ConfigMap;
use pgherd_api::cluster::ClusterSpec;
use pgherd_api::Cluster;
use std::collections::BTreeMap;

/// The key of the spec's JSON.
pub const KEY: &str = "spec.json";

/// `NAME-valid-spec`.
pub fn name(cluster: &str) -> String {
    format!("{cluster}-valid-spec")
}

/// The ConfigMap holding `cluster`'s spec (a valid one, with its defaults).
pub fn config_map(cluster: &Cluster) -> Result<ConfigMap> {
    let base = Base::of_cluster(cluster)?;
    let spec = serde_json::to_string(&cluster.spec)
        .map_err(|e| base.spec_error(format!("cannot serialise the spec: {e}")))?;
    Ok(ConfigMap {
        metadata: base.meta(
            &name(&base.name),
            labels::cluster_labels(cluster, "database"),
            BTreeMap::new(),
        )?,
        data: Some(BTreeMap::from([(KEY.to_string(), spec)])),
        ..ConfigMap::default()
    })
}

/// The spec a ConfigMap holds, if it holds one.
pub fn spec_of(config_map: &ConfigMap) -> Option<ClusterSpec> {
    serde_json::from_str(config_map.data.as_ref()?.get(KEY)?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_spec_goes_in_and_comes_back() {
        let mut cluster: Cluster = serde_yaml_ng::from_str(
            "apiVersion: postgresql.cnpg.io/v1\nkind: Cluster\nmetadata:\n  name: pg\n  uid: u-1\nspec:\n  instances: 3\n  storage:\n    size: 1Gi\n",
        )
        .unwrap();
        cluster.metadata.namespace = Some("db".into());
        let map = config_map(&cluster).unwrap();
        assert_eq!(map.metadata.name.as_deref(), Some("pg-valid-spec"));
        assert_eq!(map.metadata.namespace.as_deref(), Some("db"));
        let owner = &map.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.controller),
            ("Cluster", Some(true))
        );
        assert_eq!(spec_of(&map), Some(cluster.spec));
        let mut broken = map.clone();
        broken.data = Some(BTreeMap::from([(KEY.to_string(), "{".to_string())]));
        assert_eq!(spec_of(&broken), None);
    }
}
