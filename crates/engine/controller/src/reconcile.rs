//! One pass over one cluster, the same on every platform. The platform supplies facts (what it
//! observed) and carries out actions; the order of the actions and every safety verdict are
//! here:
//!
//! 1. observe, then plan (pure: [`crate::plan::plan`]);
//! 2. a switchover request that is done (or names an instance that no longer exists) is
//!    cleared;
//! 3. the platform hears the plan's phase before anything changes (its poolers pause for a
//!    switchover before the old primary is demoted);
//! 4. **fence first**: every instance the plan fences is stopped by force before any instance
//!    is given its new spec (a promotion is a spec), so nothing is promoted while a failed
//!    primary might still accept writes;
//! 5. every instance gets its spec; an instance is started only when the platform saw it not
//!    running in this same pass (a runtime that died after the observation is first seen, and
//!    failed over, rather than restarted blindly under its old spec), and never the primary
//!    being replaced until its successor is promoted;
//! 6. instances the plan removes are removed.

use crate::plan::{plan, DesiredInstance, Observation, Plan};
use pgherd_api::Cluster;
use std::collections::{BTreeMap, BTreeSet};

/// What the platform observed of a cluster for one pass.
#[derive(Debug, Clone, Default)]
pub struct Observed {
    pub observation: Observation,
    /// Instances whose runtime (instance manager) was not running when observed: with new
    /// instances, the only ones that may be started in this pass.
    pub not_running: BTreeSet<String>,
    /// The phase and primary recorded by the previous pass.
    pub previous_phase: Option<String>,
    pub previous_primary: Option<String>,
}

/// What a platform does for the pass. Facts in, actions out: no verdicts.
#[allow(async_fn_in_trait)] // used through generics only, never as `dyn`
pub trait Platform {
    type Error: std::fmt::Display;

    /// The cluster's instances as they are now.
    async fn observe(&mut self, cluster: &Cluster) -> Result<Observed, Self::Error>;
    /// The switchover request is done or impossible: forget it.
    async fn clear_switchover_request(&mut self) -> Result<(), Self::Error>;
    /// The plan (its phase and target primary), before any instance changes.
    async fn before_apply(&mut self, plan: &Plan);
    /// Stop this instance's PostgreSQL by force, now (returns once it is stopped or the
    /// platform gave up).
    async fn fence(&mut self, instance: &str);
    /// Give every instance of `plan` its spec, starting only those in `starts`; returns the
    /// instances that could not be applied, with why (one instance's trouble must not stop the
    /// others: a failover away from it is exactly what needs writing then).
    async fn apply_instances(
        &mut self,
        cluster: &Cluster,
        plan: &Plan,
        starts: &BTreeSet<String>,
    ) -> Result<BTreeMap<String, String>, Self::Error>;
    /// Remove these instances (stop them, delete their data).
    async fn remove_instances(&mut self, instances: &[String]);
}

/// What a pass decided and did.
#[derive(Debug, Clone)]
pub struct PassOutcome {
    pub plan: Plan,
    pub observation: Observation,
    /// Instances whose spec could not be applied, with why.
    pub instance_errors: BTreeMap<String, String>,
    /// The primary changed since the previous pass: `Some(true)` by a requested switchover,
    /// `Some(false)` by a failover.
    pub primary_changed: Option<bool>,
}

/// Which instances may be started in this pass (step 5 above).
pub fn starts(plan: &Plan, observed: &Observed) -> BTreeSet<String> {
    if plan.hibernation == crate::hibernation::Hibernation::Hibernating {
        return BTreeSet::new();
    }
    let replaced = plan
        .current_primary
        .as_deref()
        .filter(|c| plan.target_primary.as_deref() != Some(*c));
    plan.instances
        .iter()
        .map(|i: &DesiredInstance| i.name.as_str())
        .filter(|name| {
            let known = observed
                .observation
                .instances
                .iter()
                .any(|i| i.name == *name);
            (!known || observed.not_running.contains(*name)) && replaced != Some(*name)
        })
        .map(str::to_string)
        .collect()
}

/// One pass over `cluster` through `platform`.
pub async fn pass<P: Platform>(
    platform: &mut P,
    cluster: &Cluster,
) -> Result<PassOutcome, P::Error> {
    let observed = platform.observe(cluster).await?;
    let decided = plan(cluster, &observed.observation);
    if observed.previous_phase.as_deref() != Some(decided.phase) {
        tracing::info!(
            "{} (primary {}, target {}){}",
            decided.phase,
            decided.current_primary.as_deref().unwrap_or("-"),
            decided.target_primary.as_deref().unwrap_or("-"),
            decided
                .blocked
                .as_deref()
                .map(|b| format!(": {b}"))
                .unwrap_or_default()
        );
    }
    let mut observation = observed.observation.clone();
    let primary_changed = match (
        observed.previous_primary.as_deref(),
        decided.current_primary.as_deref(),
    ) {
        (Some(before), Some(now)) if before != now => {
            Some(observation.promote_request.as_deref() == Some(now))
        }
        _ => None,
    };
    if let Some(request) = &observation.promote_request {
        let gone = !observation.instances.iter().any(|i| &i.name == request);
        if gone || decided.current_primary.as_ref() == Some(request) {
            platform.clear_switchover_request().await?;
            observation.promote_request = None;
        }
    }
    platform.before_apply(&decided).await;
    for victim in &decided.fence {
        tracing::warn!("fencing {victim} (stopping its PostgreSQL by force)");
        platform.fence(victim).await;
    }
    let starts = starts(&decided, &observed);
    let instance_errors = platform.apply_instances(cluster, &decided, &starts).await?;
    for (instance, error) in &instance_errors {
        tracing::warn!("{instance}: {error}");
    }
    if !decided.remove.is_empty() {
        platform.remove_instances(&decided.remove).await;
    }
    Ok(PassOutcome {
        plan: decided,
        observation,
        instance_errors,
        primary_changed,
    })
}
