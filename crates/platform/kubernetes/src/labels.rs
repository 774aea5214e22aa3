//! CloudNativePG's label and annotation keys, the labels every object of a cluster carries,
//! and the metadata shared by every generated object: namespace, owner reference (controller,
//! blocking deletion) and the owner's `inheritedMetadata`.

use crate::error::{BuildError, Result};
use crate::names::Owner;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::Resource;
use pgherd_api::common::Metadata;
use pgherd_api::Cluster;
use std::collections::BTreeMap;

/// The cluster an object belongs to.
pub const CLUSTER: &str = "cnpg.io/cluster";
/// The instance (pod name) an object belongs to.
pub const INSTANCE_NAME: &str = "cnpg.io/instanceName";
/// What a pod is: `instance` or `pooler`.
pub const POD_ROLE: &str = "cnpg.io/podRole";
/// An instance's role: `primary`, `replica` (`unhealthy` on a failing former primary).
pub const INSTANCE_ROLE: &str = "cnpg.io/instanceRole";
/// The legacy role label, kept equal to [`INSTANCE_ROLE`] (selectors of CloudNativePG ≤ 1.24).
pub const LEGACY_ROLE: &str = "role";
/// What a PVC holds: `PG_DATA`, `PG_WAL`, `PG_TABLESPACE`.
pub const PVC_ROLE: &str = "cnpg.io/pvcRole";
/// The tablespace a PVC holds.
pub const TABLESPACE_NAME: &str = "cnpg.io/tablespaceName";
/// The pooler a pod or object belongs to.
pub const POOLER_NAME: &str = "cnpg.io/poolerName";
/// Whose credentials a basic-auth Secret holds: `app` or `superuser`.
pub const USER_TYPE: &str = "cnpg.io/userType";
/// Secrets and ConfigMaps whose change is reloaded into running instances.
pub const RELOAD: &str = "cnpg.io/reload";

/// The instance's serial number.
pub const NODE_SERIAL: &str = "cnpg.io/nodeSerial";
/// A PVC's lifecycle: `initializing`, `ready`, `detached`.
pub const PVC_STATUS: &str = "cnpg.io/pvcStatus";
/// SHA-256 of the generated pod spec: the operator compares it with the spec it would
/// generate now, never with the live (defaulted, webhook-mutated) spec.
pub const POD_SPEC_HASH: &str = "pgherd.io/podSpecHash";
/// SHA-256 of the generated pooler pod template (CloudNativePG's key).
pub const POOLER_SPEC_HASH: &str = "cnpg.io/poolerSpecHash";

/// `app.kubernetes.io/managed-by` value: CloudNativePG's, so users' selectors keep matching.
pub const MANAGED_BY: &str = "cloudnative-pg";

/// The role of an instance, as its labels say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InstanceRole {
    Primary,
    Replica,
    /// A former primary that is failing; selected by neither `-rw` nor `-ro`.
    Unhealthy,
}

impl InstanceRole {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            InstanceRole::Primary => "primary",
            InstanceRole::Replica => "replica",
            InstanceRole::Unhealthy => "unhealthy",
        }
    }

    /// The role of `instance` given the cluster's current primary: none while no primary is
    /// known (the labels are added once one is).
    pub fn of(instance: &str, current_primary: Option<&str>) -> Option<InstanceRole> {
        current_primary.map(|p| {
            if p == instance {
                InstanceRole::Primary
            } else {
                InstanceRole::Replica
            }
        })
    }
}

/// Labels of every object of a cluster: `cnpg.io/cluster` and the `app.kubernetes.io` set.
pub fn cluster_labels(cluster: &Cluster, component: &str) -> BTreeMap<String, String> {
    let name = cluster.metadata.name.clone().unwrap_or_default();
    let mut labels = BTreeMap::from([
        (CLUSTER.to_string(), name.clone()),
        (
            "app.kubernetes.io/name".to_string(),
            "postgresql".to_string(),
        ),
        ("app.kubernetes.io/instance".to_string(), name),
        (
            "app.kubernetes.io/component".to_string(),
            component.to_string(),
        ),
        (
            "app.kubernetes.io/managed-by".to_string(),
            MANAGED_BY.to_string(),
        ),
    ]);
    if let Some(major) = cluster.major_version() {
        labels.insert("app.kubernetes.io/version".to_string(), major.0.to_string());
    }
    labels
}

/// What every object generated for one owner shares.
#[derive(Debug, Clone)]
pub(crate) struct Base {
    pub kind: &'static str,
    pub name: String,
    pub namespace: Option<String>,
    owner_reference: OwnerReference,
    inherited: Metadata,
}

impl Base {
    /// The base of objects owned by `owner`, inheriting `inherited`.
    pub fn new<K>(owner: &K, kind: &'static str, inherited: Option<&Metadata>) -> Result<Base>
    where
        K: Resource<DynamicType = ()>,
    {
        let meta = owner.meta();
        let missing = |field| BuildError::MissingMetadata {
            kind,
            name: meta.name.clone().unwrap_or_default(),
            field,
        };
        let name = meta.name.clone().ok_or_else(|| missing("name"))?;
        let mut owner_reference = owner
            .controller_owner_ref(&())
            .ok_or_else(|| missing("uid"))?;
        owner_reference.block_owner_deletion = Some(true);
        Ok(Base {
            kind,
            name,
            namespace: meta.namespace.clone(),
            owner_reference,
            inherited: inherited.cloned().unwrap_or_default(),
        })
    }

    /// The base of a cluster's objects.
    pub fn of_cluster(cluster: &Cluster) -> Result<Base> {
        Base::new(cluster, "Cluster", cluster.spec.inherited_metadata.as_ref())
    }

    pub fn owner(&self) -> Owner<'_> {
        Owner {
            kind: self.kind,
            name: &self.name,
        }
    }

    /// An error about the owner's spec.
    pub fn spec_error(&self, message: impl Into<String>) -> BuildError {
        BuildError::Spec {
            kind: self.kind,
            owner: self.name.clone(),
            message: message.into(),
        }
    }

    /// Metadata of a generated object: the inherited labels and annotations first, the
    /// generated ones over them (a user cannot relabel an object out of its selectors).
    pub fn meta(
        &self,
        name: &str,
        labels: BTreeMap<String, String>,
        annotations: BTreeMap<String, String>,
    ) -> Result<ObjectMeta> {
        let owner = self.owner();
        owner.check_name("object name", name)?;
        let mut all_labels = self.inherited.labels.clone().unwrap_or_default();
        all_labels.extend(labels);
        for (key, value) in &all_labels {
            owner.check_label_value(key, value)?;
        }
        let mut all_annotations = self.inherited.annotations.clone().unwrap_or_default();
        all_annotations.extend(annotations);
        Ok(ObjectMeta {
            name: Some(name.to_string()),
            namespace: self.namespace.clone(),
            labels: non_empty(all_labels),
            annotations: non_empty(all_annotations),
            owner_references: Some(vec![self.owner_reference.clone()]),
            ..ObjectMeta::default()
        })
    }

    /// The namespace for URIs and DNS names (`default` when the owner names none).
    pub fn namespace_or_default(&self) -> &str {
        self.namespace.as_deref().unwrap_or("default")
    }
}

/// `None` for an empty map, so the output has no `labels: {}`.
pub(crate) fn non_empty<V>(map: BTreeMap<String, V>) -> Option<BTreeMap<String, V>> {
    (!map.is_empty()).then_some(map)
}

/// A map from `(key, value)` pairs.
pub(crate) fn map<const N: usize>(pairs: [(&str, &str); N]) -> BTreeMap<String, String> {
    pairs
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}
