//! The scheduler and node resources. Each test cites the Kubernetes documentation section it
//! follows.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

mod common;
use common::{cluster_with, kubectl_available, kubelet_available, wait_for, Sim};

fn pod(name: &str, resources: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec:\n  terminationGracePeriodSeconds: 1\n  containers: [{{name: main, image: busybox, command: [sleep, '300'], resources: {resources}}}]\n"
    )
}

fn node_of(sim: &Sim, name: &str) -> Option<String> {
    sim.object("pods", "default", name)?["spec"]["nodeName"]
        .as_str()
        .map(String::from)
}

fn unschedulable_message(sim: &Sim, name: &str) -> Option<String> {
    let p = sim.object("pods", "default", name)?;
    let c = p["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == "PodScheduled" && c["status"] == "False")?
        .clone();
    assert_eq!(c["reason"], "Unschedulable", "{c}");
    c["message"].as_str().map(String::from)
}

/// Docs "Resource Management for Pods and Containers" (how pods with resource requests are
/// scheduled; a container with a limit and no request gets the limit as request) and "Pod
/// Quality of Service Classes"; API reference "Pod v1 core" (PodScheduled condition) and the
/// scheduler's FailedScheduling event: requests are fitted into the nodes' allocatable, a pod
/// fitting nowhere stays Pending until room is made.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_are_fitted_into_node_allocatable() {
    if !kubectl_available() || !kubelet_available() {
        return;
    }
    let sim = cluster_with(2, |c| {
        c.node_resources
            .insert("node-1".into(), ("1".into(), "1Gi".into()));
        c.node_resources
            .insert("node-2".into(), ("2".into(), "2Gi".into()));
    })
    .await;
    wait_for("node-2's allocatable", 10, || {
        let n = sim.object("nodes", "", "node-2")?;
        (n["status"]["allocatable"]["cpu"] == "2").then_some(())
    })
    .await;
    let n = sim.object("nodes", "", "node-1").unwrap();
    assert_eq!(n["status"]["allocatable"]["memory"], "1Gi", "{n}");
    assert_eq!(n["status"]["capacity"]["cpu"], "1", "{n}");

    sim.kubectl_in(
        &["apply", "-f", "-"],
        &pod("big", "{requests: {cpu: 1500m}}"),
    );
    let node = wait_for("big to be scheduled", 15, || node_of(&sim, "big")).await;
    assert_eq!(node, "node-2", "only node-2 has 1.5 cpu");
    // Limits only: requested as much, so Guaranteed; only node-1 has a whole cpu left.
    sim.kubectl_in(
        &["apply", "-f", "-"],
        &pod("limited", "{limits: {cpu: '1', memory: 512Mi}}"),
    );
    let node = wait_for("limited to be scheduled", 15, || node_of(&sim, "limited")).await;
    assert_eq!(node, "node-1");
    sim.kubectl(&[
        "wait",
        "--for=condition=Ready",
        "pod/big",
        "pod/limited",
        "--timeout=30s",
    ]);
    let qos =
        |name: &str| sim.object("pods", "default", name).unwrap()["status"]["qosClass"].clone();
    assert_eq!(qos("limited"), "Guaranteed");
    assert_eq!(qos("big"), "Burstable");

    sim.kubectl_in(
        &["apply", "-f", "-"],
        &pod("huge", "{requests: {memory: 4Gi}}"),
    );
    let why = wait_for("huge to be unschedulable", 15, || {
        unschedulable_message(&sim, "huge")
    })
    .await;
    assert_eq!(why, "0/2 nodes are available: 2 Insufficient memory.");
    sim.kubectl_in(
        &["apply", "-f", "-"],
        &pod("waits", "{requests: {cpu: '1'}}"),
    );
    let why = wait_for("waits to be unschedulable", 15, || {
        unschedulable_message(&sim, "waits")
    })
    .await;
    assert_eq!(why, "0/2 nodes are available: 2 Insufficient cpu.");
    let events = sim.kubectl(&[
        "get",
        "events",
        "--field-selector",
        "reason=FailedScheduling,involvedObject.name=waits",
        "-o",
        "jsonpath={.items[*].message}",
    ]);
    assert!(events.contains("Insufficient cpu"), "{events}");
    assert_eq!(
        sim.object("pods", "default", "waits").unwrap()["status"]["phase"],
        "Pending"
    );

    // Room made on node-2: the waiting pod goes there; the huge one still fits nowhere.
    sim.kubectl(&["delete", "pod", "big", "--wait=true", "--timeout=30s"]);
    let node = wait_for("waits to be scheduled", 20, || node_of(&sim, "waits")).await;
    assert_eq!(node, "node-2");
    assert_eq!(node_of(&sim, "huge"), None);
}
