//! Benchmarks of the Kubernetes operator on kube-sim (ignored by `cargo test`; run by
//! `bench/kubernetes.sh`, which builds in release mode and prints the figures):
//!
//! - node loss: the primary's node is killed while a writer commits through the `-rw`
//!   ClusterIP; the time from the kill to the first commit acknowledged after it, over
//!   `PGHERD_BENCH_ROUNDS` rounds (default 10; the node is restored and the cluster healthy
//!   again between rounds), median and range;
//! - operator memory: VmRSS of `pgherd operator` once it has reconciled `PGHERD_BENCH_CLUSTERS`
//!   Clusters (default 100) and made their Secrets.
#![allow(clippy::unwrap_used, clippy::expect_used)] // benchmarks may panic

mod common;
mod k8s;

use k8s::load::Writer;
use k8s::{connect_soon, kubectl_available, kubelet_available, str_at, Operator, Sim};
use std::time::{Duration, Instant};

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The Cluster once healthy with its three instances ready and every pod passing its
/// readiness probe: a steady state, as a cluster that has run a while is (a pod that has not
/// passed its probe yet is no Service endpoint, and a failover to it waits for the probe's next
/// period).
fn healthy(sim: &Sim, seconds: u64) -> serde_json::Value {
    sim.eventually("a healthy cluster", seconds, || {
        let c = sim.json(&["get", "cluster", "pg"])?;
        let ready = c.pointer("/status/readyInstances")?.as_i64()?;
        let pods = sim.json(&["get", "pods", "-l", "cnpg.io/cluster=pg"])?;
        let pods_ready = pods["items"]
            .as_array()?
            .iter()
            .filter(|p| {
                p["status"]["conditions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|c| c["type"] == "Ready" && c["status"] == "True")
            })
            .count();
        (str_at(&c, "/status/phase") == Some("Cluster in healthy state")
            && ready == 3
            && pods_ready == 3)
            .then_some(c)
    })
}

#[test]
#[ignore = "benchmark: bench/kubernetes.sh"]
fn node_loss_failover() {
    if !kubelet_available() {
        return;
    }
    let rounds = env_number("PGHERD_BENCH_ROUNDS", 10);
    let sim = Sim::with_nodes(3);
    sim.install_crds();
    let operator = Operator::start(&sim, "operator", &["--no-webhooks", "--no-leader-election"]);
    sim.apply(
        "apiVersion: postgresql.cnpg.io/v1\nkind: Cluster\nmetadata:\n  name: pg\nspec:\n  instances: 3\n  imageName: ghcr.io/cloudnative-pg/postgresql:15\n  storage:\n    size: 1Gi\n  affinity:\n    podAntiAffinityType: required\n  postgresql:\n    synchronous:\n      method: any\n      number: 1\n",
    )
    .unwrap();
    healthy(&sim, 300);
    let password = sim.secret_value("pg-app", "password");
    let service = sim.json(&["get", "service", "pg-rw"]).unwrap();
    let rw = str_at(&service, "/spec/clusterIP").unwrap().to_string();
    let rw_ip = rw.clone();
    sim.runtime.block_on(async {
        let c = connect_soon(&rw, &password).await.expect("-rw answers");
        c.batch_execute("CREATE TABLE ledger (id bigint PRIMARY KEY)")
            .await
            .unwrap();
    });
    let writer = Writer::start(rw, password.clone());
    let mut seconds = Vec::new();
    for round in 1..=rounds {
        assert!(
            writer.wait_for_more(20, 60),
            "no commits before round {round}"
        );
        let status = healthy(&sim, 300);
        let primary = str_at(&status, "/status/currentPrimary")
            .unwrap()
            .to_string();
        let pod = sim.json(&["get", "pod", &primary]).unwrap();
        let node = str_at(&pod, "/spec/nodeName").unwrap().to_string();
        let old_ip = str_at(&pod, "/status/podIP").unwrap().to_string();
        let killed = Instant::now();
        sim.kubelet.as_ref().unwrap().fault(&node, "kill").unwrap();
        let epoch = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        println!(
            "round {round}: {node} killed at {:.3} (Unix time)",
            epoch.as_secs_f64()
        );
        // Commits answered by the old primary before its processes were gone do not count:
        // from when it refuses connections, the next acknowledged commit is the new primary's.
        let deadline = killed + Duration::from_secs(120);
        while std::net::TcpStream::connect_timeout(
            &format!("{old_ip}:5432").parse().unwrap(),
            Duration::from_millis(200),
        )
        .is_ok()
        {
            assert!(
                Instant::now() < deadline,
                "round {round}: the old primary still answers"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        let before = writer.count();
        let trace = std::env::var_os("PGHERD_TEST_LOGS").is_some();
        let mut traced = String::new();
        while writer.count() <= before {
            assert!(
                Instant::now() < deadline,
                "round {round}: no commit after the kill"
            );
            if trace {
                // Who -rw routes to while writes wait: each pod's role label and readiness,
                // and the Service's endpoints.
                let pods = sim.json(&["get", "pods"]).unwrap_or_default();
                let slices = sim
                    .json(&[
                        "get",
                        "endpointslices",
                        "-l",
                        "kubernetes.io/service-name=pg-rw",
                    ])
                    .unwrap_or_default();
                let mut line = String::new();
                for p in pods["items"].as_array().into_iter().flatten() {
                    let ready = p["status"]["conditions"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .find(|c| c["type"] == "Ready")
                        .map(|c| c["status"].as_str().unwrap_or("?").to_string());
                    line.push_str(&format!(
                        "{}:{}:{} ",
                        p["metadata"]["name"].as_str().unwrap_or("?"),
                        p["metadata"]["labels"]["cnpg.io/instanceRole"]
                            .as_str()
                            .unwrap_or("-"),
                        ready.unwrap_or_default()
                    ));
                }
                for e in slices["items"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .flat_map(|s| s["endpoints"].as_array().into_iter().flatten())
                {
                    line.push_str(&format!(
                        "rw->{}:{} ",
                        e["targetRef"]["name"].as_str().unwrap_or("?"),
                        e["conditions"]["ready"]
                    ));
                }
                if line != traced {
                    println!(
                        "round {round}: +{:.2} s {line}",
                        killed.elapsed().as_secs_f64()
                    );
                    traced = line;
                }
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let took = killed.elapsed().as_secs_f64();
        println!(
            "round {round}: {node} ({primary}) killed, writes acknowledged again after {took:.2} s"
        );
        seconds.push(took);
        if std::env::var_os("PGHERD_TEST_LOGS").is_some() {
            for (after, what) in writer.failures_since(killed) {
                println!("round {round}: +{:.3} s {what}", after.as_secs_f64());
            }
        }
        sim.kubelet
            .as_ref()
            .unwrap()
            .fault(&node, "restore")
            .unwrap();
    }
    let acked = writer.stop();
    let lost = sim
        .runtime
        .block_on(k8s::load::lost(&rw_ip, &password, &acked));
    if std::env::var_os("PGHERD_TEST_LOGS").is_some() {
        println!("operator log:\n{}", operator.logged());
        for pod in ["pg-1", "pg-2", "pg-3"] {
            let out = sim.kubectl_output(&["logs", pod, "-c", "postgres"], None);
            println!("--- {pod}\n{}", String::from_utf8_lossy(&out.stdout));
            let out = sim.kubectl_output(
                &[
                    "exec",
                    pod,
                    "-c",
                    "postgres",
                    "--",
                    "sh",
                    "-c",
                    "tail -n 80 /controller/log/*",
                ],
                None,
            );
            println!(
                "--- {pod}: PostgreSQL\n{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    seconds.sort_by(f64::total_cmp);
    let median = seconds[seconds.len() / 2];
    println!(
        "node loss → first acknowledged write through -rw: median {median:.2} s over {} rounds (min {:.2}, max {:.2}); {} commits acknowledged, {} lost",
        seconds.len(),
        seconds[0],
        seconds[seconds.len() - 1],
        acked.len(),
        lost.len()
    );
    assert!(lost.is_empty(), "acknowledged commits lost: {lost:?}");
}

/// VmRSS of a process, in KiB.
fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

#[test]
#[ignore = "benchmark: bench/kubernetes.sh"]
fn operator_memory_with_many_clusters() {
    if !kubectl_available() {
        return;
    }
    let clusters = env_number("PGHERD_BENCH_CLUSTERS", 100);
    let sim = Sim::start();
    sim.install_crds();
    let operator = Operator::start(&sim, "operator", &["--no-webhooks", "--no-leader-election"]);
    let idle = Instant::now() + Duration::from_secs(3);
    while Instant::now() < idle {
        std::thread::sleep(Duration::from_millis(100));
    }
    let at_start = rss_kib(operator.pid()).unwrap_or(0);
    let manifests: String = (1..=clusters)
        .map(|i| {
            format!(
                "---\napiVersion: postgresql.cnpg.io/v1\nkind: Cluster\nmetadata:\n  name: c{i}\nspec:\n  instances: 3\n  storage:\n    size: 1Gi\n"
            )
        })
        .collect();
    sim.apply(&manifests).unwrap();
    let started = Instant::now();
    sim.eventually("every Cluster reconciled", 600, || {
        let list = sim.json(&["get", "cluster"])?;
        let done = list["items"]
            .as_array()?
            .iter()
            .filter(|c| str_at(c, "/status/phase").is_some())
            .count();
        (done == clusters).then_some(())
    });
    let reconciled = started.elapsed();
    let secrets = sim.json(&["get", "secrets"]).unwrap()["items"]
        .as_array()
        .map_or(0, Vec::len);
    // Settled: passes keep running every second for every Cluster.
    std::thread::sleep(Duration::from_secs(10));
    let rss = rss_kib(operator.pid()).unwrap();
    println!(
        "operator: {clusters} Clusters reconciled in {:.1} s ({secrets} Secrets); VmRSS {:.1} MiB (idle before: {:.1} MiB)",
        reconciled.as_secs_f64(),
        rss as f64 / 1024.0,
        at_start as f64 / 1024.0
    );
}
