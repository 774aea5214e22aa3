//! Who is primary: failover when the primary fails, switchover when one is requested, and the
//! fencing that must come first so that two instances never accept writes. Pure: the platform
//! says how long each instance has been unhealthy and whether its PostgreSQL is provably
//! stopped; this decides.
//!
//! A change of primary is a transition from the recorded primary `O` to the target `T`:
//! 1. `O` is demoted (planned: a clean fast shutdown) or fenced (failed: the platform kills
//!    it) until it is provably stopped;
//! 2. `T` is promoted once `O` is stopped and, when `O` stopped cleanly, `T` has received its
//!    shutdown checkpoint (nothing `O` committed is missing);
//! 3. when `T` reports itself primary, it becomes the recorded primary and everyone (`O`
//!    included, rewound) follows it.

use crate::plan::{Observation, ObservedInstance};
use crate::synchronous::SyncPolicy;
use pgherd_instance_protocol::{Role, UPSTREAM_REACH_MAX_AGE_MS};
use std::time::Duration;

/// How long a primary may stay unhealthy (crashed and being restarted in place by its
/// instance manager, or not answering) before it is failed over. A postmaster crash is
/// normally recovered in place well within it; an instance whose manager and PostgreSQL are
/// both gone is failed over at once (plus `failoverDelay`).
pub const FAILURE_GRACE: Duration = Duration::from_secs(2);

/// How long a primary that is cut off from everyone may stay so before it is failed over:
/// the controller cannot reach its manager, and every replica with a fresh report has not
/// reached it as primary for [`UPSTREAM_REACH_MAX_AGE_MS`] either (a network partition or a
/// frozen node). Two witnesses agree, so this is shorter than [`FAILURE_GRACE`], which covers a
/// primary whose manager still answers (its PostgreSQL restarting in place).
pub const CUT_OFF_GRACE: Duration = Duration::from_secs(1);

/// How long a primary may accept writes without hearing from the controller or a majority of
/// its peers before it stops PostgreSQL by itself (an isolated primary).
pub const PRIMARY_LEASE: Duration = Duration::from_secs(4);

/// How long a restart the controller ordered may take before it counts as a failure.
pub const RESTART_GRACE: Duration = Duration::from_secs(60);

/// A report older than this (milliseconds) means the instance is stuck.
pub const STALE_REPORT_MS: u64 = 1000;

/// Whether a report is recent enough to act on (PostgreSQL answered within
/// [`STALE_REPORT_MS`]).
pub fn is_fresh(status: &pgherd_instance_protocol::InstanceStatus) -> bool {
    status.observed_ms_ago <= STALE_REPORT_MS
}

/// The decision of one pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Election {
    /// The instance holding the primary role (the old one during a transition).
    pub recorded: String,
    /// The instance that is to be primary.
    pub target: String,
    /// `target` may be promoted now.
    pub promote: bool,
    /// Instances whose PostgreSQL the platform must stop by force now (a failed old primary,
    /// or any other instance that claims to be primary).
    pub fence: Vec<String>,
    /// A planned change (the old primary was healthy when it started).
    pub switchover: bool,
    /// Why a needed failover cannot happen yet.
    pub blocked: Option<String>,
}

impl ObservedInstance {
    /// Failed beyond recovery in place. A restart the controller ordered (a rolling restart
    /// still running under the previous token) gets [`RESTART_GRACE`].
    fn failed(&self, failover_delay: Duration) -> bool {
        let restarting = self
            .status
            .as_ref()
            .is_some_and(|s| s.restart_token != self.spec_restart_token);
        let grace = if restarting {
            RESTART_GRACE
        } else {
            FAILURE_GRACE
        };
        self.dead
            || self
                .unhealthy_for
                .is_some_and(|d| d >= grace + failover_delay)
    }

