//! When the operator may count an instance as stopped: lease-expiry evidence.

use super::super::pods::InstanceObjects;
use super::KubePass;
use pgherd_instance_protocol::{DesiredRole, Role};
use std::time::{Duration, Instant};

/// Added to the primary's lease before a silent instance counts as stopped: its manager
/// counts the lease from the renewal it received, which is before the operator read the
/// answer; the margin covers clock rates and scheduling.
const LEASE_MARGIN: Duration = Duration::from_millis(500);
// The primary's manager stops PostgreSQL at most MAX_FENCE_LAG after its lease ran out, by a
// clock that started no later than this operator's last report from it.
const _: () =
    assert!(LEASE_MARGIN.as_millis() > pgherd_instance_manager::lease::MAX_FENCE_LAG.as_millis());

impl KubePass<'_> {
    /// Nothing of the instance runs, as far as can be proven: its pod is gone (or ended), no
    /// other instance still hears from it, and its lease has run out since its manager last
    /// answered. A pod missing from the API is not proof on its own: a forced deletion, or a
    /// node cut off from the API server, leaves its processes running; a primary that hears
    /// from neither the operator nor a majority of its peers stops writing when its lease runs
    /// out (lease-expiry evidence).
    pub(in crate::operator) fn gone(&self, name: &str, objects: &InstanceObjects) -> bool {
        if !objects.nothing_runs() {
            return false;
        }
        let heard = self
            .reports
            .values()
            .any(|s| pgherd_controller::ha::is_fresh(s) && s.follows(name));
        !heard && self.silent_for(name) >= pgherd_controller::ha::PRIMARY_LEASE + LEASE_MARGIN
    }

    /// How long since the instance's manager last answered this operator (or since this
    /// operator started, for one never heard from).
    pub(in crate::operator) fn silent_for(&self, name: &str) -> Duration {
        self.runtime
            .last_report
            .get(name)
            .or(self.runtime.since.as_ref())
            .map_or(Duration::ZERO, Instant::elapsed)
    }

    /// For how long a [`gone`](Self::gone) instance's PostgreSQL has provably been stopped
    /// ([`ObservedInstance::stopped_for`]): its manager stopped it at the latest its lease plus
    /// [`MAX_FENCE_LAG`] after the last renewal, which came before the last report.
    ///
    /// [`MAX_FENCE_LAG`]: pgherd_instance_manager::lease::MAX_FENCE_LAG
    pub(in crate::operator) fn gone_for(
        &self,
        name: &str,
        objects: &InstanceObjects,
    ) -> Option<Duration> {
        self.gone(name, objects).then(|| {
            self.silent_for(name).saturating_sub(
                pgherd_controller::ha::PRIMARY_LEASE
                    + pgherd_instance_manager::lease::MAX_FENCE_LAG,
            )
        })
    }

    /// Its PostgreSQL provably accepts no write: it is [`gone`](Self::gone), or its manager
    /// reports it stopped under a spec that keeps it stopped.
    pub(in crate::operator) fn stopped(&self, name: &str, objects: &InstanceObjects) -> bool {
        if self.gone(name, objects) {
            return true;
        }
        match (self.reports.get(name), self.runtime.pushed.get(name)) {
            (Some(s), Some(spec)) => {
                s.role == Role::Down
                    && s.applied_generation >= spec.generation
                    && (spec.fenced
                        || (spec.role == DesiredRole::Replica && spec.primary.is_none()))
            }
            _ => false,
        }
    }
}
