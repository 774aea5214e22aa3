//! In-place major upgrades, as CloudNativePG 1.26+ does them: a Cluster whose image names a
//! higher major than its data (`status.pgDataImageInfo`) is stopped, `pg_upgrade` runs on the
//! primary's data (a job), the replicas are cloned again. A downgrade is refused by validation.
//!
//! Pure: the platform supplies the facts ([`UpgradeFacts`]) and carries out the [`Step`]; the
//! data's old copy, the job and the processes are its business.

use crate::phase;
use pgherd_api::cluster::ImageInfo;
use serde::{Deserialize, Serialize};

/// The lowest major an in-place upgrade may go to (CloudNativePG's webhook: upgrading to 14 or
/// 15 would need collation information carried along).
pub const LOWEST_TARGET: i64 = 16;

/// The field that names the major.
pub fn image_field(uses_catalog: bool) -> &'static str {
    if uses_catalog {
        "spec.imageCatalogRef.major"
    } else {
        "spec.imageName"
    }
}

/// What validation says of a Cluster asking for major `wanted` when its data is `data`
/// (`status.pgDataImageInfo` of the stored Cluster): CloudNativePG's `validateImageChange`.
pub fn image_change_errors(data: Option<&ImageInfo>, wanted: i64) -> Vec<String> {
    let Some(data) = data else {
        return Vec::new();
    };
    let mut errors = Vec::new();
    if data.major_version > wanted {
        errors.push(format!(
            "can't downgrade from major {} to {wanted} (the data was made by {}; PostgreSQL cannot go back to an older major: use an image of major {} or newer)",
            data.major_version, data.image, data.major_version
        ));
    }
    if data.major_version < wanted && wanted < LOWEST_TARGET {
        errors.push(format!(
            "major upgrades are only supported to version {LOWEST_TARGET} or higher (the data is major {})",
            data.major_version
        ));
    }
    errors
}

/// The upgrade job, as the platform sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobState {
    /// Not started (or its outcome was for another attempt).
    Absent,
    /// Created, but nothing of it has touched the data yet (its pod waits for an image, or
    /// its preparation runs); the text says what it waits for, when known.
    Pending(String),
    /// Under way: the data may be changing.
    Running,
    Succeeded,
    Failed(String),
}

/// The last upgrade attempt, recorded by the platform beside the cluster's status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UpgradeAttempt {
    pub from: ImageInfo,
    pub to: ImageInfo,
    /// The instance whose data is upgraded.
    pub instance: String,
    /// The restart annotation when it started: a new `restart` retries a failed attempt.
    #[serde(default)]
    pub retry_token: String,
    /// Why it failed, once it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<String>,
}

/// What the platform knows, for one pass.
#[derive(Debug, Clone)]
pub struct UpgradeFacts<'a> {
    /// `status.pgDataImageInfo`: what the data was made with; `None` when there is no data yet.
    pub data: Option<&'a ImageInfo>,
    /// What the spec asks for.
    pub wanted: &'a ImageInfo,
    /// The last attempt, if any.
    pub attempt: Option<&'a UpgradeAttempt>,
    /// The restart annotation now.
    pub retry_token: &'a str,
    /// The primary, whose data is upgraded.
    pub primary: Option<&'a str>,
    /// Instances whose manager or PostgreSQL still runs.
    pub running: &'a [String],
    pub job: JobState,
}

/// What to do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// No upgrade under way: run the data's major (`data`, to record as `pgDataImageInfo`).
    /// `problem` when the spec asks for something the data cannot become (a downgrade that
    /// bypassed validation, a failed upgrade): the cluster keeps running, and says so.
    Run {
        data: ImageInfo,
        problem: Option<String>,
    },
    /// Stop these instances (all of them) before the upgrade.
    Stop(Vec<String>),
    /// Start the upgrade job on this instance's data (or wait for the one running; `waiting`
    /// says what a job that has not started yet waits for).
    Upgrade {
        instance: String,
        waiting: Option<String>,
    },
    /// A job that has not touched the data belongs to an attempt the spec no longer asks for
    /// (the image set back, or changed again): remove it; nothing may start on the data
    /// before it is gone.
    Cancel,
    /// The job succeeded: record `data` as `pgDataImageInfo`, drop the attempt; the replicas
    /// clone the upgraded primary.
    Finish { data: ImageInfo },
    /// The job failed now: record why; the next pass runs the old major.
    Failed { message: String },
}

impl Step {
    /// The phase a pass that takes this step shows (`None`: the plan's own).
    pub fn phase(&self) -> Option<&'static str> {
        match self {
            Step::Run { problem: None, .. } => None,
            _ => Some(phase::MAJOR_UPGRADE),
        }
    }
}

/// CloudNativePG's phase reason while upgrading.
pub fn upgrading_reason(to: i64) -> String {
    format!("Upgrading cluster to major version {to}")
}

