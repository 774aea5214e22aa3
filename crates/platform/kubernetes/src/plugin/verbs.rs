//! The verbs that change a cluster through its own object or its Pods: `promote` and
//! `restart PRIMARY` (status subresource merge patches), `restart`, `reload`, `fencing`,
//! `hibernate` (annotation merge patches), `maintenance` (spec merge patch), `destroy`
//! (deletes). Each returns the message to show.

use super::{PluginError, Result, Target};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use pgherd_controller::operations;
use serde_json::{json, Value};

/// How many times a status patch is retried when the Cluster changed under it.
const STATUS_RETRIES: usize = 5;

impl Target {
    /// Merge-patch the Cluster's metadata or spec.
    async fn patch_cluster(&self, name: &str, patch: Value, what: &str) -> Result<()> {
        self.dynamic("Cluster")
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(PluginError::api(format!(
                "cannot {what} of Cluster {}/{name}",
                self.namespace
            )))?;
        Ok(())
    }

    /// Merge-patch the Cluster's status with what `change` returns from the current object
    /// (`None`: nothing to write), carrying the `resourceVersion` read so that a concurrent
    /// writer makes the API refuse it; retried on conflict.
    async fn patch_cluster_status<F>(&self, name: &str, mut change: F) -> Result<Option<String>>
    where
        F: FnMut(&pgherd_api::Cluster) -> Result<Option<(Value, String)>>,
    {
        for _ in 0..STATUS_RETRIES {
            let cluster = self.cluster(name).await?;
            let Some((status, message)) = change(&cluster)? else {
                return Ok(None);
            };
            let patch = json!({
                "metadata": {"resourceVersion": cluster.metadata.resource_version},
                "status": status,
            });
            match self
                .dynamic("Cluster")
                .patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => return Ok(Some(message)),
                Err(kube::Error::Api(e)) if e.code == 409 => continue,
                Err(e) => {
                    return Err(PluginError::Api {
                        action: format!(
                            "cannot patch the status of Cluster {}/{name}",
                            self.namespace
                        ),
                        source: e,
                    })
                }
            }
        }
        Err(PluginError::Io(format!(
            "Cluster {}/{name} kept changing while its status was written ({STATUS_RETRIES} attempts); try again",
            self.namespace
        )))
    }

    /// `promote CLUSTER INSTANCE`: ask for a switchover (`status.targetPrimary`).
    pub async fn promote(&self, cluster: &str, instance: &str) -> Result<String> {
        let c = self.cluster(cluster).await?;
        let instance = self.instance(&c, instance).await?;
        if self
            .pods()
            .get_opt(&instance)
            .await
            .map_err(PluginError::api(format!(
                "cannot read Pod {}/{instance}",
                self.namespace
            )))?
            .is_none()
        {
            return Err(PluginError::User(format!(
                "instance {instance} of Cluster {}/{cluster} has no Pod: it cannot be promoted",
                self.namespace
            )));
        }
        let now = super::now();
        let written = self
            .patch_cluster_status(cluster, |c| {
                match operations::switchover(c, &instance, now) {
                    Ok(r) => Ok(Some((
                        json!({
                            "targetPrimary": r.target_primary,
                            "targetPrimaryTimestamp": r.target_primary_timestamp,
                            "phase": r.phase,
                            "phaseReason": r.phase_reason,
                        }),
                        format!("{cluster}: switchover to {instance} requested (status.targetPrimary={instance})"),
                    ))),
                    Err(operations::SwitchoverRefusal::AlreadyPrimary { .. }) => Ok(None),
                    Err(refusal) => Err(PluginError::User(refusal.to_string())),
                }
            })
            .await?;
        Ok(written.unwrap_or_else(|| {
            format!("{cluster}: {instance} is already the primary; nothing to do")
        }))
    }

    /// `restart CLUSTER`: a rolling restart of every instance.
    pub async fn restart_cluster(&self, cluster: &str) -> Result<String> {
        self.cluster(cluster).await?;
        let at = pgherd_api::common::rfc3339(super::now());
        self.patch_cluster(
            cluster,
            json!({"metadata": {"annotations": {operations::RESTARTED_AT_ANNOTATION: at}}}),
            "set the restart annotation",
        )
        .await?;
        Ok(format!(
            "{cluster}: rolling restart requested ({}={at})",
            operations::RESTARTED_AT_ANNOTATION
        ))
    }

    /// `restart CLUSTER INSTANCE` (or `--primary`): the primary restarts in place; a replica's
    /// Pod is deleted and made again.
    pub async fn restart_instance(&self, cluster: &str, instance: Option<&str>) -> Result<String> {
        let c = self.cluster(cluster).await?;
        let primary = c.status.as_ref().and_then(|s| s.current_primary.clone());
        let instance = match instance {
            Some(given) => self.instance(&c, given).await?,
            None => primary.clone().ok_or_else(|| {
                PluginError::User(format!(
                    "Cluster {}/{cluster} has no primary yet (status.currentPrimary is empty); nothing to restart",
                    self.namespace
                ))
            })?,
        };
        if primary.as_deref() == Some(instance.as_str()) {
            let (phase, reason) = operations::primary_restart_phase();
            self.patch_cluster_status(cluster, |_| {
                Ok(Some((
                    json!({"phase": phase, "phaseReason": reason}),
                    format!("{cluster}: in-place restart of the primary {instance} requested"),
                )))
            })
            .await?;
            return Ok(format!(
                "{cluster}: in-place restart of the primary {instance} requested"
            ));
        }
        self.pods()
            .delete(&instance, &DeleteParams::default())
            .await
            .map_err(PluginError::api(format!(
                "cannot delete Pod {}/{instance}",
                self.namespace
            )))?;
        Ok(format!(
            "{cluster}: Pod {instance} deleted; the operator makes it again"
        ))
    }

    /// `reload CLUSTER`: every instance re-reads its Secrets and ConfigMaps.
    pub async fn reload(&self, cluster: &str) -> Result<String> {
        self.cluster(cluster).await?;
        let at = pgherd_api::common::rfc3339(super::now());
        self.patch_cluster(
            cluster,
            json!({"metadata": {"annotations": {operations::RELOADED_AT_ANNOTATION: at}}}),
            "set the reload annotation",
        )
        .await?;
        Ok(format!("{cluster}: reload requested"))
    }

    /// `fencing on|off CLUSTER INSTANCE|*`.
    pub async fn fencing(&self, cluster: &str, instance: &str, on: bool) -> Result<String> {
        let c = self.cluster(cluster).await?;
        let instance = if instance == operations::ALL_INSTANCES {
            instance.to_string()
        } else {
            self.instance(&c, instance).await?
        };
        let current = operations::fenced_instances(&c);
        let value = operations::fencing_change(&current, &instance, on)
            .map(|list| serde_json::to_string(&list))
            .transpose()
            .map_err(|e| PluginError::Io(e.to_string()))?;
        self.patch_cluster(
            cluster,
            json!({"metadata": {"annotations": {operations::FENCED_INSTANCES_ANNOTATION: value}}}),
            "change the fenced instances",
        )
        .await?;
        let what = if instance == operations::ALL_INSTANCES {
            "all instances".to_string()
        } else {
            instance
        };
        Ok(format!(
            "{cluster}: {what} {}",
            if on { "fenced" } else { "unfenced" }
        ))
    }

    /// `hibernate on|off CLUSTER`.
    pub async fn hibernate(&self, cluster: &str, on: bool) -> Result<String> {
        self.cluster(cluster).await?;
        let value = if on { "on" } else { "off" };
        self.patch_cluster(
            cluster,
            json!({"metadata": {"annotations": {operations::HIBERNATION_ANNOTATION: value}}}),
            "set the hibernation annotation",
        )
        .await?;
        Ok(format!("{cluster}: hibernation {value}"))
    }

    /// `maintenance set|unset`: `spec.nodeMaintenanceWindow` of one cluster, or of every
    /// cluster in the namespace (`None`) or in all namespaces (`all_namespaces`).
    pub async fn maintenance(
        &self,
        cluster: Option<&str>,
        all_namespaces: bool,
        in_progress: bool,
        reuse_pvc: bool,
    ) -> Result<Vec<String>> {
        let patch = json!({"spec": {"nodeMaintenanceWindow": {"inProgress": in_progress, "reusePVC": reuse_pvc}}});
        let targets: Vec<(String, String)> = match cluster {
            Some(name) => {
                self.cluster(name).await?;
                vec![(self.namespace.clone(), name.to_string())]
            }
            None => {
                let api: Api<kube::api::DynamicObject> = if all_namespaces {
                    Api::all_with(self.client.clone(), &super::api_resource("Cluster"))
                } else {
                    self.dynamic("Cluster")
                };
                api.list(&ListParams::default())
                    .await
                    .map_err(PluginError::api("cannot list the Clusters"))?
                    .items
                    .into_iter()
                    .filter_map(|c| Some((c.metadata.namespace?, c.metadata.name?)))
                    .collect()
            }
        };
        let mut done = Vec::new();
        for (namespace, name) in targets {
            let api: Api<kube::api::DynamicObject> = Api::namespaced_with(
                self.client.clone(),
                &namespace,
                &super::api_resource("Cluster"),
            );
            api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .map_err(PluginError::api(format!(
                    "cannot set spec.nodeMaintenanceWindow of Cluster {namespace}/{name}"
                )))?;
            done.push(format!(
                "{namespace}/{name}: node maintenance window {} (reusePVC: {reuse_pvc})",
                if in_progress { "set" } else { "unset" }
            ));
        }
        Ok(done)
    }

    /// `destroy CLUSTER INSTANCE [--keep-pvc]`: the instance's Pod, Jobs and PVCs go (or the
    /// PVCs stay, detached from the cluster).
    pub async fn destroy(
        &self,
        cluster: &str,
        instance: &str,
        keep_pvc: bool,
    ) -> Result<Vec<String>> {
        let c = self.cluster(cluster).await?;
        let instance = self.instance(&c, instance).await?;
        let selector = format!(
            "{}={cluster},{}={instance}",
            crate::labels::CLUSTER,
            crate::labels::INSTANCE_NAME
        );
        let mut done = Vec::new();
        let jobs: Api<Job> = Api::namespaced(self.client.clone(), &self.namespace);
        for job in jobs
            .list(&ListParams::default().labels(&selector))
            .await
            .map_err(PluginError::api("cannot list the instance's Jobs"))?
            .items
        {
            let name = job.metadata.name.unwrap_or_default();
            jobs.delete(&name, &DeleteParams::background())
                .await
                .map_err(PluginError::api(format!(
                    "cannot delete Job {}/{name}",
                    self.namespace
                )))?;
            done.push(format!("Job {name} deleted"));
        }
        let pvcs: Api<PersistentVolumeClaim> =
            Api::namespaced(self.client.clone(), &self.namespace);
        for pvc in pvcs
            .list(&ListParams::default().labels(&selector))
            .await
            .map_err(PluginError::api("cannot list the instance's PVCs"))?
            .items
        {
            let name = pvc.metadata.name.unwrap_or_default();
            if keep_pvc {
                let patch = json!({"metadata": {
                    "ownerReferences": null,
                    "annotations": {crate::labels::PVC_STATUS: "detached"},
                }});
                pvcs.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                    .map_err(PluginError::api(format!(
                        "cannot detach PVC {}/{name}",
                        self.namespace
                    )))?;
                done.push(format!("PVC {name} detached (kept)"));
            } else {
                pvcs.delete(&name, &DeleteParams::default())
                    .await
                    .map_err(PluginError::api(format!(
                        "cannot delete PVC {}/{name}",
                        self.namespace
                    )))?;
                done.push(format!("PVC {name} deleted"));
            }
        }
        match self
            .pods()
            .delete(&instance, &DeleteParams::default())
            .await
        {
            Ok(_) => done.push(format!("Pod {instance} deleted")),
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => {
                return Err(PluginError::Api {
                    action: format!("cannot delete Pod {}/{instance}", self.namespace),
                    source: e,
                })
            }
        }
        Ok(done)
    }
}
