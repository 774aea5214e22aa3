//! PodDisruptionBudgets: `NAME-primary` (the primary stays up: `minAvailable: 1`) and `NAME`
//! (with three or more instances, at most one replica goes at a time: `minAvailable:
//! instances − 2`). None with `enablePDB: false`; during a `nodeMaintenanceWindow` that reuses
//! PVCs the replica budget goes, and the primary's too for a single instance, so a drain can
//! proceed.

use crate::error::Result;
use crate::labels::{self, map, Base};
use crate::names;
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use pgherd_api::Cluster;
use std::collections::BTreeMap;

fn budget(
    base: &Base,
    cluster: &Cluster,
    name: &str,
    role: &str,
    min_available: i32,
) -> Result<PodDisruptionBudget> {
    Ok(PodDisruptionBudget {
        metadata: base.meta(
            name,
            labels::cluster_labels(cluster, "database"),
            BTreeMap::new(),
        )?,
        spec: Some(PodDisruptionBudgetSpec {
            min_available: Some(IntOrString::Int(min_available)),
            selector: Some(LabelSelector {
                match_labels: Some(map([
                    (labels::CLUSTER, &base.name),
                    (labels::INSTANCE_ROLE, role),
                ])),
                match_expressions: None,
            }),
            ..PodDisruptionBudgetSpec::default()
        }),
        status: None,
    })
}

/// The budgets the cluster must have now (any other budget of the cluster is to be deleted).
pub fn pod_disruption_budgets(cluster: &Cluster) -> Result<Vec<PodDisruptionBudget>> {
    let base = Base::of_cluster(cluster)?;
    let spec = &cluster.spec;
    if spec.enable_pdb == Some(false) {
        return Ok(Vec::new());
    }
    let instances = spec.instances.unwrap_or(1);
    let maintenance = spec
        .node_maintenance_window
        .as_ref()
        .is_some_and(|w| w.in_progress.unwrap_or(false) && w.reuse_pvc.unwrap_or(true));
    let mut out = Vec::new();
    if !(maintenance && instances == 1) {
        out.push(budget(
            &base,
            cluster,
            &names::primary_pdb(&base.name),
            "primary",
            1,
        )?);
    }
    if instances >= 3 && !maintenance {
        let min_available = i32::try_from(instances - 2).unwrap_or(i32::MAX);
        out.push(budget(
            &base,
            cluster,
            &base.name,
            "replica",
            min_available,
        )?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use pgherd_api::cluster::NodeMaintenanceWindow;

    fn cluster(instances: i64) -> Cluster {
        let mut c = Cluster::new("pg", Default::default());
        c.metadata.uid = Some("u".into());
        c.spec.instances = Some(instances);
        c
    }

    fn summary(c: &Cluster) -> Vec<(String, String, i32)> {
        pod_disruption_budgets(c)
            .unwrap()
            .into_iter()
            .map(|p| {
                let spec = p.spec.unwrap();
                let role =
                    spec.selector.unwrap().match_labels.unwrap()[labels::INSTANCE_ROLE].clone();
                let IntOrString::Int(min) = spec.min_available.unwrap() else {
                    panic!("minAvailable is a number")
                };
                (p.metadata.name.unwrap(), role, min)
            })
            .collect()
    }

    #[test]
    fn replica_budget_from_three_instances() {
        assert_eq!(
            summary(&cluster(1)),
            [("pg-primary".into(), "primary".into(), 1)]
        );
        assert_eq!(summary(&cluster(2)).len(), 1);
        assert_eq!(
            summary(&cluster(3)),
            [
                ("pg-primary".into(), "primary".into(), 1),
                ("pg".into(), "replica".into(), 1)
            ]
        );
        assert_eq!(summary(&cluster(5))[1].2, 3);
    }

    #[test]
    fn enable_pdb_false_removes_both() {
        let mut c = cluster(3);
        c.spec.enable_pdb = Some(false);
        assert!(summary(&c).is_empty());
    }

    #[test]
    fn maintenance_window_drops_the_replica_budget() {
        let mut c = cluster(3);
        c.spec.node_maintenance_window = Some(NodeMaintenanceWindow {
            in_progress: Some(true),
            reuse_pvc: Some(true),
        });
        assert_eq!(summary(&c).len(), 1);
        let mut single = cluster(1);
        single.spec.node_maintenance_window = c.spec.node_maintenance_window.clone();
        assert!(summary(&single).is_empty());
        c.spec.node_maintenance_window = Some(NodeMaintenanceWindow {
            in_progress: Some(true),
            reuse_pvc: Some(false),
        });
        assert_eq!(summary(&c).len(), 2);
    }
}
