//! Cluster: the webhook rules on annotations, tolerations, pod selector references, image
//! extensions, the promotion token, the superuser Secret's name and logical decoding slots
//! (CloudNativePG's `validateHibernationAnnotation`, `validatePodPatchAnnotation`,
//! `validateLivenessPingerProbe`, `validateFailoverQuorumAlphaAnnotation`, `validateTolerations`,
//! `validateAntiAffinity`, `validatePodSelectorRefs`, `validateExtensions`,
//! `validatePromotionToken`, `validateSuperuserSecret`, `validateSynchronizeLogicalDecoding` and
//! `validatePgFailoverSlots`).

use super::cluster_config::postgres_bool;
use crate::cluster::Cluster;
use crate::diagnostics::{Diagnostic, FieldPath};
use std::collections::BTreeSet;

/// `cnpg.io/hibernation`: `on` or `off`.
pub const HIBERNATION_ANNOTATION: &str = "cnpg.io/hibernation";
/// `cnpg.io/podPatch`: a JSON patch applied to the instance pods.
pub const POD_PATCH_ANNOTATION: &str = "cnpg.io/podPatch";
/// `alpha.cnpg.io/livenessPinger`: the liveness pinger's configuration as JSON.
pub const LIVENESS_PINGER_ANNOTATION: &str = "alpha.cnpg.io/livenessPinger";
/// `alpha.cnpg.io/failoverQuorum`: a boolean.
pub const FAILOVER_QUORUM_ANNOTATION: &str = "alpha.cnpg.io/failoverQuorum";

fn annotation_path(name: &str) -> String {
    format!("metadata.annotations[{name:?}]")
}

