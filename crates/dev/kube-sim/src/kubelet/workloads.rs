//! Workload controllers, enough for the operator's own Deployment, Poolers and Jobs (docs
//! "ReplicaSet", "Deployments", "Jobs"):
//! - ReplicaSet: keeps `replicas` active pods from the template (named `RS-xxxxx`, owned by
//!   it), deleting the surplus (unscheduled and not-ready first, then newest); status counts.
//! - Deployment: one ReplicaSet per template (`DEPLOY-HASH`, label `pod-template-hash`,
//!   annotation `deployment.kubernetes.io/revision`); RollingUpdate scales the new one to
//!   `replicas` and the old ones to 0 once the new one is all ready; Recreate scales the old
//!   ones to 0 first. Status with Available and Progressing conditions for `kubectl rollout
//!   status`.
//! - Job: runs pods until `completions` succeed (`parallelism` at once) or `backoffLimit`
//!   failures; conditions Complete/SuccessCriteriaMet or Failed/FailureTarget.

use super::api::Api;
use super::status::condition;
use crate::clock;
use serde_json::{json, Value};

fn owned_by<'a>(objects: &'a [Value], owner: &Value) -> Vec<&'a Value> {
    let uid = &owner["metadata"]["uid"];
    objects
        .iter()
        .filter(|o| {
            o["metadata"]["ownerReferences"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|r| r["uid"] == *uid && r["controller"] == true)
        })
        .collect()
}

fn owner_ref(owner: &Value, api_version: &str, kind: &str) -> Value {
    json!({"apiVersion": api_version, "kind": kind, "name": owner["metadata"]["name"],
        "uid": owner["metadata"]["uid"], "controller": true, "blockOwnerDeletion": true})
}

fn active(p: &Value) -> bool {
    p["metadata"]["deletionTimestamp"].is_null()
        && !matches!(p["status"]["phase"].as_str(), Some("Succeeded" | "Failed"))
}

fn ready(p: &Value) -> bool {
    p["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Ready" && c["status"] == "True")
}

fn replicas(o: &Value) -> usize {
    o["spec"]["replicas"].as_u64().unwrap_or(1) as usize
}

/// A pod from `template`, owned by `owner`, named `PREFIX-xxxxx` by the API server.
fn create_pod(api: &Api, ns: &str, template: &Value, prefix: &str, owner: Value) {
    let mut pod = json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": template["metadata"].clone(), "spec": template["spec"].clone()});
    pod["metadata"]["generateName"] = json!(format!("{prefix}-"));
    pod["metadata"]["ownerReferences"] = json!([owner]);
    if let Some(m) = pod["metadata"].as_object_mut() {
        m.remove("name");
        m.remove("creationTimestamp");
    }
    let _ = api.create("pods", ns, pod);
}

/// One pass of the three controllers.
pub fn reconcile(api: &Api) {
    let pods = api.list("pods");
    deployments(api);
    replica_sets(api, &pods);
    jobs(api, &pods);
}

fn replica_sets(api: &Api, pods: &[Value]) {
    for rs in api.list("apps/replicasets") {
        if !rs["metadata"]["deletionTimestamp"].is_null() {
            continue;
        }
        let (ns, name) = crate::store::key_of(&rs);
        let mut mine: Vec<&Value> = owned_by(pods, &rs)
            .into_iter()
            .filter(|p| active(p))
            .collect();
        let want = replicas(&rs);
        if mine.len() < want {
            for _ in mine.len()..want {
                create_pod(
                    api,
                    &ns,
                    &rs["spec"]["template"],
                    &name,
                    owner_ref(&rs, "apps/v1", "ReplicaSet"),
                );
            }
        } else if mine.len() > want {
            // Unscheduled, then not ready, then newest go first.
            mine.sort_by_key(|p| {
                (
                    !p["spec"]["nodeName"].is_null(),
                    ready(p),
                    std::cmp::Reverse(
                        p["metadata"]["creationTimestamp"]
                            .as_str()
                            .unwrap_or_default()
                            .to_string(),
                    ),
                )
            });
            for p in &mine[..mine.len() - want] {
                let (pns, pname) = crate::store::key_of(p);
                let _ = api.delete("pods", &pns, &pname);
            }
        }
        let count = mine.len();
        let ready_n = mine.iter().filter(|p| ready(p)).count();
        let status = json!({
            "replicas": count, "fullyLabeledReplicas": count, "readyReplicas": ready_n,
            "availableReplicas": ready_n, "observedGeneration": rs["metadata"]["generation"],
        });
        let _ = api.update_status("apps/replicasets", &ns, &name, status);
    }
}

