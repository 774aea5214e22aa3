//! The instances of a Cluster as the API shows them: data PVCs (an instance exists while its
//! data does) and Pods (it runs while its pod does), with the facts the controller needs.

use crate::labels;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::api::ListParams;
use kube::{Api, Client};
use std::collections::BTreeMap;

/// One instance's objects.
#[derive(Debug, Default, Clone)]
pub(crate) struct InstanceObjects {
    pub(crate) pod: Option<Pod>,
    /// Its claims (data first when it has one).
    pub(crate) claims: Vec<String>,
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
