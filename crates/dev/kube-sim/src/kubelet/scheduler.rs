//! The scheduler (Kubernetes docs "Assigning Pods to Nodes", "Taints and Tolerations",
//! "Scheduling Framework"): a pending pod with no `spec.nodeName` and the default scheduler
//! goes to a feasible node — Ready, matching `nodeSelector` and required node affinity,
//! tolerating its NoSchedule/NoExecute taints, with room for its cpu/memory requests and one
//! more pod in the node's allocatable (`resources`), not violating required pod anti-affinity on a
//! topology key — scored by preferred node affinity, preferred pod (anti-)affinity and the
//! number of pods already there (spreading). Binding sets `spec.nodeName` and the
//! `PodScheduled` condition, as a `pods/binding` does; an unschedulable pod gets
//! `PodScheduled=False` with reason `Unschedulable`.

use super::api::Api;
use super::status::condition;
use crate::error::ApiError;
use crate::selector::LabelSelector;
use crate::server::{ApiServer, Body, BoxFuture, Subresource};
use crate::verbs::Target;
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::{Request, Response};
use serde_json::{json, Value};
use std::sync::Arc;

/// One scheduling pass over every pending pod (in creation order).
pub fn schedule(api: &Api) {
    let nodes = api.list("nodes");
    let mut pods = api.list("pods");
    pods.sort_by(|a, b| {
        let t = |p: &Value| {
            p["metadata"]["creationTimestamp"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        };
        t(a).cmp(&t(b))
    });
    let mut bound: Vec<Value> = pods
        .iter()
        .filter(|p| {
            p["spec"]["nodeName"]
                .as_str()
                .is_some_and(|n| !n.is_empty())
        })
        .filter(|p| !matches!(p["status"]["phase"].as_str(), Some("Succeeded" | "Failed")))
        .cloned()
        .collect();
    for pod in &pods {
        let mine = pod["spec"]["schedulerName"]
            .as_str()
            .is_none_or(|s| s == "default-scheduler");
        if !mine
            || pod["spec"]["nodeName"]
                .as_str()
                .is_some_and(|n| !n.is_empty())
            || !pod["metadata"]["deletionTimestamp"].is_null()
        {
            continue;
        }
        let (ns, name) = crate::store::key_of(pod);
        match choose(pod, &nodes, &bound) {
            Ok(node) => {
                let node = node_name(node).to_string();
                if let Ok(p) = bind(&api.server, &ns, &name, &node) {
                    let msg = format!("assigned {ns}/{name} to {node}");
                    super::events::record(
                        api,
                        &p,
                        "Normal",
                        "Scheduled",
                        &msg,
                        "default-scheduler",
                    );
                    bound.push(p);
                }
            }
            Err(why) => {
                let said = pod["status"]["conditions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|c| c["type"] == "PodScheduled" && c["message"] == why.as_str());
                if !said {
                    super::events::record(
                        api,
                        pod,
                        "Warning",
                        "FailedScheduling",
                        &why,
                        "default-scheduler",
                    );
                }
                let mut status = pod["status"].clone();
                let mut c = condition(&status, "PodScheduled", false, "Unschedulable");
                c["message"] = json!(why);
                let mut conditions: Vec<Value> =
                    status["conditions"].as_array().cloned().unwrap_or_default();
                conditions.retain(|c| c["type"] != "PodScheduled");
                conditions.push(c);
                status["conditions"] = json!(conditions);
                let _ = api.update_status("pods", &ns, &name, status);
            }
        }
    }
}

/// Bind a pod to a node, as `POST pods/NAME/binding` does (API reference "Binding v1 core"):
/// only a pod with no node yet (409 otherwise); sets `spec.nodeName` and `PodScheduled=True`.
pub fn bind(server: &ApiServer, ns: &str, name: &str, node: &str) -> Result<Value, ApiError> {
    let mut state = server
        .state
        .lock()
        .map_err(|_| ApiError::internal("state lock poisoned"))?;
    let rt = state
        .registry
        .find("", "v1", "pods")
        .ok_or_else(|| ApiError::internal("no pods"))?;
    let t = Target {
        rt,
        namespace: ns.into(),
        name: name.into(),
        subresource: String::new(),
    };
    let mut pod = state.get(&t)?;
    if pod["spec"]["nodeName"]
        .as_str()
        .is_some_and(|n| !n.is_empty())
    {
        return Err(ApiError::conflict(
            "",
            "pods",
            name,
            &format!(
                "pod {name} is already assigned to node \"{}\"",
                pod["spec"]["nodeName"].as_str().unwrap_or_default()
            ),
        ));
    }
    if !pod["metadata"]["deletionTimestamp"].is_null() {
        return Err(ApiError::conflict("", "pods", name, "pod is being deleted"));
    }
    pod["spec"]["nodeName"] = json!(node);
    let mut conditions: Vec<Value> = pod["status"]["conditions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    conditions.retain(|c| c["type"] != "PodScheduled");
    conditions.push(condition(&Value::Null, "PodScheduled", true, ""));
    pod["status"]["conditions"] = json!(conditions);
    Ok(state.put(&t, pod))
}

/// `pods/binding`: what a scheduler posts.
#[derive(Debug)]
pub struct Binding;

impl Subresource for Binding {
    fn handles(&self, storage: &str, sub: &str) -> bool {
        storage == "/pods" && sub == "binding"
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
                    "only create is allowed on pods/binding",
                ));
            }
            let body: Value = serde_json::from_slice(request.body()).map_err(|e| {
                ApiError::bad_request(format!("the binding is not valid JSON: {e}"))
            })?;
            let node = body["target"]["name"].as_str().unwrap_or_default();
            if node.is_empty() {
                return Err(ApiError::bad_request("the binding names no target node"));
            }
            bind(&server, &target.namespace, &target.name, node)?;
            let status = crate::error::success(json!({"name": target.name, "kind": "pods"}));
            Response::builder()
                .status(201)
                .header("Content-Type", "application/json")
                .body(http_body_util::Full::new(Bytes::from(status.to_string())).boxed())
                .map_err(|e| ApiError::internal(e.to_string()))
        })
    }
}

