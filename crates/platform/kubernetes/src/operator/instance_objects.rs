//! An instance's Kubernetes objects as one pass keeps them: its PVCs (created, grown), its pod
//! (created from the current template, recreated for a new one) and its role labels.

use super::kube_pass::KubePass;
use super::OperatorError;
use crate::labels;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::api::{Patch, PatchParams, PostParams};
use kube::Api;
use pgherd_controller::plan::Plan;
use pgherd_instance_protocol::DesiredRole;

impl KubePass<'_> {
    pub(super) fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    pub(super) fn claims(&self) -> Api<PersistentVolumeClaim> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    /// Create the instance's PVCs that are missing.
    pub(super) async fn ensure_claims(&self, serial: u32) -> Result<(), OperatorError> {
        let instance = crate::names::instance_name(&self.name, serial);
        let have = self
            .instances
            .get(&instance)
            .map(|i| i.claims.clone())
            .unwrap_or_default();
        for claim in crate::pvc::instance_pvcs(self.cluster, serial, crate::pvc::PvcStatus::Ready)?
        {
            let name = claim.metadata.name.clone().unwrap_or_default();
            if have.contains(&name) {
                self.resize_claim(&instance, &claim).await?;
                continue;
            }
            match self.claims().create(&PostParams::default(), &claim).await {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 409 => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// Grow an existing claim to the size the Cluster asks for now (online where the
    /// StorageClass allows expansion); a smaller size is refused, as Kubernetes refuses it.
    pub(super) async fn resize_claim(
        &self,
        instance: &str,
        wanted: &PersistentVolumeClaim,
    ) -> Result<(), OperatorError> {
        let name = wanted.metadata.name.clone().unwrap_or_default();
        let desired = wanted
            .spec
            .as_ref()
            .and_then(|s| s.resources.as_ref())
            .and_then(|r| r.requests.as_ref())
            .and_then(|r| r.get("storage"));
        let current = self
            .instances
            .get(instance)
            .and_then(|i| i.claim_requests.get(&name));
        let (Some(desired), Some(current)) = (desired, current) else {
            return Ok(());
        };
        match crate::pvc::resize(current, desired) {
            crate::pvc::Resize::Grow => {
                tracing::info!(
                    "{}/{}: growing PVC {name} from {} to {}",
                    self.namespace,
                    self.name,
                    current.0,
                    desired.0
                );
                let patch = serde_json::json!({
                    "spec": { "resources": { "requests": { "storage": desired.0 } } }
                });
                self.claims()
                    .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await?;
                Ok(())
            }
            crate::pvc::Resize::RefuseShrink => Err(OperatorError::Invalid(format!(
                "PVC {name} requests {} and the Cluster asks for {}: a claim cannot shrink (set the size back to at least {})",
                current.0, desired.0, current.0
            ))),
            crate::pvc::Resize::Unchanged | crate::pvc::Resize::Unknown => Ok(()),
        }
    }

    pub(super) async fn create_pod(&self, serial: u32) -> Result<(), OperatorError> {
        let pod = crate::pod::instance_pod(self.cluster, self.settings, serial, None)?;
        match self.pods().create(&PostParams::default(), &pod).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Delete `instance`'s pod (gracefully: its manager stops PostgreSQL cleanly) so the next
    /// pass creates it again from the current template, on the PVCs it keeps.
    pub(super) async fn recreate_pod(&mut self, instance: &str) {
        if self
            .delete_pod(instance, "to recreate it from the new pod template")
            .await
        {
            // The new pod starts under the cluster's restart token: its turn is this one.
            if let Some(spec) = self.runtime.pushed.get_mut(instance) {
                spec.restart_token = self.restart_token.clone();
            }
        }
    }

    /// Delete `instance`'s pod gracefully (its manager stops PostgreSQL cleanly; its PVCs
    /// stay), unless it is already being deleted. Whether a deletion was asked for.
    pub(super) async fn delete_pod(&mut self, instance: &str, why: &str) -> bool {
        let Some(objects) = self.instances.get(instance) else {
            return false;
        };
        let cluster = format!("{}/{}", self.namespace, self.name);
        match objects.delete_pod(&self.pods(), &cluster, why).await {
            Ok(asked) => asked,
            Err(e) => {
                tracing::warn!("cannot delete pod {instance} {why}: {e}");
                true
            }
        }
    }

    /// The role label `instance` should carry now: primary only once it reports being one
    /// (so `-rw` never points at an instance still promoting, or at one being demoted).
    pub(super) fn role_label(&self, instance: &str, plan: &Plan) -> &'static str {
        let planned_primary = plan
            .instances
            .iter()
            .any(|i| i.name == instance && i.role == DesiredRole::Primary);
        let reports_primary = self.reports.get(instance).is_some_and(|s| s.leads());
        if planned_primary && reports_primary {
            crate::labels::InstanceRole::Primary.as_str()
        } else {
            crate::labels::InstanceRole::Replica.as_str()
        }
    }

    pub(super) async fn label(&self, instance: &str, role: &str) -> Result<(), OperatorError> {
        let current = self.instances.get(instance).and_then(|i| {
            Some((
                i.label(labels::INSTANCE_ROLE)?,
                i.label(labels::LEGACY_ROLE)?,
            ))
        });
        if current
            .as_ref()
            .is_some_and(|(a, b)| a == role && b == role)
        {
            return Ok(());
        }
        let patch = serde_json::json!({
            "metadata": {"labels": {labels::INSTANCE_ROLE: role, labels::LEGACY_ROLE: role}}
        });
        self.pods()
            .patch(instance, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
        Ok(())
    }
}
