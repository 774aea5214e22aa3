//! The decisions behind the user's verbs (`kubectl cnpg promote|restart|reload|fencing|
//! hibernate`, `pgherd local promote|fence|restart`), the same on every platform: which
//! instance an argument names, what a fencing change leaves in the annotation, what a
//! switchover request writes into the status. The platforms only carry the result out
//! (a merge patch on Kubernetes, a file in the local state directory). Pure.

use crate::phase;
use pgherd_api::Cluster;

/// Annotation listing the fenced instances as a JSON array (`["*"]`: all of them).
pub const FENCED_INSTANCES_ANNOTATION: &str = "cnpg.io/fencedInstances";
/// Annotation that hibernates a cluster (`on`) or wakes it (`off`).
pub const HIBERNATION_ANNOTATION: &str = "cnpg.io/hibernation";
/// Annotation whose change rolls every instance (kubectl's own rollout annotation).
pub const RESTARTED_AT_ANNOTATION: &str = "kubectl.kubernetes.io/restartedAt";
/// Annotation whose change makes the operator and instance managers re-read Secrets and
/// ConfigMaps.
pub const RELOADED_AT_ANNOTATION: &str = "cnpg.io/reloadedAt";
/// Fence every instance.
pub const ALL_INSTANCES: &str = "*";

/// Why an instance argument names no instance of the cluster.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InstanceChoiceError {
    #[error(
        "instance {given:?} is not one of cluster {cluster:?}'s instances ({known}); give a name such as {example} or its serial number"
    )]
    NotInCluster {
        cluster: String,
        given: String,
        known: String,
        example: String,
    },
}

/// The instance `given` names among `instances` of `cluster`: its full name (`X-2`) or its
/// serial (`2`).
pub fn resolve_instance(
    cluster: &str,
    instances: &[String],
    given: &str,
) -> Result<String, InstanceChoiceError> {
    if instances.iter().any(|i| i == given) {
        return Ok(given.to_string());
    }
    if !given.is_empty() && given.bytes().all(|b| b.is_ascii_digit()) {
        let candidate = format!("{cluster}-{}", given.trim_start_matches('0'));
        if instances.contains(&candidate) {
            return Ok(candidate);
        }
    }
    let known = if instances.is_empty() {
        "it has none yet".to_string()
    } else {
        format!("it has {}", instances.join(", "))
    };
    Err(InstanceChoiceError::NotInCluster {
        cluster: cluster.to_string(),
        given: given.to_string(),
        known,
        example: instances
            .first()
            .cloned()
            .unwrap_or_else(|| format!("{cluster}-1")),
    })
}

/// The instances a cluster's annotation fences (an unreadable value fences nothing, as the
/// controller reads it).
pub fn fenced_instances(cluster: &Cluster) -> Vec<String> {
    cluster
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(FENCED_INSTANCES_ANNOTATION))
        .map(|v| parse_fenced(v))
        .unwrap_or_default()
}

/// The fenced instances in an annotation value.
pub fn parse_fenced(value: &str) -> Vec<String> {
    serde_json::from_str::<Vec<String>>(value).unwrap_or_default()
}

/// Whether `instance` is fenced by `fenced` (`*` fences all).
pub fn is_fenced(fenced: &[String], instance: &str) -> bool {
    fenced.iter().any(|f| f == instance || f == ALL_INSTANCES)
}

/// The fenced list after fencing (`on`) or unfencing `instance` (`*`: all): `None` when
/// nothing stays fenced (the annotation goes).
pub fn fencing_change(current: &[String], instance: &str, on: bool) -> Option<Vec<String>> {
    let mut fenced: Vec<String> = current.to_vec();
    if on {
        if instance == ALL_INSTANCES {
            fenced = vec![ALL_INSTANCES.to_string()];
        } else if !is_fenced(&fenced, instance) {
            fenced.push(instance.to_string());
        }
    } else if instance == ALL_INSTANCES {
        fenced.clear();
    } else {
        fenced.retain(|f| f != instance);
    }
    fenced.sort();
    fenced.dedup();
    (!fenced.is_empty()).then_some(fenced)
}

