//! In-place major upgrades on the local platform: the facts for
//! [`pgherd_controller::major_upgrade::decide`] (the data's image from the status, which
//! processes run, the job's pid and result files) and its steps carried out — instance
//! managers stopped, `pgherd instance upgrade` started as the PostgreSQL user on the primary's
//! instance (CloudNativePG's major-upgrade job), the outcome recorded. The replicas clone the
//! upgraded primary by themselves (their managers set data of an older major aside).

use crate::control::{ClusterTask, Prelude};
use crate::instances::{kill_instance, running_pid, spawn_detached, stop, MANAGER_PID};
use crate::status::LocalClusterStatus;
use crate::LocalError;
use pgherd_api::cluster::ImageInfo;
use pgherd_api::Cluster;
use pgherd_controller::major_upgrade::{
    decide, failed_reason, upgrading_reason, JobState, Step, UpgradeAttempt, UpgradeFacts,
};
use pgherd_controller::phase;
use pgherd_instance_manager::major_upgrade::{set_aside_name, UpgradeResult, RESULT_FILE};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The job's pid file, in the instance directory.
const JOB_PID: &str = "major-upgrade.pid";

/// What the pass does about upgrades.
#[derive(Debug)]
pub(crate) enum Upgrade {
    /// The controller's pass runs, on the data's major; `problem` is shown when set.
    Continue {
        data: Option<ImageInfo>,
        problem: Option<String>,
        attempt: Option<UpgradeAttempt>,
    },
    /// An upgrade is under way: this is the pass's status.
    UnderWay(Box<LocalClusterStatus>),
}

/// Decide and carry out this pass's upgrade step.
pub(crate) async fn step(
    task: &mut ClusterTask,
    cluster: &Cluster,
    prelude: &Prelude,
) -> Result<Upgrade, LocalError> {
    let previous = prelude.previous.as_ref();
    let attempt = previous.and_then(|p| p.major_upgrade.clone());
    let (Some(major), None) = (cluster.major_version(), &task.plane.postgres_bin) else {
        // An explicit binaries directory decides the major by itself.
        return Ok(Upgrade::Continue {
            data: None,
            problem: None,
            attempt: None,
        });
    };
    let wanted = ImageInfo {
        image: cluster.image_name(),
        major_version: i64::from(major.0),
    };
    let data = previous
        .and_then(|p| p.pg_data_image_info.clone())
        .or_else(|| data_of_existing(&prelude.instances_dir, &wanted));
    let running: Vec<String> = instance_dirs(&prelude.instances_dir)
        .into_iter()
        .filter(|(name, dir)| {
            !task.runtime.removing.contains_key(name) && !crate::instances::is_dead(dir)
        })
        .map(|(name, _)| name)
        .collect();
    let job = attempt
        .as_ref()
        .map_or(JobState::Absent, |a| job_state(&prelude.instances_dir, a));
    let facts = UpgradeFacts {
        data: data.as_ref(),
        wanted: &wanted,
        attempt: attempt.as_ref(),
        retry_token: &prelude.restart_annotation,
        primary: previous.and_then(|p| p.current_primary.as_deref()),
        running: &running,
        job,
    };
    let step = decide(&facts);
    let base = || under_way(previous, cluster, &wanted);
    match step {
        Step::Run { data, problem } => Ok(Upgrade::Continue {
            data: Some(data),
            problem,
            // A failed attempt is kept while it explains the problem; a finished one until
            // its old data is removed (see [`after_pass`]).
            attempt,
        }),
        Step::Stop(instances) => {
            tracing::info!(
                "major upgrade to {}: stopping every instance",
                wanted.major_version
            );
            let dirs: Vec<PathBuf> = instances
                .iter()
                .map(|i| prelude.instances_dir.join(i))
                .collect();
            let _ = tokio::task::spawn_blocking(move || {
                for dir in dirs {
                    if let Some(pid) = running_pid(&dir.join(MANAGER_PID)) {
                        if stop(pid, Duration::from_secs(120)) {
                            continue;
                        }
                    }
                    if !crate::instances::is_dead(&dir) {
                        kill_instance(&dir, Duration::from_secs(10));
                    }
                }
            })
            .await;
            task.runtime.since.clear();
            Ok(Upgrade::UnderWay(Box::new(base())))
        }
        // A local job is a process: it runs or it does not, it never waits for an image.
        Step::Cancel => Ok(Upgrade::UnderWay(Box::new(base()))),
        Step::Upgrade { instance, .. } => {
            let dir = prelude.instances_dir.join(&instance);
            let mut status = base();
            if running_pid(&dir.join(JOB_PID)).is_none() {
                let Some(from) = data.clone() else {
                    return Ok(Upgrade::UnderWay(Box::new(status)));
                };
                start_job(task, &dir, &wanted)?;
                status.major_upgrade = Some(UpgradeAttempt {
                    from,
                    to: wanted.clone(),
                    instance,
                    retry_token: prelude.restart_annotation.clone(),
                    failure: None,
                });
            }
            Ok(Upgrade::UnderWay(Box::new(status)))
        }
        Step::Finish { data } => {
            tracing::info!(
                "major upgrade done: the data is PostgreSQL {}; the replicas clone it again",
                data.major_version
            );
            task.runtime.since.clear();
            task.runtime.bin_dir = None;
            Ok(Upgrade::Continue {
                data: Some(data),
                problem: None,
                attempt,
            })
        }
        Step::Failed { message } => {
            tracing::error!(
                "major upgrade to {} failed: {message}",
                wanted.major_version
            );
            let mut status = base();
            if let (Some(a), Some(d)) = (&attempt, &data) {
                status.phase_reason = Some(failed_reason(d, &wanted, &message));
                status.major_upgrade = Some(UpgradeAttempt {
                    failure: Some(message),
                    ..a.clone()
                });
            }
            Ok(Upgrade::UnderWay(Box::new(status)))
        }
    }
}

