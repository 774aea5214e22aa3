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

/// How long after the old primary stopped a replica's WAL position must have been sampled to
/// count as final while its WAL receiver still streams: bytes the old primary sent before it
/// stopped reach the receiver's disk within it. A receiver that stopped streaming flushed what
/// it had first, so its position is final as soon as it was sampled after the stop.
pub const FINAL_POSITION_MARGIN: Duration = Duration::from_millis(100);

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
                s.role == Role::Replica && !s.leads() && !s.disk_full && is_fresh(s)
            })
    }

    fn reports_primary(&self) -> bool {
        self.status.as_ref().is_some_and(|s| s.leads())
    }

    /// Whether it reports accepting writes (a replica cluster's designated primary does not:
    /// one that has not yet heard it no longer leads is not a second primary to fence).
    fn reports_writable(&self) -> bool {
        self.status.as_ref().is_some_and(|s| s.is_primary)
    }
}

/// The instances that may replace `old`: its usable replicas.
fn candidates<'a>(
    instances: &'a [&'a ObservedInstance],
    old: &'a str,
) -> impl Iterator<Item = &'a &'a ObservedInstance> {
    instances
        .iter()
        .filter(move |i| i.name != old && i.usable_replica())
}

/// The most advanced usable replica (most WAL received, then lowest serial), if failing over
/// to it keeps every acknowledged commit.
fn best_candidate(
    instances: &[&ObservedInstance],
    old: &str,
    sync: Option<&SyncPolicy>,
) -> Result<String, String> {
    let candidates: Vec<&&ObservedInstance> = candidates(instances, old).collect();
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

/// Whether `candidate`'s reported WAL position can no longer grow: sampled after the old
/// primary stopped (`old_stopped_for` ago), and either its WAL receiver no longer streams or
/// the sample is [`FINAL_POSITION_MARGIN`] past the stop.
fn position_final(candidate: &ObservedInstance, old_stopped_for: Duration) -> bool {
    candidate.status.as_ref().is_some_and(|s| {
        let age = Duration::from_millis(s.observed_ms_ago);
        age < old_stopped_for
            && (!s.is_wal_receiver_active || age + FINAL_POSITION_MARGIN <= old_stopped_for)
    })
}

/// The failover's candidate from final positions ([`position_final`]): a report taken before
/// the old primary stopped may miss WAL that reached that replica later, and comparing it
/// could promote a replica missing commits another one acknowledged (with `ANY` quorum
/// replication) or leave the other diverged. `Ok(None)`: wait for later reports (every fresh
/// report is final once the old primary has been stopped for [`STALE_REPORT_MS`] plus the
/// margin, so the wait is bounded).
fn final_candidate(
    instances: &[&ObservedInstance],
    old: &ObservedInstance,
    sync: Option<&SyncPolicy>,
) -> Result<Option<String>, String> {
    let stopped_for = old.stopped_for.unwrap_or_default();
    let settled = candidates(instances, &old.name).all(|i| position_final(i, stopped_for));
    if settled {
        best_candidate(instances, &old.name, sync).map(Some)
    } else {
        Ok(None)
    }
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
        if target.name != before.name && before.told_primary && !before.stopped() {
            may_be_primary = Some(before);
        }
    }

    let mut fence: Vec<String> = instances
        .iter()
        .filter(|i| i.reports_writable() && i.name != recorded.name && i.name != target.name)
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
    if !old_healthy && !recorded.stopped() {
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
        (target.told_primary || (recorded.stopped() && caught_up)) && may_be_primary.is_none();
    if recorded.stopped() && !caught_up && recorded.failed(Duration::ZERO) && !target.told_primary {
        // The target never received the old primary's shutdown checkpoint: fall back to the
        // failover rule (the most advanced replica, quorum-safe), which may be another one.
        match best_candidate(instances, &recorded.name, sync) {
            Ok(best) if best == target.name => promote = true,
            Ok(best) => target = find(&best).unwrap_or(target),
            Err(why) => blocked = Some(why),
        }
    }
    let has_shutdown_checkpoint = recorded
        .status
        .as_ref()
        .is_some_and(|s| s.shutdown_checkpoint.is_some());
    if promote && !target.told_primary && !(has_shutdown_checkpoint && caught_up) {
        // A failover (the target is not known to hold everything the old primary wrote): it
        // must be the best on final positions, which may be another replica than the one
        // chosen earlier.
        match final_candidate(instances, recorded, sync) {
            Ok(Some(best)) => target = find(&best).unwrap_or(target),
            Ok(None) => promote = false,
            Err(why) => {
                blocked = Some(why);
                promote = false;
            }
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
mod tests;
