//! The disruption controller (docs "Specifying a Disruption Budget for your Application",
//! API reference "PodDisruptionBudget v1 policy" status; kube-controller-manager's
//! `pkg/controller/disruption`): keeps every PodDisruptionBudget's status current from the
//! pods its selector matches, which is what `pods/eviction` (`crate::eviction`) decides on.
//!
//! - `expectedPods` and `desiredHealthy`: `minAvailable` as an integer → the number of matching
//!   pods and that integer; `minAvailable` as a percentage or `maxUnavailable` (integer or
//!   percentage) → the sum of the scales of the pods' controllers (a ReplicaSet, the
//!   Deployment owning it, or any custom resource with a scale subresource), percentages
//!   rounded up, `desiredHealthy = expected - maxUnavailable` (not below 0). A pod whose
//!   controller has no scale fails the sync: `disruptionsAllowed` 0 and DisruptionAllowed
//!   False/`SyncFailed`. Pods with no controller are left out of the sum.
//! - `currentHealthy`: matching pods that are Ready, not terminating and not in
//!   `disruptedPods` (entries the eviction handler writes; dropped once the pod is terminating,
//!   gone, or two minutes old).
//! - `disruptionsAllowed = currentHealthy - desiredHealthy` (0 when negative or when no pod is
//!   expected); condition DisruptionAllowed True/`SufficientPods` or False/`InsufficientPods`;
//!   `observedGeneration`.
//!
//! The status is written with the resourceVersion it was computed from, so an eviction that
//! spent a disruption meanwhile is never overwritten (the next pass recomputes).

use super::api::Api;
use crate::clock;
use crate::eviction::{pod_ready, selects, PDB_STORAGE};
use serde_json::{json, Value};

/// How long a pod recorded in `disruptedPods` is not counted healthy (the controller's
/// `DeletionTimeout`).
const DELETION_TIMEOUT_SECS: i64 = 120;

/// One pass over every budget.
pub fn reconcile(api: &Api) {
    let pdbs = api.list(PDB_STORAGE);
    if pdbs.is_empty() {
        return;
    }
    let pods = api.list("pods");
    for pdb in pdbs {
        if !pdb["metadata"]["deletionTimestamp"].is_null() {
            continue;
        }
        let matching: Vec<&Value> = pods.iter().filter(|p| selects(&pdb, p)).collect();
        let status = compute(api, &pdb, &matching);
        if status == pdb["status"] {
            continue;
        }
        let mut updated = pdb.clone();
        updated["status"] = status;
        // A conflict means an eviction changed the budget meanwhile: the next pass redoes it.
        let _ = api.replace_status(PDB_STORAGE, updated);
    }
}

/// The budget's status given the pods its selector matches.
pub fn compute(api: &Api, pdb: &Value, pods: &[&Value]) -> Value {
    let generation = pdb["metadata"]["generation"].as_i64().unwrap_or(1);
    let old = &pdb["status"];
    let now = clock::now_secs();
    let mut disrupted = serde_json::Map::new();
    for (name, at) in old["disruptedPods"].as_object().into_iter().flatten() {
        let pod = pods.iter().find(|p| p["metadata"]["name"] == name.as_str());
        let fresh = at
            .as_str()
            .and_then(clock::parse_rfc3339)
            .is_some_and(|t| t + DELETION_TIMEOUT_SECS > now);
        if pod.is_some_and(|p| p["metadata"]["deletionTimestamp"].is_null()) && fresh {
            disrupted.insert(name.clone(), at.clone());
        }
    }
    let (expected, desired) = match expected_and_desired(api, pdb, pods) {
        Ok(v) => v,
        Err(why) => {
            let mut s = old.clone();
            if !s.is_object() {
                s = json!({});
            }
            s["disruptionsAllowed"] = json!(0);
            s["conditions"] = json!([condition(
                old,
                false,
                "SyncFailed",
                &why,
                old["observedGeneration"].as_i64().unwrap_or(0)
            )]);
            return s;
        }
    };
    let healthy = pods
        .iter()
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
        .filter(|p| {
            !p["metadata"]["name"]
                .as_str()
                .is_some_and(|n| disrupted.contains_key(n))
        })
        .filter(|p| pod_ready(p))
        .count() as i64;
    let allowed = if expected <= 0 {
        0
    } else {
        (healthy - desired).max(0)
    };
    let (ok, reason) = if allowed > 0 {
        (true, "SufficientPods")
    } else {
        (false, "InsufficientPods")
    };
    let mut s = json!({
        "observedGeneration": generation,
        "disruptionsAllowed": allowed,
        "currentHealthy": healthy,
        "desiredHealthy": desired,
        "expectedPods": expected,
        "conditions": [condition(old, ok, reason, "", generation)],
    });
    if !disrupted.is_empty() {
        s["disruptedPods"] = Value::Object(disrupted);
    }
    s
}