/// A short stable hash of the pod template (the `pod-template-hash` label).
fn template_hash(template: &Value) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in template.to_string().bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x100_0000_01b3);
    }
    (0..10)
        .map(|_| {
            let c = ALPHABET[(h % ALPHABET.len() as u64) as usize] as char;
            h /= ALPHABET.len() as u64;
            c
        })
        .collect()
}

fn deployments(api: &Api) {
    let all_rs = api.list("apps/replicasets");
    for d in api.list("apps/deployments") {
        if !d["metadata"]["deletionTimestamp"].is_null() {
            continue;
        }
        let (ns, name) = crate::store::key_of(&d);
        let hash = template_hash(&d["spec"]["template"]);
        let owned = owned_by(&all_rs, &d);
        let want = replicas(&d);
        let revision = |rs: &Value| {
            rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"]
                .as_str()
                .and_then(|r| r.parse::<u64>().ok())
                .unwrap_or(0)
        };
        let new = owned
            .iter()
            .find(|rs| rs["metadata"]["labels"]["pod-template-hash"] == hash.as_str())
            .copied();
        let olds: Vec<&Value> = owned
            .iter()
            .filter(|rs| rs["metadata"]["labels"]["pod-template-hash"] != hash.as_str())
            .copied()
            .collect();
        let old_pods: u64 = olds
            .iter()
            .map(|rs| rs["status"]["replicas"].as_u64().unwrap_or(0))
            .sum();
        let recreate = d["spec"]["strategy"]["type"] == "Recreate";
        let new_target = if recreate && old_pods > 0 { 0 } else { want };
        let rev = owned.iter().map(|rs| revision(rs)).max().unwrap_or(0);
        let new = match new {
            Some(rs) => {
                if replicas(rs) != new_target {
                    let (rns, rname) = crate::store::key_of(rs);
                    let _ = api.merge_patch(
                        "apps/replicasets",
                        &rns,
                        &rname,
                        &json!({"spec": {"replicas": new_target}}),
                    );
                }
                rs.clone()
            }
            None => {
                let mut template = d["spec"]["template"].clone();
                template["metadata"]["labels"]["pod-template-hash"] = json!(hash);
                let mut selector = d["spec"]["selector"].clone();
                selector["matchLabels"]["pod-template-hash"] = json!(hash);
                let mut labels = template["metadata"]["labels"].clone();
                labels["pod-template-hash"] = json!(hash);
                let rs = json!({"apiVersion": "apps/v1", "kind": "ReplicaSet",
                    "metadata": {"name": format!("{name}-{hash}"), "namespace": ns, "labels": labels,
                        "annotations": {"deployment.kubernetes.io/revision": (rev + 1).to_string()},
                        "ownerReferences": [owner_ref(&d, "apps/v1", "Deployment")]},
                    "spec": {"replicas": new_target, "selector": selector, "template": template}});
                match api.create("apps/replicasets", &ns, rs) {
                    Ok(rs) => rs,
                    Err(_) => continue,
                }
            }
        };
        let new_ready = new["status"]["readyReplicas"].as_u64().unwrap_or(0) as usize;
        for old in &olds {
            let scale_down = recreate || new_ready >= want;
            if scale_down && replicas(old) != 0 {
                let (rns, rname) = crate::store::key_of(old);
                let _ = api.merge_patch(
                    "apps/replicasets",
                    &rns,
                    &rname,
                    &json!({"spec": {"replicas": 0}}),
                );
            }
        }
        let total: u64 = old_pods + new["status"]["replicas"].as_u64().unwrap_or(0);
        let available: u64 = olds
            .iter()
            .map(|rs| rs["status"]["availableReplicas"].as_u64().unwrap_or(0))
            .sum::<u64>()
            + new_ready as u64;
        let updated = new["status"]["replicas"].as_u64().unwrap_or(0);
        let complete = updated == want as u64 && old_pods == 0 && new_ready >= want;
        let old_status = &d["status"];
        let mut progressing = condition(
            old_status,
            "Progressing",
            true,
            if complete {
                "NewReplicaSetAvailable"
            } else {
                "ReplicaSetUpdated"
            },
        );
        progressing["message"] = json!(format!(
            "ReplicaSet \"{}\" is progressing.",
            new["metadata"]["name"].as_str().unwrap_or_default()
        ));
        let status = json!({
            "observedGeneration": d["metadata"]["generation"], "replicas": total, "updatedReplicas": updated,
            "readyReplicas": available, "availableReplicas": available,
            "unavailableReplicas": (want as u64).saturating_sub(available),
            "conditions": [condition(old_status, "Available", available >= want as u64, if available >= want as u64 { "MinimumReplicasAvailable" } else { "MinimumReplicasUnavailable" }), progressing],
        });
        let _ = api.update_status("apps/deployments", &ns, &name, status);
        let rev_now = revision(&new).to_string();
        if d["metadata"]["annotations"]["deployment.kubernetes.io/revision"] != rev_now.as_str() {
            let _ = api.merge_patch("apps/deployments", &ns, &name, &json!({"metadata": {"annotations": {"deployment.kubernetes.io/revision": rev_now}}}));
        }
    }
}