/// Go's `strconv.ParseBool`.
fn go_bool(value: &str) -> Option<bool> {
    match value {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// Every rule of this module.
pub fn validate_cluster_extra(cluster: &Cluster, out: &mut Vec<Diagnostic>) {
    validate_annotations(cluster, out);
    validate_tolerations(cluster, out);
    validate_pod_selector_refs(cluster, out);
    validate_extensions(cluster, out);
    validate_promotion_token(cluster, out);
    validate_logical_decoding(cluster, out);
    if cluster
        .spec
        .superuser_secret
        .as_ref()
        .is_some_and(|s| s.name.is_empty())
    {
        out.push(
            Diagnostic::error("spec.superuserSecret.name", "must not be empty").with_hint(
                "name the Secret holding the superuser's password, or remove superuserSecret",
            ),
        );
    }
}

fn validate_annotations(cluster: &Cluster, out: &mut Vec<Diagnostic>) {
    let Some(annotations) = cluster.metadata.annotations.as_ref() else {
        return;
    };
    if let Some(v) = annotations.get(HIBERNATION_ANNOTATION) {
        if v != "on" && v != "off" {
            out.push(Diagnostic::error(
                annotation_path(HIBERNATION_ANNOTATION),
                format!("must be \"on\" or \"off\", got {v:?}"),
            ));
        }
    }
    if let Some(v) = annotations.get(POD_PATCH_ANNOTATION) {
        if let Err(e) = check_json_patch(v) {
            out.push(
                Diagnostic::error(
                    annotation_path(POD_PATCH_ANNOTATION),
                    format!("not a JSON patch: {e}"),
                )
                .with_hint(r#"write a JSON array of operations, e.g. [{"op": "add", "path": "/metadata/labels/a", "value": "b"}]"#),
            );
        }
    }
    if let Some(v) = annotations.get(LIVENESS_PINGER_ANNOTATION) {
        let parsed = serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(v)
            .map_err(|e| e.to_string())
            .and_then(|m| match m.get("enabled") {
                Some(serde_json::Value::Bool(_)) => Ok(()),
                _ => Err("the enabled field (a boolean) is missing".to_string()),
            });
        if let Err(e) = parsed {
            out.push(
                Diagnostic::error(
                    annotation_path(LIVENESS_PINGER_ANNOTATION),
                    format!("not the liveness pinger's configuration: {e}"),
                )
                .with_hint(
                    r#"e.g. {"enabled": true, "requestTimeout": 1000, "connectionTimeout": 1000}"#,
                ),
            );
        }
    }
    if let Some(v) = annotations.get(FAILOVER_QUORUM_ANNOTATION) {
        match go_bool(v) {
            None => out.push(Diagnostic::error(
                annotation_path(FAILOVER_QUORUM_ANNOTATION),
                format!("must be a boolean (\"true\" or \"false\"), got {v:?}"),
            )),
            Some(true)
                if cluster
                    .spec
                    .postgresql
                    .as_ref()
                    .and_then(|p| p.synchronous.as_ref())
                    .is_none() =>
            {
                out.push(
                    Diagnostic::error(
                        "spec.postgresql.synchronous",
                        "required by the failoverQuorum annotation",
                    )
                    .with_hint("configure synchronous replication (method: any, number: 1)"),
                );
            }
            Some(_) => {}
        }
    }
}

/// RFC 6902: an array of operations, each with a known `op` and a `path`.
fn check_json_patch(text: &str) -> Result<(), String> {
    let value: serde_json::Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let ops = value.as_array().ok_or("not a JSON array")?;
    for (i, op) in ops.iter().enumerate() {
        let name = op.get("op").and_then(|o| o.as_str()).unwrap_or_default();
        if !matches!(
            name,
            "add" | "remove" | "replace" | "move" | "copy" | "test"
        ) {
            return Err(format!("operation {i}: unknown op {name:?}"));
        }
        if op.get("path").and_then(|p| p.as_str()).is_none() {
            return Err(format!("operation {i}: no path"));
        }
    }
    Ok(())
}

fn validate_tolerations(cluster: &Cluster, out: &mut Vec<Diagnostic>) {
    let Some(affinity) = cluster.spec.affinity.as_ref() else {
        return;
    };
    if let Some(kind) = affinity.pod_anti_affinity_type.as_deref() {
        if !matches!(kind, "" | "preferred" | "required") {
            out.push(Diagnostic::error(
                "spec.affinity.podAntiAffinityType",
                format!("unsupported value {kind:?}; must be one of: preferred, required"),
            ));
        }
    }
    for (i, t) in affinity.tolerations.iter().flatten().enumerate() {
        let path = FieldPath::new("spec.affinity.tolerations").index(i);
        let key = t.key.as_deref().unwrap_or_default();
        let operator = t.operator.as_deref().unwrap_or_default();
        let value = t.value.as_deref().unwrap_or_default();
        let effect = t.effect.as_deref().unwrap_or_default();
        if key.is_empty() && operator != "Exists" {
            out.push(Diagnostic::error(
                path.key("operator").as_str(),
                "must be Exists when key is empty (which matches every taint)",
            ));
        }
        if t.toleration_seconds.is_some() && effect != "NoExecute" {
            out.push(Diagnostic::error(
                path.key("effect").as_str(),
                "must be NoExecute when tolerationSeconds is set",
            ));
        }
        match operator {
            "" | "Equal" => {}
            "Exists" if !value.is_empty() => out.push(Diagnostic::error(
                path.key("operator").as_str(),
                "value must be empty when operator is Exists",
            )),
            "Exists" => {}
            other => out.push(Diagnostic::error(
                path.key("operator").as_str(),
                format!("unsupported value {other:?}; must be one of: Equal, Exists"),
            )),
        }
        if !matches!(effect, "" | "NoSchedule" | "PreferNoSchedule" | "NoExecute") {
            out.push(Diagnostic::error(
                path.key("effect").as_str(),
                format!(
                    "unsupported value {effect:?}; must be one of: NoSchedule, PreferNoSchedule, NoExecute"
                ),
            ));
        }
    }
}

fn validate_pod_selector_refs(cluster: &Cluster, out: &mut Vec<Diagnostic>) {
    let mut seen = BTreeSet::new();
    for (i, r) in cluster.spec.pod_selector_refs.iter().flatten().enumerate() {
        if !seen.insert(r.name.as_str()) {
            out.push(Diagnostic::error(
                format!("spec.podSelectorRefs[{i}].name"),
                format!("duplicate pod selector reference {:?}", r.name),
            ));
        }
    }
}

/// A path inside the extension's image: relative, and never leaving it through `..`.
fn is_local_path(path: &str) -> bool {
    if path.starts_with('/') {
        return false;
    }
    let mut depth: i32 = 0;
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                depth -= 1;
                if depth < 0 {
                    return false;
                }
            }
            _ => depth += 1,
        }
    }
    true
}

