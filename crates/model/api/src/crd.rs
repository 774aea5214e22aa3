//! CustomResourceDefinitions generated from the types. Like CloudNativePG's, they declare no
//! short names or categories; printer columns and subresources come from the `#[kube(...)]`
//! attributes on each kind.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

/// Every CRD pgherd serves, in a stable order.
pub fn all() -> Vec<CustomResourceDefinition> {
    vec![
        crate::Backup::crd(),
        crate::Cluster::crd(),
        crate::ClusterImageCatalog::crd(),
        crate::Database::crd(),
        crate::DatabaseRole::crd(),
        crate::ImageCatalog::crd(),
        crate::Pooler::crd(),
        crate::Publication::crd(),
        crate::ScheduledBackup::crd(),
        crate::Subscription::crd(),
        crate::ObjectStore::crd(),
    ]
}

/// The CRDs as one multi-document YAML stream.
pub fn to_yaml() -> Result<String, serde_yaml_ng::Error> {
    let mut out = String::new();
    for crd in all() {
        out.push_str("---\n");
        out.push_str(&serde_yaml_ng::to_string(&crd)?);
    }
    Ok(out)
}
