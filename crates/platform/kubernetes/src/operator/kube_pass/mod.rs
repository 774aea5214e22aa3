//! The controller's pass on Kubernetes: the [`Platform`] the local platform also implements.
//! Observing is listing the Cluster's PVCs and Pods and asking each running manager for its
//! report (which renews a primary's lease); applying is creating missing PVCs and Pods,
//! pushing each manager its spec over the instance protocol and labelling the pods so the
//! Services follow the roles; fencing is deleting a pod at once.

mod bootstrap;
mod reports;
mod stop_evidence;

use super::pods::{self, InstanceObjects};
use super::references::Resolved;
use super::ClusterRuntime;
use super::OperatorError;
use crate::pod::{PGDATA, STATUS_PORT};
use crate::{labels, OperatorSettings};
use kube::api::DeleteParams;
use kube::Client;
use pgherd_api::Cluster;
use pgherd_controller::cluster_status::ConditionInput;
use pgherd_controller::instance_spec::Placement;
use pgherd_controller::plan::{fenced_instances, Observation, ObservedInstance, Plan};
use pgherd_controller::reconcile::{Observed, Platform};
use pgherd_instance_manager::status_client::{self, ClientTls};
use pgherd_instance_protocol::{DesiredRole, InstanceStatus, LeaseToken, Role};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

/// How long the operator waits for a manager (across the pod network).
pub(super) const MANAGER_TIMEOUT: Duration = Duration::from_millis(800);

use pgherd_controller::operations::RESTARTED_AT_ANNOTATION as RESTARTED_AT;

/// Where an instance's files are, as its manager sees them inside the pod (WAL on its own
/// volume with `walStorage`).
pub(super) fn placement(cluster: &Cluster) -> Placement {
    Placement {
        pgdata: PGDATA.into(),
        wal_dir: cluster
            .spec
            .wal_storage
            .is_some()
            .then(|| std::path::Path::new(crate::pod::WAL_MOUNT).join("pg_wal")),
        socket_dir: "/controller/run".into(),
        log_dir: "/controller/log".into(),
        tablespaces_dir: Some(crate::pod::TABLESPACES_MOUNT.into()),
    }
}

pub(crate) fn serial_of(cluster: &str, instance: &str) -> Option<u32> {
    instance
        .strip_prefix(cluster)?
        .strip_prefix('-')?
        .parse()
        .ok()
}

/// One pass over one Cluster.
pub(crate) struct KubePass<'a> {
    pub(super) client: Client,
    pub(super) cluster: &'a Cluster,
    pub(super) namespace: String,
    pub(super) name: String,
    pub(super) settings: &'a OperatorSettings,
    pub(super) runtime: &'a mut ClusterRuntime,
    pub(super) controller: ClientTls,
    pub(super) lease_token: LeaseToken,
    pub(super) instances: BTreeMap<String, InstanceObjects>,
    pub(super) reports: BTreeMap<String, InstanceStatus>,
    pub(super) conditions: Vec<ConditionInput>,
    /// The cluster's references (role passwords, archive) as pushed this pass.
    pub(super) resolved: Resolved,
    /// Why the references could not be read this pass.
    pub(super) reference_problem: Option<String>,
    /// The cluster's Database objects, and what the primary applies of them.
    pub(super) databases: Vec<pgherd_api::Database>,
    pub(super) database_specs: Vec<pgherd_instance_protocol::DatabaseSpec>,
    /// The user's switchover request this pass saw.
    pub(super) request_seen: Option<String>,
    /// Instances whose pod runs an older pod template (rolled by the controller's rollout).
    pub(super) outdated: BTreeSet<String>,
    /// The restart token the cluster asks for (`kubectl cnpg restart`).
    pub(super) restart_token: String,
}

