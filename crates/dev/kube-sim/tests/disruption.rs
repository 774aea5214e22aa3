//! PodDisruptionBudgets and `pods/eviction`: the disruption controller's status, evictions
//! allowed and refused, and `kubectl drain`. Each test cites the Kubernetes documentation or API
//! reference section it follows.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

mod common;
use common::{api_error, cluster, kubectl_available, kubelet_available, wait_for, Sim};
use k8s_openapi::api::core::v1::Pod;
use kube_client::api::{Api, EvictParams};
use serde_json::Value;

fn pdb(sim: &Sim, name: &str) -> Value {
    sim.object("policy/poddisruptionbudgets", "default", name)
        .unwrap()
}

const TWO_PODS: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: db-a, labels: {app: db}}
spec:
  terminationGracePeriodSeconds: 30
  containers: [{name: main, image: busybox, command: ["/bin/sh", "-c", "trap 'exit 0' TERM; while true; do sleep 0.1; done"]}]
---
apiVersion: v1
kind: Pod
metadata: {name: db-b, labels: {app: db}}
spec:
  containers: [{name: main, image: busybox, command: ["/bin/sh", "-c", "trap 'exit 0' TERM; while true; do sleep 0.1; done"]}]
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata: {name: db}
spec:
  minAvailable: 1
  selector: {matchLabels: {app: db}}
"#;

