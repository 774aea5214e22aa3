//! Rolling instance pods onto a changed pod template (a new `imageName`, resources, affinity,
//! …) through the controller's rolling restart, as CloudNativePG rolls them.
//!
//! An instance whose pod was built from an older template reports a restart token it cannot be
//! running under, and says its restart recreates it. The controller's rollout then takes it in
//! its turn: replicas first, one at a time, each only once every instance is ready; the primary
//! last, after a switchover to the most advanced replica (whatever `primaryUpdateMethod` says:
//! recreating a primary's pod in place is an outage its own failover could race). Its turn
//! deletes the pod; the pass that finds it gone creates it again from the current template, on
//! the PVCs it kept.

use super::pods::InstanceObjects;
use crate::labels;
use crate::OperatorSettings;
use pgherd_api::Cluster;
use pgherd_controller::cluster_status::ConditionInput;
use pgherd_controller::plan::ObservedInstance;
use std::collections::{BTreeMap, BTreeSet};

/// Put before the restart tokens of an instance whose pod runs an older template: no token the
/// cluster asks for can equal it, nor share its base (what precedes a `#`).
const OLDER_TEMPLATE: &str = "older-pod-template~";

/// The instances whose pod was built from another template than the one built now.
pub(crate) fn outdated(
    cluster: &Cluster,
    settings: &OperatorSettings,
    instances: &BTreeMap<String, InstanceObjects>,
    cluster_name: &str,
) -> BTreeSet<String> {
    let mut outdated = BTreeSet::new();
    for (name, objects) in instances {
        let Some(pod) = &objects.pod else { continue };
        let Some(serial) = super::kube_pass::serial_of(cluster_name, name) else {
            continue;
        };
        let running = pod
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(labels::POD_SPEC_HASH));
        let wanted = crate::pod::instance_pod(cluster, settings, serial, None)
            .ok()
            .and_then(|p| p.metadata.annotations)
            .and_then(|a| a.get(labels::POD_SPEC_HASH).cloned());
        if running.is_some() && wanted.is_some() && running != wanted.as_ref() {
            outdated.insert(name.clone());
        }
    }
    outdated
}

/// What the controller sees of an instance whose pod runs an older template: not restarted
/// under any token, and recreated by its restart.
pub(crate) fn mark(instance: &mut ObservedInstance) {
    instance.restart_recreates = true;
    instance.spec_restart_token.insert_str(0, OLDER_TEMPLATE);
    if let Some(status) = instance.status.as_mut() {
        status.restart_token.insert_str(0, OLDER_TEMPLATE);
    }
}

/// The restart token to give an instance's manager: the one it runs under, without the mark.
pub(crate) fn unmarked(token: &str) -> String {
    token
        .strip_prefix(OLDER_TEMPLATE)
        .unwrap_or(token)
        .to_string()
}

/// Whether the plan chose this outdated instance for its turn: its desired token is the
/// cluster's, whatever single-instance request follows it (an instance not chosen keeps its
/// marked one).
pub(crate) fn chosen(desired_token: &str, cluster_token: &str) -> bool {
    pgherd_controller::rollout::base_token(desired_token) == cluster_token
}

/// `PodTemplateApplied`: whether every instance pod runs the current template.
pub(crate) fn condition(outdated: &BTreeSet<String>) -> ConditionInput {
    let names: Vec<&str> = outdated.iter().map(String::as_str).collect();
    ConditionInput {
        condition_type: "PodTemplateApplied".into(),
        status: outdated.is_empty(),
        reason: if outdated.is_empty() {
            "PodsUpToDate"
        } else {
            "RollingUpdate"
        }
        .into(),
        message: if outdated.is_empty() {
            "every instance pod runs the current pod template".into()
        } else {
            format!(
                "{} run an older pod template: recreating them one at a time (replicas first, the primary after a switchover)",
                names.join(", ")
            )
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_marked_instance_is_never_under_the_clusters_token_and_unmarks_to_its_own() {
        let mut i = ObservedInstance {
            serial: 2,
            name: "pg-2".into(),
            status: None,
            spec_restart_token: String::new(),
            unhealthy_for: None,
            dead: false,
            stopped_for: None,
            fenced: false,
            told_primary: false,
            restart_recreates: false,
            draining: false,
            storage_given_up: false,
        };
        mark(&mut i);
        assert!(i.restart_recreates);
        // The cluster's token is empty until a first `kubectl cnpg restart`.
        assert_ne!(i.spec_restart_token, "");
        assert!(!chosen(&i.spec_restart_token, ""));
        assert!(chosen("t1#restart-1", "t1"));
        assert_eq!(unmarked(&i.spec_restart_token), "");
        assert_eq!(unmarked("2026-12-06T10:00:00Z"), "2026-12-06T10:00:00Z");
        // A marked token never shares the cluster token's base (what precedes a `#`).
        let mut j = i.clone();
        j.spec_restart_token = "t1#pg-2".into();
        mark(&mut j);
        assert!(!j.spec_restart_token.starts_with("t1"));
        assert_eq!(unmarked(&j.spec_restart_token), "t1#pg-2");
    }
}
