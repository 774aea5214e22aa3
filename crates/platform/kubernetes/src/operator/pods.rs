//! The instances of a Cluster as the API shows them: data PVCs (an instance exists while its
//! data does) and Pods (it runs while its pod does), with the facts the controller needs.

use crate::labels;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::api::{DeleteParams, ListParams};
use kube::{Api, Client};
use std::collections::BTreeMap;

/// One instance's objects.
#[derive(Debug, Default, Clone)]
pub(crate) struct InstanceObjects {
    pub(crate) pod: Option<Pod>,
    /// Its claims (data first when it has one).
    pub(crate) claims: Vec<String>,
    /// What each claim requests (`spec.resources.requests.storage`).
    pub(crate) claim_requests:
        BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>,
}

impl InstanceObjects {
    /// The pod's address, when it has one and is not being deleted.
    pub(crate) fn pod_ip(&self) -> Option<String> {
        let pod = self.pod.as_ref()?;
        if pod.metadata.deletion_timestamp.is_some() {
            return None;
        }
        pod.status.as_ref()?.pod_ip.clone()
    }

    /// The pod is gone or all its containers ended: nothing of the instance runs.
    pub(crate) fn nothing_runs(&self) -> bool {
        match &self.pod {
            None => true,
            Some(pod) => matches!(
                pod.status.as_ref().and_then(|s| s.phase.as_deref()),
                Some("Failed" | "Succeeded")
            ),
        }
    }

    /// Delete the pod gracefully (its manager stops PostgreSQL cleanly; its PVCs stay), unless
    /// there is none or it is already being deleted: whether a deletion was asked for. A pod
    /// gone meanwhile is no error. `cluster` (`namespace/name`) and `why` are for the log.
    pub(crate) async fn delete_pod(
        &self,
        pods: &Api<Pod>,
        cluster: &str,
        why: &str,
    ) -> Result<bool, kube::Error> {
        let Some(pod) = &self.pod else {
            return Ok(false);
        };
        if pod.metadata.deletion_timestamp.is_some() {
            return Ok(false);
        }
        let instance = pod.metadata.name.as_deref().unwrap_or_default();
        tracing::info!("{cluster}: deleting {instance}'s pod {why}");
        delete_gracefully(pods, pod).await
    }

    pub(crate) fn label(&self, key: &str) -> Option<String> {
        self.pod
            .as_ref()?
            .metadata
            .labels
            .as_ref()?
            .get(key)
            .cloned()
    }
}

/// Delete `pod` gracefully unless it is already being deleted: whether a deletion was asked
/// for. A pod gone meanwhile is no error.
pub(crate) async fn delete_gracefully(pods: &Api<Pod>, pod: &Pod) -> Result<bool, kube::Error> {
    if pod.metadata.deletion_timestamp.is_some() {
        return Ok(false);
    }
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    match pods.delete(name, &DeleteParams::default()).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(true),
        Err(e) => Err(e),
    }
}

/// Every instance of cluster `name`, by instance name.
pub(crate) async fn list(
    client: &Client,
    namespace: &str,
    name: &str,
) -> Result<BTreeMap<String, InstanceObjects>, kube::Error> {
    let selector = ListParams::default().labels(&format!("{}={name}", labels::CLUSTER));
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), namespace);
    let mut out: BTreeMap<String, InstanceObjects> = BTreeMap::new();
    for claim in claims.list(&selector).await? {
        let Some(instance) = claim
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(labels::INSTANCE_NAME))
            .cloned()
        else {
            continue;
        };
        let claim_name = claim.metadata.name.clone().unwrap_or_default();
        let entry = out.entry(instance.clone()).or_default();
        if let Some(request) = claim
            .spec
            .as_ref()
            .and_then(|s| s.resources.as_ref())
            .and_then(|r| r.requests.as_ref())
            .and_then(|r| r.get("storage"))
        {
            entry
                .claim_requests
                .insert(claim_name.clone(), request.clone());
        }
        if claim_name == instance {
            entry.claims.insert(0, claim_name);
        } else {
            entry.claims.push(claim_name);
        }
    }
    for pod in pods.list(&selector).await? {
        let instance = pod
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(labels::INSTANCE_NAME))
            .cloned();
        let is_instance = pod
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(labels::POD_ROLE))
            .is_some_and(|r| r == "instance");
        if let (Some(instance), true) = (instance, is_instance) {
            out.entry(instance).or_default().pod = Some(pod);
        }
    }
    Ok(out)
}

/// Taints that say a node is being drained (CloudNativePG's defaults: cordoning's own, the
/// cluster autoscaler's and Karpenter's).
const DRAIN_TAINTS: [&str; 4] = [
    "node.kubernetes.io/unschedulable",
    "ToBeDeletedByClusterAutoscaler",
    "karpenter.sh/disrupted",
    "karpenter.sh/disruption",
];

/// Whether `node` is cordoned or carries a drain taint: its pods are about to be evicted.
pub(crate) fn is_draining(node: &k8s_openapi::api::core::v1::Node) -> bool {
    let Some(spec) = &node.spec else {
        return false;
    };
    spec.unschedulable == Some(true)
        || spec
            .taints
            .iter()
            .flatten()
            .any(|t| DRAIN_TAINTS.contains(&t.key.as_str()))
}

/// The nodes being drained, by name. An error (nodes not readable) reads as none: no planned
/// switchover is better than one for a wrong reason.
pub(crate) async fn draining_nodes(client: &Client) -> std::collections::BTreeSet<String> {
    let nodes: Api<k8s_openapi::api::core::v1::Node> = Api::all(client.clone());
    match nodes.list(&ListParams::default()).await {
        Ok(list) => list
            .items
            .iter()
            .filter(|n| is_draining(n))
            .filter_map(|n| n.metadata.name.clone())
            .collect(),
        Err(e) => {
            tracing::debug!("cannot list nodes: {e}");
            Default::default()
        }
    }
}

impl InstanceObjects {
    /// The node its pod runs on.
    pub(crate) fn node(&self) -> Option<&str> {
        self.pod.as_ref()?.spec.as_ref()?.node_name.as_deref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{Node, NodeSpec, Taint};

    #[test]
    fn a_cordoned_or_drain_tainted_node_is_draining() {
        let node = |spec: NodeSpec| Node {
            spec: Some(spec),
            ..Node::default()
        };
        assert!(!is_draining(&node(NodeSpec::default())));
        assert!(is_draining(&node(NodeSpec {
            unschedulable: Some(true),
            ..NodeSpec::default()
        })));
        let taint = |key: &str| Taint {
            key: key.into(),
            effect: "NoSchedule".into(),
            ..Taint::default()
        };
        assert!(is_draining(&node(NodeSpec {
            taints: Some(vec![taint("karpenter.sh/disrupted")]),
            ..NodeSpec::default()
        })));
        assert!(!is_draining(&node(NodeSpec {
            taints: Some(vec![taint("example.com/other")]),
            ..NodeSpec::default()
        })));
    }
}
