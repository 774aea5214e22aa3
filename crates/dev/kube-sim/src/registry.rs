//! The resource types the server serves: the built-in kinds (as generic JSON objects with
//! per-kind metadata) and the types that installed CRDs add. Discovery, routing and storage all
//! read this one table.

use serde_json::Value;
use std::sync::Arc;

/// Where `/scale` reads and writes its numbers (CRD `subresources.scale`, or the built-ins').
#[derive(Debug, Clone)]
pub struct ScalePaths {
    pub spec_replicas: String,
    pub status_replicas: String,
    pub label_selector: Option<String>,
}

/// A CRD's `additionalPrinterColumns` entry.
#[derive(Debug, Clone)]
pub struct PrinterColumn {
    pub name: String,
    pub type_: String,
    pub json_path: String,
    pub description: String,
    pub priority: i64,
    pub format: String,
}

/// One served resource in one group-version.
#[derive(Debug, Clone)]
pub struct ResourceType {
    pub group: String,
    pub version: String,
    pub kind: String,
    pub plural: String,
    pub singular: String,
    pub namespaced: bool,
    pub short_names: Vec<String>,
    pub categories: Vec<String>,
    pub status: bool,
    pub scale: Option<ScalePaths>,
    /// The CRD version's `openAPIV3Schema`, for validation, defaulting and pruning.
    pub schema: Option<Value>,
    pub printer_columns: Vec<PrinterColumn>,
    /// The name of the CRD that serves this type (`None` for built-ins).
    pub crd: Option<String>,
}

impl ResourceType {
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// The storage key of the resource: all versions of a group's resource share it.
    pub fn storage_key(&self) -> String {
        if self.group == "events.k8s.io" && self.plural == "events" {
            // The same objects as core/v1 Events (see `convert`).
            return "/events".to_string();
        }
        format!("{}/{}", self.group, self.plural)
    }

    /// `Kind.group` as error messages name it.
    pub fn group_kind(&self) -> String {
        if self.group.is_empty() {
            self.kind.clone()
        } else {
            format!("{}.{}", self.kind, self.group)
        }
    }

    /// Whether writes to the main resource bump `metadata.generation` on spec changes.
    pub fn has_generation(&self) -> bool {
        self.status || self.crd.is_some()
    }
}

/// All served types; built-ins first, then CRD types in installation order.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    types: Vec<Arc<ResourceType>>,
}

struct Builtin(
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    bool,
    &'static [&'static str],
    bool,
);

const BUILTINS: &[Builtin] = &[
    Builtin("", "v1", "Namespace", "namespaces", false, &["ns"], true),
    Builtin("", "v1", "Node", "nodes", false, &["no"], true),
    Builtin("", "v1", "Pod", "pods", true, &["po"], true),
    Builtin("", "v1", "Service", "services", true, &["svc"], true),
    Builtin("", "v1", "Endpoints", "endpoints", true, &["ep"], false),
    Builtin("", "v1", "Secret", "secrets", true, &[], false),
    Builtin("", "v1", "ConfigMap", "configmaps", true, &["cm"], false),
    Builtin(
        "",
        "v1",
        "PersistentVolumeClaim",
        "persistentvolumeclaims",
        true,
        &["pvc"],
        true,
    ),
    Builtin(
        "",
        "v1",
        "PersistentVolume",
        "persistentvolumes",
        false,
        &["pv"],
        true,
    ),
    Builtin(
        "",
        "v1",
        "ServiceAccount",
        "serviceaccounts",
        true,
        &["sa"],
        false,
    ),
    Builtin("", "v1", "Event", "events", true, &["ev"], false),
    Builtin(
        "discovery.k8s.io",
        "v1",
        "EndpointSlice",
        "endpointslices",
        true,
        &[],
        false,
    ),
    Builtin(
        "events.k8s.io",
        "v1",
        "Event",
        "events",
        true,
        &["ev"],
        false,
    ),
    Builtin(
        "coordination.k8s.io",
        "v1",
        "Lease",
        "leases",
        true,
        &[],
        false,
    ),
    Builtin(
        "policy",
        "v1",
        "PodDisruptionBudget",
        "poddisruptionbudgets",
        true,
        &["pdb"],
        true,
    ),
    Builtin(
        "rbac.authorization.k8s.io",
        "v1",
        "Role",
        "roles",
        true,
        &[],
        false,
    ),
    Builtin(
        "rbac.authorization.k8s.io",
        "v1",
        "RoleBinding",
        "rolebindings",
        true,
        &[],
        false,
    ),
    Builtin(
        "rbac.authorization.k8s.io",
        "v1",
        "ClusterRole",
        "clusterroles",
        false,
        &[],
        false,
    ),
    Builtin(
        "rbac.authorization.k8s.io",
        "v1",
        "ClusterRoleBinding",
        "clusterrolebindings",
        false,
        &[],
        false,
    ),
    Builtin(
        "apps",
        "v1",
        "Deployment",
        "deployments",
        true,
        &["deploy"],
        true,
    ),
    Builtin(
        "apps",
        "v1",
        "ReplicaSet",
        "replicasets",
        true,
        &["rs"],
        true,
    ),
    Builtin("batch", "v1", "Job", "jobs", true, &[], true),
    Builtin(
        "apiextensions.k8s.io",
        "v1",
        "CustomResourceDefinition",
        "customresourcedefinitions",
        false,
        &["crd", "crds"],
        true,
    ),
    Builtin(
        "authorization.k8s.io",
        "v1",
        "SelfSubjectAccessReview",
        "selfsubjectaccessreviews",
        false,
        &[],
        false,
    ),
    Builtin(
        "authorization.k8s.io",
        "v1",
        "SubjectAccessReview",
        "subjectaccessreviews",
        false,
        &[],
        false,
    ),
    Builtin(
        "admissionregistration.k8s.io",
        "v1",
        "ValidatingWebhookConfiguration",
        "validatingwebhookconfigurations",
        false,
        &[],
        false,
    ),
    Builtin(
        "admissionregistration.k8s.io",
        "v1",
        "MutatingWebhookConfiguration",
        "mutatingwebhookconfigurations",
        false,
        &[],
        false,
    ),
];