    /// A running standby with a fresh report: a candidate for promotion.
    fn usable_replica(&self) -> bool {
        !self.fenced
            && self.status.as_ref().is_some_and(|s| {
                s.role == Role::Replica && !s.is_primary && !s.disk_full && is_fresh(s)
            })
    }

    fn reports_primary(&self) -> bool {
        self.status.as_ref().is_some_and(|s| s.is_primary)
    }
}

/// The most advanced usable replica (most WAL received, then lowest serial), if failing over
/// to it keeps every acknowledged commit.
fn best_candidate(
    instances: &[&ObservedInstance],
    old: &str,
    sync: Option<&SyncPolicy>,
) -> Result<String, String> {
    let candidates: Vec<&&ObservedInstance> = instances
        .iter()
        .filter(|i| i.name != old && i.usable_replica())
        .collect();
    if let Some(policy) = sync {
        let reachable: Vec<String> = candidates.iter().map(|i| i.name.clone()).collect();
        policy.failover_is_safe(&reachable)?;
    }
    candidates
        .iter()
        .max_by_key(|i| {
            (
                i.status.as_ref().and_then(|s| s.wal_position()),
                std::cmp::Reverse(i.serial),
            )
        })
        .map(|i| i.name.clone())
        .ok_or_else(|| "no running replica to promote".to_string())
}

/// Whether the primary plus the replicas streaming from it (fresh reports) are a majority:
/// then it is alive for them and keeps its lease, whatever the controller cannot see (the
/// controller is the one cut off), and must not be failed over.
fn seen_by_majority(instances: &[&ObservedInstance], primary: &ObservedInstance) -> bool {
    let following = instances
        .iter()
        .filter(|i| {
            i.status
                .as_ref()
                .is_some_and(|s| is_fresh(s) && s.follows(&primary.name))
        })
        .count();
    (following + 1) * 2 > instances.len()
}

/// Whether `primary` is cut off from everyone for [`CUT_OFF_GRACE`] (plus `failover_delay`):
/// the controller gets no report from it, at least one replica reports fresh, and every replica
/// that streams from it has not reached it as primary for [`UPSTREAM_REACH_MAX_AGE_MS`]. A
/// replica that does not say (an older manager) or still reaches it keeps the usual grace.
fn cut_off(
    instances: &[&ObservedInstance],
    primary: &ObservedInstance,
    failover_delay: Duration,
) -> bool {
    if primary.status.is_some()
        || primary
            .unhealthy_for
            .is_none_or(|d| d < CUT_OFF_GRACE + failover_delay)
    {
        return false;
    }
    let witnesses: Vec<_> = instances
        .iter()
        .filter(|i| i.name != primary.name)
        .filter_map(|i| i.status.as_ref().filter(|s| is_fresh(s)))
        .filter(|s| s.following.as_deref() == Some(primary.name.as_str()))
        .collect();
    !witnesses.is_empty()
        && witnesses.iter().all(|s| {
            s.upstream_seen_ms_ago
                .is_some_and(|ms| ms > UPSTREAM_REACH_MAX_AGE_MS)
        })
}

