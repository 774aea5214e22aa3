//! CloudNativePG's `Cluster.status`, written by the controller from a pass's plan and
//! observation, the same on every platform: phase and reason, the primary and target with
//! their timestamps, instances by health, reported state, timeline, and conditions that keep
//! their transition time while their status does not change. Pure: the clock is an input.

use crate::phase;
use crate::plan::{Observation, Plan};
use pgherd_api::cluster::{ClusterStatus, InstanceReportedState};
use pgherd_api::common::Condition;
use pgherd_api::Cluster;
use std::collections::BTreeMap;

/// A condition the platform adds (archiving, backups): type, status, reason, message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConditionInput {
    pub condition_type: String,
    pub status: bool,
    pub reason: String,
    pub message: String,
}

/// CloudNativePG's WAL-archiving condition type.
pub const CONTINUOUS_ARCHIVING: &str = "ContinuousArchiving";

/// `ContinuousArchiving` from why the store cannot be used (`problem`) or the primary's last
/// `archive_command` outcome; `None` while nothing was archived yet and nothing failed.
pub fn archiving_condition(
    problem: Option<&str>,
    report: Option<&pgherd_instance_protocol::ArchiveReport>,
) -> Option<ConditionInput> {
    let failing = |message: String| ConditionInput {
        condition_type: CONTINUOUS_ARCHIVING.into(),
        status: false,
        reason: "ContinuousArchivingFailing".into(),
        message,
    };
    match (problem, report) {
        (Some(problem), _) => Some(failing(problem.to_string())),
        (None, Some(r)) if r.failing() => Some(failing(r.last_error.clone().unwrap_or_default())),
        (None, Some(r)) if r.last_archived_wal.is_some() => Some(ConditionInput {
            condition_type: CONTINUOUS_ARCHIVING.into(),
            status: true,
            reason: "ContinuousArchivingSuccess".into(),
            message: String::new(),
        }),
        _ => None,
    }
}

/// CloudNativePG's condition on the last backup.
pub const LAST_BACKUP_SUCCEEDED: &str = "LastBackupSucceeded";

/// `LastBackupSucceeded` from the last successful and the last failed backup's times (RFC
/// 3339, so they compare as text); `None` before any backup.
pub fn last_backup_condition(
    last_successful: Option<&str>,
    last_failed: Option<&str>,
) -> Option<ConditionInput> {
    let succeeded = match (last_successful, last_failed) {
        (None, None) => return None,
        (Some(ok), Some(failed)) => ok >= failed,
        (Some(_), None) => true,
        (None, Some(_)) => false,
    };
    Some(ConditionInput {
        condition_type: LAST_BACKUP_SUCCEEDED.into(),
        status: succeeded,
        reason: if succeeded {
            "LastBackupSucceeded"
        } else {
            "LastBackupFailed"
        }
        .into(),
        message: String::new(),
    })
}

/// What the status is built from.
#[derive(Debug)]
pub struct StatusInput<'a> {
    pub cluster: &'a Cluster,
    pub plan: &'a Plan,
    pub observed: &'a Observation,
    /// The status written by the previous pass (timestamps and transition times carry over).
    pub previous: Option<&'a ClusterStatus>,
    /// Now, in seconds since the epoch.
    pub now: i64,
    /// The address each instance is reached at, when the platform knows it.
    pub addresses: &'a BTreeMap<String, String>,
    /// Conditions the platform owns besides `Ready`.
    pub conditions: Vec<ConditionInput>,
}

/// The label selector of a cluster's instances (the scale subresource's `status.selector`).
pub fn instance_selector(cluster: &str) -> String {
    format!("cnpg.io/cluster={cluster},cnpg.io/podRole=instance")
}

use pgherd_api::common::{meta_time as transition_time, rfc3339 as timestamp};

/// `value` with the timestamp kept from `previous` when the value did not change.
fn stamped(
    value: Option<&String>,
    previous_value: Option<&String>,
    previous_stamp: Option<&String>,
    now: i64,
) -> Option<String> {
    value?;
    match (previous_value == value, previous_stamp) {
        (true, Some(stamp)) => Some(stamp.clone()),
        _ => Some(timestamp(now)),
    }
}

