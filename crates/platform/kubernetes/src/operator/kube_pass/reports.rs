//! What a pass hands on after its plan: addresses, conditions and the parts of the Cluster's
//! status that come from the primary's report.

use super::KubePass;
use crate::pod::{POSTGRES_PORT, STATUS_PORT};
use pgherd_api::Cluster;
use pgherd_controller::cluster_status::{
    archiving_condition, ConditionInput, CONTINUOUS_ARCHIVING,
};
use pgherd_controller::instance_spec::Address;
use pgherd_controller::plan::Plan;
use std::collections::BTreeMap;

impl KubePass<'_> {
    /// Each instance's pod address (for the Cluster's status).
    pub(crate) fn pod_addresses(&self) -> BTreeMap<String, String> {
        self.instances
            .iter()
            .filter_map(|(name, i)| i.pod_ip().map(|ip| (name.clone(), ip)))
            .collect()
    }

    /// Conditions this platform adds to the status.
    pub(crate) fn conditions(&self) -> Vec<ConditionInput> {
        self.conditions.clone()
    }

    /// The user's switchover request this pass saw (before the pass answered it).
    pub(crate) fn request_seen(&self) -> Option<String> {
        self.request_seen.clone()
    }

    /// The cluster's archive, resolved.
    pub(crate) fn archive(&self) -> Option<&super::super::references::Archive> {
        self.resolved.archive.as_ref()
    }

    /// What the cluster's Backups need from this pass.
    pub(crate) fn backup_pass<'p>(
        &'p self,
        plan: &'p Plan,
        addresses: &'p BTreeMap<String, String>,
    ) -> super::super::backups::BackupPass<'p> {
        super::super::backups::BackupPass {
            client: &self.client,
            cluster: self.cluster,
            archive: self.resolved.archive.as_ref(),
            archive_problem: self.reference_problem.as_deref(),
            plan,
            reports: &self.reports,
            addresses,
            tls: &self.controller,
        }
    }

    /// `status.managedRolesStatus` from the primary's report, when it reported.
    pub(crate) fn managed_roles_status(
        &self,
        plan: &Plan,
    ) -> Option<pgherd_api::cluster::ManagedRoles> {
        let primary = plan.current_primary.as_deref()?;
        let report = self.reports.get(primary)?;
        pgherd_controller::declarative::managed_roles_status(&report.role_results)
    }

    /// `status.tablespacesStatus` from the primary's report, when it reported.
    pub(crate) fn tablespaces_status(
        &self,
        cluster: &Cluster,
        plan: &Plan,
    ) -> Option<Vec<pgherd_api::cluster::TablespaceState>> {
        let primary = plan.current_primary.as_deref()?;
        let report = self.reports.get(primary)?;
        let declared =
            pgherd_controller::instance_spec::tablespaces(cluster, &super::placement(cluster));
        pgherd_controller::declarative::tablespaces_status(&declared, &report.tablespace_results)
    }

    /// The Database objects' status from the primary's results (for the spec it applied).
    pub(crate) async fn write_database_status(&self, plan: &Plan) {
        let Some(primary) = plan.current_primary.as_deref() else {
            return;
        };
        let Some(report) = self.reports.get(primary) else {
            return;
        };
        let applied = self
            .runtime
            .pushed
            .get(primary)
            .filter(|spec| report.applied_generation >= spec.generation);
        super::super::databases::write_status(
            &self.client,
            &self.namespace,
            &self.databases,
            &report.database_results,
            applied,
        )
        .await;
    }

    /// Read what the cluster refers to; on failure push what was pushed before, and say why
    /// in `ContinuousArchiving` when the cluster archives.
    pub(in crate::operator) async fn resolve_references(&mut self, cluster: &Cluster) {
        match super::super::references::resolve(&self.client, &self.namespace, cluster).await {
            Ok(resolved) => {
                self.resolved = resolved;
                self.reference_problem = None;
            }
            Err(e) => {
                tracing::warn!("{}/{}: {e}", self.namespace, self.name);
                self.resolved =
                    super::super::references::fallback(cluster, self.runtime.pushed.values());
                self.reference_problem = Some(e.to_string());
            }
        }
    }

    /// `ContinuousArchiving` from the store's problem or the primary's last outcome; the one
    /// stored is kept while the primary does not report.
    pub(in crate::operator) fn archiving_condition(
        &self,
        cluster: &Cluster,
        plan: &Plan,
    ) -> Option<ConditionInput> {
        self.resolved.wal_store.as_ref()?;
        let report = plan
            .current_primary
            .as_deref()
            .and_then(|p| self.reports.get(p))
            .and_then(|r| r.archive.as_ref());
        archiving_condition(self.reference_problem.as_deref(), report).or_else(|| {
            let stored = cluster
                .status
                .as_ref()?
                .conditions
                .iter()
                .flatten()
                .find(|c| c.type_ == CONTINUOUS_ARCHIVING)?;
            Some(ConditionInput {
                condition_type: stored.type_.clone(),
                status: stored.status == "True",
                reason: stored.reason.clone(),
                message: stored.message.clone(),
            })
        })
    }

    pub(in crate::operator) fn addresses(&self) -> BTreeMap<String, Address> {
        self.pod_addresses()
            .into_iter()
            .map(|(name, host)| {
                (
                    name,
                    Address {
                        host,
                        port: POSTGRES_PORT as u16,
                        status_port: STATUS_PORT as u16,
                        metrics_port: crate::pod::METRICS_PORT as u16,
                        socket_dir: None,
                    },
                )
            })
            .collect()
    }
}
