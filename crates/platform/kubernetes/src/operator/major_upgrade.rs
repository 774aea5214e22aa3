//! In-place major upgrades on Kubernetes (CloudNativePG 1.26's): the facts for
//! [`pgherd_controller::major_upgrade::decide`] — the one decision the local platform also
//! takes — read from the API alone: the data's image (`status.pgDataImageInfo`), the instance
//! pods, and the major-upgrade Job (its attempt in its annotation, its outcome in its
//! conditions and its pod's termination message). The steps: every instance pod deleted (the
//! primary stops cleanly; the PVCs stay), the Job run on the primary's volumes, then the pass
//! goes on with the new image: the primary starts on the upgraded data, the replicas set their
//! old data aside and clone it again, and once the cluster is healthy the managers remove the
//! old copies. A failed Job leaves the data as it was: the cluster runs its old major again and
//! says why; a `restart` retries.

use super::data_major::Held;
use super::events::OperatorEvent;
use super::OperatorError;
use crate::upgrade_job::{attempt_of, job_name, major_upgrade_job, JOB_ROLE, MAJOR_UPGRADE_ROLE};
use crate::{labels, OperatorSettings};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{DeleteParams, ListParams, PostParams, PropagationPolicy};
use kube::{Api, Client};
use pgherd_api::cluster::ImageInfo;
use pgherd_api::Cluster;
use pgherd_controller::major_upgrade::{
    decide, failed_reason, upgrading_reason, JobState, Step, UpgradeAttempt, UpgradeFacts,
};

/// What the pass does about the upgrade.
#[derive(Debug)]
pub(super) enum Upgrade {
    /// The controller's pass runs `cluster` (the data's image while the upgrade waits or
    /// failed, the new one once done); `data` is the data's image now; `problem` is said.
    Continue {
        cluster: Box<Cluster>,
        data: ImageInfo,
        problem: Option<String>,
        /// To publish (the upgrade completed).
        event: Option<OperatorEvent>,
    },
    /// The pass is the upgrade's: the status says `reason`, the target `to`; `event` to
    /// publish (the Job started).
    UnderWay {
        reason: String,
        to: ImageInfo,
        event: Option<OperatorEvent>,
    },
}

/// Decide and carry out this pass's upgrade step for `resolved` (its image resolved), held to
/// its data's major in `held`, which asks for `wanted`.
pub(super) async fn step(
    client: &Client,
    settings: &OperatorSettings,
    resolved: &Cluster,
    held: &Held,
    wanted: &ImageInfo,
) -> Result<Upgrade, OperatorError> {
    let namespace = resolved.metadata.namespace.as_deref().unwrap_or("default");
    let name = resolved.metadata.name.as_deref().unwrap_or_default();
    let (jobs, selector) = upgrade_jobs(client, resolved);
    let job = jobs
        .list(&ListParams::default().labels(&selector))
        .await?
        .items
        .into_iter()
        .filter(|j| j.metadata.deletion_timestamp.is_none())
        .max_by_key(|j| j.metadata.creation_timestamp.clone());
    let mut attempt = job.as_ref().and_then(attempt_of);
    let state = match &job {
        None => JobState::Absent,
        Some(job) => job_state(client, namespace, &selector, job).await?,
    };
    if let (JobState::Failed(message), Some(a)) = (&state, attempt.as_mut()) {
        // Recorded with its attempt, so the decision runs the old major (and says why) until
        // a retry, not the upgrade again.
        a.failure = Some(message.clone());
    }
    let instances = super::pods::list(client, namespace, name).await?;
    let running: Vec<String> = instances
        .iter()
        .filter(|(_, objects)| objects.pod.is_some())
        .map(|(instance, _)| instance.clone())
        .collect();
    let retry_token = resolved
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(crate::pod::RESTARTED_AT))
        .cloned()
        .unwrap_or_default();
    let status = resolved.status.as_ref();
    let facts = UpgradeFacts {
        data: held.data.as_ref(),
        wanted,
        attempt: attempt.as_ref(),
        retry_token: &retry_token,
        primary: status.and_then(|s| s.current_primary.as_deref()),
        running: &running,
        job: state.clone(),
    };
    let under_way = |event: Option<OperatorEvent>| Upgrade::UnderWay {
        reason: upgrading_reason(wanted.major_version),
        to: wanted.clone(),
        event,
    };
    match decide(&facts) {
        Step::Run { data, problem } => Ok(Upgrade::Continue {
            cluster: Box::new(if data.major_version == wanted.major_version {
                resolved.clone()
            } else {
                held.cluster.clone()
            }),
            data,
            problem,
            event: None,
        }),
        Step::Failed { message } => {
            let data = held.data.clone().unwrap_or_else(|| wanted.clone());
            Ok(Upgrade::Continue {
                cluster: Box::new(held.cluster.clone()),
                problem: Some(failed_reason(&data, wanted, &message)),
                data,
                event: None,
            })
        }
        Step::Stop(stopping) => {
            let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
            let why = format!("for the major upgrade to {}", wanted.major_version);
            for objects in stopping.iter().filter_map(|i| instances.get(i)) {
                objects
                    .delete_pod(&pods, &format!("{namespace}/{name}"), &why)
                    .await?;
            }
            Ok(under_way(None))
        }
        Step::Upgrade { instance } => {
            let Some(from) = held.data.clone() else {
                return Ok(under_way(None));
            };
            let wanted_attempt = UpgradeAttempt {
                from,
                to: wanted.clone(),
                instance,
                retry_token,
                failure: None,
            };
            let mut event = None;
            match &job {
                Some(_) if state == JobState::Running => {}
                Some(stale) => {
                    // An earlier attempt's Job (failed, and now retried): gone first, as the
                    // new one takes its name.
                    delete_job(&jobs, stale).await?;
                }
                None => {
                    let job = major_upgrade_job(resolved, settings, &wanted_attempt)?;
                    let note = format!(
                        "Upgrading from PostgreSQL {} to {}: Job {} runs pg_upgrade on {}'s data",
                        wanted_attempt.from.major_version,
                        wanted.major_version,
                        job_name(&wanted_attempt.instance),
                        wanted_attempt.instance
                    );
                    tracing::info!("{namespace}/{name}: {note}");
                    match jobs.create(&PostParams::default(), &job).await {
                        Ok(_) => {}
                        Err(kube::Error::Api(e)) if e.code == 409 => {}
                        Err(e) => return Err(e.into()),
                    }
                    let completed = false;
                    event = Some(OperatorEvent::MajorUpgrade { note, completed });
                }
            }
            Ok(under_way(event))
        }
        Step::Finish { data } => {
            // The Job stays until the status says the new major ([`tidy`]): a pass started
            // from the Cluster as it was before this one's status write must find it, or it
            // would take the data for the old major and stop the pods again.
            let note = format!(
                "Upgraded to PostgreSQL {}: the instances start on the new image, the replicas clone the upgraded primary",
                data.major_version
            );
            tracing::info!("{namespace}/{name}: {note}");
            let completed = true;
            Ok(Upgrade::Continue {
                cluster: Box::new(resolved.clone()),
                data,
                problem: None,
                event: Some(OperatorEvent::MajorUpgrade { note, completed }),
            })
        }
    }
}