/// Decide the primary for this pass. `recorded` is the instance that holds the primary role.
pub fn elect(
    instances: &[&ObservedInstance],
    recorded: &ObservedInstance,
    observed: &Observation,
    failover_delay: Duration,
    sync: Option<&SyncPolicy>,
) -> Election {
    let find = |name: &str| instances.iter().find(|i| i.name == name).copied();
    let mut recorded = recorded;
    let mut target = observed
        .target_primary
        .as_deref()
        .and_then(find)
        .unwrap_or(recorded);
    let mut blocked = None;
    // A target given up after it was told to promote: it may be primary.
    let mut may_be_primary: Option<&ObservedInstance> = None;

    // A transition whose target now runs as primary is complete.
    if target.name != recorded.name && target.reports_primary() {
        recorded = target;
    }
    if target.name == recorded.name {
        let requested = observed
            .promote_request
            .as_deref()
            .and_then(find)
            // A planned switchover waits for its target to stream (it must receive the old
            // primary's shutdown checkpoint).
            .filter(|r| {
                r.name != recorded.name
                    && r.usable_replica()
                    && r.status.as_ref().is_some_and(|s| s.is_wal_receiver_active)
            });
        if let Some(r) = requested {
            target = r;
        } else if (recorded.failed(failover_delay)
            || cut_off(instances, recorded, failover_delay))
            && !recorded.fenced
            // Nothing runs at all (the cluster is starting again after `down`, or the whole
            // machine went down): there is no one to fail over to; the primary starts again.
            && !instances.iter().all(|i| i.dead)
            // Unreachable to the controller yet followed by a majority: the controller is the
            // one cut off. A primary that reports trouble itself is failed over regardless.
            && (recorded.dead
                || recorded.status.is_some()
                || !seen_by_majority(instances, recorded))
        {
            match best_candidate(instances, &recorded.name, sync) {
                Ok(name) => target = find(&name).unwrap_or(recorded),
                // A single instance has nothing to fail over to: it is just down.
                Err(why) => blocked = (instances.len() > 1).then_some(why),
            }
        }
    } else if target.failed(failover_delay)
        || target.fenced
        || (!target.told_primary && !target.usable_replica())
    {
        // The chosen target failed (or was fenced by the user) before its promotion: choose
        // again. One already told to promote keeps the role through a passing hiccup in its
        // reports; only its failure moves the role on.
        let before = target;
        match best_candidate(instances, &recorded.name, sync) {
            Ok(name) => target = find(&name).unwrap_or(target),
            Err(why) => blocked = Some(why),
        }
        if target.name != before.name && before.told_primary && !before.stopped {
            may_be_primary = Some(before);
        }
    }

    let mut fence: Vec<String> = instances
        .iter()
        .filter(|i| i.reports_primary() && i.name != recorded.name && i.name != target.name)
        .map(|i| i.name.clone())
        .collect();
    if target.name == recorded.name {
        return Election {
            recorded: recorded.name.clone(),
            target: target.name.clone(),
            promote: false,
            fence,
            switchover: false,
            blocked,
        };
    }
    let old_healthy = recorded.unhealthy_for.is_none() && !recorded.dead;
    if !old_healthy && !recorded.stopped {
        fence.push(recorded.name.clone());
    }
    let caught_up = recorded
        .status
        .as_ref()
        .and_then(|s| s.shutdown_checkpoint)
        .is_none_or(|checkpoint| {
            target
                .status
                .as_ref()
                .and_then(|s| s.wal_position())
                .is_some_and(|p| p > checkpoint)
        });
    if let Some(abandoned) = may_be_primary {
        // Stopped by force before anyone else is promoted.
        if !fence.contains(&abandoned.name) {
            fence.push(abandoned.name.clone());
        }
    }
    // Once told, the target stays told (its reports may lag its promotion): it was decided
    // with the old primary stopped, which its spec keeps stopped.
    let mut promote =
        (target.told_primary || (recorded.stopped && caught_up)) && may_be_primary.is_none();
    if recorded.stopped && !caught_up && recorded.failed(Duration::ZERO) && !target.told_primary {
        // The target never received the old primary's shutdown checkpoint: fall back to the
        // failover rule (the most advanced replica, quorum-safe), which may be another one.
        match best_candidate(instances, &recorded.name, sync) {
            Ok(best) if best == target.name => promote = true,
            Ok(best) => target = find(&best).unwrap_or(target),
            Err(why) => blocked = Some(why),
        }
    }
    Election {
        recorded: recorded.name.clone(),
        target: target.name.clone(),
        promote,
        fence,
        switchover: observed.promote_request.as_deref() == Some(target.name.as_str()),
        blocked,
    }
}

#[cfg(test)]
mod tests {
    use crate::phase;
    use crate::plan::tests::{cluster, obs};
    use crate::plan::{plan, Observation};
    use pgherd_instance_protocol::{DesiredRole, Role};
    use pgherd_postgres::Lsn;
    use std::time::Duration;

