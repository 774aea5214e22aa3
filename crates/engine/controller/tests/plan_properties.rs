//! Properties of the controller's decisions over arbitrary observations (issue 13, "done
//! when"): whatever the platform reports, at most one instance is planned primary, nothing is
//! promoted while the old primary may still accept writes, and the promoted instance is never
//! the one being fenced.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

use pgherd_api::Cluster;
use pgherd_controller::plan::{instance_name, plan, Observation, ObservedInstance};
use pgherd_instance_protocol::{DesiredRole, InstanceStatus, Role};
use pgherd_postgres::Lsn;
use proptest::prelude::*;
use std::time::Duration;

/// One instance as a platform might report it: any combination of report, liveness and flags.
fn instance(serial: u32, primary_name: String) -> impl Strategy<Value = ObservedInstance> {
    let report = prop::option::of((
        any::<bool>(),                // reports primary
        any::<bool>(),                // ready
        any::<bool>(),                // WAL receiver active
        0u64..0x2000,                 // WAL position
        0u64..3000,                   // report age (ms)
        prop::option::of(0u64..3000), // upstream reach age
    ));
    (
        report,
        prop::option::of(0u64..10_000), // unhealthy for (ms)
        any::<bool>(),                  // dead
        prop::option::of(0u64..3000),   // provably stopped for (ms)
        prop::bool::weighted(0.1),      // fenced by the user
        any::<bool>(),                  // told primary
    )
        .prop_map(move |(report, unhealthy, dead, stopped, fenced, told)| {
            let name = instance_name("pg", serial);
            let status = report.map(|(is_primary, ready, receiving, lsn, age, reach)| {
                let role = if is_primary {
                    Role::Primary
                } else {
                    Role::Replica
                };
                InstanceStatus {
                    is_primary,
                    ready,
                    is_wal_receiver_active: receiving && !is_primary,
                    following: (!is_primary).then(|| primary_name.clone()),
                    current_lsn: Some(Lsn(lsn)),
                    received_lsn: Some(Lsn(lsn)),
                    timeline_id: Some(1),
                    observed_ms_ago: age,
                    upstream_seen_ms_ago: reach,
                    applied_generation: 1,
                    ..InstanceStatus::nothing_observed(&name, role, "test")
                }
            });
            ObservedInstance {
                serial,
                name,
                status,
                spec_restart_token: String::new(),
                unhealthy_for: unhealthy.map(Duration::from_millis),
                // A dead instance is also provably stopped.
                dead,
                stopped_for: stopped
                    .map(Duration::from_millis)
                    .or(dead.then_some(Duration::ZERO)),
                fenced,
                told_primary: told,
                restart_recreates: false,
                draining: false,
                storage_given_up: false,
            }
        })
}

/// A cluster of 1–5 instances with a recorded primary, maybe a transition and a switchover
/// request under way.
fn observation() -> impl Strategy<Value = (i64, Observation)> {
    (1u32..=5).prop_flat_map(|n| {
        (
            Just(n),
            1..=n,                       // recorded primary
            1..=n,                       // target primary
            prop::option::of(1..=n + 1), // switchover request (n + 1: no such instance)
        )
            .prop_flat_map(|(n, recorded, target, request)| {
                let primary = instance_name("pg", recorded);
                let instances: Vec<_> = (1..=n).map(|s| instance(s, primary.clone())).collect();
                (instances, Just((n, recorded, target, request)))
            })
            .prop_map(|(instances, (n, recorded, target, request))| {
                (
                    i64::from(n),
                    Observation {
                        instances,
                        latest_serial: n,
                        current_primary: Some(instance_name("pg", recorded)),
                        target_primary: Some(instance_name("pg", target)),
                        promote_request: request.map(|r| instance_name("pg", r)),
                        restart_token: String::new(),
                        hibernated: false,
                        instance_restarts: Default::default(),
                    },
                )
            })
    })
}

fn cluster(instances: i64) -> Cluster {
    let mut c = Cluster::new("pg", Default::default());
    c.spec.instances = Some(instances);
    c
}

proptest! {
    #[test]
    fn one_primary_and_no_promotion_without_the_old_one_stopped((n, observed) in observation()) {
        let decided = plan(&cluster(n), &observed);
        let primaries: Vec<&str> = decided
            .instances
            .iter()
            .filter(|i| i.role == DesiredRole::Primary)
            .map(|i| i.name.as_str())
            .collect();
        prop_assert!(primaries.len() <= 1, "two primaries planned: {primaries:?}");
        let recorded = decided.current_primary.as_deref();
        if let Some(&promoted) = primaries.first() {
            prop_assert!(
                !decided.fence.iter().any(|f| f == promoted),
                "{promoted} is promoted and fenced at once"
            );
            if Some(promoted) != recorded {
                // A promotion: the instance was already told (its promotion was decided with
                // the old primary stopped), or the old primary is provably stopped now.
                let newly = observed
                    .instances
                    .iter()
                    .find(|i| i.name == promoted)
                    .is_some_and(|i| !i.told_primary);
                let old_stopped = recorded.is_none_or(|r| {
                    observed
                        .instances
                        .iter()
                        .find(|i| i.name == r)
                        .is_none_or(|i| i.stopped())
                });
                prop_assert!(
                    !newly || old_stopped,
                    "{promoted} promoted while {recorded:?} may still accept writes"
                );
            }
        }
    }
}

