//! Node heartbeats (Leases) and network partitions of a node. Each test cites the Kubernetes
//! documentation section it follows.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

mod common;
use common::{cluster, kubectl_available, kubelet_available, wait_for, Sim};
use std::process::Command;
use std::time::Duration;

fn node_fault(sim: &Sim, action: &str, node: &str) {
    let out = Command::new(env!("CARGO_BIN_EXE_kube-sim"))
        .args(["node", action, node, "--state-dir"])
        .arg(sim.dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "kube-sim node {action} {node}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn renew_time(sim: &Sim, node: &str) -> Option<String> {
    let lease = sim.object("coordination.k8s.io/leases", "kube-node-lease", node)?;
    lease["spec"]["renewTime"].as_str().map(String::from)
}

/// Docs "Nodes: Heartbeats" and "Leases: Node heartbeats": each node's kubelet renews the Lease
/// `kube-node-lease/NODE` (holder the node, 40 s); a frozen node's Lease is no longer renewed,
/// and renewals resume on restore.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_leases_are_renewed_while_the_kubelet_runs() {
    if !kubelet_available() {
        return;
    }
    let sim = cluster(2).await;
    let first = wait_for("node-1's Lease", 10, || renew_time(&sim, "node-1")).await;
    let lease = sim
        .object("coordination.k8s.io/leases", "kube-node-lease", "node-1")
        .unwrap();
    assert_eq!(lease["spec"]["holderIdentity"], "node-1", "{lease}");
    assert_eq!(lease["spec"]["leaseDurationSeconds"], 40, "{lease}");
    assert_eq!(lease["metadata"]["ownerReferences"][0]["kind"], "Node");
    // MicroTime: microseconds, UTC.
    assert!(
        first.len() == "2026-01-02T03:04:05.000000Z".len() && first.ends_with('Z'),
        "{first}"
    );
    wait_for("a renewal", 10, || {
        renew_time(&sim, "node-1").filter(|t| *t != first)
    })
    .await;
    assert!(renew_time(&sim, "node-2").is_some());

    node_fault(&sim, "freeze", "node-1");
    wait_for("node-1 to go NotReady", 20, || {
        sim.condition_is("nodes", "", "node-1", "Ready", "Unknown")
            .then_some(())
    })
    .await;
    let stale = renew_time(&sim, "node-1").unwrap();
    let other = renew_time(&sim, "node-2").unwrap();
    // Several renewal periods (1 s with the tests' 2 s grace): node-2 renews, node-1 does not.
    wait_for("node-2's next renewal", 10, || {
        renew_time(&sim, "node-2").filter(|t| *t != other)
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(renew_time(&sim, "node-1").unwrap(), stale);
    node_fault(&sim, "restore", "node-1");
    wait_for("renewals to resume", 10, || {
        renew_time(&sim, "node-1").filter(|t| *t != stale)
    })
    .await;
}

/// Whether iptables can run here (a partition needs it).
fn iptables_available() -> bool {
    let ok = Command::new("iptables")
        .args(["-w", "-n", "-L", "OUTPUT"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!("SKIPPED: partitions need iptables (scripts/install.sh installs it)");
    }
    ok
}

/// A pod that serves on `$POD_IP:8080` and, every 0.3 s, connects to its peer's pod
/// (`PEER.peers`, the pod's address) and Service (`svc-PEER`, a ClusterIP), printing
/// `N ok|fail ok|fail`.
fn peer_pod(name: &str, node: &str, peer: &str) -> String {
    format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: {name}, labels: {{name: {name}}}}}
spec:
  hostname: {name}
  subdomain: peers
  nodeSelector: {{kubernetes.io/hostname: {node}}}
  containers:
  - name: main
    image: debian
    command: [python3, -u, -c]
    args:
    - |
      import os, socket, threading, time
      srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
      srv.bind((os.environ["POD_IP"], 8080)); srv.listen(16)
      def serve():
          while True:
              c, _ = srv.accept(); c.sendall(b"hi"); c.close()
      threading.Thread(target=serve, daemon=True).start()
      n = 0
      while True:
          n += 1
          out = []
          for host in ("{peer}.peers", "svc-{peer}"):
              try:
                  s = socket.create_connection((host, 8080), timeout=1)
                  s.settimeout(1)
                  out.append("ok" if s.recv(2) == b"hi" else "fail")
                  s.close()
              except Exception:
                  out.append("fail")
          print(n, *out, flush=True)
          time.sleep(0.3)
    env:
    - {{name: POD_IP, valueFrom: {{fieldRef: {{fieldPath: status.podIP}}}}}}
---
apiVersion: v1
kind: Service
metadata: {{name: svc-{name}}}
spec:
  selector: {{name: {name}}}
  ports: [{{port: 8080}}]
"#
    )
}