/// The Job's outcome: its conditions, and a failure's words from its pod.
async fn job_state(
    client: &Client,
    namespace: &str,
    selector: &str,
    job: &Job,
) -> Result<JobState, OperatorError> {
    let condition = |kind: &str| {
        job.status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .into_iter()
            .flatten()
            .any(|c| c.type_ == kind && c.status == "True")
    };
    if condition("Complete") {
        return Ok(JobState::Succeeded);
    }
    if !condition("Failed") {
        return Ok(JobState::Running);
    }
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let uid = job.metadata.uid.clone().unwrap_or_default();
    let message = pods
        .list(&ListParams::default().labels(selector))
        .await?
        .items
        .iter()
        .filter(|p| {
            p.metadata
                .owner_references
                .iter()
                .flatten()
                .any(|o| o.uid == uid)
        })
        .find_map(failure_of);
    Ok(JobState::Failed(message.unwrap_or_else(|| {
        format!(
            "Job {} failed; see kubectl logs job/{}",
            job.metadata.name.as_deref().unwrap_or_default(),
            job.metadata.name.as_deref().unwrap_or_default()
        )
    })))
}

/// What a failed container of the Job's pod said: the manager's error (`pgherd: …`, to the
/// end of its log: a failed command's output follows it), else its log's last line.
fn failure_of(pod: &Pod) -> Option<String> {
    let status = pod.status.as_ref()?;
    status
        .init_container_statuses
        .iter()
        .flatten()
        .chain(status.container_statuses.iter().flatten())
        .find_map(|c| {
            let terminated = c.state.as_ref()?.terminated.as_ref()?;
            if terminated.exit_code == 0 {
                return None;
            }
            let message = terminated.message.as_deref().unwrap_or_default();
            let said = match message.rfind("pgherd: ") {
                Some(at) => message[at + "pgherd: ".len()..]
                    .lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .collect::<Vec<_>>()
                    .join(" / "),
                None => message
                    .lines()
                    .rev()
                    .find(|l| !l.trim().is_empty())?
                    .trim()
                    .to_string(),
            };
            Some(format!("{said} (container {})", c.name))
        })
}

/// Once the status records the upgraded major: the finished Job goes.
pub(super) async fn tidy(client: &Client, cluster: &Cluster) -> Result<(), OperatorError> {
    let (jobs, selector) = upgrade_jobs(client, cluster);
    for job in jobs.list(&ListParams::default().labels(&selector)).await? {
        let done = job
            .status
            .as_ref()
            .is_some_and(|s| s.succeeded.unwrap_or(0) > 0);
        if done {
            delete_job(&jobs, &job).await?;
        }
    }
    Ok(())
}

/// The Jobs of `cluster`'s namespace, and the label selector of its major-upgrade Jobs (and
/// their pods).
fn upgrade_jobs(client: &Client, cluster: &Cluster) -> (Api<Job>, String) {
    let namespace = cluster.metadata.namespace.as_deref().unwrap_or("default");
    let name = cluster.metadata.name.as_deref().unwrap_or_default();
    let selector = format!("{}={name},{JOB_ROLE}={MAJOR_UPGRADE_ROLE}", labels::CLUSTER);
    (Api::namespaced(client.clone(), namespace), selector)
}

async fn delete_job(jobs: &Api<Job>, job: &Job) -> Result<(), OperatorError> {
    let params = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Background),
        ..DeleteParams::default()
    };
    match jobs
        .delete(job.metadata.name.as_deref().unwrap_or_default(), &params)
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_failed_container_says_its_last_line() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "status": {"containerStatuses": [{
                "name": "pg-upgrade", "image": "x", "imageID": "", "ready": false, "restartCount": 0,
                "state": {"terminated": {"exitCode": 1,
                    "message": "INFO upgrading\npgherd: pg_upgrade --check failed:\nextension missing\n"}}
            }]}
        }))
        .unwrap();
        assert_eq!(
            failure_of(&pod).unwrap(),
            "pg_upgrade --check failed: / extension missing (container pg-upgrade)"
        );
    }
}
