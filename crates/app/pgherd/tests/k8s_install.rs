//! The operator installed as a user installs it, on kube-sim with its kubelet: `kubectl apply
//! --server-side -f deploy/pgherd.yaml` runs two operator pods in `cnpg-system` from the
//! operator image (this build's binary), under the release's ServiceAccount and ClusterRole
//! (kube-sim enforces RBAC); a Cluster becomes healthy; the leader serves its metrics; the runbooks' `kubectl logs -n
//! cnpg-system deployment/cnpg-controller-manager` works; an invalid Cluster is refused by the
//! webhook reached through its Service; the leading operator pod is deleted and the other one
//! carries out a switchover.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

mod common;
mod k8s;

use common::repo_root;
use k8s::{kubelet_available, str_at, Sim};

const CLUSTER: &str = "apiVersion: postgresql.cnpg.io/v1
kind: Cluster
metadata:
  name: pg
spec:
  instances: 2
  imageName: ghcr.io/cloudnative-pg/postgresql:15
  storage:
    size: 1Gi
";

#[test]
fn the_release_manifest_runs_the_operator_in_the_cluster() {
    if !kubelet_available() {
        return;
    }
    let sim = Sim::with_nodes(3);
    let release = repo_root().join("deploy/pgherd.yaml");
    sim.kubectl(&["apply", "--server-side", "-f", release.to_str().unwrap()]);
    sim.eventually("two operator pods ready", 120, || {
        let pods = sim.json(&[
            "get",
            "pods",
            "-n",
            "cnpg-system",
            "-l",
            "app.kubernetes.io/name=cloudnative-pg",
        ])?;
        let ready = pods["items"]
            .as_array()?
            .iter()
            .filter(|p| {
                p.pointer("/status/conditions")
                    .and_then(|c| c.as_array())
                    .is_some_and(|c| {
                        c.iter()
                            .any(|c| c["type"] == "Ready" && c["status"] == "True")
                    })
            })
            .count();
        (ready == 2).then_some(())
    });
    // The release's ClusterRole lets the operator run a major upgrade's Job (asked as
    // Kubernetes' authorizer answers a SubjectAccessReview for its service account).
    for verb in ["create", "delete", "list", "watch"] {
        let review = format!(
            "apiVersion: authorization.k8s.io/v1\nkind: SubjectAccessReview\nspec:\n  user: system:serviceaccount:cnpg-system:cnpg-manager\n  groups: [system:serviceaccounts]\n  resourceAttributes:\n    group: batch\n    resource: jobs\n    verb: {verb}\n    namespace: default\n"
        );
        let out = sim.kubectl_output(&["create", "-f", "-", "-o", "json"], Some(&review));
        let answer: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        assert_eq!(
            answer.pointer("/status/allowed"),
            Some(&serde_json::Value::Bool(true)),
            "{verb} jobs: {answer}{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // The webhooks answer through their Service once the operator patched its CA in.
    let refused = sim.eventually("the webhook to refuse an invalid Cluster", 60, || {
        sim.apply("apiVersion: postgresql.cnpg.io/v1\nkind: Cluster\nmetadata:\n  name: bad\nspec:\n  instances: 0\n  storage:\n    size: 1Gi\n")
            .err()
            .filter(|e| e.contains("spec.instances"))
    });
    assert!(refused.contains("must be >= 1"), "{refused}");

    sim.apply(CLUSTER).unwrap();
    let status = sim.eventually("a healthy cluster", 240, || {
        let c = sim.json(&["get", "cluster", "pg"])?;
        let ready = c.pointer("/status/readyInstances")?.as_i64()?;
        (str_at(&c, "/status/phase") == Some("Cluster in healthy state") && ready == 2).then_some(c)
    });
    let logs = sim.kubectl(&[
        "logs",
        "-n",
        "cnpg-system",
        "deployment/cnpg-controller-manager",
    ]);
    assert!(logs.contains("operator started"), "{logs}");

    // The leader's pod goes; the other operator takes over and carries out a switchover.
    let lease = sim
        .json(&["get", "lease", "-n", "cnpg-system", "pgherd-operator"])
        .unwrap();
    let leader = str_at(&lease, "/spec/holderIdentity").unwrap().to_string();
    // The leader serves its metrics on its pod's port 8080, under controller-runtime's names.
    let pod = sim
        .json(&["get", "pod", "-n", "cnpg-system", &leader])
        .unwrap();
    let ip = str_at(&pod, "/status/podIP").unwrap().to_string();
    let metrics = sim.eventually("the operator's metrics", 30, || {
        let text = http_get(&ip, 8080, "/metrics")?;
        text.contains(
            "controller_runtime_reconcile_total{controller=\"cluster\",result=\"success\"}",
        )
        .then_some(text)
    });
    assert!(
        metrics.contains(
            "pgherd_reconcile_total{namespace=\"default\",cluster=\"pg\",result=\"success\"}"
        ),
        "{metrics}"
    );
    // The admission requests (the refused Cluster, the applied one) under controller-runtime's
    // webhook metrics, on whichever operator pod the webhook Service sent them to.
    let pods = sim
        .json(&[
            "get",
            "pods",
            "-n",
            "cnpg-system",
            "-l",
            "app.kubernetes.io/name=cloudnative-pg",
        ])
        .unwrap();
    let counted: Vec<String> = pods["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| str_at(p, "/status/podIP"))
        .filter_map(|ip| http_get(ip, 8080, "/metrics"))
        .flat_map(|text| {
            text.lines()
                .filter(|l| l.starts_with("controller_runtime_webhook_requests_total{"))
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .collect();
    for webhook in [
        "/validate-postgresql-cnpg-io-v1-cluster",
        "/mutate-postgresql-cnpg-io-v1-cluster",
    ] {
        assert!(
            counted
                .iter()
                .any(|l| l.contains(&format!("webhook=\"{webhook}\"")) && !l.ends_with(" 0")),
            "no request to {webhook} counted: {counted:?}"
        );
    }
    sim.kubectl(&[
        "delete",
        "pod",
        "-n",
        "cnpg-system",
        &leader,
        "--wait=false",
    ]);
    // Stopped gracefully, it gives the Lease up: the other leads at once.
    sim.eventually("another leader", 60, || {
        let lease = sim.json(&["get", "lease", "-n", "cnpg-system", "pgherd-operator"])?;
        str_at(&lease, "/spec/holderIdentity")
            .filter(|h| *h != leader)
            .map(str::to_string)
    });
    let primary = str_at(&status, "/status/currentPrimary").unwrap();
    let target = if primary == "pg-1" { "pg-2" } else { "pg-1" };
    sim.kubectl(&["cnpg", "promote", "pg", target]);
    sim.eventually("the switchover by the new leader", 120, || {
        let c = sim.json(&["get", "cluster", "pg"])?;
        (str_at(&c, "/status/currentPrimary") == Some(target)
            && str_at(&c, "/status/phase") == Some("Cluster in healthy state"))
        .then_some(())
    });
}

/// The body of `GET http://HOST:PORT/PATH`, if it answered 200.
fn http_get(host: &str, port: u16, path: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect((host, port)).ok()?;
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    // `HTTP/1.0 200 OK` or `HTTP/1.1 200 OK`.
    let code = head.lines().next()?.split_whitespace().nth(1)?;
    (code == "200").then(|| body.to_string())
}