/// The status of a pass taken by the upgrade: the previous one, nothing ready, CloudNativePG's
/// phase.
fn under_way(
    previous: Option<&LocalClusterStatus>,
    cluster: &Cluster,
    wanted: &ImageInfo,
) -> LocalClusterStatus {
    let mut status = previous.cloned().unwrap_or_else(|| LocalClusterStatus {
        name: cluster.metadata.name.clone().unwrap_or_default(),
        namespace: cluster
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| crate::state::DEFAULT_NAMESPACE.to_string()),
        ..LocalClusterStatus::default()
    });
    status.phase = phase::MAJOR_UPGRADE.to_string();
    status.phase_reason = Some(upgrading_reason(wanted.major_version));
    status.ready_instances = 0;
    for i in &mut status.instances_status {
        i.ready = false;
        i.role = "down".into();
        i.pid = None;
    }
    status
}

/// Start `pgherd instance upgrade` on the instance in `dir`, as the PostgreSQL user.
fn start_job(task: &ClusterTask, dir: &Path, wanted: &ImageInfo) -> Result<(), LocalError> {
    let spec = dir.join("instance.json").display().to_string();
    let to = wanted.major_version.to_string();
    tracing::info!(
        "major upgrade to {}: running pg_upgrade on {} (log: {})",
        wanted.major_version,
        dir.display(),
        dir.join("major-upgrade.log").display()
    );
    spawn_detached(
        &task.plane.exe,
        &["instance", "upgrade", "--spec", &spec, "--to-major", &to],
        &dir.join("major-upgrade.log"),
        &dir.join(JOB_PID),
        Some(&task.plane.user),
        None,
    )?;
    Ok(())
}

/// The job of `attempt`, as its files say.
fn job_state(instances_dir: &Path, attempt: &UpgradeAttempt) -> JobState {
    let dir = instances_dir.join(&attempt.instance);
    if running_pid(&dir.join(JOB_PID)).is_some() {
        return JobState::Running;
    }
    let result: Option<UpgradeResult> = pgherd_safe_fs::read_file(&dir.join(RESULT_FILE))
        .ok()
        .flatten()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok());
    match result {
        Some(r) if i64::from(r.to_major) == attempt.to.major_version => {
            if r.ok {
                JobState::Succeeded
            } else {
                JobState::Failed(r.message)
            }
        }
        // Started and gone without a word (killed): a failure, the data untouched.
        None if attempt.failure.is_none() && dir.join("major-upgrade.log").exists() => {
            JobState::Failed(format!(
                "the upgrade job ended without a result; see {}",
                dir.join("major-upgrade.log").display()
            ))
        }
        _ => JobState::Absent,
    }
}

/// The instance directories of the cluster, by name.
fn instance_dirs(instances_dir: &Path) -> Vec<(String, PathBuf)> {
    std::fs::read_dir(instances_dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().is_dir())
        .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
        .collect()
}

/// A cluster made before pgherd recorded `pgDataImageInfo`: its data's major from `PG_VERSION`.
fn data_of_existing(instances_dir: &Path, wanted: &ImageInfo) -> Option<ImageInfo> {
    let major: i64 = instance_dirs(instances_dir).iter().find_map(|(_, dir)| {
        let text = pgherd_safe_fs::read_file(&dir.join("pgdata/PG_VERSION")).ok()??;
        String::from_utf8_lossy(&text).trim().parse().ok()
    })?;
    Some(ImageInfo {
        image: if major == wanted.major_version {
            wanted.image.clone()
        } else {
            format!("(PostgreSQL {major})")
        },
        major_version: major,
    })
}

/// After a pass that ran: the data's image and a problem go into the status. A finished
/// upgrade's attempt is kept until the instances' managers have removed the old data (they do
/// once the upgraded cluster was healthy: `discard_older_majors` in their specs).
pub(crate) fn after_pass(
    status: &mut LocalClusterStatus,
    instances_dir: &Path,
    data: Option<ImageInfo>,
    problem: Option<String>,
    attempt: Option<UpgradeAttempt>,
) {
    status.pg_data_image_info = data.clone();
    status.major_upgrade = attempt;
    if let Some(problem) = problem {
        if status.phase == phase::HEALTHY {
            status.phase = phase::MAJOR_UPGRADE.to_string();
        }
        status.phase_reason = Some(problem);
        return;
    }
    let done = status
        .major_upgrade
        .as_ref()
        .filter(|a| a.failure.is_none() && data.as_ref().is_some_and(|d| *d == a.to));
    if let Some(a) = done {
        let old = u32::try_from(a.from.major_version).unwrap_or_default();
        let kept = instance_dirs(instances_dir)
            .iter()
            .any(|(_, dir)| std::fs::symlink_metadata(dir.join(set_aside_name(old))).is_ok());
        if !kept {
            status.major_upgrade = None;
        }
    }
}
