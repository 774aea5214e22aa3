//! Hibernation (`cnpg.io/hibernation: on|off`, `kubectl cnpg hibernate on|off`), the same on
//! every platform, as CloudNativePG does it: a healthy cluster asked to hibernate stops
//! PostgreSQL on every instance (cleanly: each instance's spec keeps it stopped, as fencing
//! does) and keeps its data; Kubernetes then deletes the pods and keeps the PVCs. The primary
//! stays the recorded one throughout, and nothing is failed over.
//!
//! Waking (the annotation `off` or removed) starts the recorded primary first and the replicas
//! only once it runs as primary, so a replica that happens to start first is never promoted
//! over it. While hibernating or waking, the platform keeps the fact in the Cluster's
//! `cnpg.io/hibernation` condition (`Hibernated`, `DeletingPods`, `Rehydrating`), which is what
//! [`in_progress`] reads back on the next pass.

use crate::cluster_status::ConditionInput;
use crate::operations::HIBERNATION_ANNOTATION;
use crate::phase;
use crate::plan::{fresh, DataSource, DesiredInstance, Observation, ObservedInstance, Plan};
use pgherd_api::Cluster;
use pgherd_instance_protocol::DesiredRole;

/// Where a cluster stands with hibernation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Hibernation {
    /// Running as usual.
    #[default]
    Awake,
    /// Every instance's PostgreSQL kept stopped (Kubernetes: pods deleted once stopped).
    Hibernating,
    /// The recorded primary starting first, the replicas after it.
    Waking,
}

/// What the annotation asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Requested {
    On,
    Off,
    /// Neither `on` nor `off`: not acted on, said in the condition.
    Invalid(String),
}

/// The `cnpg.io/hibernation` annotation of `cluster`.
pub fn requested(cluster: &Cluster) -> Requested {
    match cluster
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(HIBERNATION_ANNOTATION))
        .map(String::as_str)
    {
        None | Some("off") => Requested::Off,
        Some("on") => Requested::On,
        Some(other) => Requested::Invalid(other.to_string()),
    }
}

/// The condition's reasons (CloudNativePG's, and pgherd's `Rehydrating` for waking).
pub const HIBERNATED: &str = "Hibernated";
pub const DELETING_PODS: &str = "DeletingPods";
pub const REHYDRATING: &str = "Rehydrating";
pub const WRONG_ANNOTATION_VALUE: &str = "WrongAnnotationValue";

/// Whether the previous status says a hibernation started and the cluster has not finished
/// waking from it (the platform's fact for [`Observation::hibernated`]).
pub fn in_progress<'a>(conditions: impl IntoIterator<Item = (&'a str, &'a str)>) -> bool {
    conditions.into_iter().any(|(type_, reason)| {
        type_ == HIBERNATION_ANNOTATION
            && [HIBERNATED, DELETING_PODS, REHYDRATING].contains(&reason)
    })
}

/// The plan with hibernation applied: `awake` (the usual plan) unless the cluster is
/// hibernating or waking.
pub(crate) fn apply(
    cluster: &Cluster,
    observed: &Observation,
    existing: &[&ObservedInstance],
    recorded: &ObservedInstance,
    awake: Plan,
) -> Plan {
    let asked = requested(cluster) == Requested::On;
    // Only a healthy cluster starts hibernating (a half-made one would keep half its
    // objects); once started, it goes on whatever the instances report.
    if asked && (observed.hibernated || awake.phase == phase::HEALTHY) {
        return held(existing, recorded, &awake, Hibernation::Hibernating, |_| {
            true
        });
    }
    if asked || !observed.hibernated {
        return awake;
    }
    let primary_runs = fresh(recorded).is_some_and(|s| s.ready && s.leads());
    let all_ready = existing
        .iter()
        .all(|i| i.fenced || fresh(i).is_some_and(|s| s.ready));
    if primary_runs && all_ready {
        return awake;
    }
    held(existing, recorded, &awake, Hibernation::Waking, |i| {
        i.name != recorded.name && !primary_runs
    })
}

/// Every existing instance in its recorded role, none promoted or removed; `stop` says whose
/// PostgreSQL stays stopped (besides the user's fenced instances).
fn held(
    existing: &[&ObservedInstance],
    recorded: &ObservedInstance,
    awake: &Plan,
    hibernation: Hibernation,
    stop: impl Fn(&ObservedInstance) -> bool,
) -> Plan {
    let instances = existing
        .iter()
        .map(|i| {
            let primary = i.name == recorded.name;
            DesiredInstance {
                serial: i.serial,
                name: i.name.clone(),
                role: if primary {
                    DesiredRole::Primary
                } else {
                    DesiredRole::Replica
                },
                data_source: if primary {
                    DataSource::Initdb
                } else {
                    DataSource::Clone
                },
                restart_token: i.spec_restart_token.clone(),
                upstream: (!primary).then(|| recorded.name.clone()),
                fenced: i.fenced || stop(i),
            }
        })
        .collect();
    Plan {
        instances,
        remove: Vec::new(),
        phase: match hibernation {
            Hibernation::Hibernating => phase::HIBERNATION,
            _ => phase::WAITING_FOR_INSTANCES,
        },
        current_primary: Some(recorded.name.clone()),
        target_primary: Some(recorded.name.clone()),
        ready_instances: existing
            .iter()
            .filter(|i| fresh(i).is_some_and(|s| s.ready))
            .count(),
        latest_serial: awake.latest_serial,
        fence: Vec::new(),
        synchronous_standby_names: String::new(),
        blocked: None,
        hibernation,
    }
}

