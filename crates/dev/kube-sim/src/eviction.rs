//! `pods/eviction` (API reference "Eviction v1 policy", docs "API-initiated Eviction" and
//! "Specifying a Disruption Budget for your Application"), as the API server's eviction REST
//! handler (`pkg/registry/core/pod/storage/eviction.go`) does it:
//!
//! - the body is a `policy/v1` Eviction naming the pod (`400` when the names differ), with
//!   optional `deleteOptions` (grace period, preconditions) used for the deletion;
//! - a pod that is Succeeded, Failed, Pending or already terminating is deleted without
//!   looking at budgets;
//! - the PodDisruptionBudgets of its namespace whose selector matches it (policy/v1: an empty
//!   selector matches every pod, a missing one none): none → deleted; more than one → `500`
//!   ("This pod has more than one PodDisruptionBudget, which the eviction subresource does
//!   not support."); one → its status decides: `observedGeneration` behind `generation` →
//!   `429` (still being processed); `disruptionsAllowed` negative → `403`; a pod that is not
//!   Ready may go while `currentHealthy >= desiredHealthy` (policy `IfHealthyBudget`, the
//!   default) or always (`AlwaysAllow`); otherwise `disruptionsAllowed == 0` → `429
//!   TooManyRequests` "Cannot evict pod as it would violate the pod's disruption budget."
//!   with a `DisruptionBudget` cause; else the budget's `disruptionsAllowed` is decremented and
//!   the pod recorded in `disruptedPods` before the pod gets the `DisruptionTarget` condition
//!   and is deleted (gracefully: it keeps running for its grace period).
//!
//! All of it happens under the store's lock, so two evictions never spend one disruption.
//! The budgets' status comes from the disruption controller (`kubelet::disruption`); with no
//! controller running, a budget matching the pod refuses every eviction, as a real API server
//! without kube-controller-manager would.

use crate::error::ApiError;
use crate::gc::DeleteOptions;
use crate::selector::LabelSelector;
use crate::server::{ApiServer, Body, BoxFuture, Subresource};
use crate::verbs::{State, Target, WriteOptions};
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::{Request, Response};
use serde_json::{json, Value};
use std::sync::Arc;

/// Where the budgets are stored.
pub const PDB_STORAGE: &str = "policy/poddisruptionbudgets";

const VIOLATION: &str = "Cannot evict pod as it would violate the pod's disruption budget.";

/// Serves `POST pods/NAME/eviction`.
#[derive(Debug)]
pub struct Eviction;

impl Subresource for Eviction {
    fn handles(&self, storage: &str, sub: &str) -> bool {
        storage == "/pods" && sub == "eviction"
    }

    fn call(
        &self,
        server: Arc<ApiServer>,
        target: Target,
        request: Request<Bytes>,
    ) -> BoxFuture<Result<Response<Body>, ApiError>> {
        Box::pin(async move {
            if request.method() != hyper::Method::POST {
                return Err(ApiError::method_not_allowed(
                    "only create is allowed on pods/eviction",
                ));
            }
            let body: Value = serde_json::from_slice(request.body()).map_err(|e| {
                ApiError::bad_request(format!("the Eviction is not valid JSON: {e}"))
            })?;
            let dry_run = request
                .uri()
                .query()
                .map(|q| {
                    form_urlencoded::parse(q.as_bytes()).any(|(k, v)| k == "dryRun" && v == "All")
                })
                .unwrap_or(false);
            let mut state = server
                .state
                .lock()
                .map_err(|_| ApiError::internal("state lock poisoned"))?;
            evict(&mut state, &target.namespace, &target.name, &body, dry_run)?;
            drop(state);
            let status = json!({"kind": "Status", "apiVersion": "v1", "metadata": {},
                "status": "Success", "code": 201});
            Response::builder()
                .status(201)
                .header("Content-Type", "application/json")
                .body(http_body_util::Full::new(Bytes::from(status.to_string())).boxed())
                .map_err(|e| ApiError::internal(e.to_string()))
        })
    }
}

fn target(
    state: &State,
    storage: &str,
    ns: &str,
    name: &str,
    sub: &str,
) -> Result<Target, ApiError> {
    let rt = state
        .registry
        .find_storage(storage)
        .ok_or_else(|| ApiError::internal(format!("no resource {storage}")))?;
    Ok(Target {
        rt,
        namespace: ns.into(),
        name: name.into(),
        subresource: sub.into(),
    })
}

/// Whether a budget's selector matches `pod` (policy/v1: `{}` matches all, none matches none).
pub fn selects(pdb: &Value, pod: &Value) -> bool {
    let sel = &pdb["spec"]["selector"];
    sel.is_object()
        && pdb["metadata"]["namespace"] == pod["metadata"]["namespace"]
        && LabelSelector::from_object(sel).matches(pod)
}

/// Whether the pod's Ready condition is True.
pub fn pod_ready(pod: &Value) -> bool {
    pod["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Ready" && c["status"] == "True")
}

fn too_many_requests(cause: String, retry_after: u64) -> ApiError {
    let mut e = ApiError::new(429, "TooManyRequests", VIOLATION);
    e.details = Some(json!({"retryAfterSeconds": retry_after,
        "causes": [{"reason": "DisruptionBudget", "message": cause}]}));
    e
}

