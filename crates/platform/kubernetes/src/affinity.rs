//! Scheduling of instance pods from `spec.affinity`: the generated pod anti-affinity that
//! spreads a cluster's instances (preferred, weight 100, unless `podAntiAffinityType:
//! required`; none with `enablePodAntiAffinity: false`), the user's extra anti-affinity terms
//! appended, the user's node and pod affinity as given.

use crate::labels;
use k8s_openapi::api::core::v1::{
    Affinity, PodAffinityTerm, PodAntiAffinity, WeightedPodAffinityTerm,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};
use pgherd_api::Cluster;

/// Topology key of the generated rule unless `affinity.topologyKey` says otherwise.
pub const DEFAULT_TOPOLOGY_KEY: &str = "kubernetes.io/hostname";
/// Weight of the generated preferred rule.
pub const PREFERRED_WEIGHT: i32 = 100;

fn is_in(key: &str, value: &str) -> LabelSelectorRequirement {
    LabelSelectorRequirement {
        key: key.to_string(),
        operator: "In".to_string(),
        values: Some(vec![value.to_string()]),
    }
}

/// The term matching the cluster's other instances on the same topology domain.
fn instances_term(cluster_name: &str, topology_key: &str) -> PodAffinityTerm {
    PodAffinityTerm {
        label_selector: Some(LabelSelector {
            match_expressions: Some(vec![
                is_in(labels::CLUSTER, cluster_name),
                is_in(labels::POD_ROLE, "instance"),
            ]),
            match_labels: None,
        }),
        topology_key: topology_key.to_string(),
        ..PodAffinityTerm::default()
    }
}

/// The pods' `affinity`, or `None` when there is nothing to say.
pub fn instance_affinity(cluster: &Cluster) -> Option<Affinity> {
    let name = cluster.metadata.name.as_deref().unwrap_or_default();
    let config = cluster.spec.affinity.clone().unwrap_or_default();
    let mut required: Vec<PodAffinityTerm> = Vec::new();
    let mut preferred: Vec<WeightedPodAffinityTerm> = Vec::new();
    if config.enable_pod_anti_affinity != Some(false) {
        let key = config
            .topology_key
            .as_deref()
            .filter(|k| !k.is_empty())
            .unwrap_or(DEFAULT_TOPOLOGY_KEY);
        let term = instances_term(name, key);
        if config.pod_anti_affinity_type.as_deref() == Some("required") {
            required.push(term);
        } else {
            preferred.push(WeightedPodAffinityTerm {
                weight: PREFERRED_WEIGHT,
                pod_affinity_term: term,
            });
        }
    }
    if let Some(extra) = config.additional_pod_anti_affinity {
        required.extend(
            extra
                .required_during_scheduling_ignored_during_execution
                .unwrap_or_default(),
        );
        preferred.extend(
            extra
                .preferred_during_scheduling_ignored_during_execution
                .unwrap_or_default(),
        );
    }
    let pod_anti_affinity =
        (!required.is_empty() || !preferred.is_empty()).then(|| PodAntiAffinity {
            required_during_scheduling_ignored_during_execution: (!required.is_empty())
                .then_some(required),
            preferred_during_scheduling_ignored_during_execution: (!preferred.is_empty())
                .then_some(preferred),
        });
    let affinity = Affinity {
        node_affinity: config.node_affinity,
        pod_affinity: config.additional_pod_affinity,
        pod_anti_affinity,
    };
    (affinity != Affinity::default()).then_some(affinity)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use k8s_openapi::api::core::v1::{NodeAffinity, NodeSelector, NodeSelectorTerm};
    use pgherd_api::cluster::AffinityConfiguration;

    fn cluster(affinity: AffinityConfiguration) -> Cluster {
        let mut c = Cluster::new("pg", Default::default());
        c.spec.affinity = Some(affinity);
        c
    }

    #[test]
    fn preferred_by_default_with_weight_100() {
        let a = instance_affinity(&Cluster::new("pg", Default::default())).unwrap();
        let anti = a.pod_anti_affinity.unwrap();
        assert!(anti
            .required_during_scheduling_ignored_during_execution
            .is_none());
        let preferred = anti
            .preferred_during_scheduling_ignored_during_execution
            .unwrap();
        assert_eq!(preferred.len(), 1);
        assert_eq!(preferred[0].weight, 100);
        let term = &preferred[0].pod_affinity_term;
        assert_eq!(term.topology_key, "kubernetes.io/hostname");
        let exprs = term
            .label_selector
            .as_ref()
            .unwrap()
            .match_expressions
            .as_ref()
            .unwrap();
        assert_eq!(exprs[0].key, "cnpg.io/cluster");
        assert_eq!(exprs[0].values.as_deref(), Some(&["pg".to_string()][..]));
        assert_eq!(exprs[1].key, "cnpg.io/podRole");
    }

    #[test]
    fn required_with_a_custom_topology_key() {
        let a = instance_affinity(&cluster(AffinityConfiguration {
            pod_anti_affinity_type: Some("required".into()),
            topology_key: Some("topology.kubernetes.io/zone".into()),
            ..Default::default()
        }))
        .unwrap();
        let anti = a.pod_anti_affinity.unwrap();
        assert!(anti
            .preferred_during_scheduling_ignored_during_execution
            .is_none());
        let required = anti
            .required_during_scheduling_ignored_during_execution
            .unwrap();
        assert_eq!(required[0].topology_key, "topology.kubernetes.io/zone");
    }

    #[test]
    fn disabled_drops_the_generated_rule_but_keeps_the_users() {
        assert_eq!(
            instance_affinity(&cluster(AffinityConfiguration {
                enable_pod_anti_affinity: Some(false),
                ..Default::default()
            })),
            None
        );
        let extra = WeightedPodAffinityTerm {
            weight: 5,
            pod_affinity_term: instances_term("other", "zone"),
        };
        let node_affinity = NodeAffinity {
            required_during_scheduling_ignored_during_execution: Some(NodeSelector {
                node_selector_terms: vec![NodeSelectorTerm::default()],
            }),
            ..Default::default()
        };
        let a = instance_affinity(&cluster(AffinityConfiguration {
            enable_pod_anti_affinity: Some(false),
            additional_pod_anti_affinity: Some(PodAntiAffinity {
                preferred_during_scheduling_ignored_during_execution: Some(vec![extra.clone()]),
                ..Default::default()
            }),
            node_affinity: Some(node_affinity.clone()),
            ..Default::default()
        }))
        .unwrap();
        assert_eq!(
            a.pod_anti_affinity
                .unwrap()
                .preferred_during_scheduling_ignored_during_execution,
            Some(vec![extra])
        );
        assert_eq!(a.node_affinity, Some(node_affinity));
    }

    #[test]
    fn user_terms_are_appended_to_the_generated_one() {
        let extra = instances_term("other", "zone");
        let a = instance_affinity(&cluster(AffinityConfiguration {
            additional_pod_anti_affinity: Some(PodAntiAffinity {
                required_during_scheduling_ignored_during_execution: Some(vec![extra.clone()]),
                ..Default::default()
            }),
            ..Default::default()
        }))
        .unwrap();
        let anti = a.pod_anti_affinity.unwrap();
        assert_eq!(
            anti.preferred_during_scheduling_ignored_during_execution
                .unwrap()
                .len(),
            1
        );
        assert_eq!(
            anti.required_during_scheduling_ignored_during_execution,
            Some(vec![extra])
        );
    }
}