impl Registry {
    pub fn with_builtins() -> Self {
        let types = BUILTINS
            .iter()
            .map(|b| {
                let scale = matches!(b.3, "deployments" | "replicasets").then(|| ScalePaths {
                    spec_replicas: ".spec.replicas".into(),
                    status_replicas: ".status.replicas".into(),
                    label_selector: None,
                });
                Arc::new(ResourceType {
                    group: b.0.into(),
                    version: b.1.into(),
                    kind: b.2.into(),
                    plural: b.3.into(),
                    singular: b.2.to_lowercase(),
                    namespaced: b.4,
                    short_names: b.5.iter().map(|s| s.to_string()).collect(),
                    categories: if matches!(
                        b.3,
                        "pods" | "services" | "deployments" | "replicasets" | "jobs"
                    ) {
                        vec!["all".to_string()]
                    } else {
                        Vec::new()
                    },
                    status: b.6,
                    scale,
                    schema: None,
                    printer_columns: Vec::new(),
                    crd: None,
                })
            })
            .collect();
        Registry { types }
    }

    pub fn all(&self) -> &[Arc<ResourceType>] {
        &self.types
    }

    pub fn find(&self, group: &str, version: &str, plural: &str) -> Option<Arc<ResourceType>> {
        self.types
            .iter()
            .find(|t| t.group == group && t.version == version && t.plural == plural)
            .cloned()
    }

    pub fn find_kind(&self, api_version: &str, kind: &str) -> Option<Arc<ResourceType>> {
        self.types
            .iter()
            .find(|t| t.api_version() == api_version && t.kind == kind)
            .cloned()
    }

    /// Any version of the storage key (`group/plural`).
    pub fn find_storage(&self, key: &str) -> Option<Arc<ResourceType>> {
        self.types.iter().find(|t| t.storage_key() == key).cloned()
    }

    /// The group-versions served, in discovery order (`""` is the core group).
    pub fn group_versions(&self) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = Vec::new();
        for t in &self.types {
            let gv = (t.group.clone(), t.version.clone());
            if !out.contains(&gv) {
                out.push(gv);
            }
        }
        out
    }

    /// Replace the types a CRD serves with `types`.
    pub fn set_crd_types(&mut self, crd: &str, types: Vec<ResourceType>) {
        self.types.retain(|t| t.crd.as_deref() != Some(crd));
        self.types.extend(types.into_iter().map(Arc::new));
    }

    pub fn remove_crd(&mut self, crd: &str) {
        self.types.retain(|t| t.crd.as_deref() != Some(crd));
    }
}