/// What a switchover request writes into the Cluster's status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SwitchoverRequest {
    pub target_primary: String,
    pub target_primary_timestamp: String,
    pub phase: &'static str,
    pub phase_reason: String,
}

/// Why a switchover cannot be asked for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SwitchoverRefusal {
    #[error("{instance} is already the primary of cluster {cluster:?}; nothing to do")]
    AlreadyPrimary { cluster: String, instance: String },
    #[error("a switchover to {instance} is already requested (status.targetPrimary); wait for it (see the cluster's status)")]
    AlreadyRequested { instance: String },
}

/// The status change that asks for a switchover to `instance`, at `now` (seconds since the
/// epoch); a refusal when it would change nothing.
pub fn switchover(
    cluster: &Cluster,
    instance: &str,
    now: i64,
) -> Result<SwitchoverRequest, SwitchoverRefusal> {
    let status = cluster.status.clone().unwrap_or_default();
    let name = cluster.metadata.name.clone().unwrap_or_default();
    if status.target_primary.as_deref() == Some(instance) {
        return Err(if status.current_primary.as_deref() == Some(instance) {
            SwitchoverRefusal::AlreadyPrimary {
                cluster: name,
                instance: instance.to_string(),
            }
        } else {
            SwitchoverRefusal::AlreadyRequested {
                instance: instance.to_string(),
            }
        });
    }
    Ok(SwitchoverRequest {
        target_primary: instance.to_string(),
        target_primary_timestamp: pgherd_api::common::rfc3339(now),
        phase: phase::SWITCHOVER,
        phase_reason: format!("Switching over to {instance}"),
    })
}

/// The status change that restarts the primary in place (the instance manager restarts
/// PostgreSQL without a switchover).
pub fn primary_restart_phase() -> (&'static str, &'static str) {
    (
        phase::PRIMARY_RESTARTING_IN_PLACE,
        "Requested by the user: restart of the primary in place",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster(current: Option<&str>, target: Option<&str>) -> Cluster {
        let mut c = Cluster::new("pc", Default::default());
        c.status = Some(pgherd_api::ClusterStatus {
            current_primary: current.map(str::to_string),
            target_primary: target.map(str::to_string),
            ..Default::default()
        });
        c
    }

    #[test]
    fn instances_by_name_or_serial() {
        let known = vec!["pc-1".to_string(), "pc-2".to_string()];
        assert_eq!(resolve_instance("pc", &known, "pc-2").unwrap(), "pc-2");
        assert_eq!(resolve_instance("pc", &known, "2").unwrap(), "pc-2");
        let e = resolve_instance("pc", &known, "other-2").unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains("pc-1, pc-2") && text.contains("\"other-2\""),
            "{text}"
        );
    }

    #[test]
    fn fencing_adds_removes_and_clears() {
        let none: Vec<String> = vec![];
        assert_eq!(
            fencing_change(&none, "pc-1", true),
            Some(vec!["pc-1".into()])
        );
        let one = vec!["pc-1".to_string()];
        assert_eq!(fencing_change(&one, "pc-1", false), None);
        assert_eq!(
            fencing_change(&one, "pc-2", true),
            Some(vec!["pc-1".into(), "pc-2".into()])
        );
        assert_eq!(fencing_change(&one, "*", true), Some(vec!["*".into()]));
        assert_eq!(fencing_change(&["*".to_string()], "*", false), None);
        assert!(is_fenced(&["*".to_string()], "pc-3"));
        assert_eq!(parse_fenced("not json"), none);
    }

    #[test]
    fn switchover_request_and_refusals() {
        let c = cluster(Some("pc-1"), Some("pc-1"));
        let r = switchover(&c, "pc-2", 0).unwrap();
        assert_eq!(r.target_primary, "pc-2");
        assert_eq!(r.phase, phase::SWITCHOVER);
        assert_eq!(r.target_primary_timestamp, "1970-01-01T00:00:00Z");
        assert!(matches!(
            switchover(&c, "pc-1", 0),
            Err(SwitchoverRefusal::AlreadyPrimary { .. })
        ));
        let pending = cluster(Some("pc-1"), Some("pc-2"));
        assert!(matches!(
            switchover(&pending, "pc-2", 0),
            Err(SwitchoverRefusal::AlreadyRequested { .. })
        ));
    }
}
