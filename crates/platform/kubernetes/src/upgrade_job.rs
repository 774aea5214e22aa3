//! The major-upgrade Job `NAME-N-major-upgrade` (CloudNativePG 1.26's shape): while every
//! instance pod is gone, one pod mounts the primary's volumes and runs `pg_upgrade` on its data.
//!
//! The new image has only the new major, so the pod's init containers are: the manager copied
//! from the operator image (as in an instance pod), then the *old* image copying its PostgreSQL
//! installation into the scratch volume (`instance prepare-upgrade`); the container, in the new
//! image, runs `instance upgrade` with those old binaries. What the attempt is (from, to, the
//! instance, the restart annotation it answers) is the Job's annotation, so the operator reads
//! its upgrade back from the API alone; a failure is the container's termination message
//! (`FallbackToLogsOnError`: the end of its log, where the manager says why).

use crate::error::Result;
use crate::labels::{self, map, Base};
use crate::pod::{
    bootstrap_container, image_pull_secrets, instance_env, mount, postgres_image, volumes,
    CONTROLLER_MOUNT, MANAGER_PATH, PGDATA, SCRATCH_VOLUME,
};
use crate::security::{container_security, pod_security, seccomp};
use crate::{names, OperatorSettings};
use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{Container, PodSpec, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use pgherd_api::Cluster;
use pgherd_controller::major_upgrade::UpgradeAttempt;

/// CloudNativePG's label naming what a Job of a cluster is for.
pub const JOB_ROLE: &str = "cnpg.io/jobRole";
/// Its value on the major-upgrade Job.
pub const MAJOR_UPGRADE_ROLE: &str = "major-upgrade";
/// The attempt the Job carries out (JSON of [`UpgradeAttempt`]).
pub const ATTEMPT_ANNOTATION: &str = "pgherd.io/majorUpgrade";
/// The init container copying the old image's PostgreSQL.
pub const PREPARE_CONTAINER: &str = "prepare-upgrade";
/// The container running `pg_upgrade`.
pub const UPGRADE_CONTAINER: &str = "pg-upgrade";
/// Where the old major's installation is copied.
pub const OLD_BINARIES: &str = "/controller/old";

/// The Job's name: `INSTANCE-major-upgrade`, or `INSTANCE-upgrade` when that would pass the
/// 63 characters the Job's pod label allows (the longest cluster names).
pub fn job_name(instance: &str) -> String {
    let long = format!("{instance}-major-upgrade");
    if long.len() <= names::MAX_LABEL {
        long
    } else {
        format!("{instance}-upgrade")
    }
}

/// The Job upgrading `attempt.instance`'s data; `cluster` asks for the new image.
pub fn major_upgrade_job(
    cluster: &Cluster,
    operator: &OperatorSettings,
    attempt: &UpgradeAttempt,
) -> Result<Job> {
    let base = Base::of_cluster(cluster)?;
    let instance = attempt.instance.as_str();
    let name = job_name(instance);
    let spec = &cluster.spec;
    let security = container_security(&base, seccomp(cluster), spec.security_context.as_ref())?;
    let (pod_volumes, mounts) = volumes(&base, cluster, instance)?;
    let scratch = vec![mount(SCRATCH_VOLUME, CONTROLLER_MOUNT)];
    let prepare = Container {
        name: PREPARE_CONTAINER.to_string(),
        image: Some(attempt.from.image.clone()),
        image_pull_policy: spec.image_pull_policy.clone(),
        command: Some(
            [
                MANAGER_PATH,
                "instance",
                "prepare-upgrade",
                "--into",
                OLD_BINARIES,
            ]
            .map(String::from)
            .to_vec(),
        ),
        volume_mounts: Some(scratch),
        resources: spec.resources.clone(),
        security_context: Some(security.clone()),
        termination_message_policy: Some("FallbackToLogsOnError".into()),
        ..Container::default()
    };
    let mut env = instance_env(&base, cluster, instance);
    // Plain text: the end of the log is the failure the operator shows.
    env.retain(|e| e.name != "PGHERD_LOG_FORMAT");
    let upgrade = Container {
        name: UPGRADE_CONTAINER.to_string(),
        image: Some(postgres_image(cluster)?),
        image_pull_policy: spec.image_pull_policy.clone(),
        command: Some(
            [
                MANAGER_PATH,
                "instance",
                "upgrade",
                "--pgdata",
                PGDATA,
                "--from-major",
                &attempt.from.major_version.to_string(),
                "--old-binaries",
                OLD_BINARIES,
                "--to-major",
                &attempt.to.major_version.to_string(),
            ]
            .map(String::from)
            .to_vec(),
        ),
        env: Some(env),
        env_from: spec.env_from.clone(),
        resources: spec.resources.clone(),
        security_context: Some(security.clone()),
        volume_mounts: Some(mounts),
        termination_message_policy: Some("FallbackToLogsOnError".into()),
        ..Container::default()
    };
    let affinity = spec.affinity.as_ref();
    let pod_spec = PodSpec {
        restart_policy: Some("Never".into()),
        service_account_name: Some(crate::rbac::cluster_service_account_name(cluster)),
        automount_service_account_token: Some(false),
        scheduler_name: spec.scheduler_name.clone(),
        priority_class_name: spec.priority_class_name.clone(),
        node_selector: affinity.and_then(|a| a.node_selector.clone()),
        tolerations: affinity.and_then(|a| a.tolerations.clone()),
        image_pull_secrets: image_pull_secrets(cluster),
        security_context: Some(pod_security(&base, cluster)?),
        init_containers: Some(vec![
            bootstrap_container(operator, spec.resources.clone(), &security),
            prepare,
        ]),
        containers: vec![upgrade],
        volumes: Some(pod_volumes),
        ..PodSpec::default()
    };
    let mut job_labels = labels::cluster_labels(cluster, "database");
    job_labels.extend(map([
        (labels::INSTANCE_NAME, instance),
        (JOB_ROLE, MAJOR_UPGRADE_ROLE),
    ]));
    let attempt_json = serde_json::to_string(attempt).unwrap_or_default();
    let metadata = base.meta(
        &name,
        job_labels.clone(),
        map([(ATTEMPT_ANNOTATION, &attempt_json)]),
    )?;
    Ok(Job {
        metadata,
        spec: Some(JobSpec {
            backoff_limit: Some(0),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(job_labels),
                    ..ObjectMeta::default()
                }),
                spec: Some(pod_spec),
            },
            ..JobSpec::default()
        }),
        status: None,
    })
}