    /// pg-1 primary, pg-2 and pg-3 streaming; pg-3 received more WAL.
    fn three() -> Observation {
        let mut o = obs(
            &[
                (1, Some((true, true))),
                (2, Some((false, true))),
                (3, Some((false, true))),
            ],
            Some("pg-1"),
        );
        for (i, lsn) in [(1, 0x300), (2, 0x100), (3, 0x200)] {
            if let Some(s) = o.instances[i - 1].status.as_mut() {
                s.received_lsn = Some(Lsn(lsn));
                s.current_lsn = Some(Lsn(lsn));
            }
        }
        o
    }

    fn kill_primary(o: &mut Observation) {
        o.instances[0].status = None;
        o.instances[0].dead = true;
        o.instances[0].unhealthy_for = Some(Duration::from_millis(200));
    }

    fn role_of(p: &crate::plan::Plan, name: &str) -> (DesiredRole, Option<String>) {
        let d = p.instances.iter().find(|i| i.name == name).unwrap();
        (d.role, d.upstream.clone())
    }

    #[test]
    fn a_cluster_starting_again_with_nothing_running_is_not_failing_over() {
        let mut o = three();
        for i in &mut o.instances {
            i.status = None;
            i.dead = true;
            i.unhealthy_for = Some(Duration::from_secs(30));
        }
        let p = plan(&cluster(3), &o);
        assert_ne!(p.phase, phase::FAILING_OVER);
        assert_eq!(p.target_primary.as_deref(), Some("pg-1"));
        assert!(p.fence.is_empty());
        assert_eq!(
            role_of(&p, "pg-1").0,
            DesiredRole::Primary,
            "the primary starts again"
        );
    }

    #[test]
    fn a_dead_primary_fails_over_to_the_most_advanced_replica() {
        let mut o = three();
        kill_primary(&mut o);
        let p = plan(&cluster(3), &o);
        assert_eq!(p.phase, phase::FAILING_OVER);
        assert_eq!(p.target_primary.as_deref(), Some("pg-3"));
        assert_eq!(p.fence, ["pg-1"], "fence before promoting");
        assert_eq!(
            role_of(&p, "pg-3").0,
            DesiredRole::Replica,
            "not promoted yet"
        );
        assert_eq!(role_of(&p, "pg-1"), (DesiredRole::Replica, None));

        o.target_primary = Some("pg-3".into());
        o.instances[0].stopped = true;
        let p = plan(&cluster(3), &o);
        assert!(p.fence.is_empty());
        assert_eq!(role_of(&p, "pg-3").0, DesiredRole::Primary);
        assert_eq!(
            role_of(&p, "pg-2"),
            (DesiredRole::Replica, Some("pg-1".into()))
        );
        assert_eq!(p.current_primary.as_deref(), Some("pg-1"));

        // pg-3 runs as primary: the transition is complete, everyone follows it.
        if let Some(s) = o.instances[2].status.as_mut() {
            s.is_primary = true;
            s.role = Role::Primary;
        }
        let p = plan(&cluster(3), &o);
        assert_eq!(p.current_primary.as_deref(), Some("pg-3"));
        assert_eq!(
            role_of(&p, "pg-1"),
            (DesiredRole::Replica, Some("pg-3".into()))
        );
        assert_eq!(
            role_of(&p, "pg-2"),
            (DesiredRole::Replica, Some("pg-3".into()))
        );
        assert_ne!(p.phase, phase::FAILING_OVER);
    }