/// API reference "PodDisruptionBudget v1 policy" (PodDisruptionBudgetStatus), docs "API-initiated
/// Eviction" and "Specifying a Disruption Budget for your Application": the status follows the
/// pods; an eviction within the budget deletes the pod gracefully and spends the disruption; the
/// next is refused with 429 and a DisruptionBudget cause; a pod matched by two budgets cannot be
/// evicted (500).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evictions_honour_the_disruption_budget() {
    if !kubectl_available() || !kubelet_available() {
        return;
    }
    let sim = cluster(2).await;
    sim.kubectl_in(&["apply", "-f", "-"], TWO_PODS);
    sim.kubectl(&[
        "wait",
        "--for=condition=Ready",
        "pod/db-a",
        "pod/db-b",
        "--timeout=30s",
    ]);
    wait_for("the budget to allow one disruption", 15, || {
        let s = pdb(&sim, "db")["status"].clone();
        (s["disruptionsAllowed"] == 1).then_some(())
    })
    .await;
    let s = pdb(&sim, "db")["status"].clone();
    assert_eq!(s["currentHealthy"], 2, "{s}");
    assert_eq!(s["desiredHealthy"], 1, "{s}");
    assert_eq!(s["expectedPods"], 2, "{s}");
    assert_eq!(s["observedGeneration"], 1, "{s}");
    assert_eq!(s["conditions"][0]["type"], "DisruptionAllowed", "{s}");
    assert_eq!(s["conditions"][0]["status"], "True", "{s}");
    assert_eq!(s["conditions"][0]["reason"], "SufficientPods", "{s}");

    let client = common::client_without_retry(&sim.running.kubeconfig).await;
    let pods: Api<Pod> = Api::namespaced(client, "default");
    // A dry run changes nothing.
    let dry = EvictParams {
        delete_options: None,
        post_options: kube_client::api::PostParams {
            dry_run: true,
            field_manager: None,
        },
    };
    pods.evict("db-a", &dry).await.unwrap();
    let a = sim.object("pods", "default", "db-a").unwrap();
    assert!(a["metadata"]["deletionTimestamp"].is_null(), "{a}");
    assert_eq!(pdb(&sim, "db")["status"]["disruptionsAllowed"], 1);

    pods.evict("db-a", &EvictParams::default()).await.unwrap();
    // Spent at once: the eviction records the pod in `disruptedPods`, where it stays until the
    // controller's next pass counts it as terminating (which, on a loaded machine, may have
    // come before this read).
    let s = pdb(&sim, "db")["status"].clone();
    assert_eq!(s["disruptionsAllowed"], 0, "{s}");
    assert!(
        s["disruptedPods"]["db-a"].is_string() || s["currentHealthy"] == 1,
        "{s}"
    );
    let a = sim.object("pods", "default", "db-a").unwrap();
    assert!(
        a["metadata"]["deletionTimestamp"].is_string(),
        "graceful: {a}"
    );
    let target = a["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "DisruptionTarget")
        .cloned()
        .unwrap_or_default();
    assert_eq!(target["reason"], "EvictionByEvictionAPI", "{a}");

    assert_eq!(s["conditions"][0]["reason"], "InsufficientPods", "{s}");
    // The controller no longer counts the evicted pod (terminating) as healthy.
    wait_for("the controller to recount", 15, || {
        (pdb(&sim, "db")["status"]["currentHealthy"] == 1).then_some(())
    })
    .await;
    let e = api_error(
        pods.evict("db-b", &EvictParams::default())
            .await
            .unwrap_err(),
    );
    assert_eq!(e.code, 429, "{e:?}");
    assert_eq!(e.reason, "TooManyRequests");
    assert_eq!(
        e.message,
        "Cannot evict pod as it would violate the pod's disruption budget."
    );
    let causes = e.details.as_ref().unwrap().causes.clone();
    assert_eq!(causes[0].reason, "DisruptionBudget", "{causes:?}");
    assert_eq!(
        causes[0].message,
        "The disruption budget db needs 1 healthy pods and has 1 currently"
    );
    assert!(
        sim.object("pods", "default", "db-b").unwrap()["metadata"]["deletionTimestamp"].is_null()
    );

    // kubectl reports the refusal as the real server's.
    let err = sim.kubectl_fails(
        &[
            "create",
            "--raw",
            "/api/v1/namespaces/default/pods/db-b/eviction",
            "-f",
            "-",
        ],
        Some(r#"{"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": "db-b"}}"#),
    );
    assert!(err.contains("disruption budget"), "{err}");

    // The evicted pod goes (after its grace period); the budget recovers no disruption while
    // only one pod is left.
    wait_for("db-a to be gone", 30, || {
        sim.object("pods", "default", "db-a")
            .is_none()
            .then_some(())
    })
    .await;
    wait_for("the controller to recount", 15, || {
        let s = pdb(&sim, "db")["status"].clone();
        (s["expectedPods"] == 1 && s["currentHealthy"] == 1).then_some(s)
    })
    .await;
    let s = pdb(&sim, "db")["status"].clone();
    assert_eq!(s["disruptionsAllowed"], 0, "{s}");
    assert_eq!(s["conditions"][0]["reason"], "InsufficientPods", "{s}");
    assert!(
        s["disruptedPods"].is_null(),
        "forgotten once the pod is gone: {s}"
    );

    // Two budgets for one pod: the eviction subresource does not support it.
    sim.kubectl_in(
        &["apply", "-f", "-"],
        "apiVersion: policy/v1\nkind: PodDisruptionBudget\nmetadata: {name: all}\nspec: {maxUnavailable: 0, selector: {}}\n",
    );
    let e = api_error(
        pods.evict("db-b", &EvictParams::default())
            .await
            .unwrap_err(),
    );
    assert_eq!(e.code, 500, "{e:?}");
    assert!(
        e.message.contains("more than one PodDisruptionBudget"),
        "{e:?}"
    );
    // The name in the body must be the pod's.
    let e = sim.kubectl_fails(
        &[
            "create",
            "--raw",
            "/api/v1/namespaces/default/pods/db-b/eviction",
            "-f",
            "-",
        ],
        Some(r#"{"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": "other"}}"#),
    );
    assert!(e.contains("name in URL does not match"), "{e}");
}

/// Docs "Safely Drain a Node" and "kubectl drain": cordon (spec.unschedulable), then evictions
/// through `pods/eviction`, retried while the budget refuses (429) until the Deployment's
/// replacement pods are Ready elsewhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_drain_evicts_within_the_budget() {
    if !kubectl_available() || !kubelet_available() {
        return;
    }
    let sim = cluster(2).await;
    sim.kubectl_in(
        &["apply", "-f", "-"],
        r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 4
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      terminationGracePeriodSeconds: 1
      containers: [{name: main, image: busybox, command: ["/bin/sh", "-c", "trap 'exit 0' TERM; while true; do sleep 0.1; done"]}]
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata: {name: web}
spec:
  maxUnavailable: "25%"
  selector: {matchLabels: {app: web}}
"#,
    );
    sim.kubectl(&["rollout", "status", "deployment/web", "--timeout=60s"]);
    wait_for("the budget to allow one disruption", 15, || {
        let s = pdb(&sim, "web")["status"].clone();
        (s["disruptionsAllowed"] == 1).then_some(())
    })
    .await;
    let s = pdb(&sim, "web")["status"].clone();
    assert_eq!(s["expectedPods"], 4, "the Deployment's scale: {s}");
    assert_eq!(s["desiredHealthy"], 3, "{s}");
    let on_node_1 = |sim: &Sim| {
        sim.running
            .server
            .state
            .lock()
            .unwrap()
            .store
            .objects("/pods")
            .map_or(0, |o| {
                o.values()
                    .filter(|p| p["spec"]["nodeName"] == "node-1")
                    .count()
            })
    };
    assert!(on_node_1(&sim) >= 2, "spread over both nodes");

    let out = sim.kubectl(&[
        "drain",
        "node-1",
        "--ignore-daemonsets",
        "--delete-emptydir-data",
        "--timeout=90s",
    ]);
    assert!(out.contains("drained"), "{out}");
    let node = sim.object("nodes", "", "node-1").unwrap();
    assert_eq!(node["spec"]["unschedulable"], true, "{node}");
    assert_eq!(on_node_1(&sim), 0);
    let log = sim.running.server.authorization_log();
    let evictions = log
        .iter()
        .filter(|d| d.resource == "pods" && d.subresource == "eviction" && d.verb == "create")
        .count();
    assert!(
        evictions >= 3,
        "drain evicted (and retried on 429): {evictions}"
    );
    sim.kubectl(&["rollout", "status", "deployment/web", "--timeout=60s"]);
    sim.kubectl(&["uncordon", "node-1"]);
    let node = sim.object("nodes", "", "node-1").unwrap();
    assert!(node["spec"]["unschedulable"].is_null() || node["spec"]["unschedulable"] == false);
}