/// Decide the next step.
pub fn decide(facts: &UpgradeFacts<'_>) -> Step {
    let wanted = facts.wanted;
    let Some(data) = facts.data else {
        // A new cluster: its data will be made by the image asked for.
        return Step::Run {
            data: wanted.clone(),
            problem: None,
        };
    };
    // A job that finished moved the data: whatever the spec says now, the data is its target.
    if facts.job == JobState::Succeeded {
        if let Some(attempt) = facts
            .attempt
            .filter(|a| a.to.major_version != data.major_version)
        {
            return Step::Finish {
                data: attempt.to.clone(),
            };
        }
    }
    let this_attempt = facts.attempt.filter(|a| {
        a.to == *wanted
            && a.from.major_version == data.major_version
            && a.retry_token == facts.retry_token
    });
    let attempt_instance = || {
        facts
            .attempt
            .map(|a| a.instance.clone())
            .or(facts.primary.map(str::to_string))
            .unwrap_or_default()
    };
    match &facts.job {
        // Whatever the spec says now: the data may be changing, nothing else may touch it.
        JobState::Running => {
            return Step::Upgrade {
                instance: attempt_instance(),
                waiting: None,
            }
        }
        JobState::Pending(why) if this_attempt.is_some() => {
            return Step::Upgrade {
                instance: attempt_instance(),
                waiting: Some(why.clone()).filter(|w| !w.is_empty()),
            }
        }
        JobState::Pending(_) => return Step::Cancel,
        _ => {}
    }
    if wanted.major_version == data.major_version {
        // Same major (a minor update, or an upgrade given up): the image is the new one.
        return Step::Run {
            data: ImageInfo {
                image: wanted.image.clone(),
                major_version: data.major_version,
            },
            problem: None,
        };
    }
    if wanted.major_version < data.major_version {
        return Step::Run {
            data: data.clone(),
            problem: Some(format!(
                "{}: the data is PostgreSQL {}; the cluster keeps running it",
                image_change_errors(Some(data), wanted.major_version).join("; "),
                data.major_version
            )),
        };
    }
    if let Some(failure) = this_attempt.and_then(|a| a.failure.as_ref()) {
        return Step::Run {
            data: data.clone(),
            problem: Some(failed_reason(data, wanted, failure)),
        };
    }
    if let (JobState::Failed(message), Some(_)) = (&facts.job, this_attempt) {
        return Step::Failed {
            message: message.clone(),
        };
    }
    if !facts.running.is_empty() {
        return Step::Stop(facts.running.to_vec());
    }
    match facts.primary {
        Some(primary) => Step::Upgrade {
            instance: primary.to_string(),
            waiting: None,
        },
        None => Step::Run {
            data: data.clone(),
            problem: Some(format!(
                "cannot upgrade to major {}: no primary is known whose data to upgrade",
                wanted.major_version
            )),
        },
    }
}

/// Whether the old data a major upgrade set aside may go (the instances' managers remove it,
/// `InstanceSpec::discard_older_majors`): the cluster's last status says it was healthy on its
/// data's major, which is the one it runs.
pub fn old_data_may_go(phase: Option<&str>, data: Option<&ImageInfo>, major: u32) -> bool {
    phase == Some(phase::HEALTHY) && data.is_some_and(|d| d.major_version == i64::from(major))
}

