//! The local platform under the controller's pass (`pgherd_controller::reconcile::Platform`):
//! observing is reading pid files and each instance manager's `/pg/status`; fencing is killing
//! an instance's processes; applying is writing `instance.json` files and starting
//! `pgherd instance run` processes; removing is stopping and deleting instance directories.
//! The order of these steps and every verdict are the controller's.

use crate::control::{ClusterTask, Prelude};
use crate::desired::{ClusterContext, InstanceAddress};
use crate::state::read_json;
use crate::stores::ClusterStore;
use crate::LocalError;
use pgherd_api::Cluster;
use pgherd_controller::instance_spec::SpecContext;
use pgherd_controller::phase;
use pgherd_controller::plan::{Observation, Plan};
use pgherd_controller::reconcile::{Observed, Platform};
use pgherd_instance_manager::PgBinaries;
use pgherd_instance_protocol::InstanceSpec;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// One pass's view of the local platform.
#[derive(Debug)]
pub(crate) struct LocalPass<'a> {
    task: &'a mut ClusterTask,
    prelude: &'a Prelude,
    observation: Option<Observation>,
    applied: Applied,
    /// The data's major (`pgDataImageInfo`): the binaries run it, whatever the spec asks
    /// for, until a major upgrade moved the data.
    major: Option<u32>,
}

/// What applying found out, for the rest of the pass (status, backups).
#[derive(Debug, Default)]
pub(crate) struct Applied {
    /// Every instance's addresses.
    pub ports: BTreeMap<String, InstanceAddress>,
    /// The cluster's archive, when usable.
    pub archive: Option<ClusterStore>,
    /// Why the archive cannot be used.
    pub archive_problem: Option<String>,
    /// The instances archive WAL (a store is configured and resolved).
    pub archive_configured: bool,
    /// Why an instance's manager exited, when it did without a report.
    pub manager_errors: BTreeMap<String, String>,
}

impl<'a> LocalPass<'a> {
    pub fn new(task: &'a mut ClusterTask, prelude: &'a Prelude, major: Option<u32>) -> Self {
        Self {
            task,
            prelude,
            observation: None,
            applied: Applied::default(),
            major,
        }
    }

    pub fn finish(self) -> Applied {
        self.applied
    }

    /// The PostgreSQL binaries for the cluster's major version (looked up once).
    fn bin_dir(&mut self, cluster: &Cluster) -> Result<std::path::PathBuf, LocalError> {
        let major = self.major_of(cluster);
        match (&self.task.plane.postgres_bin, major) {
            (Some(dir), _) => Ok(dir.clone()),
            (None, Some(major)) => match &self.task.runtime.bin_dir {
                Some((m, dir)) if *m == major => Ok(dir.clone()),
                _ => {
                    let dir = PgBinaries::locate(major, None)?.dir;
                    self.task.runtime.bin_dir = Some((major, dir.clone()));
                    Ok(dir)
                }
            },
            (None, None) => Err(LocalError::Invalid(format!(
                "cluster {}: cannot tell the PostgreSQL major version from spec.imageName",
                self.task.name
            ))),
        }
    }

    /// The major the instances run: the data's, else the spec's.
    fn major_of(&self, cluster: &Cluster) -> Option<u32> {
        self.major.or_else(|| cluster.major_version().map(|m| m.0))
    }

    /// The primary's results for Databases, Publications, Subscriptions and DatabaseRoles
    /// become their status.
    fn database_status(&self, cluster: &Cluster, plan: &Plan) -> Result<(), LocalError> {
        let Some(primary) = plan.current_primary.as_deref().and_then(|p| {
            self.observation
                .as_ref()
                .and_then(|o| o.instances.iter().find(|i| i.name == p))
        }) else {
            return Ok(());
        };
        if let Some(status) = &primary.status {
            let spec: Option<InstanceSpec> = read_json(
                &self
                    .prelude
                    .instances_dir
                    .join(&primary.name)
                    .join("instance.json"),
            )?;
            let applied = spec.filter(|s| status.applied_generation >= s.generation);
            let (state, namespace) = (&self.task.plane.state, &self.task.namespace);
            crate::declarative::write_database_status(
                state,
                namespace,
                &status.database_results,
                applied.as_ref(),
            )?;
            crate::logical::write_results(state, namespace, status, applied.as_ref())?;
            let roles = crate::database_roles::write_status(
                state,
                namespace,
                cluster,
                &status.role_results,
                applied.as_ref(),
            );
            self.task
                .plane
                .metrics
                .controller_pass("database-role", roles.is_ok());
            roles?;
        }
        Ok(())
    }
}

