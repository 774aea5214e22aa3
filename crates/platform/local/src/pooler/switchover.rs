//! The switchover pause: the cluster's `rw` poolers are paused before the old primary is
//! demoted and resumed once the new primary serves `-rw` (or a failover starts, or
//! [`SWITCHOVER_PAUSE_LIMIT`] passed).

use super::{admin, PoolerRuntime, PoolerRuntimes, PAUSE_WAIT, SWITCHOVER_PAUSE_LIMIT};
use crate::status::LocalClusterStatus;
use pgherd_controller::{phase, plan::Plan};
use std::time::{Duration, Instant};

impl PoolerRuntimes {
    /// Before a cluster pass applies its plan: when it starts a switchover, pause the
    /// cluster's `rw` poolers (each `PAUSE` returns once running transactions finished, or
    /// after [`PAUSE_WAIT`]), so the old primary is demoted with no transaction in flight.
    pub async fn before_cluster_apply(&mut self, namespace: &str, cluster: &str, plan: &Plan) {
        for ((ns, name), r) in &mut self.runtimes {
            if ns != namespace || r.cluster != cluster {
                continue;
            }
            if plan.phase != phase::SWITCHOVER {
                r.switchover_handled = false;
                continue;
            }
            if !r.rw || !r.pause_on_switchover || r.switchover_handled {
                continue;
            }
            r.switchover_handled = true;
            r.switchover_since = Some(Instant::now());
            r.switchover_to = plan.target_primary.clone();
            tracing::info!("{ns}/{name}: pausing for the switchover of {cluster}");
            let mut waits = Vec::new();
            for (instance, target) in &r.targets {
                if r.applied.get(instance).is_some_and(|a| a.ready) {
                    let target = target.clone();
                    waits.push((
                        instance.clone(),
                        tokio::spawn(async move {
                            match admin(&target).await {
                                // A PAUSE that has not finished within the wait stays in
                                // effect in PgBouncer: paused all the same (it must be
                                // resumed), though the switchover does not wait longer.
                                Some(c) => match c.pause(PAUSE_WAIT).await {
                                    Ok(()) => Ok(()),
                                    Err(e @ pgherd_pooler::AdminError::Timeout { .. }) => {
                                        Err((true, e.to_string()))
                                    }
                                    Err(e) => Err((false, e.to_string())),
                                },
                                None => {
                                    Err((false, "its admin console does not answer".to_string()))
                                }
                            }
                        }),
                    ));
                }
            }
            for (instance, wait) in waits {
                match wait.await {
                    Ok(Ok(())) => {
                        if let Some(a) = r.applied.get_mut(&instance) {
                            a.paused = true;
                        }
                    }
                    Ok(Err((pausing, e))) => {
                        if pausing {
                            if let Some(a) = r.applied.get_mut(&instance) {
                                a.paused = true;
                            }
                        }
                        tracing::warn!("{ns}/{name}: {instance}: {e}; the switchover goes on")
                    }
                    Err(_) => {}
                }
            }
        }
    }
}

/// Why a switchover pause to `new_primary` ends now, if it does: the new primary serves `-rw`
/// (the switchover is over), a failover started (a failed primary finishes no transaction:
/// waiting is pointless), or the pause lasted [`SWITCHOVER_PAUSE_LIMIT`]. The cluster's status
/// may predate the switchover (it is written after the pass that paused): only a status naming
/// `new_primary` as the current primary ends it.
pub(crate) fn resume_reason(
    cluster: &LocalClusterStatus,
    new_primary: Option<&str>,
    rw_has_primary: bool,
    paused_for: Duration,
) -> Option<&'static str> {
    if cluster.current_primary.is_some()
        && cluster.current_primary.as_deref() == new_primary
        && cluster.current_primary == cluster.target_primary
        && cluster.phase != phase::SWITCHOVER
        && rw_has_primary
    {
        Some("the new primary serves -rw")
    } else if cluster.phase == phase::FAILING_OVER {
        Some("a failover is under way")
    } else if paused_for >= SWITCHOVER_PAUSE_LIMIT {
        Some("the switchover takes too long")
    } else {
        None
    }
}

/// End `runtime`'s switchover pause when its switchover is over.
pub(super) async fn end_pause(
    runtime: &mut PoolerRuntime,
    cluster_status: &LocalClusterStatus,
    rw_has_primary: bool,
    namespace: &str,
    name: &str,
) {
    let Some(since) = runtime.switchover_since else {
        return;
    };
    let new_primary = runtime.switchover_to.as_deref();
    let Some(reason) = resume_reason(cluster_status, new_primary, rw_has_primary, since.elapsed())
    else {
        return;
    };
    tracing::info!(
        "{namespace}/{name}: resuming after the switchover of {} ({reason})",
        cluster_status.name
    );
    runtime.switchover_since = None;
    runtime.switchover_to = None;
    // Server connections to the old primary go; new ones reach the new one.
    for (instance, target) in &runtime.targets {
        if runtime.applied.get(instance).is_some_and(|a| a.paused) {
            if let Some(c) = admin(target).await {
                let _ = c.reconnect().await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster(phase: &str, current: &str, target: &str) -> LocalClusterStatus {
        LocalClusterStatus {
            name: "c".into(),
            namespace: "default".into(),
            phase: phase.into(),
            instances: 2,
            ready_instances: 2,
            current_primary: Some(current.into()),
            target_primary: Some(target.into()),
            timeline: Some(1),
            endpoints: Default::default(),
            instances_status: Vec::new(),
            latest_generated_node: 2,
            ..Default::default()
        }
    }

    #[test]
    fn a_pause_ends_with_its_switchover_a_failover_or_its_time_limit() {
        let short = Duration::from_secs(1);
        let to = Some("c-2");
        // Under way: the old primary is being demoted, or the new one is not serving yet.
        assert_eq!(
            resume_reason(&cluster(phase::SWITCHOVER, "c-1", "c-2"), to, false, short),
            None
        );
        assert_eq!(
            resume_reason(&cluster(phase::HEALTHY, "c-2", "c-2"), to, false, short),
            None
        );
        // A status written before the switchover started (healthy, the old primary serving
        // -rw) does not end it: a CI failure, transactions failed through the resumed pooler.
        assert_eq!(
            resume_reason(&cluster(phase::HEALTHY, "c-1", "c-1"), to, true, short),
            None
        );
        // Over.
        assert!(resume_reason(&cluster(phase::HEALTHY, "c-2", "c-2"), to, true, short).is_some());
        assert!(resume_reason(
            &cluster(phase::FAILING_OVER, "c-1", "c-2"),
            to,
            false,
            short
        )
        .is_some());
        // Never stuck.
        assert!(resume_reason(
            &cluster(phase::SWITCHOVER, "c-1", "c-2"),
            to,
            false,
            SWITCHOVER_PAUSE_LIMIT
        )
        .is_some());
    }
}