/// A metav1.Condition `DisruptionAllowed`, keeping its transition time while unchanged.
fn condition(old: &Value, ok: bool, reason: &str, message: &str, generation: i64) -> Value {
    let status = if ok { "True" } else { "False" };
    let time = old["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == "DisruptionAllowed" && c["status"] == status)
        .and_then(|c| c["lastTransitionTime"].as_str())
        .map_or_else(clock::now_rfc3339, String::from);
    json!({"type": "DisruptionAllowed", "status": status, "reason": reason, "message": message,
        "observedGeneration": generation, "lastTransitionTime": time})
}

/// An IntOrString against `total`: integers as they are, percentages of `total` rounded up.
pub fn scaled(v: &Value, total: i64) -> Result<i64, String> {
    match v {
        Value::Number(n) => n
            .as_i64()
            .ok_or_else(|| format!("invalid value {n}: not an integer")),
        Value::String(s) => {
            let pct: i64 = s
                .strip_suffix('%')
                .and_then(|p| p.parse().ok())
                .ok_or_else(|| format!("invalid value for IntOrString: invalid value {s:?}"))?;
            Ok((pct * total + 99) / 100)
        }
        other => Err(format!("invalid value for IntOrString: {other}")),
    }
}

fn expected_and_desired(api: &Api, pdb: &Value, pods: &[&Value]) -> Result<(i64, i64), String> {
    let spec = &pdb["spec"];
    if !spec["maxUnavailable"].is_null() {
        let expected = controllers_scale(api, pods)?;
        let max_unavailable = scaled(&spec["maxUnavailable"], expected)?;
        Ok((expected, (expected - max_unavailable).max(0)))
    } else if let Some(n) = spec["minAvailable"].as_i64() {
        Ok((pods.len() as i64, n))
    } else if spec["minAvailable"].is_string() {
        let expected = controllers_scale(api, pods)?;
        Ok((expected, scaled(&spec["minAvailable"], expected)?))
    } else {
        Ok((0, 0))
    }
}

/// The sum of the scales of the controllers of `pods` (each controller once).
fn controllers_scale(api: &Api, pods: &[&Value]) -> Result<i64, String> {
    let mut seen: Vec<(String, i64)> = Vec::new();
    for pod in pods {
        let Some(owner) = pod["metadata"]["ownerReferences"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|r| r["controller"] == true)
        else {
            continue;
        };
        let ns = pod["metadata"]["namespace"].as_str().unwrap_or_default();
        let (uid, scale) = scale_of(api, owner, ns).ok_or_else(|| {
            format!(
                "found no controllers for pod {:?}",
                pod["metadata"]["name"].as_str().unwrap_or_default()
            )
        })?;
        if !seen.iter().any(|(u, _)| *u == uid) {
            seen.push((uid, scale));
        }
    }
    Ok(seen.iter().map(|(_, s)| s).sum())
}

/// The controller's uid and replicas: a ReplicaSet (or the Deployment controlling it), or any
/// resource with a scale subresource.
fn scale_of(api: &Api, owner: &Value, ns: &str) -> Option<(String, i64)> {
    let name = owner["name"].as_str()?;
    let uid = owner["uid"].as_str()?;
    let kind = owner["kind"].as_str()?;
    let api_version = owner["apiVersion"].as_str()?;
    if kind == "ReplicaSet" && api_version == "apps/v1" {
        let rs = api
            .get("apps/replicasets", ns, name)
            .filter(|o| o["metadata"]["uid"] == uid)?;
        let parent = rs["metadata"]["ownerReferences"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|r| r["controller"] == true && r["kind"] == "Deployment");
        if let Some(d) = parent {
            let dep = api
                .get("apps/deployments", ns, d["name"].as_str()?)
                .filter(|o| o["metadata"]["uid"] == d["uid"])?;
            return Some((
                d["uid"].as_str()?.to_string(),
                dep["spec"]["replicas"].as_i64().unwrap_or(1),
            ));
        }
        return Some((
            uid.to_string(),
            rs["spec"]["replicas"].as_i64().unwrap_or(1),
        ));
    }
    let rt = api
        .server
        .state
        .lock()
        .ok()?
        .registry
        .find_kind(api_version, kind)?;
    rt.scale.as_ref()?;
    let obj = api
        .get(rt.storage_key().trim_start_matches('/'), ns, name)
        .filter(|o| o["metadata"]["uid"] == uid)?;
    let replicas = crate::scale::scale_of(&rt, &obj)["spec"]["replicas"].as_i64()?;
    Some((uid.to_string(), replicas))
}

#[cfg(test)]
mod tests {
    use super::scaled;
    use serde_json::json;

    #[test]
    fn percentages_round_up_and_bad_values_are_errors() {
        assert_eq!(scaled(&json!(2), 10), Ok(2));
        assert_eq!(scaled(&json!("50%"), 3), Ok(2));
        assert_eq!(scaled(&json!("34%"), 3), Ok(2));
        assert_eq!(scaled(&json!("0%"), 3), Ok(0));
        assert!(scaled(&json!("half"), 3).is_err());
        assert!(scaled(&json!(true), 3).is_err());
    }
}