proptest! {
    /// A failover promotes on final positions only: every replica it could have promoted was
    /// sampled after the old primary stopped (past the margin while its receiver streamed),
    /// and none of them had received more WAL than the promoted one.
    #[test]
    fn a_failover_promotes_the_most_advanced_on_final_positions((n, observed) in observation()) {
        let decided = plan(&cluster(n), &observed);
        // The instance holding the role this pass (a target already running as primary took
        // it over: its promotion was an earlier pass's).
        let Some(recorded) = decided.current_primary.as_deref() else {
            return Ok(());
        };
        let Some(promoted) = decided
            .instances
            .iter()
            .find(|i| i.role == DesiredRole::Primary && i.name != recorded)
        else {
            return Ok(());
        };
        let find = |name: &str| observed.instances.iter().find(|i| i.name == name).unwrap();
        let (old, new) = (find(recorded), find(&promoted.name));
        let clean = old.status.as_ref().is_some_and(|s| s.shutdown_checkpoint.is_some());
        if new.told_primary || clean {
            return Ok(());
        }
        let stopped_for = old.stopped_for.unwrap();
        let position = |i: &ObservedInstance| i.status.as_ref().and_then(|s| s.wal_position());
        for other in observed.instances.iter().filter(|i| i.name != recorded && comparable(i)) {
            let s = other.status.as_ref().unwrap();
            let age = Duration::from_millis(s.observed_ms_ago);
            prop_assert!(age < stopped_for, "{} sampled before the stop", other.name);
            prop_assert!(
                !s.is_wal_receiver_active
                    || age + pgherd_controller::ha::FINAL_POSITION_MARGIN <= stopped_for,
                "{} still receiving within the margin", other.name
            );
            prop_assert!(position(other) <= position(new), "{} is ahead of {}", other.name, new.name);
        }
    }
}

/// A cluster of `n` instances with quorum synchronous replication (`ANY k`), `required`.
fn quorum_cluster(n: i64, k: i64) -> Cluster {
    let mut c = cluster(n);
    c.spec.postgresql = Some(pgherd_api::cluster::PostgresConfiguration {
        synchronous: Some(pgherd_api::cluster::SynchronousReplicaConfiguration {
            method: pgherd_api::cluster::SynchronousReplicaMethod::Any,
            number: k,
            max_standby_names_from_cluster: None,
            standby_names_pre: None,
            standby_names_post: None,
            data_durability: Some(pgherd_api::cluster::DataDurability::Required),
            failover_quorum: None,
            node_failure_domain_keys: None,
            pod_failure_domain_keys: None,
        }),
        ..Default::default()
    });
    c
}

/// A standby the controller can compare: running, fresh, not fenced.
fn comparable(i: &ObservedInstance) -> bool {
    !i.fenced
        && i.status.as_ref().is_some_and(|s| {
            s.role == Role::Replica && !s.is_primary && !s.disk_full && s.observed_ms_ago <= 1000
        })
}

proptest! {
    /// Under `required` quorum replication a commit is acknowledged once any `k` of the `n - 1`
    /// standbys have it. A failover may promote only when every possible set of `k` standbys
    /// includes one the controller can compare (at most `k - 1` are out of sight), and then only
    /// the most advanced of those: it has every acknowledged commit.
    #[test]
    fn a_failover_under_required_quorum_keeps_every_acknowledged_commit(
        (n, mut observed) in observation(),
        k in 1i64..=4,
    ) {
        prop_assume!(n >= 2 && k < n);
        // A fresh decision of this pass: no transition or request under way.
        observed.target_primary = observed.current_primary.clone();
        observed.promote_request = None;
        let decided = plan(&quorum_cluster(n, k), &observed);
        let recorded = observed.current_primary.clone().unwrap();
        let promoted = decided
            .instances
            .iter()
            .find(|i| i.role == DesiredRole::Primary && i.name != recorded)
            .map(|i| i.name.clone());
        let Some(promoted) = promoted else {
            return Ok(());
        };
        let newly = observed
            .instances
            .iter()
            .find(|i| i.name == promoted)
            .is_some_and(|i| !i.told_primary);
        prop_assume!(newly);
        let standbys: Vec<&ObservedInstance> =
            observed.instances.iter().filter(|i| i.name != recorded).collect();
        let seen: Vec<&&ObservedInstance> = standbys.iter().filter(|i| comparable(i)).collect();
        let out_of_sight = standbys.len() - seen.len();
        prop_assert!(
            out_of_sight < usize::try_from(k).unwrap(),
            "{promoted} promoted with {out_of_sight} of {} standbys out of sight under ANY {k}",
            standbys.len()
        );
        let position = |name: &str| {
            observed
                .instances
                .iter()
                .find(|i| i.name == name)
                .and_then(|i| i.status.as_ref())
                .and_then(|s| s.wal_position())
        };
        for other in seen {
            prop_assert!(
                position(&promoted) >= position(&other.name),
                "{promoted} promoted behind {}",
                other.name
            );
        }
    }
}