impl Platform for LocalPass<'_> {
    type Error = LocalError;

    async fn observe(&mut self, cluster: &Cluster) -> Result<Observed, LocalError> {
        let previous = self.prelude.previous.as_ref();
        let (mut observation, seen) = crate::observation::observe(
            &self.task.name,
            cluster,
            &self.prelude.instances_dir,
            previous,
            &self.prelude.restart_annotation,
            crate::state::read_text(&self.prelude.promote_file)
                .ok()
                .flatten()
                .map(|s| s.trim().to_string()),
            &mut self.task.runtime.since,
            &mut self.task.runtime.unreachable,
            &self.prelude.controller,
        )
        .await?;
        observation.instance_restarts = read_json(
            &self
                .prelude
                .cluster_dir
                .join(crate::control::RESTART_REQUESTS),
        )?
        .unwrap_or_default();
        // An instance being removed is no longer part of the cluster.
        let removing = &self.task.runtime.removing;
        observation
            .instances
            .retain(|i| !removing.contains_key(&i.name));
        self.applied.ports = seen.ports;
        self.applied.manager_errors = seen.manager_errors;
        self.applied.ports.retain(|i, _| !removing.contains_key(i));
        for i in &observation.instances {
            tracing::debug!(
                instance = %i.name,
                unhealthy_for = ?i.unhealthy_for,
                dead = i.dead,
                stopped = i.stopped(),
                role = ?i.status.as_ref().map(|s| s.role),
                wal = ?i.status.as_ref().and_then(|s| s.wal_position()).map(|l| l.to_string()),
                shutdown_checkpoint = ?i.status.as_ref().and_then(|s| s.shutdown_checkpoint).map(|l| l.to_string()),
                "observed"
            );
        }
        self.observation = Some(observation.clone());
        Ok(Observed {
            observation,
            not_running: seen.managers_down,
            previous_phase: previous.map(|p| p.phase.clone()),
            previous_primary: previous.and_then(|p| p.current_primary.clone()),
        })
    }

    async fn clear_switchover_request(&mut self) -> Result<(), LocalError> {
        match std::fs::remove_file(&self.prelude.promote_file) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(LocalError::io(
                "cannot remove",
                &self.prelude.promote_file,
                e,
            )),
        }
    }

    async fn before_apply(&mut self, plan: &Plan) {
        // The poolers are locked only when a switchover starts or ends.
        let runtime = &mut self.task.runtime;
        if plan.phase == phase::SWITCHOVER || runtime.last_phase == phase::SWITCHOVER {
            self.task
                .plane
                .poolers
                .lock()
                .await
                .before_cluster_apply(&self.task.namespace, &self.task.name, plan)
                .await;
        }
        self.task.runtime.last_phase = plan.phase.to_string();
    }

    async fn fence(&mut self, instance: &str) {
        let dir = self.prelude.instances_dir.join(instance);
        let _ = tokio::task::spawn_blocking(move || {
            crate::instances::kill_instance(&dir, Duration::from_secs(5))
        })
        .await;
    }

    async fn apply_instances(
        &mut self,
        cluster: &Cluster,
        plan: &Plan,
        starts: &BTreeSet<String>,
    ) -> Result<BTreeMap<String, String>, LocalError> {
        let state = &self.task.plane.state;
        let namespace = &self.task.namespace;
        let roles = crate::declarative::roles(
            state,
            namespace,
            cluster,
            &self.prelude.cluster_dir.join("role-passwords"),
            &self.task.plane.user,
        )?;
        let databases = crate::declarative::databases(state, namespace, &self.task.name)?;
        let publications = crate::logical::publications(state, namespace, &self.task.name)?;
        let (subscriptions, unspecified) = crate::logical::subscriptions(
            state,
            namespace,
            cluster,
            &self.prelude.cluster_dir.join("external"),
            &self.task.plane.user,
        )?;
        crate::logical::write_status(state, "Subscription", namespace, &unspecified, &|_| false)?;
        self.database_status(cluster, plan)?;
        let bin_dir = self.bin_dir(cluster)?;
        let major = self.major_of(cluster).unwrap_or(0);
        let (task, prelude) = (&mut *self.task, self.prelude);
        let (state, namespace, user) = (&task.plane.state, &task.namespace, &task.plane.user);
        crate::placement::place_instances(
            cluster,
            &plan.instances,
            &prelude.instances_dir,
            &mut self.applied.ports,
            user,
        )?;
        // A query file that cannot be read must not stop the cluster: the rest applies. Said
        // once, not on every pass.
        let (mut monitoring, problems) = crate::monitoring::resolve(state, namespace, cluster);
        monitoring.backups = crate::monitoring::backup_facts(prelude.previous.as_ref());
        let problems: Vec<String> = problems.iter().map(ToString::to_string).collect();
        if task.runtime.monitoring_problems != problems {
            for p in &problems {
                tracing::warn!("metrics: {p}");
            }
            task.runtime.monitoring_problems = problems;
        }
        let (archive, wal_store, archive_problem) =
            crate::stores::prepare_archive(state, namespace, cluster, &prelude.cluster_dir, user);
        if task.runtime.archive_problem != archive_problem {
            if let Some(p) = &archive_problem {
                tracing::warn!("WAL archive: {p}");
            }
            task.runtime.archive_problem = archive_problem.clone();
        }
        self.applied.archive_configured = wal_store.is_some();
        let addresses = crate::desired::addresses(&self.applied.ports, &prelude.instances_dir);
        let replica_of = crate::external::replica_upstream(
            state,
            namespace,
            cluster,
            &prelude.cluster_dir,
            user,
        )?;
        let context = ClusterContext {
            state,
            namespace,
            user,
            database: prelude.database.clone(),
            owner: prelude.owner.clone(),
            password_file: prelude.password_file.clone(),
            ports: &self.applied.ports,
            spec: SpecContext {
                cluster,
                plan,
                bin_dir,
                major,
                os_user: user.name.clone(),
                certificates: prelude.certificates.clone(),
                roles,
                databases,
                publications,
                subscriptions,
                monitoring,
                addresses: &addresses,
                wal_store,
                lease_token: Some(prelude.controller.lease_token.clone()),
                superuser_password: prelude.superuser_password.clone(),
                pooler_auth: crate::pooler::uses_builtin_auth(state, namespace, &task.name),
                files: Default::default(),
                tablespace_volumes_everywhere: false,
                discard_older_majors: pgherd_controller::major_upgrade::old_data_may_go(
                    prelude.previous.as_ref().map(|p| p.phase.as_str()),
                    prelude
                        .previous
                        .as_ref()
                        .and_then(|p| p.pg_data_image_info.as_ref()),
                    major,
                ),
                replica_of,
            },
        };
        let mut errors = BTreeMap::new();
        for instance in &plan.instances {
            let may_start = starts.contains(&instance.name);
            if let Err(e) =
                task.apply_instance(&context, instance, &prelude.instances_dir, may_start)
            {
                errors.insert(instance.name.clone(), e.to_string());
            }
        }
        self.applied.archive = archive;
        self.applied.archive_problem = archive_problem;
        Ok(errors)
    }

    async fn remove_instances(&mut self, instances: &[String]) {
        self.task
            .start_removals(instances, &self.prelude.instances_dir);
    }
}