    #[test]
    fn a_target_told_to_promote_keeps_the_role_through_a_bad_report() {
        let mut o = three();
        kill_primary(&mut o);
        o.target_primary = Some("pg-3".into());
        o.instances[0].stopped = true;
        o.instances[2].told_primary = true;
        // Promoting: its report says "down" (an error after promotion), no WAL position.
        if let Some(s) = o.instances[2].status.as_mut() {
            s.role = Role::Down;
            s.ready = false;
            s.received_lsn = None;
            s.current_lsn = None;
        }
        o.instances[2].unhealthy_for = Some(Duration::from_millis(300));
        let p = plan(&cluster(3), &o);
        assert_eq!(p.target_primary.as_deref(), Some("pg-3"));
        assert_eq!(role_of(&p, "pg-3").0, DesiredRole::Primary, "not demoted");
        assert!(p.fence.is_empty());

        // It fails for good: another is chosen, but the first may be primary already, so it
        // is fenced and nobody is promoted in the same pass.
        o.instances[2].unhealthy_for = Some(super::FAILURE_GRACE);
        let p = plan(&cluster(3), &o);
        assert_eq!(p.target_primary.as_deref(), Some("pg-2"));
        assert_eq!(p.fence, ["pg-3"]);
        assert!(p.instances.iter().all(|i| i.role == DesiredRole::Replica));

        // Fenced by the user instead: given up the same way.
        let mut fenced = o.clone();
        fenced.instances[2].unhealthy_for = None;
        fenced.instances[2].fenced = true;
        let p = plan(&cluster(3), &fenced);
        assert_eq!(p.target_primary.as_deref(), Some("pg-2"));
        assert_eq!(p.fence, ["pg-3"]);

        // Once it is provably stopped, the new target is promoted.
        o.target_primary = Some("pg-2".into());
        o.instances[2].told_primary = false;
        o.instances[2].stopped = true;
        o.instances[2].dead = true;
        let p = plan(&cluster(3), &o);
        assert_eq!(p.target_primary.as_deref(), Some("pg-2"));
        assert_eq!(role_of(&p, "pg-2").0, DesiredRole::Primary);
    }

    #[test]
    fn a_short_outage_is_left_to_the_instance_manager() {
        let mut o = three();
        o.instances[0].status = None;
        o.instances[0].unhealthy_for = Some(super::FAILURE_GRACE / 2);
        let p = plan(&cluster(3), &o);
        assert_eq!(p.target_primary.as_deref(), Some("pg-1"));
        assert!(p.fence.is_empty());
        o.instances[0].unhealthy_for = Some(super::FAILURE_GRACE);
        assert_eq!(
            plan(&cluster(3), &o).target_primary.as_deref(),
            Some("pg-3")
        );
        // failoverDelay adds to the grace period.
        let mut c = cluster(3);
        c.spec.failover_delay = Some(10);
        assert_eq!(plan(&c, &o).target_primary.as_deref(), Some("pg-1"));
    }

    #[test]
    fn switchover_waits_for_the_shutdown_checkpoint() {
        let mut o = three();
        o.promote_request = Some("pg-2".into());
        let p = plan(&cluster(3), &o);
        assert_eq!(p.phase, phase::SWITCHOVER);
        assert_eq!(p.target_primary.as_deref(), Some("pg-2"));
        assert!(
            p.fence.is_empty(),
            "a healthy primary is demoted, not killed"
        );
        assert_eq!(role_of(&p, "pg-1"), (DesiredRole::Replica, None));
        assert_eq!(role_of(&p, "pg-2").0, DesiredRole::Replica);

        // pg-1 stopped cleanly at 0/400; pg-2 has only 0/100.
        o.target_primary = Some("pg-2".into());
        o.instances[0].stopped = true;
        o.instances[0].unhealthy_for = Some(Duration::from_millis(100));
        if let Some(s) = o.instances[0].status.as_mut() {
            s.is_primary = false;
            s.role = Role::Down;
            s.ready = false;
            s.shutdown_checkpoint = Some(Lsn(0x400));
        }
        let p = plan(&cluster(3), &o);
        assert_eq!(role_of(&p, "pg-2").0, DesiredRole::Replica, "waits for WAL");
        if let Some(s) = o.instances[1].status.as_mut() {
            s.received_lsn = Some(Lsn(0x428));
        }
        let p = plan(&cluster(3), &o);
        assert_eq!(role_of(&p, "pg-2").0, DesiredRole::Primary);
    }

