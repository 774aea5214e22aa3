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
use crate::upgrade_job::{
    attempt_of, job_name, major_upgrade_job, JOB_ROLE, MAJOR_UPGRADE_ROLE, UPGRADE_CONTAINER,
};
use crate::{labels, OperatorSettings};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ContainerStatus, Pod};
use kube::api::{DeleteParams, ListParams, PostParams, PropagationPolicy};
use kube::{Api, Client};
use pgherd_api::cluster::ImageInfo;
use pgherd_api::Cluster;
use pgherd_controller::major_upgrade::{
    decide, failed_reason, upgrading_reason, JobState, Step, UpgradeAttempt, UpgradeFacts,
};

/// What to do about a Job that waits.
const WAITING_HINT: &str =
    "fix it, or set the image back to the data's major (nothing has changed the data yet)";

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
    let job_pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let job_pods = job_pods
        .list(&ListParams::default().labels(&selector))
        .await?
        .items;
    let state = job_state(job.as_ref(), &job_pods);
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
    // A Job under way upgrades to its own target, whatever the spec asks for now.
    let target = attempt
        .as_ref()
        .filter(|_| matches!(state, JobState::Running | JobState::Pending(_)))
        .map_or_else(|| wanted.clone(), |a| a.to.clone());
    let under_way = |event: Option<OperatorEvent>| Upgrade::UnderWay {
        reason: upgrading_reason(target.major_version),
        to: target.clone(),
        event,
    };
    let waiting_for = |why: String| Upgrade::UnderWay {
        reason: format!(
            "{}: {why}; {WAITING_HINT}",
            upgrading_reason(target.major_version)
        ),
        to: target.clone(),
        event: None,
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
        Step::Cancel => {
            // Nothing of it has touched the data: it goes, with its pods, before anything
            // starts on that data (a pass finds its pods until they are gone).
            tracing::info!(
                "{namespace}/{name}: the major upgrade Job is no longer asked for: deleting it"
            );
            if let Some(stale) = &job {
                delete_job(&jobs, stale).await?;
            }
            let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
            for pod in &job_pods {
                super::pods::delete_gracefully(&pods, pod).await?;
            }
            Ok(under_way(None))
        }
        Step::Upgrade {
            waiting: Some(why), ..
        } => Ok(waiting_for(why)),
        Step::Upgrade { instance, .. } => {
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
                Some(_) if matches!(state, JobState::Running | JobState::Pending(_)) => {}
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

/// The upgrade's state from its Job (its conditions) and the pods of the cluster's upgrade
/// Jobs: a failure's words come from its pod; a Job not finished is `Running` once any of
/// its pods has started the upgrade container, else `Pending` (saying what its pods wait
/// for). Pods left by a deleted Job count as the Job's: nothing starts on the data before
/// they are gone.
fn job_state(job: Option<&Job>, pods: &[Pod]) -> JobState {
    let condition = |kind: &str| {
        job.and_then(|j| j.status.as_ref())
            .and_then(|s| s.conditions.as_ref())
            .into_iter()
            .flatten()
            .any(|c| c.type_ == kind && c.status == "True")
    };
    if condition("Complete") {
        return JobState::Succeeded;
    }
    if let Some(job) = job.filter(|_| condition("Failed")) {
        let uid = job.metadata.uid.clone().unwrap_or_default();
        let name = job.metadata.name.as_deref().unwrap_or_default();
        let message = pods
            .iter()
            .filter(|p| {
                p.metadata
                    .owner_references
                    .iter()
                    .flatten()
                    .any(|o| o.uid == uid)
            })
            .find_map(failure_of);
        return JobState::Failed(
            message.unwrap_or_else(|| format!("Job {name} failed; see kubectl logs job/{name}")),
        );
    }
    let live: Vec<&Pod> = pods
        .iter()
        .filter(|p| {
            !matches!(
                p.status.as_ref().and_then(|s| s.phase.as_deref()),
                Some("Succeeded" | "Failed")
            )
        })
        .collect();
    if live.iter().any(|p| upgrade_started(p)) {
        return JobState::Running;
    }
    if job.is_none() && live.is_empty() {
        return JobState::Absent;
    }
    JobState::Pending(live.iter().find_map(|p| waits_for(p)).unwrap_or_default())
}

/// The upgrade container of `pod` runs or ran (it may have changed the data).
fn upgrade_started(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .into_iter()
        .flatten()
        .filter(|c| c.name == UPGRADE_CONTAINER)
        .flat_map(|c| [c.state.as_ref(), c.last_state.as_ref()])
        .flatten()
        .any(|s| s.running.is_some() || s.terminated.is_some())
}

/// The statuses of `pod`'s init containers, then of its containers.
fn containers(pod: &Pod) -> impl Iterator<Item = &ContainerStatus> {
    let status = pod.status.as_ref();
    let init = status.and_then(|s| s.init_container_statuses.as_ref());
    let main = status.and_then(|s| s.container_statuses.as_ref());
    init.into_iter().flatten().chain(main.into_iter().flatten())
}

/// What keeps a Job's pod from starting, in the kubelet's words (an image that cannot be
/// pulled, a container that cannot be made).
fn waits_for(pod: &Pod) -> Option<String> {
    containers(pod).find_map(|c| {
        let waiting = c.state.as_ref()?.waiting.as_ref()?;
        let reason = waiting.reason.as_deref()?;
        if matches!(reason, "ContainerCreating" | "PodInitializing") {
            return None;
        }
        let message = waiting.message.as_deref().unwrap_or_default();
        Some(format!(
            "pod {} waits: container {} ({}) {reason}{}{message}",
            pod.metadata.name.as_deref().unwrap_or_default(),
            c.name,
            c.image,
            if message.is_empty() { "" } else { ": " },
        ))
    })
}

/// What a failed container of the Job's pod said: the manager's error (`pgherd: …`, to the
/// end of its log: a failed command's output follows it), else its log's last line.
fn failure_of(pod: &Pod) -> Option<String> {
    containers(pod).find_map(|c| {
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

/// Whether `cluster` has a major-upgrade Job (of any state).
pub(super) async fn jobs_exist(client: &Client, cluster: &Cluster) -> Result<bool, OperatorError> {
    let (jobs, selector) = upgrade_jobs(client, cluster);
    let list = jobs
        .list(&ListParams::default().labels(&selector).limit(1))
        .await?;
    Ok(!list.items.is_empty())
}

/// A succeeded Job goes once `cluster`'s stored status records the major it upgraded to (an
/// operator restarted in between finds it again).
pub(super) async fn tidy(client: &Client, cluster: &Cluster) -> Result<(), OperatorError> {
    let recorded = cluster
        .status
        .as_ref()
        .and_then(|s| s.pg_data_image_info.as_ref())
        .map(|d| d.major_version);
    let (jobs, selector) = upgrade_jobs(client, cluster);
    for job in jobs.list(&ListParams::default().labels(&selector)).await? {
        let done = job
            .status
            .as_ref()
            .is_some_and(|s| s.succeeded.unwrap_or(0) > 0);
        let recorded_to = attempt_of(&job).map(|a| a.to.major_version) == recorded;
        if done && recorded_to && recorded.is_some() {
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

    fn pod(phase: &str, upgrade: serde_json::Value) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "pg-1-major-upgrade-x"},
            "status": {"phase": phase, "containerStatuses": [{
                "name": UPGRADE_CONTAINER, "image": "img:17", "imageID": "", "ready": false,
                "restartCount": 0, "state": upgrade
            }]}
        }))
        .unwrap()
    }

    #[test]
    fn a_job_runs_once_its_upgrade_container_started_and_waits_before() {
        let job: Job =
            serde_json::from_value(serde_json::json!({"metadata": {"name": "j"}})).unwrap();
        assert_eq!(job_state(None, &[]), JobState::Absent);
        assert_eq!(job_state(Some(&job), &[]), JobState::Pending(String::new()));
        let pulling = pod(
            "Pending",
            serde_json::json!({"waiting": {"reason": "ImagePullBackOff", "message": "no such image"}}),
        );
        let JobState::Pending(why) = job_state(Some(&job), std::slice::from_ref(&pulling)) else {
            panic!("not pending");
        };
        assert!(
            why.contains("ImagePullBackOff: no such image") && why.contains("img:17"),
            "{why}"
        );
        // A deleted Job's pod still holds the data back until it is gone.
        assert!(matches!(job_state(None, &[pulling]), JobState::Pending(_)));
        let running = pod("Running", serde_json::json!({"running": {}}));
        assert_eq!(job_state(None, &[running]), JobState::Running);
        let ended = pod(
            "Succeeded",
            serde_json::json!({"terminated": {"exitCode": 0}}),
        );
        assert_eq!(job_state(None, &[ended]), JobState::Absent);
    }

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
