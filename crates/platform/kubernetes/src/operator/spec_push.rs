//! The instance specs one pass pushes: each instance's spec built by the controller from the
//! plan and the cluster's references, sent over mutual TLS when it changed or was not yet
//! applied (`PUT /pg/spec`), and remembered so an unchanged spec is not sent again.

use super::kube_pass::{placement, KubePass, MANAGER_TIMEOUT};
use crate::pod::{STATUS_PORT, SUPERUSER_PASSWORD_FILE};
use pgherd_api::Cluster;
use pgherd_controller::instance_spec::SpecContext;
use pgherd_controller::plan::Plan;
use pgherd_instance_manager::status_client;
use pgherd_instance_protocol::PasswordSource;
use std::collections::{BTreeMap, BTreeSet};

impl KubePass<'_> {
    /// Push each planned instance's spec (except those whose pod is being recreated); an
    /// instance whose spec cannot be built gets its error in `errors`.
    pub(super) async fn push_specs(
        &mut self,
        cluster: &Cluster,
        plan: &Plan,
        recreating: &BTreeSet<String>,
        errors: &mut BTreeMap<String, String>,
    ) {
        let major = cluster.major_version().map_or(0, |m| m.0);
        let addresses = self.addresses();
        let context = SpecContext {
            cluster,
            plan,
            bin_dir: format!("/usr/lib/postgresql/{major}/bin").into(),
            major,
            os_user: "postgres".into(),
            certificates: crate::pod::certificate_paths(cluster),
            roles: self.resolved.roles.clone(),
            databases: self.database_specs.clone(),
            publications: Vec::new(),
            subscriptions: Vec::new(),
            monitoring: Default::default(),
            addresses: &addresses,
            wal_store: self.resolved.wal_store.clone(),
            lease_token: Some(self.lease_token.clone()),
            superuser_password: if cluster.spec.enable_superuser_access == Some(true) {
                PasswordSource::File {
                    path: SUPERUSER_PASSWORD_FILE.into(),
                }
            } else {
                PasswordSource::Disabled
            },
            pooler_auth: self.runtime.pooler_auth,
            files: self.resolved.files.clone(),
            tablespace_volumes_everywhere: self.outdated.is_empty(),
            discard_older_majors: pgherd_controller::major_upgrade::old_data_may_go(
                cluster.status.as_ref().and_then(|s| s.phase.as_deref()),
                cluster
                    .status
                    .as_ref()
                    .and_then(|s| s.pg_data_image_info.as_ref()),
                major,
            ),
            replica_of: self.resolved.replica_of.clone().and_then(Result::ok),
        };
        let mut pushes = tokio::task::JoinSet::new();
        for instance in &plan.instances {
            if recreating.contains(&instance.name) {
                continue;
            }
            let Some(host) = addresses.get(&instance.name).map(|a| a.host.clone()) else {
                continue;
            };
            // An instance waiting for its turn to be recreated keeps the token it runs under.
            let mut instance = instance.clone();
            instance.restart_token = super::template_roll::unmarked(&instance.restart_token);
            let instance = &instance;
            let bootstrap = match self.bootstrap(instance.data_source) {
                Ok(b) => b,
                Err(e) => {
                    errors.insert(instance.name.clone(), e.to_string());
                    continue;
                }
            };
            let Some(mut spec) = context.instance_spec(instance, &placement(cluster), bootstrap)
            else {
                if let Some(Err(problem)) = self
                    .resolved
                    .replica_of
                    .as_ref()
                    .filter(|_| instance.role == pgherd_instance_protocol::DesiredRole::Primary)
                {
                    errors.insert(instance.name.clone(), problem.clone());
                }
                continue;
            };
            let applied = self
                .reports
                .get(&instance.name)
                .map_or(0, |s| s.applied_generation);
            let previous = self.runtime.pushed.get(&instance.name);
            let unchanged = previous.is_some_and(|p| {
                let mut p = p.clone();
                p.generation = 0;
                p == spec
            });
            spec.generation = match previous {
                Some(p) if unchanged => p.generation,
                Some(p) => p.generation.max(applied) + 1,
                None => applied + 1,
            };
            let delivered = unchanged && applied >= spec.generation;
            self.runtime
                .pushed
                .insert(instance.name.clone(), spec.clone());
            if !delivered {
                let tls = self.controller.clone();
                pushes.spawn(async move {
                    let result = status_client::push_spec(
                        &host,
                        STATUS_PORT as u16,
                        &tls,
                        &spec,
                        MANAGER_TIMEOUT,
                    )
                    .await;
                    (spec.name.clone(), result)
                });
            }
        }
        while let Some(done) = pushes.join_next().await {
            if let Ok((name, Err(e))) = done {
                // Not delivered: forget it, so the next pass sends it again.
                self.runtime.pushed.remove(&name);
                tracing::debug!("{name}: spec not delivered: {e}");
            }
        }
    }
}