    #[test]
    fn a_switchover_target_that_never_catches_up_gives_way_to_the_most_advanced() {
        let mut o = three();
        o.promote_request = Some("pg-2".into());
        o.target_primary = Some("pg-2".into());
        o.instances[0].stopped = true;
        o.instances[0].unhealthy_for = Some(super::FAILURE_GRACE);
        if let Some(s) = o.instances[0].status.as_mut() {
            s.is_primary = false;
            s.role = Role::Down;
            s.shutdown_checkpoint = Some(Lsn(0x400));
        }
        // pg-2 has 0/100, pg-3 0/200: neither has the checkpoint; pg-3 is the most advanced.
        let p = plan(&cluster(3), &o);
        assert_eq!(p.target_primary.as_deref(), Some("pg-3"));
        o.target_primary = Some("pg-3".into());
        assert_eq!(
            role_of(&plan(&cluster(3), &o), "pg-3").0,
            DesiredRole::Primary
        );
    }

    #[test]
    fn quorum_failover_never_guesses() {
        let mut c = cluster(3);
        c.spec.postgresql =
            Some(serde_yaml_ng::from_str("synchronous:\n  method: any\n  number: 1\n").unwrap());
        let mut o = three();
        assert_eq!(
            plan(&c, &o).synchronous_standby_names,
            "ANY 1 (\"pg-2\", \"pg-3\")"
        );
        kill_primary(&mut o);
        o.instances[2].status = None; // pg-3 (which may hold the last commit) is unreachable
        let p = plan(&c, &o);
        assert_eq!(p.target_primary.as_deref(), Some("pg-1"));
        assert!(p
            .blocked
            .as_deref()
            .unwrap_or_default()
            .contains("only 1 of the 2"));
        assert_eq!(p.phase, phase::FAILING_OVER);
    }

    #[test]
    fn a_primary_its_replicas_still_stream_from_is_not_failed_over() {
        let mut o = three();
        o.instances[0].status = None; // the controller cannot reach pg-1's manager
        o.instances[0].unhealthy_for = Some(super::FAILURE_GRACE * 3);
        for i in 1..3 {
            if let Some(s) = o.instances[i].status.as_mut() {
                s.following = Some("pg-1".into());
            }
        }
        assert_eq!(
            plan(&cluster(3), &o).target_primary.as_deref(),
            Some("pg-1")
        );
        // Once they lose it too, it is failed over.
        for i in 1..3 {
            if let Some(s) = o.instances[i].status.as_mut() {
                s.is_wal_receiver_active = false;
            }
        }
        assert_eq!(
            plan(&cluster(3), &o).target_primary.as_deref(),
            Some("pg-3")
        );
    }

    #[test]
    fn a_partitioned_primary_is_failed_over_before_the_wal_receivers_notice() {
        let mut o = three();
        o.instances[0].status = None; // the controller cannot reach pg-1's manager
        o.instances[0].unhealthy_for = Some(super::FAILURE_GRACE);
        for i in 1..3 {
            if let Some(s) = o.instances[i].status.as_mut() {
                s.following = Some("pg-1".into());
                s.upstream_seen_ms_ago = Some(100); // they still reach it
            }
        }
        assert_eq!(
            plan(&cluster(3), &o).target_primary.as_deref(),
            Some("pg-1"),
            "the controller is the one cut off"
        );
        // Their WAL receivers still say active (until wal_receiver_timeout), but they have not
        // reached pg-1 for two seconds: it is cut off from everyone.
        for i in 1..3 {
            if let Some(s) = o.instances[i].status.as_mut() {
                s.upstream_seen_ms_ago = Some(2000);
            }
        }
        let p = plan(&cluster(3), &o);
        assert_eq!(p.target_primary.as_deref(), Some("pg-3"));
        assert_eq!(p.fence, ["pg-1"], "fenced before anything is promoted");
    }

