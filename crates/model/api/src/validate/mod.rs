//! Semantic validation: CloudNativePG's webhook rules (and some more that catch, before a
//! cluster runs, what would make it fail later). Every rule reports into a list, so a user sees
//! every problem at once, each with the field path and a fix. References to Secrets and
//! ConfigMaps that are not among the documents given are warnings only: they are often created
//! elsewhere (ExternalSecrets, SealedSecrets, `kubectl create secret`).

mod backup_config;
mod catalogs;
mod cluster;
mod cluster_config;
mod cluster_extra;
mod cluster_sources;
mod names;
mod others;
mod replication;

pub use catalogs::{
    validate_cluster_catalog_ref, validate_image_catalog, validate_pooler_catalog_ref, KnownCatalog,
};
pub use cluster::validate_cluster;
pub use cluster_sources::BARMAN_CLOUD_PLUGIN;
pub use names::{is_dns1035_label, is_dns1123_subdomain};
pub use others::{
    validate_backup, validate_database, validate_object_store, validate_pooler,
    validate_scheduled_backup,
};
pub use replication::{validate_database_role, validate_publication, validate_subscription};

use crate::common::{ConfigMapKeySelector, SecretKeySelector};
use crate::diagnostics::{Diagnostic, FieldPath};
use std::collections::BTreeSet;

/// An object another one may refer to: namespace (if written) and name, plus its keys.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KnownObject {
    pub namespace: Option<String>,
    pub name: String,
    pub keys: BTreeSet<String>,
}

/// What the documents given alongside an object provide, for reference checks.
#[derive(Debug, Clone, Default)]
pub struct Context {
    pub secrets: Vec<KnownObject>,
    pub config_maps: Vec<KnownObject>,
    pub object_stores: Vec<KnownObject>,
    /// Clusters, with the names of their `spec.externalClusters` as keys.
    pub clusters: Vec<KnownObject>,
    pub image_catalogs: Vec<KnownCatalog>,
    /// Namespace of the object being validated.
    pub namespace: Option<String>,
}

impl Context {
    fn find<'a>(&self, list: &'a [KnownObject], name: &str) -> Option<&'a KnownObject> {
        list.iter().find(|o| {
            o.name == name
                && match (&o.namespace, &self.namespace) {
                    (Some(a), Some(b)) => a == b,
                    _ => true,
                }
        })
    }

    /// Check a reference to a whole Secret.
    pub fn secret(&self, path: &FieldPath, name: &str, out: &mut Vec<Diagnostic>) {
        if self.find(&self.secrets, name).is_none() {
            out.push(missing("Secret", path, name));
        }
    }

    /// Check a reference to a key of a Secret.
    pub fn secret_key(&self, path: &FieldPath, sel: &SecretKeySelector, out: &mut Vec<Diagnostic>) {
        self.key_ref("Secret", &self.secrets, path, &sel.name, &sel.key, out);
    }

    /// Check a reference to a key of a ConfigMap.
    pub fn config_map_key(
        &self,
        path: &FieldPath,
        sel: &ConfigMapKeySelector,
        out: &mut Vec<Diagnostic>,
    ) {
        self.key_ref(
            "ConfigMap",
            &self.config_maps,
            path,
            &sel.name,
            &sel.key,
            out,
        );
    }

    fn key_ref(
        &self,
        kind: &str,
        list: &[KnownObject],
        path: &FieldPath,
        name: &str,
        key: &str,
        out: &mut Vec<Diagnostic>,
    ) {
        match self.find(list, name) {
            None => out.push(missing(kind, &path.key("name"), name)),
            Some(found) if !found.keys.contains(key) => {
                let mut d = Diagnostic::warning(
                    path.key("key").as_str(),
                    format!("{kind} {name:?} given here has no key {key:?}"),
                );
                if let Some(best) =
                    crate::diagnostics::did_you_mean(key, found.keys.iter().map(String::as_str))
                {
                    d = d.with_hint(format!("did you mean {best:?}?"));
                } else {
                    let keys: Vec<&str> = found.keys.iter().map(String::as_str).collect();
                    d = d.with_hint(format!("its keys are: {}", keys.join(", ")));
                }
                out.push(d);
            }
            Some(_) => {}
        }
    }

    /// Check a reference to an ObjectStore.
    pub fn object_store(&self, path: &FieldPath, name: &str, out: &mut Vec<Diagnostic>) {
        if self.find(&self.object_stores, name).is_none() {
            out.push(missing("ObjectStore", path, name));
        }
    }
}

fn check_cluster_ref(name: &str, out: &mut Vec<Diagnostic>) {
    if name.is_empty() {
        out.push(
            Diagnostic::error("spec.cluster.name", "required field is missing")
                .with_hint("name the Cluster this object belongs to"),
        );
    }
}

/// How a warning about a reference to an object not given ends.
const NOT_GIVEN: &str = "is not among the documents given";

/// Whether `d` only says that a referenced object was not among the documents given: a check
/// that needs the other documents, which an admission webhook (one object at a time) has not.
pub fn is_unresolved_reference(d: &Diagnostic) -> bool {
    !d.is_error() && d.message.ends_with(NOT_GIVEN)
}

fn missing(kind: &str, path: &FieldPath, name: &str) -> Diagnostic {
    Diagnostic::warning(path.as_str(), format!("{kind} {name:?} {NOT_GIVEN}")).with_hint(format!(
        "make sure the {kind} exists before the object is applied"
    ))
}