fn jobs(api: &Api, pods: &[Value]) {
    for job in api.list("batch/jobs") {
        if !job["metadata"]["deletionTimestamp"].is_null() || job["spec"]["suspend"] == true {
            continue;
        }
        let (ns, name) = crate::store::key_of(&job);
        let old = &job["status"];
        let finished = old["conditions"].as_array().into_iter().flatten().any(|c| {
            matches!(c["type"].as_str(), Some("Complete" | "Failed")) && c["status"] == "True"
        });
        if finished {
            continue;
        }
        let mine = owned_by(pods, &job);
        let succeeded = mine
            .iter()
            .filter(|p| p["status"]["phase"] == "Succeeded")
            .count();
        let failed = mine
            .iter()
            .filter(|p| p["status"]["phase"] == "Failed")
            .count();
        let running: Vec<&&Value> = mine.iter().filter(|p| active(p)).collect();
        let completions = job["spec"]["completions"].as_u64().unwrap_or(1) as usize;
        let parallelism = job["spec"]["parallelism"].as_u64().unwrap_or(1) as usize;
        let backoff_limit = job["spec"]["backoffLimit"].as_u64().unwrap_or(6) as usize;
        let mut status = json!({
            "startTime": old["startTime"].as_str().map_or_else(clock::now_rfc3339, String::from),
            "active": running.len(), "succeeded": succeeded, "failed": failed,
            "ready": running.iter().filter(|p| ready(p)).count(),
            "terminating": mine.iter().filter(|p| !p["metadata"]["deletionTimestamp"].is_null()).count(),
        });
        if succeeded >= completions {
            status["completionTime"] = json!(clock::now_rfc3339());
            status["conditions"] = json!([
                condition(old, "SuccessCriteriaMet", true, "CompletionsReached"),
                condition(old, "Complete", true, "CompletionsReached")
            ]);
        } else if failed > backoff_limit {
            status["conditions"] = json!([
                condition(old, "FailureTarget", true, "BackoffLimitExceeded"),
                condition(old, "Failed", true, "BackoffLimitExceeded")
            ]);
            for p in &running {
                let (pns, pname) = crate::store::key_of(p);
                let _ = api.delete("pods", &pns, &pname);
            }
        } else {
            let want = parallelism.min(completions - succeeded);
            for _ in running.len()..want {
                create_pod(
                    api,
                    &ns,
                    &job["spec"]["template"],
                    &name,
                    owner_ref(&job, "batch/v1", "Job"),
                );
            }
        }
        let _ = api.update_status("batch/jobs", &ns, &name, status);
    }
}