/// Evict `ns/name` as described in the module documentation.
pub fn evict(
    state: &mut State,
    ns: &str,
    name: &str,
    eviction: &Value,
    dry_run: bool,
) -> Result<(), ApiError> {
    if let Some(n) = eviction["metadata"]["name"].as_str() {
        if n != name {
            return Err(ApiError::bad_request(
                "name in URL does not match name in Eviction object",
            ));
        }
    }
    let pod_t = target(state, "/pods", ns, name, "")?;
    let pod = state.get(&pod_t)?;
    let opts = eviction["deleteOptions"].clone();
    let mut delete = DeleteOptions::parse(
        if opts.is_object() {
            &opts
        } else {
            &Value::Null
        },
        &Default::default(),
        dry_run,
    );
    delete.dry_run = dry_run;
    let ignores_budgets = matches!(
        pod["status"]["phase"].as_str(),
        Some("Succeeded" | "Failed" | "Pending")
    ) || !pod["metadata"]["deletionTimestamp"].is_null();
    if ignores_budgets {
        state.delete(&pod_t, &delete)?;
        return Ok(());
    }
    let pdbs: Vec<Value> = state
        .store
        .objects(PDB_STORAGE)
        .map(|o| o.values().filter(|p| selects(p, &pod)).cloned().collect())
        .unwrap_or_default();
    if pdbs.len() > 1 {
        return Err(ApiError::internal(
            "Internal error occurred: This pod has more than one PodDisruptionBudget, which the eviction subresource does not support.",
        ));
    }
    if let Some(pdb) = pdbs.into_iter().next() {
        spend_disruption(state, pdb, &pod, dry_run)?;
    }
    if !dry_run {
        mark_disruption_target(state, &pod_t, pod)?;
    }
    state.delete(&pod_t, &delete)?;
    Ok(())
}

/// Check the budget and take one disruption from it (recording the pod as disrupted).
fn spend_disruption(
    state: &mut State,
    mut pdb: Value,
    pod: &Value,
    dry_run: bool,
) -> Result<(), ApiError> {
    let pdb_name = pdb["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let status = &pdb["status"];
    let observed = status["observedGeneration"].as_i64().unwrap_or(0);
    let generation = pdb["metadata"]["generation"].as_i64().unwrap_or(1);
    if observed < generation {
        return Err(too_many_requests(
            format!("The disruption budget {pdb_name} is still being processed by the server."),
            10,
        ));
    }
    let allowed = status["disruptionsAllowed"].as_i64().unwrap_or(0);
    if allowed < 0 {
        return Err(ApiError::forbidden(format!(
            "poddisruptionbudgets.policy \"{pdb_name}\" is forbidden: pdb disruptions allowed is negative"
        )));
    }
    let (healthy, desired) = (
        status["currentHealthy"].as_i64().unwrap_or(0),
        status["desiredHealthy"].as_i64().unwrap_or(0),
    );
    if !pod_ready(pod) {
        let always = pdb["spec"]["unhealthyPodEvictionPolicy"] == "AlwaysAllow";
        if always || healthy >= desired && desired > 0 {
            return Ok(());
        }
    }
    if allowed == 0 {
        return Err(too_many_requests(
            format!(
                "The disruption budget {pdb_name} needs {desired} healthy pods and has {healthy} currently"
            ),
            0,
        ));
    }
    if dry_run {
        return Ok(());
    }
    let pod_name = pod["metadata"]["name"].as_str().unwrap_or_default();
    pdb["status"]["disruptionsAllowed"] = json!(allowed - 1);
    if allowed == 1 {
        for c in pdb["status"]["conditions"]
            .as_array_mut()
            .into_iter()
            .flatten()
        {
            if c["type"] == "DisruptionAllowed" && c["status"] != "False" {
                c["status"] = json!("False");
                c["reason"] = json!("InsufficientPods");
                c["lastTransitionTime"] = json!(crate::clock::now_rfc3339());
            }
        }
    }
    if !pdb["status"]["disruptedPods"].is_object() {
        pdb["status"]["disruptedPods"] = json!({});
    }
    pdb["status"]["disruptedPods"][pod_name] = json!(crate::clock::now_rfc3339());
    let ns = pdb["metadata"]["namespace"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let t = target(state, PDB_STORAGE, &ns, &pdb_name, "status")?;
    state.update(&t, pdb, &manager("eviction"))?;
    Ok(())
}

fn manager(name: &str) -> WriteOptions {
    WriteOptions {
        field_manager: Some(name.into()),
        ..WriteOptions::default()
    }
}

/// The `DisruptionTarget` condition the API server sets before deleting an evicted pod.
fn mark_disruption_target(
    state: &mut State,
    pod_t: &Target,
    mut pod: Value,
) -> Result<(), ApiError> {
    let mut conditions: Vec<Value> = pod["status"]["conditions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    conditions.retain(|c| c["type"] != "DisruptionTarget");
    conditions.push(json!({"type": "DisruptionTarget", "status": "True",
        "reason": "EvictionByEvictionAPI", "message": "Eviction API: evicting",
        "lastProbeTime": null, "lastTransitionTime": crate::clock::now_rfc3339()}));
    pod["status"]["conditions"] = json!(conditions);
    if let Some(m) = pod["metadata"].as_object_mut() {
        m.remove("resourceVersion");
    }
    let t = Target {
        subresource: "status".into(),
        ..pod_t.clone()
    };
    state.update(&t, pod, &manager("kube-apiserver"))?;
    Ok(())
}
