//! CustomResourceDefinitions generated from the types, with CloudNativePG's names.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

/// Short names and categories CloudNativePG gives its CRDs, by kind.
fn names_for(kind: &str) -> (&'static [&'static str], &'static [&'static str]) {
    match kind {
        _ => (&[], &[]),
    }
}

fn finish(mut crd: CustomResourceDefinition) -> CustomResourceDefinition {
    let (short, categories) = names_for(&crd.spec.names.kind);
    if !short.is_empty() {
        crd.spec.names.short_names = Some(short.iter().map(|s| s.to_string()).collect());
    }
    if !categories.is_empty() {
        crd.spec.names.categories = Some(categories.iter().map(|s| s.to_string()).collect());
    }
    crd
}

/// Every CRD pgherd serves, in a stable order.
pub fn all() -> Vec<CustomResourceDefinition> {
    vec![
        finish(crate::Backup::crd()),
        finish(crate::Cluster::crd()),
        finish(crate::Database::crd()),
        finish(crate::Pooler::crd()),
        finish(crate::ScheduledBackup::crd()),
        finish(crate::ObjectStore::crd()),
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