/// The `cnpg.io/hibernation` condition for this pass; `None` removes it. `all_stopped`: no
/// instance's PostgreSQL runs (and, on Kubernetes, no instance pod is left).
pub fn condition(cluster: &Cluster, plan: &Plan, all_stopped: bool) -> Option<ConditionInput> {
    let (status, reason, message) = match (requested(cluster), plan.hibernation) {
        (Requested::Invalid(value), _) => (
            false,
            WRONG_ANNOTATION_VALUE,
            format!("invalid annotation value: {value} (use on or off)"),
        ),
        (_, Hibernation::Hibernating) if all_stopped => {
            (true, HIBERNATED, "Cluster has been hibernated".to_string())
        }
        (_, Hibernation::Hibernating) => (
            false,
            DELETING_PODS,
            "Hibernation is in progress".to_string(),
        ),
        (_, Hibernation::Waking) => (
            false,
            REHYDRATING,
            format!(
                "waking up: {} starts first, then the replicas",
                plan.current_primary.as_deref().unwrap_or("the primary")
            ),
        ),
        (Requested::On, Hibernation::Awake) => return None, // waits for a healthy cluster
        (Requested::Off, Hibernation::Awake) => return None,
    };
    Some(ConditionInput {
        condition_type: HIBERNATION_ANNOTATION.into(),
        status,
        reason: reason.into(),
        message,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::plan;
    use crate::plan::tests::{cluster, obs};

    fn annotated(value: &str) -> Cluster {
        let mut c = cluster(3);
        c.metadata.annotations = Some(
            [(HIBERNATION_ANNOTATION.to_string(), value.to_string())]
                .into_iter()
                .collect(),
        );
        c
    }

    fn healthy() -> Observation {
        obs(
            &[
                (1, Some((true, true))),
                (2, Some((false, true))),
                (3, Some((false, true))),
            ],
            Some("pg-1"),
        )
    }

    #[test]
    fn a_healthy_cluster_hibernates_every_instance_keeping_its_primary() {
        let p = plan(&annotated("on"), &healthy());
        assert_eq!(p.hibernation, Hibernation::Hibernating);
        assert_eq!(p.phase, phase::HIBERNATION);
        assert!(p.instances.iter().all(|i| i.fenced));
        assert_eq!(p.current_primary.as_deref(), Some("pg-1"));
        assert_eq!(p.instances[0].role, DesiredRole::Primary);
        let c = condition(&annotated("on"), &p, false).unwrap();
        assert_eq!((c.status, c.reason.as_str()), (false, DELETING_PODS));
        let c = condition(&annotated("on"), &p, true).unwrap();
        assert_eq!((c.status, c.reason.as_str()), (true, HIBERNATED));
    }

    #[test]
    fn hibernating_goes_on_with_every_instance_down_and_never_fails_over() {
        let mut o = obs(&[(1, None), (2, None), (3, None)], Some("pg-1"));
        for i in &mut o.instances {
            i.dead = true;
            i.stopped_for = Some(std::time::Duration::from_secs(1));
        }
        o.hibernated = true;
        let p = plan(&annotated("on"), &o);
        assert_eq!(p.hibernation, Hibernation::Hibernating);
        assert!(p.fence.is_empty());
        assert_eq!(p.target_primary.as_deref(), Some("pg-1"));
        // Not started: an unhealthy cluster asked to hibernate waits.
        let mut o = healthy();
        o.instances[1].status = None;
        assert_eq!(plan(&annotated("on"), &o).hibernation, Hibernation::Awake);
    }

    #[test]
    fn waking_starts_the_recorded_primary_first_then_the_replicas() {
        // Only a replica reports: it stays stopped, and is never promoted.
        let mut o = obs(
            &[(1, None), (2, Some((false, false))), (3, None)],
            Some("pg-1"),
        );
        o.instances[0].dead = true;
        o.instances[0].stopped_for = Some(std::time::Duration::from_secs(1));
        o.hibernated = true;
        let p = plan(&annotated("off"), &o);
        assert_eq!(p.hibernation, Hibernation::Waking);
        assert_eq!(p.target_primary.as_deref(), Some("pg-1"));
        assert!(!p.instances[0].fenced);
        assert!(p.instances[1].fenced && p.instances[2].fenced);
        let c = condition(&annotated("off"), &p, false).unwrap();
        assert_eq!(c.reason, REHYDRATING);
        // The primary runs: the replicas start.
        let mut o = obs(
            &[
                (1, Some((true, true))),
                (2, Some((false, false))),
                (3, None),
            ],
            Some("pg-1"),
        );
        o.hibernated = true;
        let p = plan(&cluster(3), &o);
        assert_eq!(p.hibernation, Hibernation::Waking);
        assert!(p.instances.iter().all(|i| !i.fenced));
        // Everyone ready: awake, and the condition goes.
        let mut o = healthy();
        o.hibernated = true;
        let p = plan(&cluster(3), &o);
        assert_eq!(p.hibernation, Hibernation::Awake);
        assert_eq!(p.phase, phase::HEALTHY);
        assert!(condition(&cluster(3), &p, false).is_none());
    }

    #[test]
    fn a_wrong_value_is_said_and_not_acted_on() {
        let p = plan(&annotated("yes"), &healthy());
        assert_eq!(p.hibernation, Hibernation::Awake);
        let c = condition(&annotated("yes"), &p, false).unwrap();
        assert_eq!(c.reason, WRONG_ANNOTATION_VALUE);
        assert!(in_progress([(HIBERNATION_ANNOTATION, DELETING_PODS)]));
        assert!(!in_progress([(
            HIBERNATION_ANNOTATION,
            WRONG_ANNOTATION_VALUE
        )]));
    }
}
