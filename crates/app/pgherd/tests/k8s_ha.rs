//! pgherd on Kubernetes, end to end on kube-sim with its process kubelet (three nodes, real
//! PostgreSQL 15 from CloudNativePG's image name, pgherd's manager copied into each pod by its
//! init container): `pgherd operator` brings a three-instance Cluster with quorum synchronous
//! replication to healthy; a writer commits through the `-rw` Service's ClusterIP while the
//! primary's node is killed and the operator restarted in the middle of the failover; the
//! operator fails over (lease-expiry evidence), the Service
//! follows the new primary; the node comes back and the old primary's instance rejoins; a switchover
//! by `kubectl cnpg promote` moves the primary again; `kubectl cnpg fencing on|off` stops and
//! restores a replica; a switchover asked for while its target is fenced stands in
//! `status.targetPrimary` across an operator restart and is carried out once unfenced;
//! every acknowledged commit is found on the last primary. A checker asks every instance's
//! PostgreSQL whether it is writable throughout: never two at once.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

mod common;
mod k8s;

use k8s::load::HaLoad;
use k8s::{connect_soon, kubelet_available, str_at, Operator, Sim};
use std::time::{Duration, Instant};

#[test]
fn a_cluster_on_kubernetes_fails_over_from_a_lost_node_without_losing_a_commit() {
    if !kubelet_available() {
        return;
    }
    let sim = Sim::with_nodes(3);
    sim.install_crds();
    let operator = Operator::start(&sim, "operator", &["--no-webhooks", "--no-leader-election"]);
    let manifest = sim.dir.path().join("pg.yaml");
    std::fs::write(
        &manifest,
        "apiVersion: postgresql.cnpg.io/v1\nkind: Cluster\nmetadata:\n  name: pg\nspec:\n  instances: 3\n  imageName: ghcr.io/cloudnative-pg/postgresql:15\n  storage:\n    size: 1Gi\n  affinity:\n    podAntiAffinityType: required\n  postgresql:\n    synchronous:\n      method: any\n      number: 1\n",
    )
    .unwrap();
    sim.kubectl(&["apply", "-f", manifest.to_str().unwrap()]);
    let healthy = |sim: &Sim, seconds: u64| {
        sim.eventually("a healthy cluster", seconds, || {
            let c = sim.json(&["get", "cluster", "pg"])?;
            let ready = c.pointer("/status/readyInstances")?.as_i64()?;
            (str_at(&c, "/status/phase") == Some("Cluster in healthy state") && ready == 3)
                .then_some(c)
        })
    };
    let status = healthy(&sim, 300);
    let primary = str_at(&status, "/status/currentPrimary")
        .unwrap()
        .to_string();
    // `kubectl get cluster` shows it the way CloudNativePG does.
    let table = sim.kubectl(&["get", "cluster", "pg"]);
    assert!(table.contains("Cluster in healthy state"), "{table}");

    // The runbooks' verbs against the running cluster: `kubectl cnpg status` (certificates
    // with -v -v, as CloudNativePG's plugin) and `psql` (exec into the primary's pod).
    let said = sim.kubectl(&["cnpg", "status", "pg", "-v", "-v"]);
    for section in [
        "Certificates Status",
        "pg-ca",
        "pg-server",
        "Streaming Replication status",
        "Instances status",
        &primary,
    ] {
        assert!(
            said.contains(section),
            "no {section:?} in kubectl cnpg status:\n{said}"
        );
    }
    println!("kubectl cnpg status pg:\n{said}");
    // Each instance manager's report read through the API server's pods/proxy, as
    // CloudNativePG's plugin reads it.
    assert!(
        !said.contains("could not be read through pods/proxy"),
        "kubectl cnpg status:\n{said}"
    );
    let answer = sim.kubectl(&["cnpg", "psql", "pg", "--", "-Atc", "SELECT 6 * 7"]);
    assert_eq!(answer.trim(), "42", "kubectl cnpg psql");
    let password = sim.secret_value("pg-app", "password");
    let service_ip = |name: &str| {
        let s = sim.json(&["get", "service", name]).unwrap();
        str_at(&s, "/spec/clusterIP").unwrap().to_string()
    };
    let (rw, ro) = (service_ip("pg-rw"), service_ip("pg-ro"));
    sim.runtime.block_on(async {
        // -ro reaches a replica.
        let r = connect_soon(&ro, &password).await.expect("-ro answers");
        let row = r
            .query_one("SELECT pg_is_in_recovery()", &[])
            .await
            .unwrap();
        assert!(row.get::<_, bool>(0), "-ro reached the primary");
    });
    let load = HaLoad::start(&sim, "default", "pg", &rw, &password);

    // The primary's node dies.
    let pod = sim.json(&["get", "pod", &primary]).unwrap();
    let node = str_at(&pod, "/spec/nodeName").unwrap().to_string();
    let killed = Instant::now();
    sim.kubelet.as_ref().unwrap().fault(&node, "kill").unwrap();
    // The operator dies in the middle of the failover (before the lost primary's lease has
    // expired) and a new one takes over: it starts its own evidence clock, so it may take
    // longer, but it never promotes while the old primary could still be writable.
    std::thread::sleep(Duration::from_secs(2));
    drop(operator);
    let operator = Operator::start(
        &sim,
        "operator-2",
        &["--no-webhooks", "--no-leader-election"],
    );
    let new_primary = sim.eventually("a new primary", 120, || {
        let c = sim.json(&["get", "cluster", "pg"])?;
        str_at(&c, "/status/currentPrimary")
            .filter(|p| *p != primary)
            .map(str::to_string)
    });
    let before = load.writer.count();
    load.flowing(&sim, &format!("the failover to {new_primary}"));
    println!(
        "failover: node {node} killed (the operator restarted 2 s in), {new_primary} primary and writes flowing after {:?} ({before} commits before)",
        killed.elapsed()
    );
    // The node comes back; the old primary's instance (its pod waited: the instances' anti-
    // affinity is required) is scheduled again, its PVC outliving the pod, and rejoins as a
    // replica: three ready again.
    sim.kubelet
        .as_ref()
        .unwrap()
        .fault(&node, "restore")
        .unwrap();
    let status = healthy(&sim, 180);
    load.refresh_ips(&sim);

    // A switchover as a runbook asks for it: `kubectl cnpg promote` (status.targetPrimary).
    let target = ["pg-1", "pg-2", "pg-3"]
        .into_iter()
        .find(|i| Some(*i) != str_at(&status, "/status/currentPrimary"))
        .unwrap();
    sim.kubectl(&["cnpg", "promote", "pg", target]);
    let switched = Instant::now();
    sim.eventually("the switchover", 120, || {
        let c = sim.json(&["get", "cluster", "pg"])?;
        (str_at(&c, "/status/currentPrimary") == Some(target)).then_some(())
    });
    load.flowing(&sim, &format!("the switchover to {target}"));
    println!(
        "switchover: {target} primary and writes flowing after {:?}",
        switched.elapsed()
    );
    // Both are in the Cluster's events, as `kubectl describe cluster` shows them.
    sim.eventually("the failover and switchover events", 30, || {
        let events = sim.kubectl(&[
            "get",
            "events",
            "--field-selector",
            "involvedObject.name=pg",
            "-o",
            "json",
        ]);
        (events.contains("FailoverCompleted") && events.contains("SwitchoverCompleted"))
            .then_some(())
    });
    // Fencing a replica as a runbook does: its PostgreSQL stops (no longer reachable) while
    // the primary keeps committing; unfenced, it streams again.
    let fenced = ["pg-1", "pg-2", "pg-3"]
        .into_iter()
        .find(|i| *i != target)
        .unwrap();
    let fenced_ip = {
        let pod = sim.json(&["get", "pod", fenced]).unwrap();
        str_at(&pod, "/status/podIP").unwrap().to_string()
    };
    sim.kubectl(&["cnpg", "fencing", "on", "pg", fenced]);
    sim.eventually("the fenced instance's PostgreSQL to stop", 60, || {
        std::net::TcpStream::connect_timeout(
            &format!("{fenced_ip}:5432").parse().unwrap(),
            Duration::from_millis(300),
        )
        .is_err()
        .then_some(())
    });
    load.flowing(&sim, &format!("{fenced} was fenced"));
    // A switchover to the fenced instance cannot happen yet: the request stands in
    // `status.targetPrimary` as the user wrote it (CloudNativePG's meaning), survives a
    // restart of the operator, and is carried out once the instance is unfenced.
    sim.kubectl(&["cnpg", "promote", "pg", fenced]);
    std::thread::sleep(Duration::from_secs(3));
    let pending = sim.json(&["get", "cluster", "pg"]).unwrap();
    assert_eq!(str_at(&pending, "/status/currentPrimary"), Some(target));
    assert_eq!(str_at(&pending, "/status/targetPrimary"), Some(fenced));
    drop(operator);
    let _operator = Operator::start(
        &sim,
        "operator-3",
        &["--no-webhooks", "--no-leader-election"],
    );
    std::thread::sleep(Duration::from_secs(3));
    let pending = sim.json(&["get", "cluster", "pg"]).unwrap();
    assert_eq!(
        str_at(&pending, "/status/targetPrimary"),
        Some(fenced),
        "the request was lost when the operator restarted"
    );
    sim.kubectl(&["cnpg", "fencing", "off", "pg", fenced]);
    sim.eventually("the switchover asked for before the restart", 120, || {
        let c = sim.json(&["get", "cluster", "pg"])?;
        (str_at(&c, "/status/currentPrimary") == Some(fenced)).then_some(())
    });
    healthy(&sim, 120);
    load.flowing(&sim, &format!("the switchover to {fenced}"));

    // Every acknowledged commit is on the last primary; never two writable at once.
    load.finish(&sim);
}