/// The phase reason after a failed upgrade.
pub fn failed_reason(data: &ImageInfo, wanted: &ImageInfo, failure: &str) -> String {
    format!(
        "major upgrade from {} to {} failed: {failure}. The cluster runs PostgreSQL {} on its unchanged data; fix the cause and retry (`restart` the cluster), or set the image back to a major-{} image",
        data.major_version, wanted.major_version, data.major_version, data.major_version
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(major: i64) -> ImageInfo {
        ImageInfo {
            image: format!("ghcr.io/cloudnative-pg/postgresql:{major}"),
            major_version: major,
        }
    }

    fn facts<'a>(
        data: Option<&'a ImageInfo>,
        wanted: &'a ImageInfo,
        attempt: Option<&'a UpgradeAttempt>,
        running: &'a [String],
        job: JobState,
    ) -> UpgradeFacts<'a> {
        UpgradeFacts {
            data,
            wanted,
            attempt,
            retry_token: "",
            primary: Some("pg-1"),
            running,
            job,
        }
    }

    fn attempt(failure: Option<&str>) -> UpgradeAttempt {
        UpgradeAttempt {
            from: info(15),
            to: info(18),
            instance: "pg-1".into(),
            retry_token: String::new(),
            failure: failure.map(str::to_string),
        }
    }

    #[test]
    fn downgrades_and_old_targets_are_refused_by_validation() {
        assert!(image_change_errors(None, 13).is_empty());
        assert!(image_change_errors(Some(&info(15)), 15).is_empty());
        assert!(image_change_errors(Some(&info(15)), 18).is_empty());
        let down = image_change_errors(Some(&info(18)), 15);
        assert_eq!(down.len(), 1);
        assert!(
            down[0].starts_with("can't downgrade from major 18 to 15"),
            "{down:?}"
        );
        let old = image_change_errors(Some(&info(14)), 15);
        assert!(
            old[0].contains("only supported to version 16 or higher"),
            "{old:?}"
        );
    }

    #[test]
    fn an_upgrade_stops_everything_then_runs_the_job_on_the_primary_then_finishes() {
        let (data, wanted) = (info(15), info(18));
        let running = vec!["pg-1".to_string(), "pg-2".to_string()];
        let step = decide(&facts(
            Some(&data),
            &wanted,
            None,
            &running,
            JobState::Absent,
        ));
        assert_eq!(step, Step::Stop(running.clone()));
        assert_eq!(step.phase(), Some(phase::MAJOR_UPGRADE));
        let step = decide(&facts(Some(&data), &wanted, None, &[], JobState::Absent));
        assert_eq!(
            step,
            Step::Upgrade {
                instance: "pg-1".into(),
                waiting: None
            }
        );
        let a = attempt(None);
        let step = decide(&facts(
            Some(&data),
            &wanted,
            Some(&a),
            &[],
            JobState::Running,
        ));
        assert!(matches!(step, Step::Upgrade { .. }));
        let step = decide(&facts(
            Some(&data),
            &wanted,
            Some(&a),
            &[],
            JobState::Succeeded,
        ));
        assert_eq!(step, Step::Finish { data: info(18) });
        // Then the data is 18: nothing more to do (the job's result stays, the attempt too
        // until its old data is removed).
        let step = decide(&facts(
            Some(&info(18)),
            &wanted,
            Some(&a),
            &running,
            JobState::Succeeded,
        ));
        assert_eq!(
            step,
            Step::Run {
                data: info(18),
                problem: None
            }
        );
        assert_eq!(step.phase(), None);
    }

    #[test]
    fn a_job_is_waited_for_while_it_may_touch_the_data_and_cancelled_only_before() {
        let (data, wanted) = (info(15), info(18));
        let a = attempt(None);
        // Its pod waits for its image: said, and waited for while the spec asks for it.
        let pending = JobState::Pending("ImagePullBackOff".into());
        let step = decide(&facts(Some(&data), &wanted, Some(&a), &[], pending.clone()));
        assert_eq!(
            step,
            Step::Upgrade {
                instance: "pg-1".into(),
                waiting: Some("ImagePullBackOff".into())
            }
        );
        // The image set back (or another major asked for) before it ran: the job goes and
        // nothing starts meanwhile.
        for asked in [info(15), info(17)] {
            let step = decide(&facts(Some(&data), &asked, Some(&a), &[], pending.clone()));
            assert_eq!(step, Step::Cancel, "{asked:?}");
            assert_eq!(step.phase(), Some(phase::MAJOR_UPGRADE));
        }
        // Once it runs, the spec set back changes nothing until it ends: no instance may start
        // on data pg_upgrade is changing.
        let step = decide(&facts(
            Some(&data),
            &info(15),
            Some(&a),
            &[],
            JobState::Running,
        ));
        assert_eq!(
            step,
            Step::Upgrade {
                instance: "pg-1".into(),
                waiting: None
            }
        );
    }

    #[test]
    fn a_failed_upgrade_runs_the_old_major_until_retried_or_reverted() {
        let (data, wanted) = (info(15), info(18));
        let a = attempt(None);
        let step = decide(&facts(
            Some(&data),
            &wanted,
            Some(&a),
            &[],
            JobState::Failed("pg_upgrade --check failed".into()),
        ));
        assert_eq!(
            step,
            Step::Failed {
                message: "pg_upgrade --check failed".into()
            }
        );
        let failed = attempt(Some("pg_upgrade --check failed"));
        let running = vec!["pg-1".to_string()];
        let step = decide(&facts(
            Some(&data),
            &wanted,
            Some(&failed),
            &running,
            JobState::Failed("pg_upgrade --check failed".into()),
        ));
        let Step::Run { data: d, problem } = &step else {
            panic!("{step:?}")
        };
        assert_eq!(d, &data);
        assert!(problem
            .as_deref()
            .unwrap_or_default()
            .contains("runs PostgreSQL 15"));
        // A restart retries: all instances stop again.
        let mut retry = facts(
            Some(&data),
            &wanted,
            Some(&failed),
            &running,
            JobState::Absent,
        );
        retry.retry_token = "2026-01-01";
        assert_eq!(decide(&retry), Step::Stop(running.clone()));
        // Setting the image back gives up the upgrade.
        let step = decide(&facts(
            Some(&data),
            &info(15),
            Some(&failed),
            &running,
            JobState::Absent,
        ));
        assert_eq!(
            step,
            Step::Run {
                data: info(15),
                problem: None
            }
        );
    }

    #[test]
    fn a_downgrade_past_validation_keeps_the_data_major_running() {
        let step = decide(&facts(
            Some(&info(18)),
            &info(15),
            None,
            &[],
            JobState::Absent,
        ));
        let Step::Run { data, problem } = step else {
            panic!()
        };
        assert_eq!(data.major_version, 18);
        assert!(problem.unwrap_or_default().contains("can't downgrade"));
    }

    #[test]
    fn a_new_cluster_records_the_image_it_asks_for() {
        let step = decide(&facts(None, &info(18), None, &[], JobState::Absent));
        assert_eq!(
            step,
            Step::Run {
                data: info(18),
                problem: None
            }
        );
    }
}
