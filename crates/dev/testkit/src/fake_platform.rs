//! A fake platform for the controller's pass (`pgherd_controller::reconcile`): it answers
//! `observe` with a scripted observation and records every action in order, so tests pin the
//! pass's ordering rules without processes or an API server.

use pgherd_api::Cluster;
use pgherd_controller::plan::{Observation, ObservedInstance, Plan};
use pgherd_controller::reconcile::{Observed, Platform};
use pgherd_instance_protocol::{InstanceStatus, Role};
use pgherd_postgres::Lsn;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// An action the pass asked of the platform.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    Observe,
    ClearSwitchoverRequest,
    BeforeApply(&'static str),
    Fence(String),
    /// Specs written for these instances; these were allowed to start.
    Apply {
        instances: Vec<String>,
        starts: BTreeSet<String>,
        primary: Option<String>,
    },
    Remove(Vec<String>),
}

/// The fake: what it will observe, and what it was asked to do.
#[derive(Debug, Default)]
pub struct FakePlatform {
    pub observed: Observed,
    pub calls: Vec<Call>,
    /// Instances whose spec cannot be applied, with why.
    pub failing: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Copy)]
pub struct FakeError;

impl std::fmt::Display for FakeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("fake platform error")
    }
}

impl Platform for FakePlatform {
    type Error = FakeError;

    async fn observe(&mut self, _cluster: &Cluster) -> Result<Observed, FakeError> {
        self.calls.push(Call::Observe);
        Ok(self.observed.clone())
    }

    async fn clear_switchover_request(&mut self) -> Result<(), FakeError> {
        self.calls.push(Call::ClearSwitchoverRequest);
        self.observed.observation.promote_request = None;
        Ok(())
    }

    async fn before_apply(&mut self, plan: &Plan) {
        self.calls.push(Call::BeforeApply(plan.phase));
    }

    async fn fence(&mut self, instance: &str) {
        self.calls.push(Call::Fence(instance.to_string()));
    }

    async fn apply_instances(
        &mut self,
        _cluster: &Cluster,
        plan: &Plan,
        starts: &BTreeSet<String>,
    ) -> Result<BTreeMap<String, String>, FakeError> {
        self.calls.push(Call::Apply {
            instances: plan.instances.iter().map(|i| i.name.clone()).collect(),
            starts: starts.clone(),
            primary: plan
                .instances
                .iter()
                .find(|i| i.role == pgherd_instance_protocol::DesiredRole::Primary)
                .map(|i| i.name.clone()),
        });
        Ok(self.failing.clone())
    }

    async fn remove_instances(&mut self, instances: &[String]) {
        self.calls.push(Call::Remove(instances.to_vec()));
    }
}

/// A cluster `name` of `instances` instances (PostgreSQL 15).
pub fn cluster(name: &str, instances: i64) -> Cluster {
    let mut c = Cluster::new(name, Default::default());
    c.spec.instances = Some(instances);
    c.spec.image_name = Some("ghcr.io/cloudnative-pg/postgresql:15.14".into());
    c
}

/// A healthy, streaming cluster `name-1..=n` with `name-1` primary; replica `k` has received
/// `k` × 0x100 bytes of WAL.
pub fn healthy(name: &str, n: u32) -> Observed {
    let primary = format!("{name}-1");
    let instances = (1..=n)
        .map(|serial| {
            let instance = format!("{name}-{serial}");
            let is_primary = serial == 1;
            let role = if is_primary {
                Role::Primary
            } else {
                Role::Replica
            };
            let lsn = Lsn(u64::from(serial) * 0x100);
            ObservedInstance {
                serial,
                status: Some(InstanceStatus {
                    is_primary,
                    ready: true,
                    timeline_id: Some(1),
                    is_wal_receiver_active: !is_primary,
                    following: (!is_primary).then(|| primary.clone()),
                    current_lsn: Some(lsn),
                    received_lsn: Some(lsn),
                    applied_generation: 1,
                    ..InstanceStatus::nothing_observed(&instance, role, "test")
                }),
                name: instance,
                spec_restart_token: String::new(),
                unhealthy_for: None,
                dead: false,
                stopped_for: None,
                fenced: false,
                told_primary: is_primary,
                restart_recreates: false,
                draining: false,
                storage_given_up: false,
            }
        })
        .collect();
    Observed {
        observation: Observation {
            instances,
            latest_serial: n,
            current_primary: Some(primary.clone()),
            target_primary: Some(primary.clone()),
            ..Observation::default()
        },
        not_running: BTreeSet::new(),
        previous_phase: Some(pgherd_controller::phase::HEALTHY.to_string()),
        previous_primary: Some(primary),
    }
}

/// `instance` is gone: no report, neither its manager nor its PostgreSQL runs.
pub fn kill(observed: &mut Observed, instance: &str) {
    for i in &mut observed.observation.instances {
        if i.name == instance {
            i.status = None;
            i.dead = true;
            i.stopped_for = Some(Duration::from_millis(200));
            i.unhealthy_for = Some(Duration::from_millis(200));
        }
    }
    observed.not_running.insert(instance.to_string());
}

/// `instance` froze `for_how_long` ago: its manager runs, its last report is that old.
pub fn freeze(observed: &mut Observed, instance: &str, for_how_long: Duration) {
    for i in &mut observed.observation.instances {
        if i.name == instance {
            if let Some(s) = i.status.as_mut() {
                s.observed_ms_ago = u64::try_from(for_how_long.as_millis()).unwrap_or(u64::MAX);
            }
            i.unhealthy_for = Some(for_how_long);
        }
    }
}