    #[test]
    fn a_primary_cut_off_from_everyone_is_failed_over_after_the_shorter_grace() {
        let mut o = three();
        o.instances[0].status = None; // the controller cannot reach pg-1's manager
        o.instances[0].unhealthy_for = Some(super::CUT_OFF_GRACE);
        for i in 1..3 {
            if let Some(s) = o.instances[i].status.as_mut() {
                s.following = Some("pg-1".into());
                s.upstream_seen_ms_ago = Some(super::UPSTREAM_REACH_MAX_AGE_MS + 200);
            }
        }
        let p = plan(&cluster(3), &o);
        assert_eq!(p.target_primary.as_deref(), Some("pg-3"));
        assert_eq!(p.fence, ["pg-1"], "fenced before anything is promoted");

        // Not before the grace.
        o.instances[0].unhealthy_for = Some(super::CUT_OFF_GRACE - Duration::from_millis(1));
        assert_eq!(
            plan(&cluster(3), &o).target_primary.as_deref(),
            Some("pg-1")
        );
        o.instances[0].unhealthy_for = Some(super::CUT_OFF_GRACE);

        // One replica still reaches it: only the controller is cut off from it (and the
        // majority keeps its lease), so no failover.
        if let Some(s) = o.instances[1].status.as_mut() {
            s.upstream_seen_ms_ago = Some(100);
        }
        assert_eq!(
            plan(&cluster(3), &o).target_primary.as_deref(),
            Some("pg-1")
        );

        // A replica that does not say how long ago it reached the primary (an older manager)
        // is no witness: the usual grace applies.
        if let Some(s) = o.instances[1].status.as_mut() {
            s.upstream_seen_ms_ago = None;
            s.is_wal_receiver_active = false;
        }
        if let Some(s) = o.instances[2].status.as_mut() {
            s.is_wal_receiver_active = false;
        }
        assert_eq!(
            plan(&cluster(3), &o).target_primary.as_deref(),
            Some("pg-1")
        );
        o.instances[0].unhealthy_for = Some(super::FAILURE_GRACE);
        assert_eq!(
            plan(&cluster(3), &o).target_primary.as_deref(),
            Some("pg-3")
        );

        // A primary whose manager answers (its PostgreSQL down, restarting in place) keeps the
        // usual grace even when no replica reaches it as primary.
        let mut o = three();
        o.instances[0].unhealthy_for = Some(super::CUT_OFF_GRACE);
        if let Some(s) = o.instances[0].status.as_mut() {
            s.is_primary = false;
            s.role = Role::Down;
            s.ready = false;
        }
        for i in 1..3 {
            if let Some(s) = o.instances[i].status.as_mut() {
                s.following = Some("pg-1".into());
                s.upstream_seen_ms_ago = Some(super::UPSTREAM_REACH_MAX_AGE_MS + 200);
            }
        }
        assert_eq!(
            plan(&cluster(3), &o).target_primary.as_deref(),
            Some("pg-1")
        );

        // No replica reports fresh: the controller may be the one cut off from everything.
        let mut o = three();
        o.instances[0].status = None;
        o.instances[0].unhealthy_for = Some(super::CUT_OFF_GRACE);
        for i in 1..3 {
            o.instances[i].status = None;
            o.instances[i].unhealthy_for = Some(super::CUT_OFF_GRACE);
        }
        assert_eq!(
            plan(&cluster(3), &o).target_primary.as_deref(),
            Some("pg-1")
        );
    }

    #[test]
    fn a_second_primary_is_fenced() {
        let mut o = three();
        if let Some(s) = o.instances[1].status.as_mut() {
            s.is_primary = true;
        }
        assert_eq!(plan(&cluster(3), &o).fence, ["pg-2"]);
    }
}