/// The last line `N pod svc` a peer pod printed.
fn last_probe(sim: &Sim, pod: &str) -> Option<(u64, String, String)> {
    let out = sim.kubectl_as(&sim.kubeconfig(), &["logs", pod, "--tail=1"], None);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut w = text.split_whitespace();
    Some((
        w.next()?.parse().ok()?,
        w.next()?.to_string(),
        w.next()?.to_string(),
    ))
}

/// Wait for a line printed after line `after` with both connections `want` (ok/fail).
async fn probes_become(sim: &Sim, pod: &str, after: u64, want: &str) -> u64 {
    wait_for(&format!("{pod} to report {want} {want}"), 40, || {
        let (n, p, s) = last_probe(sim, pod)?;
        (n > after && p == want && s == want).then_some(n)
    })
    .await
}

/// Docs "Nodes: Node status / Heartbeats / Node controller" with a network partition of a node
/// (what "Disruptions: involuntary disruptions" calls a network partition): node-1's pods can
/// neither reach nor be reached from node-2's pods, directly or through Services, while they
/// keep running; node-1 goes NotReady; `restore` reconnects.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitioned_node_is_cut_off_but_keeps_running() {
    if !kubectl_available() || !kubelet_available() || !iptables_available() {
        return;
    }
    let sim = cluster(2).await;
    sim.kubectl_in(
        &["apply", "-f", "-"],
        &format!(
            "{}---{}",
            peer_pod("a", "node-1", "b"),
            peer_pod("b", "node-2", "a")
        ),
    );
    sim.kubectl(&[
        "wait",
        "--for=condition=Ready",
        "pod/a",
        "pod/b",
        "--timeout=30s",
    ]);
    probes_become(&sim, "a", 0, "ok").await;
    let b0 = probes_become(&sim, "b", 0, "ok").await;

    node_fault(&sim, "partition", "node-1");
    let a_cut = probes_become(&sim, "a", 0, "fail").await;
    probes_become(&sim, "b", b0, "fail").await;
    wait_for("node-1 to go NotReady", 20, || {
        sim.condition_is("nodes", "", "node-1", "Ready", "Unknown")
            .then_some(())
    })
    .await;
    // Unlike kill and freeze, the node's processes go on: a keeps probing (and failing).
    let a_later = probes_become(&sim, "a", a_cut + 3, "fail").await;
    assert!(a_later > a_cut);
    // The API server is out of reach too.
    let procs = pgherd_kube_sim::kubelet::partition::cgroup_procs(
        sim.kubelet.as_ref().unwrap().shared.lock().unwrap().network,
        1,
    )
    .unwrap();
    let port = sim.running.url.rsplit(':').next().unwrap().to_string();
    let reach_api =
        pgherd_kube_sim::kubelet::partition::in_cgroup(Some(&procs), "/usr/bin/timeout")
            .args(["2", "python3", "-c"])
            .arg(format!(
                "import socket; socket.create_connection(('127.0.0.1', {port}), timeout=1)"
            ))
            .status()
            .unwrap();
    assert!(!reach_api.success(), "node-1 reached the API server");

    node_fault(&sim, "restore", "node-1");
    let a_back = probes_become(&sim, "a", a_later, "ok").await;
    probes_become(&sim, "b", 0, "ok").await;
    assert!(a_back > a_later);
    wait_for("node-1 to be Ready again", 20, || {
        sim.condition_is("nodes", "", "node-1", "Ready", "True")
            .then_some(())
    })
    .await;
    let reach_api =
        pgherd_kube_sim::kubelet::partition::in_cgroup(Some(&procs), "/usr/bin/timeout")
            .args(["2", "python3", "-c"])
            .arg(format!(
                "import socket; socket.create_connection(('127.0.0.1', {port}), timeout=1)"
            ))
            .status()
            .unwrap();
    assert!(reach_api.success(), "node-1 reaches the API server again");
}
