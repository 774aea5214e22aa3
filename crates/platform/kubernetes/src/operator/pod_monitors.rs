//! PodMonitors (`monitoring.coreos.com/v1`, the Prometheus Operator's kind) of Clusters and
//! Poolers with `monitoring.enablePodMonitor`: server-side applied when wanted, deleted when
//! not. The kind's CRD may not be installed; the caller decides what to say then.

use super::OperatorError;
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind};
use kube::api::{Patch, PatchParams};
use kube::Client;
use serde_json::Value;

/// The PodMonitor CRD is not installed in the API server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CrdMissing;

/// What to tell the user when the CRD is missing, for `what` (e.g. "Cluster pg").
pub(crate) fn crd_missing_message(what: &str) -> String {
    format!(
        "{what}: spec.monitoring.enablePodMonitor: the PodMonitor CRD (monitoring.coreos.com/v1) is not installed; install the Prometheus Operator's CRDs or remove it"
    )
}

/// Apply `monitor` as PodMonitor `name`, or delete PodMonitor `name` when `None`.
pub(crate) async fn apply(
    client: &Client,
    namespace: &str,
    name: &str,
    monitor: Option<&Value>,
) -> Result<Result<(), CrdMissing>, OperatorError> {
    let resource = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("monitoring.coreos.com", "v1", "PodMonitor"),
        "podmonitors",
    );
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, &resource);
    let Some(monitor) = monitor else {
        return match api.delete(name, &DeleteParams::default()).await {
            Ok(_) => Ok(Ok(())),
            Err(kube::Error::Api(e)) if e.code == 404 => Ok(Ok(())),
            Err(e) => Err(e.into()),
        };
    };
    match api
        .patch(
            name,
            &PatchParams::apply(super::FIELD_MANAGER).force(),
            &Patch::Apply(monitor),
        )
        .await
    {
        Ok(_) => Ok(Ok(())),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(Err(CrdMissing)),
        Err(e) => Err(e.into()),
    }
}