impl<'a> KubePass<'a> {
    pub(crate) fn new(
        client: Client,
        cluster: &'a Cluster,
        settings: &'a OperatorSettings,
        runtime: &'a mut ClusterRuntime,
        controller: ClientTls,
        lease_token: LeaseToken,
    ) -> Self {
        KubePass {
            client,
            namespace: cluster
                .metadata
                .namespace
                .clone()
                .unwrap_or_else(|| "default".into()),
            name: cluster.metadata.name.clone().unwrap_or_default(),
            cluster,
            settings,
            runtime,
            controller,
            lease_token,
            instances: BTreeMap::new(),
            reports: BTreeMap::new(),
            conditions: Vec::new(),
            resolved: Resolved::default(),
            reference_problem: None,
            databases: Vec::new(),
            database_specs: Vec::new(),
            request_seen: None,
            outdated: BTreeSet::new(),
            restart_token: String::new(),
        }
    }

    /// `kubectl cnpg restart CLUSTER --primary` (or naming the primary) writes CloudNativePG's
    /// in-place restart phase with the user's reason: the primary then restarts in place,
    /// through the request part of its restart token. Requests an instance already runs under
    /// (an operator restarted since) are kept, so nothing restarts twice.
    fn note_primary_restart(
        &mut self,
        previous: Option<&pgherd_api::cluster::ClusterStatus>,
        primary: Option<&str>,
        observation: &Observation,
    ) {
        for i in &observation.instances {
            let running = i.status.as_ref().and_then(|s| {
                pgherd_controller::rollout::request_of(&s.restart_token).map(str::to_string)
            });
            if let Some(request) = running {
                self.runtime
                    .instance_restarts
                    .entry(i.name.clone())
                    .or_insert(request);
            }
        }
        let (phase, reason) = pgherd_controller::operations::primary_restart_phase();
        let asked = previous.is_some_and(|s| {
            s.phase.as_deref() == Some(phase) && s.phase_reason.as_deref() == Some(reason)
        });
        if let (true, Some(primary)) = (asked, primary) {
            let token = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos())
                .to_string();
            tracing::info!(
                "{}/{}: restarting the primary {primary} in place, as asked",
                self.namespace,
                self.name
            );
            self.runtime
                .instance_restarts
                .insert(primary.to_string(), token);
        }
        self.runtime
            .instance_restarts
            .retain(|name, _| self.instances.contains_key(name));
    }
}

