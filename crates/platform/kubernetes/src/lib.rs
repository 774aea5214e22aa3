//! The Kubernetes platform. For now: the pure builders of every object pgherd creates for a
//! Cluster or a Pooler — instance Pods, PVCs, Services, Secrets, PodDisruptionBudgets,
//! ServiceAccount/Role/RoleBinding, PodMonitors, the pooler's Deployment and Service — with
//! CloudNativePG's names, labels, annotations and Secret keys, so users' Services,
//! NetworkPolicies, PodMonitors and scripts keep working. Each builder is a function from a
//! validated, defaulted object (plus what it needs: operator settings, instance serial,
//! current primary, generated credentials) to `k8s-openapi` objects; every object is owned by
//! its Cluster/Pooler (controller, blocking deletion) and carries its `inheritedMetadata`.
//! Names and label values over Kubernetes' limits are errors, never truncated.
//!
//! The builders are pure: no API calls, no I/O, no async runtime. The operator ([`operator`]),
//! its admission webhooks ([`webhook`]), the `kubectl cnpg` plugin's calls ([`plugin`]) and a
//! Pooler pod's process ([`pooler_pod`]) are the parts that talk to the API. May depend on
//! model crates, engine and platform crates,
//! `k8s-openapi` and `kube`; never on the app.
//!
//! Imports: pgherd-api, pgherd-backup, pgherd-controller, pgherd-instance-manager, pgherd-instance-protocol, pgherd-metrics, pgherd-pooler, pgherd-postgres.

mod affinity;
pub mod error;
pub mod install;
pub mod labels;
pub mod monitor;
pub mod names;
pub mod not_run;
pub mod operator;
pub mod pdb;
pub mod plugin;
pub mod pod;
mod pod_volumes;
pub mod pooler;
pub mod pooler_pod;
pub mod pooler_switchover;
mod probes;
pub mod pvc;
pub mod rbac;
pub mod secret;
mod security;
pub mod service;
pub mod upgrade_job;
pub mod valid_spec;
pub mod webhook;

pub use affinity::instance_affinity;
pub use error::{BuildError, Result};
pub use labels::InstanceRole;
pub use probes::{failures_to_cover, instance_probes};

use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, Secret, Service, ServiceAccount};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use pgherd_api::{Cluster, Pooler};

/// What the builders need to know about the operator itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperatorSettings {
    /// The operator image; its `/manager` is copied into every instance and pooler pod.
    pub image: String,
    /// Pull policy of the operator image in init containers.
    pub image_pull_policy: Option<String>,
    /// The Kubernetes cluster's DNS domain (for `fqdn-uri` and certificate names).
    pub cluster_domain: String,
    /// PgBouncer image of Poolers that name none.
    pub pgbouncer_image: String,
}

/// PgBouncer image of Poolers that name none (CloudNativePG's default).
pub const DEFAULT_PGBOUNCER_IMAGE: &str = "ghcr.io/cloudnative-pg/pgbouncer:1.24.1";

impl OperatorSettings {
    /// Settings for operator image `image`, with the usual defaults for the rest.
    pub fn new(image: impl Into<String>) -> Self {
        OperatorSettings {
            image: image.into(),
            image_pull_policy: None,
            cluster_domain: "cluster.local".to_string(),
            pgbouncer_image: DEFAULT_PGBOUNCER_IMAGE.to_string(),
        }
    }
}

/// Credentials and certificates generated elsewhere for a cluster's Secrets.
#[derive(Debug, Clone)]
pub struct ClusterSecrets {
    pub app: secret::Credentials,
    pub superuser_password: String,
    pub ca: secret::CertificatePair,
    pub server: secret::CertificatePair,
    pub replication: secret::CertificatePair,
    /// PgBouncer's client certificate, while any Pooler uses the cluster.
    pub pooler: Option<secret::CertificatePair>,
}

/// Every object of a cluster with the given instances.
#[derive(Debug, Clone, Default)]
pub struct ClusterObjects {
    pub pods: Vec<Pod>,
    pub pvcs: Vec<PersistentVolumeClaim>,
    pub services: Vec<Service>,
    pub additional_services: Vec<service::ManagedService>,
    pub secrets: Vec<Secret>,
    pub pod_disruption_budgets: Vec<PodDisruptionBudget>,
    pub service_account: Option<ServiceAccount>,
    pub role: Option<Role>,
    pub role_binding: Option<RoleBinding>,
    pub pod_monitor: Option<serde_json::Value>,
}

/// Build every object of `cluster` for instances `serials`, `current_primary` holding the
/// primary role. PVCs are built `ready` for existing instances.
pub fn cluster_objects(
    cluster: &Cluster,
    operator: &OperatorSettings,
    serials: &[u32],
    current_primary: Option<&str>,
    secrets: &ClusterSecrets,
) -> Result<ClusterObjects> {
    let mut out = ClusterObjects::default();
    for &serial in serials {
        out.pods.push(pod::instance_pod(
            cluster,
            operator,
            serial,
            current_primary,
        )?);
        out.pvcs
            .extend(pvc::instance_pvcs(cluster, serial, pvc::PvcStatus::Ready)?);
    }
    out.services = service::default_services(cluster)?;
    out.additional_services = service::additional_services(cluster)?;
    let domain = &operator.cluster_domain;
    out.secrets
        .extend(secret::app_secret(cluster, domain, &secrets.app)?);
    out.secrets.extend(secret::superuser_secret(
        cluster,
        domain,
        &secrets.superuser_password,
    )?);
    out.secrets.push(secret::ca_secret(cluster, &secrets.ca)?);
    out.secrets
        .extend(secret::server_secret(cluster, &secrets.server)?);
    out.secrets
        .extend(secret::replication_secret(cluster, &secrets.replication)?);
    if let Some(pooler) = &secrets.pooler {
        out.secrets.push(secret::pooler_secret(cluster, pooler)?);
    }
    out.pod_disruption_budgets = pdb::pod_disruption_budgets(cluster)?;
    let (account, role, binding) = rbac::cluster_rbac(cluster)?;
    out.service_account = account;
    out.role = Some(role);
    out.role_binding = Some(binding);
    out.pod_monitor = monitor::cluster_pod_monitor(cluster)?;
    Ok(out)
}

/// Every object of a pooler.
#[derive(Debug, Clone)]
pub struct PoolerObjects {
    pub deployment: k8s_openapi::api::apps::v1::Deployment,
    pub service: Service,
    pub service_account: Option<ServiceAccount>,
    pub role: Role,
    pub role_binding: RoleBinding,
    pub pod_monitor: Option<serde_json::Value>,
}

/// Build every object of `pooler`.
pub fn pooler_objects(
    pooler: &Pooler,
    certificates: &secret::CertificateSecrets,
    operator: &OperatorSettings,
) -> Result<PoolerObjects> {
    let (service_account, role, role_binding) = rbac::pooler_rbac(pooler, certificates)?;
    Ok(PoolerObjects {
        deployment: pooler::pooler_deployment(pooler, operator)?,
        service: pooler::pooler_service(pooler)?,
        service_account,
        role,
        role_binding,
        pod_monitor: monitor::pooler_pod_monitor(pooler)?,
    })
}