fn validate_extensions(cluster: &Cluster, out: &mut Vec<Diagnostic>) {
    let Some(extensions) = cluster
        .spec
        .postgresql
        .as_ref()
        .and_then(|p| p.extensions.as_ref())
    else {
        return;
    };
    let (mut names, mut volumes) = (BTreeSet::new(), BTreeSet::new());
    for (i, e) in extensions.iter().enumerate() {
        let path = FieldPath::new("spec.postgresql.extensions").index(i);
        if e.name.is_empty() {
            out.push(Diagnostic::error(
                path.key("name").as_str(),
                "must not be empty",
            ));
            continue;
        }
        if !names.insert(e.name.as_str()) {
            out.push(Diagnostic::error(
                path.key("name").as_str(),
                format!("duplicate extension {:?}", e.name),
            ));
            continue;
        }
        let volume = format!("ext-{}", e.name.replace('_', "-"));
        if !volumes.insert(volume.clone()) {
            out.push(Diagnostic::error(
                path.key("name").as_str(),
                format!(
                    "gives the same volume name {volume:?} as another extension (underscores become hyphens)"
                ),
            ));
        }
        if cluster.spec.image_catalog_ref.is_none()
            && e.image.reference.as_deref().unwrap_or_default().is_empty()
        {
            out.push(Diagnostic::error(
                path.key("image").key("reference").as_str(),
                "required when no image catalog is used",
            ));
        }
        for (field, list) in [
            ("extension_control_path", &e.extension_control_path),
            ("dynamic_library_path", &e.dynamic_library_path),
            ("ld_library_path", &e.ld_library_path),
            ("bin_path", &e.bin_path),
        ] {
            let mut seen = BTreeSet::new();
            for (j, p) in list.iter().flatten().enumerate() {
                let at = path.key(field).index(j);
                if p.is_empty() || !seen.insert(p.as_str()) {
                    out.push(Diagnostic::error(
                        at.as_str(),
                        "must be a non-empty path given once",
                    ));
                } else if !is_local_path(p) {
                    out.push(Diagnostic::error(
                        at.as_str(),
                        format!("{p:?} leaves the extension's directory"),
                    ));
                }
            }
        }
    }
}

fn validate_promotion_token(cluster: &Cluster, out: &mut Vec<Diagnostic>) {
    let Some(replica) = cluster.spec.replica.as_ref() else {
        return;
    };
    let Some(token) = replica.promotion_token.as_deref().filter(|t| !t.is_empty()) else {
        return;
    };
    if replica.min_apply_delay.is_some() {
        out.push(Diagnostic::error(
            "spec.replica.minApplyDelay",
            "cannot be used with a promotion token",
        ));
    } else if cluster.is_replica() {
        out.push(
            Diagnostic::error(
                "spec.replica.promotionToken",
                "only allowed for a primary cluster",
            )
            .with_hint("a promotion token is given when the replica cluster is promoted (replica.primary names this cluster)"),
        );
    } else if let Err(e) = crate::replica_token::ReplicaToken::decode(token) {
        out.push(
            Diagnostic::error(
                "spec.replica.promotionToken",
                format!("not a promotion token: {e}"),
            )
            .with_hint("copy status.demotionToken of the former primary cluster as it is"),
        );
    }
}

fn validate_logical_decoding(cluster: &Cluster, out: &mut Vec<Diagnostic>) {
    let params = cluster
        .spec
        .postgresql
        .as_ref()
        .and_then(|p| p.parameters.as_ref());
    let param_on = |name: &str| {
        params
            .and_then(|p| p.get(name))
            .and_then(|v| postgres_bool(v))
            .unwrap_or(false)
    };
    let failover_slots =
        params.is_some_and(|p| p.keys().any(|k| k.starts_with("pg_failover_slots.")));
    let ha = cluster
        .spec
        .replication_slots
        .as_ref()
        .and_then(|r| r.high_availability.as_ref());
    let at = |name: &str| format!("spec.postgresql.parameters.{name}");
    if failover_slots {
        if !param_on("hot_standby_feedback") {
            out.push(Diagnostic::error(
                at("hot_standby_feedback"),
                "must be on to use the pg_failover_slots extension",
            ));
        }
        if ha.is_none_or(|h| h.enabled == Some(false)) {
            out.push(Diagnostic::error(
                "spec.replicationSlots.highAvailability",
                "high availability replication slots must be enabled to use pg_failover_slots",
            ));
        }
        return;
    }
    if ha.and_then(|h| h.synchronize_logical_decoding) != Some(true) {
        return;
    }
    let Some(major) = cluster.major_version() else {
        return;
    };
    if major.0 < 17 {
        out.push(
            Diagnostic::error(
                "spec.replicationSlots.highAvailability.synchronizeLogicalDecoding",
                format!("needs PostgreSQL 17 or newer (this cluster runs {}), or the pg_failover_slots extension", major.0),
            )
            .with_hint("use a PostgreSQL 17+ image"),
        );
        return;
    }
    for name in ["hot_standby_feedback", "sync_replication_slots"] {
        if !param_on(name) {
            out.push(
                Diagnostic::error(
                    at(name),
                    "must be on to use replicationSlots.highAvailability.synchronizeLogicalDecoding",
                )
                .with_hint(format!("set spec.postgresql.parameters.{name}: \"on\"")),
            );
        }
    }
}