/// The `targetPrimary` to write: a user's pending switchover request as they wrote it
/// (CloudNativePG's meaning, and what survives a restart of the controller), else the
/// controller's own target.
pub fn status_target(plan: &Plan, observed: &Observation) -> Option<String> {
    observed
        .promote_request
        .clone()
        .filter(|r| plan.current_primary.as_ref() != Some(r))
        .or_else(|| plan.target_primary.clone())
}

/// Why the cluster is not healthy: the plan's reason, else the first error an instance reports
/// (a recovery that cannot start, a clone that fails), so `kubectl get cluster`, `kubectl cnpg
/// status` and `pgherd local status` say it without reading the instances' logs.
pub fn phase_reason(plan: &Plan, observed: &Observation) -> Option<String> {
    plan.blocked.clone().or_else(|| {
        (plan.phase != phase::HEALTHY)
            .then(|| {
                plan.instances.iter().find_map(|d| {
                    let error = observed
                        .instances
                        .iter()
                        .find(|i| i.name == d.name)?
                        .status
                        .as_ref()?
                        .error
                        .as_ref()?;
                    Some(format!("{}: {error}", d.name))
                })
            })
            .flatten()
    })
}

/// Build the status.
pub fn cluster_status(input: &StatusInput<'_>) -> ClusterStatus {
    let name = input.cluster.metadata.name.clone().unwrap_or_default();
    let plan = input.plan;
    let previous = input.previous.cloned().unwrap_or_default();
    let by_name: BTreeMap<&str, &crate::plan::ObservedInstance> = input
        .observed
        .instances
        .iter()
        .map(|i| (i.name.as_str(), i))
        .collect();

    let mut by_health: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut reported = BTreeMap::new();
    for d in &plan.instances {
        let observed = by_name.get(d.name.as_str());
        let status = observed.and_then(|o| o.status.as_ref());
        let health = match status {
            Some(s) if s.ready && crate::ha::is_fresh(s) => "healthy",
            Some(_) if observed.is_some_and(|o| !o.dead) => "replicating",
            _ => "failed",
        };
        by_health
            .entry(health.to_string())
            .or_default()
            .push(d.name.clone());
        if let Some(s) = status {
            reported.insert(
                d.name.clone(),
                InstanceReportedState {
                    is_primary: s.is_primary,
                    timeline_id: s.timeline_id.map(i64::from),
                    ip: input.addresses.get(&d.name).cloned(),
                },
            );
        }
    }
    let primary_status = plan
        .current_primary
        .as_deref()
        .and_then(|p| by_name.get(p))
        .and_then(|i| i.status.as_ref());
    let failing_since = plan
        .current_primary
        .as_deref()
        .and_then(|p| by_name.get(p))
        .and_then(|i| i.unhealthy_for)
        .map(|d| {
            let since = input.now - i64::try_from(d.as_secs()).unwrap_or(0);
            previous
                .current_primary_failing_since_timestamp
                .clone()
                .unwrap_or_else(|| timestamp(since))
        });

    let ready = plan.phase == phase::HEALTHY;
    let reason = phase_reason(plan, input.observed);
    let mut wanted = vec![ConditionInput {
        condition_type: "Ready".into(),
        status: ready,
        reason: if ready {
            "ClusterIsReady"
        } else {
            "ClusterIsNotReady"
        }
        .into(),
        message: if ready {
            "Cluster is Ready".into()
        } else {
            reason
                .clone()
                .unwrap_or_else(|| "Cluster Is Not Ready".into())
        },
    }];
    wanted.extend(input.conditions.iter().cloned());
    let generation = input.cluster.metadata.generation;
    let conditions = wanted
        .into_iter()
        .map(|c| {
            let status = if c.status { "True" } else { "False" }.to_string();
            let kept = previous
                .conditions
                .iter()
                .flatten()
                .find(|p| p.type_ == c.condition_type && p.status == status)
                .map(|p| p.last_transition_time.clone());
            Condition {
                type_: c.condition_type,
                status,
                reason: c.reason,
                message: c.message,
                observed_generation: generation,
                last_transition_time: kept.unwrap_or_else(|| transition_time(input.now)),
            }
        })
        .collect();

    let target_primary = status_target(plan, input.observed);
    let mut names: Vec<String> = plan.instances.iter().map(|d| d.name.clone()).collect();
    names.sort();
    ClusterStatus {
        phase: Some(plan.phase.to_string()),
        phase_reason: reason,
        instances: i64::try_from(plan.instances.len()).ok(),
        ready_instances: i64::try_from(plan.ready_instances).ok(),
        selector: Some(instance_selector(&name)),
        instances_status: Some(by_health),
        instances_reported_state: Some(reported),
        instance_names: Some(names),
        current_primary_timestamp: stamped(
            plan.current_primary.as_ref(),
            previous.current_primary.as_ref(),
            previous.current_primary_timestamp.as_ref(),
            input.now,
        ),
        current_primary: plan.current_primary.clone(),
        target_primary_timestamp: stamped(
            target_primary.as_ref(),
            previous.target_primary.as_ref(),
            previous.target_primary_timestamp.as_ref(),
            input.now,
        ),
        target_primary,
        current_primary_failing_since_timestamp: failing_since,
        timeline_id: primary_status
            .and_then(|s| s.timeline_id)
            .map(i64::from)
            .or(previous.timeline_id),
        system_id: input
            .observed
            .instances
            .iter()
            .find_map(|i| i.status.as_ref().and_then(|s| s.system_id.clone()))
            .or(previous.system_id),
        latest_generated_node: Some(i64::from(plan.latest_serial)),
        write_service: Some(format!("{name}-rw")),
        read_service: Some(format!("{name}-r")),
        image: Some(input.cluster.image_name()),
        conditions: Some(conditions),
        // What the platform's other passes fill (backups, roles) is kept until they write it.
        first_recoverability_point: previous.first_recoverability_point,
        last_successful_backup: previous.last_successful_backup,
        last_failed_backup: previous.last_failed_backup,
        managed_roles_status: previous.managed_roles_status,
        // The distributed topology's tokens: the one this cluster's leader issued when the
        // cluster was demoted (while it is a replica), and the one it was last promoted with.
        demotion_token: input
            .cluster
            .is_replica()
            .then(|| {
                primary_status
                    .and_then(|s| s.demotion_token.clone())
                    .or(previous.demotion_token.clone())
            })
            .flatten(),
        last_promotion_token: primary_status
            .filter(|s| s.is_primary)
            .and_then(|s| s.promoted_with.clone())
            .or(previous.last_promotion_token),
        ..ClusterStatus::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::plan;
    use crate::plan::tests::{cluster, obs};
    use std::time::Duration;

    fn input<'a>(
        c: &'a Cluster,
        p: &'a Plan,
        o: &'a Observation,
        previous: Option<&'a ClusterStatus>,
        now: i64,
        addresses: &'a BTreeMap<String, String>,
    ) -> StatusInput<'a> {
        StatusInput {
            cluster: c,
            plan: p,
            observed: o,
            previous,
            now,
            addresses,
            conditions: Vec::new(),
        }
    }

    #[test]
    fn a_healthy_cluster_reads_as_cloudnativepg_writes_it() {
        let c = cluster(3);
        let o = obs(
            &[
                (1, Some((true, true))),
                (2, Some((false, true))),
                (3, Some((false, true))),
            ],
            Some("pg-1"),
        );
        let p = plan(&c, &o);
        let addresses = BTreeMap::new();
        let s = cluster_status(&input(&c, &p, &o, None, 1_700_000_000, &addresses));
        assert_eq!(s.phase.as_deref(), Some(phase::HEALTHY));
        assert_eq!(s.current_primary.as_deref(), Some("pg-1"));
        assert_eq!(s.target_primary.as_deref(), Some("pg-1"));
        assert_eq!(s.instances, Some(3));
        assert_eq!(s.ready_instances, Some(3));
        assert_eq!(
            s.instances_status.as_ref().unwrap()["healthy"],
            ["pg-1", "pg-2", "pg-3"]
        );
        assert_eq!(
            s.selector.as_deref(),
            Some("cnpg.io/cluster=pg,cnpg.io/podRole=instance")
        );
        assert_eq!(s.write_service.as_deref(), Some("pg-rw"));
        assert_eq!(
            s.current_primary_timestamp.as_deref(),
            Some("2023-11-14T22:13:20Z")
        );
        let ready = &s.conditions.as_ref().unwrap()[0];
        assert_eq!(
            (
                ready.type_.as_str(),
                ready.status.as_str(),
                ready.reason.as_str()
            ),
            ("Ready", "True", "ClusterIsReady")
        );
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json["timelineID"], 1);
        assert!(json["instancesReportedState"]["pg-1"]["isPrimary"]
            .as_bool()
            .unwrap());
    }

    #[test]
    fn timestamps_and_transition_times_move_only_with_their_values() {
        let c = cluster(3);
        let healthy = obs(
            &[
                (1, Some((true, true))),
                (2, Some((false, true))),
                (3, Some((false, true))),
            ],
            Some("pg-1"),
        );
        let p = plan(&c, &healthy);
        let addresses = BTreeMap::new();
        let first = cluster_status(&input(&c, &p, &healthy, None, 1000, &addresses));
        let again = cluster_status(&input(&c, &p, &healthy, Some(&first), 2000, &addresses));
        assert_eq!(
            again.current_primary_timestamp,
            first.current_primary_timestamp
        );
        assert_eq!(
            again.conditions.as_ref().unwrap()[0].last_transition_time,
            first.conditions.as_ref().unwrap()[0].last_transition_time
        );

        // The primary dies: Ready turns False now, and the failing-since time is set.
        let mut failing = healthy.clone();
        failing.instances[0].status = None;
        failing.instances[0].dead = true;
        failing.instances[0].unhealthy_for = Some(Duration::from_secs(1));
        let p = plan(&c, &failing);
        let after = cluster_status(&input(&c, &p, &failing, Some(&again), 3000, &addresses));
        let ready = &after.conditions.as_ref().unwrap()[0];
        assert_eq!(ready.status, "False");
        assert_ne!(
            ready.last_transition_time,
            first.conditions.as_ref().unwrap()[0].last_transition_time
        );
        assert_eq!(
            after.current_primary_failing_since_timestamp.as_deref(),
            Some("1970-01-01T00:49:59Z")
        );
        assert!(after.instances_status.as_ref().unwrap()["failed"].contains(&"pg-1".to_string()));
        assert_ne!(after.target_primary, after.current_primary, "failing over");
        assert_ne!(
            after.target_primary_timestamp,
            again.target_primary_timestamp
        );
    }

    #[test]
    fn a_pending_switchover_request_stays_the_target_until_done_and_errors_give_the_reason() {
        let c = cluster(3);
        let mut o = obs(
            &[
                (1, Some((true, true))),
                (2, Some((false, true))),
                (3, Some((false, true))),
            ],
            Some("pg-1"),
        );
        o.promote_request = Some("pg-3".into());
        let p = plan(&c, &o);
        let addresses = BTreeMap::new();
        let s = cluster_status(&input(&c, &p, &o, None, 1_700_000_000, &addresses));
        // As the user wrote it, whatever the controller decided for this pass.
        assert_eq!(s.target_primary.as_deref(), Some("pg-3"));
        assert_eq!(status_target(&p, &o).as_deref(), Some("pg-3"));
        // Done: the request names the primary, and the target is the controller's again.
        o.promote_request = Some("pg-1".into());
        assert_eq!(status_target(&p, &o), p.target_primary);

        // An instance that cannot progress gives the reason when nothing else does.
        let mut o = obs(
            &[(1, Some((true, true))), (2, Some((false, false)))],
            Some("pg-1"),
        );
        o.instances[1].status.as_mut().unwrap().error = Some("cannot clone: refused".into());
        let c = cluster(2);
        let p = plan(&c, &o);
        assert_ne!(p.phase, phase::HEALTHY);
        assert_eq!(p.blocked, None);
        let s = cluster_status(&input(&c, &p, &o, None, 1_700_000_000, &addresses));
        assert_eq!(
            s.phase_reason.as_deref(),
            Some("pg-2: cannot clone: refused")
        );
        let ready = s.conditions.iter().flatten().find(|c| c.type_ == "Ready");
        assert_eq!(
            ready.map(|c| c.message.as_str()),
            Some("pg-2: cannot clone: refused")
        );
    }
}