impl Platform for KubePass<'_> {
    type Error = OperatorError;

    async fn observe(&mut self, cluster: &Cluster) -> Result<Observed, OperatorError> {
        self.instances = pods::list(&self.client, &self.namespace, &self.name).await?;
        // Positions sampled for the request only when a failover may be near (an instance
        // without a healthy report); otherwise each manager's last sample will do.
        let fresh = !self.runtime.unhealthy_since.is_empty();
        let mut asks = tokio::task::JoinSet::new();
        for (name, objects) in &self.instances {
            if let Some(ip) = objects.pod_ip() {
                let (name, tls, token) = (
                    name.clone(),
                    self.controller.clone(),
                    self.lease_token.clone(),
                );
                asks.spawn(async move {
                    let report = status_client::fetch(
                        &ip,
                        STATUS_PORT as u16,
                        &tls,
                        Some(&token),
                        fresh,
                        MANAGER_TIMEOUT,
                    )
                    .await;
                    (name, report)
                });
            }
        }
        self.reports.clear();
        self.runtime.since.get_or_insert_with(Instant::now);
        while let Some(answer) = asks.join_next().await {
            if let Ok((name, Some(report))) = answer {
                self.runtime
                    .last_report
                    .insert(name.clone(), Instant::now());
                self.reports.insert(name, report);
            }
        }
        let previous = cluster.status.as_ref();
        let current = previous.and_then(|s| s.current_primary.clone());
        let stored_target = previous.and_then(|s| s.target_primary.clone());
        // A target the operator did not write is a user's switchover request
        // (`kubectl cnpg promote`); it stands until that instance is primary or the controller
        // gives it up, as the local platform's request file does. The status keeps showing it
        // meanwhile, so an operator that restarts finds it there again.
        // A failover the controller decided (the stored phase says so) is carried on as the
        // controller's own by an operator that did not write it (one restarted mid-failover),
        // not taken for a user's switchover request.
        let failing_over = previous.and_then(|s| s.phase.as_deref())
            == Some(pgherd_controller::phase::FAILING_OVER);
        let adopted = stored_target.is_some()
            && (self.runtime.written_target == stored_target || failing_over);
        if let (Some(t), Some(c), false) = (&stored_target, &current, adopted) {
            if t != c {
                self.runtime.requested_primary = Some(t.clone());
            }
        }
        if self.runtime.requested_primary.is_some() && self.runtime.requested_primary == current {
            self.runtime.requested_primary = None;
        }
        let request = self.runtime.requested_primary.clone();
        self.request_seen = request.clone();
        // The target the controller decided (and wrote); a user's target is a request only.
        let target = if adopted {
            self.runtime
                .decided_target
                .clone()
                .or(stored_target.clone())
        } else {
            current.clone()
        };
        let fenced = fenced_instances(cluster);
        let draining = super::pods::draining_nodes(&self.client).await;
        // Every pod was deleted for a major upgrade (done or failed): the cluster comes back as
        // from hibernation, its primary first, never failed over for not being up yet.
        let after_upgrade = previous.and_then(|s| s.phase.as_deref())
            == Some(pgherd_controller::phase::MAJOR_UPGRADE);
        let hibernated = after_upgrade
            || pgherd_controller::hibernation::in_progress(
                previous
                    .and_then(|s| s.conditions.as_ref())
                    .into_iter()
                    .flatten()
                    .map(|c| (c.type_.as_str(), c.reason.as_str())),
            );
        // A node maintenance window without PVC reuse: a replica whose pod is gone is not
        // waited for where its data is, but replaced (CloudNativePG drops such PVCs).
        let replace_gone_replicas = cluster
            .spec
            .node_maintenance_window
            .as_ref()
            .is_some_and(|w| w.in_progress == Some(true) && w.reuse_pvc == Some(false))
            && pgherd_controller::hibernation::requested(cluster)
                == pgherd_controller::hibernation::Requested::Off
            && !hibernated;
        let now = Instant::now();
        let mut observation = Observation {
            latest_serial: previous
                .and_then(|s| s.latest_generated_node)
                .and_then(|n| u32::try_from(n).ok())
                .unwrap_or(0),
            current_primary: current.or(target.clone()),
            target_primary: target,
            promote_request: request,
            hibernated,
            instances: Vec::new(),
            // A replica restarts by its Pod being deleted (`kubectl cnpg restart`); the primary
            // in place, through its restart token (below).
            instance_restarts: Default::default(),
            restart_token: cluster
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(RESTARTED_AT))
                .cloned()
                .unwrap_or_default(),
        };
        let mut not_running = BTreeSet::new();
        for (name, objects) in &self.instances {
            let Some(serial) = serial_of(&self.name, name) else {
                continue;
            };
            observation.latest_serial = observation.latest_serial.max(serial);
            if objects.pod.is_none() {
                not_running.insert(name.clone());
            }
            let status = self.reports.get(name).cloned();
            let healthy = status.as_ref().is_some_and(|s| {
                s.role != Role::Down && !s.disk_full && pgherd_controller::ha::is_fresh(s)
            });
            let unhealthy_for = if healthy {
                self.runtime.unhealthy_since.remove(name);
                None
            } else {
                Some(
                    now.duration_since(
                        *self
                            .runtime
                            .unhealthy_since
                            .entry(name.clone())
                            .or_insert(now),
                    ),
                )
            };
            // Reported stopped: counted from when this operator first saw it so.
            let stopped_for = match self.gone_for(name, objects) {
                Some(gone_for) => Some(gone_for),
                None if self.stopped(name, objects) => Some(
                    now.duration_since(
                        *self
                            .runtime
                            .stopped_since
                            .entry(name.clone())
                            .or_insert(now),
                    ),
                ),
                None => None,
            };
            if stopped_for.is_none() {
                self.runtime.stopped_since.remove(name);
            }
            let pushed = self.runtime.pushed.get(name);
            observation.instances.push(ObservedInstance {
                serial,
                name: name.clone(),
                dead: self.gone(name, objects),
                stopped_for,
                fenced: fenced.iter().any(|f| f == "*" || f == name),
                // What it was told: remembered, else what its label says (operator restart).
                restart_recreates: false,
                draining: objects.node().is_some_and(|n| draining.contains(n)),
                // Only an instance this operator has heard from: a new one's pod may not
                // exist yet.
                storage_given_up: replace_gone_replicas
                    && objects.pod.is_none()
                    && self.runtime.last_report.contains_key(name),
                told_primary: match pushed {
                    Some(spec) => spec.role == DesiredRole::Primary,
                    None => {
                        objects.label(labels::INSTANCE_ROLE).as_deref()
                            == Some(crate::labels::InstanceRole::Primary.as_str())
                    }
                },
                spec_restart_token: match pushed {
                    Some(spec) => spec.restart_token.clone(),
                    None => status
                        .as_ref()
                        .map(|s| s.restart_token.clone())
                        .unwrap_or_default(),
                },
                status,
                unhealthy_for,
            });
        }
        self.note_primary_restart(
            previous,
            observation.current_primary.as_deref(),
            &observation,
        );
        observation.instance_restarts = self.runtime.instance_restarts.clone();
        self.outdated =
            super::template_roll::outdated(cluster, self.settings, &self.instances, &self.name);
        for instance in &mut observation.instances {
            if self.outdated.contains(&instance.name) {
                super::template_roll::mark(instance);
            }
        }
        self.restart_token = observation.restart_token.clone();
        self.runtime
            .unhealthy_since
            .retain(|name, _| self.instances.contains_key(name));
        self.runtime
            .stopped_since
            .retain(|name, _| self.instances.contains_key(name));
        self.runtime
            .last_report
            .retain(|name, _| self.instances.contains_key(name));
        self.resolve_references(cluster).await;
        match super::databases::list(&self.client, &self.namespace, &self.name).await {
            Ok(list) => {
                self.database_specs =
                    super::databases::specs(&self.client, &self.namespace, &list).await;
                self.databases = list;
            }
            Err(e) => {
                // Push what was pushed before rather than dropping the databases from the spec.
                tracing::debug!(
                    "{}/{}: cannot list Databases: {e}",
                    self.namespace,
                    self.name
                );
                self.database_specs = self
                    .runtime
                    .pushed
                    .values()
                    .find(|s| s.role == DesiredRole::Primary)
                    .map(|s| s.databases.clone())
                    .unwrap_or_default();
            }
        }
        Ok(Observed {
            observation,
            not_running,
            previous_phase: previous.and_then(|s| s.phase.clone()),
            previous_primary: previous.and_then(|s| s.current_primary.clone()),
        })
    }

    async fn clear_switchover_request(&mut self) -> Result<(), OperatorError> {
        // Done, or it names an instance that no longer exists. The status written after this
        // pass records the plan's target.
        self.runtime.requested_primary = None;
        Ok(())
    }

    async fn before_apply(&mut self, plan: &Plan) {
        // A switchover starts: the rw poolers pause before the old primary is demoted (once
        // per switchover; a pooler that does not say so in time does not hold it up).
        let target = plan
            .target_primary
            .clone()
            .filter(|_| plan.phase == pgherd_controller::phase::SWITCHOVER);
        let Some(target) = target else {
            self.runtime.poolers_paused_for = None;
            return;
        };
        if self.runtime.poolers_paused_for.as_ref() == Some(&target) {
            return;
        }
        self.runtime.poolers_paused_for = Some(target.clone());
        let late = crate::pooler_switchover::wait_paused(
            &self.client,
            &self.namespace,
            &self.name,
            &target,
        )
        .await;
        if !late.is_empty() {
            tracing::warn!(
                "{}/{}: pooler pods {late:?} did not pause for the switchover to {target} in time; going on",
                self.namespace,
                self.name
            );
        }
    }

    async fn fence(&mut self, instance: &str) {
        // Deleting the pod at once stops its processes; its data stays.
        let params = DeleteParams {
            grace_period_seconds: Some(0),
            ..DeleteParams::default()
        };
        match self.pods().delete(instance, &params).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {} // gone already
            Err(e) => tracing::warn!("cannot delete pod {instance} to fence it: {e}"),
        }
    }

    async fn apply_instances(
        &mut self,
        cluster: &Cluster,
        plan: &Plan,
        starts: &BTreeSet<String>,
    ) -> Result<BTreeMap<String, String>, OperatorError> {
        let mut errors = BTreeMap::new();
        let mut recreating = BTreeSet::new();
        for instance in &plan.instances {
            if self.outdated.contains(&instance.name)
                && super::template_roll::chosen(&instance.restart_token, &self.restart_token)
            {
                self.recreate_pod(&instance.name).await;
                recreating.insert(instance.name.clone());
            }
        }
        for instance in &plan.instances {
            let made = async {
                self.ensure_claims(instance.serial).await?;
                if starts.contains(&instance.name)
                    && self
                        .instances
                        .get(&instance.name)
                        .is_none_or(|i| i.pod.is_none())
                {
                    self.create_pod(instance.serial).await?;
                }
                Ok::<_, OperatorError>(())
            }
            .await;
            if let Err(e) = made {
                errors.insert(instance.name.clone(), e.to_string());
            }
        }
        self.push_specs(cluster, plan, &recreating, &mut errors)
            .await;
        for instance in &plan.instances {
            if self
                .instances
                .get(&instance.name)
                .is_some_and(|i| i.pod_ip().is_some())
            {
                let role = self.role_label(&instance.name, plan);
                if let Err(e) = self.label(&instance.name, role).await {
                    errors.insert(instance.name.clone(), e.to_string());
                }
            }
        }
        self.runtime
            .pushed
            .retain(|name, _| self.instances.contains_key(name));
        self.conditions
            .push(super::template_roll::condition(&self.outdated));
        if let Some(condition) = self.archiving_condition(cluster, plan) {
            self.conditions.push(condition);
        }
        if plan.hibernation == pgherd_controller::hibernation::Hibernation::Hibernating {
            // Hibernating: each pod goes once its PostgreSQL stopped cleanly (its spec keeps
            // it stopped); the PVCs stay.
            let stopped: Vec<String> = self
                .instances
                .iter()
                .filter(|(name, objects)| objects.pod.is_some() && self.stopped(name, objects))
                .map(|(name, _)| name.clone())
                .collect();
            for instance in stopped {
                self.delete_pod(&instance, "to hibernate the cluster").await;
            }
        }
        let no_pod_left = self.instances.values().all(|i| i.pod.is_none());
        if let Some(condition) =
            pgherd_controller::hibernation::condition(cluster, plan, no_pod_left)
        {
            self.conditions.push(condition);
        }
        Ok(errors)
    }

    async fn remove_instances(&mut self, instances: &[String]) {
        for instance in instances {
            let claims = self
                .instances
                .get(instance)
                .map(|i| i.claims.clone())
                .unwrap_or_default();
            if let Err(e) = self.pods().delete(instance, &DeleteParams::default()).await {
                if !matches!(&e, kube::Error::Api(r) if r.code == 404) {
                    tracing::warn!("cannot delete pod {instance}: {e}");
                }
            }
            for claim in claims {
                if let Err(e) = self.claims().delete(&claim, &DeleteParams::default()).await {
                    if !matches!(&e, kube::Error::Api(r) if r.code == 404) {
                        tracing::warn!("cannot delete PVC {claim}: {e}");
                    }
                }
            }
            self.runtime.pushed.remove(instance);
        }
    }
}
