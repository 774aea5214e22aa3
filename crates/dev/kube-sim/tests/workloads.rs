//! Workload controllers over the process kubelet: Deployments (rollouts), ReplicaSets and
//! Jobs. Each test cites the Kubernetes documentation section it follows.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

mod common;
use common::{cluster, kubectl_available, kubelet_available, wait_for};

/// Docs "Deployments" (creating, updating a rollout, `kubectl rollout status`), "ReplicaSet"
/// and "Garbage Collection" (deleting the Deployment takes its ReplicaSets and pods).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deployment_rolls_out_and_rolls_over() {
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
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: main
        image: busybox
        command: [sleep, "300"]
        env: [{name: VERSION, value: "1"}]
        readinessProbe: {exec: {command: ["true"]}, periodSeconds: 1}
"#,
    );
    sim.kubectl(&["rollout", "status", "deployment/web", "--timeout=60s"]);
    let pods = sim.kubectl(&[
        "get",
        "pods",
        "-l",
        "app=web",
        "-o",
        "jsonpath={.items[*].spec.nodeName}",
    ]);
    let mut nodes: Vec<&str> = pods.split_whitespace().collect();
    nodes.sort();
    assert_eq!(nodes.len(), 2, "{pods}");

    sim.kubectl(&["set", "env", "deployment/web", "VERSION=2"]);
    sim.kubectl(&["rollout", "status", "deployment/web", "--timeout=60s"]);
    let replica_sets = sim.kubectl(&[
        "get",
        "replicasets",
        "-o",
        "jsonpath={range .items[*]}{.spec.replicas}{\" \"}{end}",
    ]);
    let mut counts: Vec<&str> = replica_sets.split_whitespace().collect();
    counts.sort();
    assert_eq!(counts, ["0", "2"]);
    wait_for("only the new pods", 30, || {
        let envs = sim.kubectl(&[
            "get",
            "pods",
            "-l",
            "app=web",
            "-o",
            "jsonpath={.items[*].spec.containers[0].env[0].value}",
        ]);
        (envs == "2 2").then_some(())
    })
    .await;
    let d = sim.object("apps/deployments", "default", "web").unwrap();
    assert_eq!(
        d["metadata"]["annotations"]["deployment.kubernetes.io/revision"],
        "2"
    );

    sim.kubectl(&["delete", "deployment", "web"]);
    wait_for("the pods to be gone", 30, || {
        sim.kubectl(&["get", "pods", "-o", "name"])
            .is_empty()
            .then_some(())
    })
    .await;
}

/// Docs "Jobs" (completions, backoffLimit, the Complete and Failed conditions, `kubectl wait`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_complete_or_fail() {
    if !kubectl_available() || !kubelet_available() {
        return;
    }
    let sim = cluster(1).await;
    sim.kubectl_in(
        &["apply", "-f", "-"],
        r#"
apiVersion: batch/v1
kind: Job
metadata: {name: ok}
spec:
  completions: 2
  template:
    spec:
      restartPolicy: Never
      containers: [{name: main, image: busybox, command: [sh, -c, "echo done"]}]
---
apiVersion: batch/v1
kind: Job
metadata: {name: bad}
spec:
  backoffLimit: 1
  template:
    spec:
      restartPolicy: Never
      containers: [{name: main, image: busybox, command: [sh, -c, "exit 1"]}]
"#,
    );
    sim.kubectl(&[
        "wait",
        "--for=condition=complete",
        "job/ok",
        "--timeout=60s",
    ]);
    sim.kubectl(&["wait", "--for=condition=failed", "job/bad", "--timeout=60s"]);
    let ok = sim.object("batch/jobs", "default", "ok").unwrap();
    assert_eq!(ok["status"]["succeeded"], 2);
    let bad = sim.object("batch/jobs", "default", "bad").unwrap();
    assert_eq!(bad["status"]["failed"], 2);
    let logs = sim.kubectl(&["logs", "job/ok"]);
    assert_eq!(logs, "done\n");
}
