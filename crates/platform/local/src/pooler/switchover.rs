//! The switchover pause: the cluster's `rw` poolers are paused before the old primary is
//! demoted and resumed once the new primary serves `-rw` (or a failover starts, or
//! [`SWITCHOVER_PAUSE_LIMIT`] passed).

use super::{admin, log, PoolerRuntime, PoolerRuntimes, PAUSE_WAIT, SWITCHOVER_PAUSE_LIMIT};
use crate::status::LocalClusterStatus;
use pgherd_controller::phase;
use std::time::Instant;

impl PoolerRuntimes {
    /// Before a cluster pass applies its plan: when it starts a switchover, pause the
    /// cluster's `rw` poolers (each `PAUSE` returns once running transactions finished, or
    /// after [`PAUSE_WAIT`]), so the old primary is demoted with no transaction in flight.
    pub async fn before_cluster_apply(&mut self, namespace: &str, cluster: &str, plan_phase: &str) {
        for ((ns, name), r) in &mut self.runtimes {
            if ns != namespace || r.cluster != cluster {
                continue;
            }
            if plan_phase != phase::SWITCHOVER {
                r.switchover_handled = false;
                continue;
            }
            if !r.rw || !r.pause_on_switchover || r.switchover_handled {
                continue;
            }
            r.switchover_handled = true;
            r.switchover_since = Some(Instant::now());
            log(format!(
                "{ns}/{name}: pausing for the switchover of {cluster}"
            ));
            let mut waits = Vec::new();
            for (instance, target) in &r.targets {
                if r.applied.get(instance).is_some_and(|a| a.ready) {
                    let target = target.clone();
                    waits.push((
                        instance.clone(),
                        tokio::spawn(async move {
                            match admin(&target).await {
                                Some(c) => c.pause(PAUSE_WAIT).await.map_err(|e| e.to_string()),
                                None => Err("its admin console does not answer".to_string()),
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
                    Ok(Err(e)) => log(format!(
                        "{ns}/{name}: {instance}: {e}; the switchover goes on"
                    )),
                    Err(_) => {}
                }
            }
        }
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
    let cluster = &cluster_status.name;
    if let Some(since) = runtime.switchover_since {
        let done = cluster_status.current_primary.is_some()
            && cluster_status.current_primary == cluster_status.target_primary
            && cluster_status.phase != phase::SWITCHOVER
            && rw_has_primary;
        let failing_over = cluster_status.phase == phase::FAILING_OVER;
        if done || failing_over || since.elapsed() >= SWITCHOVER_PAUSE_LIMIT {
            log(format!(
                "{namespace}/{name}: resuming after the switchover of {cluster} ({})",
                if done {
                    "the new primary serves -rw"
                } else if failing_over {
                    "a failover is under way"
                } else {
                    "the switchover takes too long"
                }
            ));
            runtime.switchover_since = None;
            // Server connections to the old primary go; new ones reach the new one.
            for (instance, target) in &runtime.targets {
                if runtime.applied.get(instance).is_some_and(|a| a.paused) {
                    if let Some(c) = admin(target).await {
                        let _ = c.reconnect().await;
                    }
                }
            }
        }
    }
}
