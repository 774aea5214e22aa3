//! The Cluster's objects besides its instances: Services (`-rw`, `-ro`, `-r`, managed ones),
//! PodDisruptionBudgets, ServiceAccount, Role and RoleBinding, and with
//! `monitoring.enablePodMonitor` its PodMonitor, server-side applied with the operator's field
//! manager. Applied when they change, and once a minute in case someone edited or deleted one.
//! A PodMonitor whose CRD is not installed is skipped (the cluster runs without it, as
//! CloudNativePG's does) and said once per change, in a Warning event on the Cluster.

use super::pod_monitors::{self, CrdMissing};
use super::{OperatorError, FIELD_MANAGER};
use crate::{monitor, pdb, rbac, service};
use k8s_openapi::api::core::v1::{Service, ServiceAccount};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{Patch, PatchParams};
use kube::{Api, Client, Resource};
use pgherd_api::Cluster;
use serde::de::DeserializeOwned;
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::time::{Duration, Instant};

/// How often unchanged objects are applied again.
const REAPPLY_EVERY: Duration = Duration::from_secs(60);

/// What was last applied, and when.
#[derive(Debug, Default)]
pub(crate) struct Applied {
    digest: Vec<u8>,
    at: Option<Instant>,
}

pub(crate) async fn apply_one<K>(
    client: &Client,
    namespace: &str,
    object: &K,
) -> Result<(), OperatorError>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Serialize
        + DeserializeOwned
        + Clone
        + std::fmt::Debug,
{
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    let name = object.meta().name.clone().unwrap_or_default();
    api.patch(
        &name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(object),
    )
    .await?;
    Ok(())
}

/// Everything to apply, built from the Cluster.
struct Objects {
    services: Vec<Service>,
    budgets: Vec<PodDisruptionBudget>,
    account: Option<ServiceAccount>,
    role: Role,
    binding: RoleBinding,
    pod_monitor: Option<serde_json::Value>,
}

fn build(cluster: &Cluster) -> Result<Objects, OperatorError> {
    let mut services = service::default_services(cluster)?;
    services.extend(
        service::additional_services(cluster)?
            .into_iter()
            .map(|m| m.service),
    );
    let (account, role, binding) = rbac::cluster_rbac(cluster)?;
    Ok(Objects {
        services,
        budgets: pdb::pod_disruption_budgets(cluster)?,
        account,
        role,
        binding,
        pod_monitor: monitor::cluster_pod_monitor(cluster)?,
    })
}

fn digest(objects: &Objects) -> Vec<u8> {
    let mut hasher = Sha256::new();
    let mut add = |value: serde_json::Result<Vec<u8>>| hasher.update(value.unwrap_or_default());
    for s in &objects.services {
        add(serde_json::to_vec(s));
    }
    for b in &objects.budgets {
        add(serde_json::to_vec(b));
    }
    add(serde_json::to_vec(&objects.account));
    add(serde_json::to_vec(&objects.role));
    add(serde_json::to_vec(&objects.binding));
    add(serde_json::to_vec(&objects.pod_monitor));
    hasher.finalize().to_vec()
}

/// Apply the Cluster's objects if they changed (or a while passed). Returns what could not be
/// carried out, when the objects changed since the last pass (to be said once).
pub(crate) async fn apply(
    client: &Client,
    cluster: &Cluster,
    applied: &mut Applied,
) -> Result<Option<String>, OperatorError> {
    let namespace = cluster.metadata.namespace.as_deref().unwrap_or("default");
    let name = cluster.metadata.name.as_deref().unwrap_or_default();
    let objects = build(cluster)?;
    let digest = digest(&objects);
    let changed = applied.digest != digest;
    if !changed && applied.at.is_some_and(|t| t.elapsed() < REAPPLY_EVERY) {
        return Ok(None);
    }
    if let Some(account) = &objects.account {
        apply_one(client, namespace, account).await?;
    }
    apply_one(client, namespace, &objects.role).await?;
    apply_one(client, namespace, &objects.binding).await?;
    for s in &objects.services {
        apply_one(client, namespace, s).await?;
    }
    for b in &objects.budgets {
        apply_one(client, namespace, b).await?;
    }
    let monitor = objects.pod_monitor.as_ref();
    // Not wanted and unchanged since it was deleted (at the latest in this operator's first
    // pass over the cluster): nothing to ask the API server every re-apply.
    let unmet = if monitor.is_none() && !changed {
        None
    } else {
        match pod_monitors::apply(client, namespace, name, monitor).await? {
            Err(CrdMissing) => {
                let why = pod_monitors::crd_missing_message(&format!("Cluster {namespace}/{name}"));
                tracing::warn!("{why}");
                changed.then_some(why)
            }
            Ok(()) => None,
        }
    };
    applied.digest = digest;
    applied.at = Some(Instant::now());
    Ok(unmet)
}