/// The node for `pod` among `nodes`, given every pod already bound (`bound`), or why none.
pub fn choose<'a>(pod: &Value, nodes: &'a [Value], bound: &[Value]) -> Result<&'a Value, String> {
    let mut best: Option<(i64, &Value)> = None;
    let mut reasons = Vec::new();
    for node in nodes {
        if let Err(why) = feasible(pod, node, nodes, bound) {
            reasons.push(why);
            continue;
        }
        let score = score(pod, node, nodes, bound);
        if best.is_none_or(|(s, _)| score > s) {
            best = Some((score, node));
        }
    }
    best.map(|(_, n)| n).ok_or_else(|| {
        // As the scheduler's FitError: each reason with the number of nodes it applies to.
        let mut counts = std::collections::BTreeMap::new();
        for r in reasons {
            *counts.entry(r).or_insert(0) += 1;
        }
        let list: Vec<String> = counts.iter().map(|(r, n)| format!("{n} {r}")).collect();
        format!(
            "0/{} nodes are available: {}.",
            nodes.len(),
            list.join(", ")
        )
    })
}

fn labels(o: &Value) -> &Value {
    &o["metadata"]["labels"]
}

fn node_name(n: &Value) -> &str {
    n["metadata"]["name"].as_str().unwrap_or_default()
}

fn ready(node: &Value) -> bool {
    node["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Ready" && c["status"] == "True")
}

fn feasible(pod: &Value, node: &Value, nodes: &[Value], bound: &[Value]) -> Result<(), String> {
    if !ready(node) {
        return Err("node(s) were not ready".into());
    }
    if node["spec"]["unschedulable"] == true {
        return Err("node(s) were unschedulable".into());
    }
    let spec = &pod["spec"];
    if let Some(sel) = spec["nodeSelector"].as_object() {
        if !sel.iter().all(|(k, v)| labels(node)[k] == *v) {
            return Err("node(s) didn't match Pod's node affinity/selector".into());
        }
    }
    let required =
        &spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"];
    if let Some(terms) = required["nodeSelectorTerms"].as_array() {
        if !terms.iter().any(|t| node_term_matches(t, node)) {
            return Err("node(s) didn't match Pod's node affinity/selector".into());
        }
    }
    for taint in node["spec"]["taints"].as_array().into_iter().flatten() {
        let effect = taint["effect"].as_str().unwrap_or_default();
        if matches!(effect, "NoSchedule" | "NoExecute") && !tolerated(spec, taint) {
            return Err(format!(
                "node(s) had untolerated taint {{{}: {}}}",
                taint["key"].as_str().unwrap_or_default(),
                taint["value"].as_str().unwrap_or_default()
            ));
        }
    }
    let here: Vec<&Value> = bound
        .iter()
        .filter(|p| p["spec"]["nodeName"].as_str() == Some(node_name(node)))
        .collect();
    if let Some(why) = super::resources::misfit(pod, node, &here) {
        return Err(why);
    }
    let anti =
        &spec["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"];
    for term in anti.as_array().into_iter().flatten() {
        if pods_in_domain(pod, term, node, nodes, bound) > 0 {
            return Err("node(s) didn't match pod anti-affinity rules".into());
        }
    }
    Ok(())
}

/// Higher is better.
fn score(pod: &Value, node: &Value, nodes: &[Value], bound: &[Value]) -> i64 {
    let spec = &pod["spec"];
    let mut score = 0;
    let preferred =
        &spec["affinity"]["nodeAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"];
    for p in preferred.as_array().into_iter().flatten() {
        if node_term_matches(&p["preference"], node) {
            score += 1000 * p["weight"].as_i64().unwrap_or(0);
        }
    }
    for (kind, sign) in [("podAntiAffinity", -1), ("podAffinity", 1)] {
        let terms = &spec["affinity"][kind]["preferredDuringSchedulingIgnoredDuringExecution"];
        for p in terms.as_array().into_iter().flatten() {
            let n = pods_in_domain(pod, &p["podAffinityTerm"], node, nodes, bound);
            score += sign * 1000 * p["weight"].as_i64().unwrap_or(0) * n.min(1) as i64;
            score += sign * n as i64;
        }
    }
    let here = bound
        .iter()
        .filter(|p| p["spec"]["nodeName"].as_str() == Some(node_name(node)))
        .count() as i64;
    score - here
}

