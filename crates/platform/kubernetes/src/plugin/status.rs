//! `status CLUSTER`: the Cluster (its status as the operator wrote it), its Pods, each
//! instance manager's `/pg/status` report read through the API server's `pods/proxy` (best
//! effort: without it the view says what is missing), and the Poolers in front of it, made
//! into the status view every platform renders.

use super::{PluginError, Result, Target};
use k8s_openapi::api::core::v1::Pod;
use kube::api::ListParams;
use pgherd_controller::status_view::{build, InstanceFacts, PoolerRow, StatusView, ViewInput};
use pgherd_instance_protocol::InstanceStatus;
use std::time::Duration;

/// The instance manager's status port (`status`, TLS).
const STATUS_PORT: u16 = 8000;

impl Target {
    /// An instance manager's report through `pods/proxy`.
    async fn instance_report(
        &self,
        pod: &str,
        timeout: Duration,
    ) -> Result<InstanceStatus, String> {
        let path = format!(
            "/api/v1/namespaces/{}/pods/https:{pod}:{STATUS_PORT}/proxy{}",
            self.namespace,
            pgherd_instance_protocol::STATUS_PATH
        );
        let request = http::Request::get(path)
            .body(Vec::new())
            .map_err(|e| e.to_string())?;
        let text = tokio::time::timeout(timeout, self.client.request_text(request))
            .await
            .map_err(|_| format!("no answer within {}s", timeout.as_secs()))?
            .map_err(|e| match e {
                kube::Error::Api(s) => format!("{} ({})", s.message, s.code),
                other => other.to_string(),
            })?;
        serde_json::from_str(&text).map_err(|e| format!("unreadable report: {e}"))
    }

    /// The status view of cluster `name`.
    pub async fn status_view(&self, name: &str, timeout: Duration) -> Result<StatusView> {
        let cluster = self.cluster(name).await?;
        let pods = self.instance_pods(name).await?;
        let mut notes = Vec::new();
        let reports = futures_reports(self, &pods, timeout).await;
        let mut unreachable = Vec::new();
        let mut instances: Vec<InstanceFacts> = Vec::new();
        for (pod, report) in pods.iter().zip(reports) {
            let facts = match report {
                Ok(report) => {
                    let mut facts = InstanceFacts::from_report(&report);
                    facts.name = pod.metadata.name.clone().unwrap_or_default();
                    facts
                }
                Err(why) => {
                    unreachable.push(format!(
                        "{}: {why}",
                        pod.metadata.name.as_deref().unwrap_or_default()
                    ));
                    facts_from_pod(pod)
                }
            };
            instances.push(InstanceFacts {
                node: pod.spec.as_ref().and_then(|s| s.node_name.clone()),
                qos: pod.status.as_ref().and_then(|s| s.qos_class.clone()),
                ..facts
            });
        }
        let known = super::known_instances(&cluster, &pods);
        let missing: Vec<String> = known
            .into_iter()
            .filter(|n| !instances.iter().any(|i| &i.name == n))
            .collect();
        for missing in missing {
            instances.push(InstanceFacts {
                name: missing,
                problem: Some("No Pod".to_string()),
                ..InstanceFacts::default()
            });
        }
        if !unreachable.is_empty() {
            notes.push(format!(
                "the instance managers' status could not be read through pods/proxy, so LSNs, replication and archiving come from the Pods and the Cluster's status only ({})",
                unreachable.join("; ")
            ));
        }
        let poolers = match self.poolers_of(name).await {
            Ok(p) => p,
            Err(e) => {
                notes.push(format!("Poolers not listed: {e}"));
                Vec::new()
            }
        };
        let endpoints = vec![
            ("rw".to_string(), crate::names::rw_service(name)),
            ("ro".to_string(), crate::names::ro_service(name)),
            ("r".to_string(), crate::names::r_service(name)),
        ];
        Ok(build(ViewInput {
            cluster: Some(&cluster),
            namespace: self.namespace.clone(),
            name: name.to_string(),
            instances,
            poolers,
            endpoints,
            now: super::now(),
            notes,
        }))
    }

    /// The Poolers whose `spec.cluster.name` is `cluster`.
    async fn poolers_of(&self, cluster: &str) -> Result<Vec<PoolerRow>> {
        let list = self
            .dynamic("Pooler")
            .list(&ListParams::default())
            .await
            .map_err(PluginError::api("cannot list the Poolers"))?;
        Ok(list
            .items
            .into_iter()
            .filter(|p| p.data["spec"]["cluster"]["name"].as_str() == Some(cluster))
            .map(|p| {
                let count =
                    |v: &serde_json::Value| v.as_u64().and_then(|n| usize::try_from(n).ok());
                let name = p.metadata.name.clone().unwrap_or_default();
                PoolerRow {
                    endpoint: Some(name.clone()),
                    name,
                    pooler_type: p.data["spec"]["type"].as_str().unwrap_or("rw").to_string(),
                    instances: count(&p.data["spec"]["instances"]).unwrap_or(1),
                    ready_instances: count(&p.data["status"]["instances"]).unwrap_or(0),
                    paused: p.data["spec"]["pgbouncer"]["paused"].as_bool() == Some(true),
                }
            })
            .collect())
    }
}

/// Every Pod's report, read concurrently.
async fn futures_reports(
    target: &Target,
    pods: &[Pod],
    timeout: Duration,
) -> Vec<Result<InstanceStatus, String>> {
    let mut tasks = Vec::new();
    for pod in pods {
        let target = target.clone();
        let name = pod.metadata.name.clone().unwrap_or_default();
        let running = pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running");
        tasks.push(tokio::spawn(async move {
            if !running {
                return Err("the Pod is not running".to_string());
            }
            target.instance_report(&name, timeout).await
        }));
    }
    let mut out = Vec::new();
    for task in tasks {
        out.push(task.await.unwrap_or_else(|e| Err(e.to_string())));
    }
    out
}

/// What a Pod alone says about its instance: the role label, readiness, and what keeps it
/// from running.
fn facts_from_pod(pod: &Pod) -> InstanceFacts {
    let labels = pod.metadata.labels.clone().unwrap_or_default();
    let role = labels
        .get(crate::labels::INSTANCE_ROLE)
        .or_else(|| labels.get(crate::labels::LEGACY_ROLE))
        .cloned();
    let status = pod.status.clone().unwrap_or_default();
    let ready = status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "Ready")
        .map(|c| c.status == "True");
    let phase = status.phase.unwrap_or_else(|| "Pending".to_string());
    let waiting = status
        .container_statuses
        .iter()
        .flatten()
        .find(|c| c.name == "postgres")
        .and_then(|c| c.state.as_ref())
        .and_then(|s| s.waiting.as_ref())
        .and_then(|w| w.reason.clone());
    let problem = match (phase.as_str(), waiting) {
        (_, Some(reason)) => Some(reason),
        ("Running", None) => None,
        (other, None) => Some(format!("Pod {other}")),
    };
    InstanceFacts {
        name: pod.metadata.name.clone().unwrap_or_default(),
        role,
        ready: ready.or(Some(false)),
        problem,
        ..InstanceFacts::default()
    }
}