/// The attempt a Job of this module carries out.
pub fn attempt_of(job: &Job) -> Option<UpgradeAttempt> {
    let text = job.metadata.annotations.as_ref()?.get(ATTEMPT_ANNOTATION)?;
    serde_json::from_str(text).ok()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use pgherd_api::cluster::ImageInfo;

    fn attempt() -> UpgradeAttempt {
        let info = |major: i64| ImageInfo {
            image: format!("ghcr.io/cloudnative-pg/postgresql:{major}"),
            major_version: major,
        };
        UpgradeAttempt {
            from: info(15),
            to: info(18),
            instance: "pg-1".into(),
            retry_token: String::new(),
            failure: None,
        }
    }

    #[test]
    fn the_old_image_copies_its_postgres_and_the_new_one_upgrades() {
        let mut cluster = Cluster::new("pg", Default::default());
        cluster.metadata.namespace = Some("default".into());
        cluster.metadata.uid = Some("u".into());
        cluster.spec.image_name = Some("ghcr.io/cloudnative-pg/postgresql:18".into());
        let job = major_upgrade_job(&cluster, &OperatorSettings::new("op:1"), &attempt()).unwrap();
        assert_eq!(job.metadata.name.as_deref(), Some("pg-1-major-upgrade"));
        assert_eq!(attempt_of(&job), Some(attempt()));
        let pod = job.spec.unwrap().template.spec.unwrap();
        let init = pod.init_containers.unwrap();
        assert_eq!(
            init[1].image.as_deref(),
            Some("ghcr.io/cloudnative-pg/postgresql:15")
        );
        let main = &pod.containers[0];
        assert_eq!(
            main.image.as_deref(),
            Some("ghcr.io/cloudnative-pg/postgresql:18")
        );
        let command = main.command.clone().unwrap().join(" ");
        assert!(
            command.ends_with("--from-major 15 --old-binaries /controller/old --to-major 18"),
            "{command}"
        );
        // The primary's data volume is mounted where the instance pod mounts it.
        assert!(pod.volumes.unwrap().iter().any(|v| v
            .persistent_volume_claim
            .as_ref()
            .map(|c| c.claim_name.as_str())
            == Some("pg-1")));
    }

    #[test]
    fn the_longest_instance_names_get_a_shorter_job_name() {
        let instance = format!("{}-12", "c".repeat(50));
        assert!(job_name(&instance).len() <= names::MAX_LABEL);
        assert_eq!(job_name("pg-1"), "pg-1-major-upgrade");
    }
}