/// Pods matching an affinity term's selector (in its namespaces) in `node`'s topology domain.
fn pods_in_domain(
    pod: &Value,
    term: &Value,
    node: &Value,
    nodes: &[Value],
    bound: &[Value],
) -> usize {
    let Some(key) = term["topologyKey"].as_str() else {
        return 0;
    };
    let Some(domain) = labels(node)[key].as_str() else {
        return 0;
    };
    let selector = LabelSelector::from_object(&term["labelSelector"]);
    let own_ns = pod["metadata"]["namespace"].as_str().unwrap_or_default();
    let namespaces: Vec<&str> = term["namespaces"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_else(|| vec![own_ns]);
    let nodes_in_domain: Vec<&str> = nodes
        .iter()
        .filter(|n| labels(n)[key].as_str() == Some(domain))
        .map(node_name)
        .collect();
    bound
        .iter()
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
        .filter(|p| namespaces.contains(&p["metadata"]["namespace"].as_str().unwrap_or_default()))
        .filter(|p| nodes_in_domain.contains(&p["spec"]["nodeName"].as_str().unwrap_or_default()))
        .filter(|p| selector.matches(p))
        .count()
}

/// A NodeSelectorTerm: all of its matchExpressions (labels) and matchFields (metadata.name).
fn node_term_matches(term: &Value, node: &Value) -> bool {
    let exprs = term["matchExpressions"].as_array().into_iter().flatten();
    let fields = term["matchFields"].as_array().into_iter().flatten();
    let mut any = false;
    for e in exprs {
        any = true;
        if !requirement(
            e,
            labels(node)[e["key"].as_str().unwrap_or_default()].as_str(),
        ) {
            return false;
        }
    }
    for f in fields {
        any = true;
        let v = (f["key"] == "metadata.name").then(|| node_name(node));
        if !requirement(f, v) {
            return false;
        }
    }
    any
}

fn requirement(e: &Value, value: Option<&str>) -> bool {
    let values: Vec<&str> = e["values"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let number = |s: Option<&str>| s.and_then(|s| s.parse::<i64>().ok());
    match e["operator"].as_str().unwrap_or_default() {
        "In" => value.is_some_and(|v| values.contains(&v)),
        "NotIn" => value.is_none_or(|v| !values.contains(&v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        "Gt" => {
            matches!((number(value), number(values.first().copied())), (Some(a), Some(b)) if a > b)
        }
        "Lt" => {
            matches!((number(value), number(values.first().copied())), (Some(a), Some(b)) if a < b)
        }
        _ => false,
    }
}

/// Whether one of the pod's tolerations tolerates `taint`.
fn tolerated(spec: &Value, taint: &Value) -> bool {
    spec["tolerations"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|t| {
            let key_ok = match t["key"].as_str().unwrap_or_default() {
                "" => t["operator"] == "Exists",
                k => k == taint["key"].as_str().unwrap_or_default(),
            };
            let effect_ok = t["effect"]
                .as_str()
                .is_none_or(|e| e.is_empty() || taint["effect"] == e);
            let value_ok = t["operator"] == "Exists"
                || t["value"].as_str().unwrap_or_default()
                    == taint["value"].as_str().unwrap_or_default();
            key_ok && effect_ok && value_ok
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(name: &str, zone: &str) -> Value {
        json!({"metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, "topology.kubernetes.io/zone": zone}},
               "spec": {}, "status": {"conditions": [{"type": "Ready", "status": "True"}]}})
    }

    #[test]
    fn selectors_taints_and_spreading_pick_the_node() {
        let mut nodes = vec![
            node("node-1", "a"),
            node("node-2", "b"),
            node("node-3", "c"),
        ];
        nodes[2]["spec"]["taints"] =
            json!([{"key": "dedicated", "value": "db", "effect": "NoSchedule"}]);
        let pod = |app: &str| {
            json!({"metadata": {"namespace": "ns", "labels": {"app": app}}, "spec": {
            "affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 100,
                "podAffinityTerm": {"topologyKey": "kubernetes.io/hostname", "labelSelector": {"matchLabels": {"app": app}}}}]}}}})
        };
        let mut bound = vec![pod("db")];
        bound[0]["spec"]["nodeName"] = json!("node-1");
        assert_eq!(
            node_name(choose(&pod("db"), &nodes, &bound).unwrap()),
            "node-2"
        );
        let mut tolerant = pod("db");
        tolerant["spec"]["nodeSelector"] = json!({"topology.kubernetes.io/zone": "c"});
        assert!(choose(&tolerant, &nodes, &bound)
            .unwrap_err()
            .contains("untolerated taint"));
        tolerant["spec"]["tolerations"] =
            json!([{"key": "dedicated", "operator": "Equal", "value": "db"}]);
        assert_eq!(
            node_name(choose(&tolerant, &nodes, &bound).unwrap()),
            "node-3"
        );
    }
}
