//! Seed 001 (a three-node cluster with automatic failover) on Kubernetes: kube-sim with three
//! nodes and its process kubelet, `pgherd operator`, the real `kubectl` with pgherd as
//! `kubectl-cnpg`. The seed's cluster (`tests/seed_stacks/three_node.rs`) and its own Pooler,
//! Backup and restore manifests (`tests/fixtures/seeds`, as stored) applied with `kubectl
//! apply`, then its runbook: the status, the `-rw`/`-ro`/`-r` Services, a database and user
//! made as the superuser in the primary's pod, replication status, its "Manual Failover" line
//! as written (`kubectl cnpg promote postgres-cluster-2 -n postgres`: refused with the right
//! form shown) and in the right form under a writer through the pooler, the manual Backup, the
//! backup list, and "Restore from Backup" holding every row committed before the backup. The
//! image is PostgreSQL 15, not the seed's 16: this machine's only `pg_basebackup` for 16 is
//! built without SSL, and on Kubernetes replicas clone over TLS (the local walk runs 16.3).
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

mod common;
mod k8s;
mod seed_stacks;

use k8s::load::HaLoad;
use k8s::{connect_soon, kubelet_available, str_at, Operator, Sim};
use pgherd_testkit::moto::Moto;
use seed_stacks::three_node::{self as stack, BUCKET, CLUSTER, IMAGE, NAMESPACE as NS};

const RUNS: &str = "ghcr.io/cloudnative-pg/postgresql:15";

/// `psql -U postgres -d DB -Atc SQL` in `pod`.
fn superuser_sql_in(sim: &Sim, pod: &str, db: &str, sql: &str) -> String {
    sim.kubectl(&[
        "exec", "-n", NS, pod, "--", "psql", "-U", "postgres", "-d", db, "-Atc", sql,
    ])
    .trim()
    .to_string()
}

/// `psql -U postgres -Atc SQL` in `pod`.
fn superuser_sql(sim: &Sim, pod: &str, sql: &str) -> String {
    superuser_sql_in(sim, pod, "postgres", sql)
}

#[test]
fn seed_001_three_node_runbook_on_kubernetes() {
    if !kubelet_available() {
        return;
    }
    let moto = Moto::start();
    moto.create_bucket(BUCKET);
    let sim = Sim::with_nodes(3);
    sim.install_crds();
    let _operator = Operator::start(&sim, "operator", &["--no-webhooks", "--no-leader-election"]);
    sim.kubectl(&["create", "namespace", NS]);
    sim.apply(&stack::stack(&moto.endpoint(), RUNS)).unwrap();
    sim.kubectl(&[
        "wait",
        "--for=condition=Ready",
        "--timeout=300s",
        "cluster/postgres-cluster",
        "-n",
        "postgres",
    ]);
    sim.apply(&common::seed_fixture(
        "001-pooler-connection-pool-tuning.yaml",
    ))
    .unwrap();
    // "Checking Cluster Status".
    let status = sim.kubectl(&["cnpg", "status", "postgres-cluster", "-n", "postgres"]);
    assert!(status.contains("Cluster in healthy state"), "{status}");

    // "Connection Details": -rw writes, -ro is a replica, -r answers.
    let password = sim.app_password(NS, CLUSTER);
    let rw = sim.service_ip(NS, "postgres-cluster-rw");
    for (service, standby) in [
        ("postgres-cluster-rw", Some(false)),
        ("postgres-cluster-ro", Some(true)),
        ("postgres-cluster-r", None),
    ] {
        let ip = sim.service_ip(NS, service);
        let in_recovery: bool = sim.runtime.block_on(async {
            let c = connect_soon(&ip, &password).await.expect(service);
            c.query_one("SELECT pg_is_in_recovery()", &[])
                .await
                .unwrap()
                .get(0)
        });
        if let Some(expected) = standby {
            assert_eq!(in_recovery, expected, "{service}");
        }
    }
    // "Creating a Database", as the superuser in the primary's pod.
    let primary = format!("{CLUSTER}-1");
    superuser_sql(&sim, &primary, "CREATE DATABASE myapp");
    superuser_sql(
        &sim,
        &primary,
        "CREATE USER myapp_user WITH ENCRYPTED PASSWORD 'secure_password'; GRANT ALL PRIVILEGES ON DATABASE myapp TO myapp_user",
    );
    // "Monitoring Replication".
    let streaming = superuser_sql(
        &sim,
        &primary,
        "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'",
    );
    assert_eq!(streaming, "2");

    // "Connection Pooler": a writer through it for the failover.
    sim.eventually("the seed's pooler active", 240, || {
        let p = sim.json(&["get", "pooler", "-n", NS, "postgres-cluster-pooler-rw"])?;
        (str_at(&p, "/status/phase") == Some("active")).then_some(())
    });
    let through_pooler = sim.service_ip(NS, "postgres-cluster-pooler-rw");
    let load = HaLoad::start_via(&sim, NS, CLUSTER, &rw, &through_pooler, &password);

    // "Manual Failover", as written: the cluster's name is missing; the answer shows the form.
    let wrong = sim.kubectl_output(
        &["cnpg", "promote", "postgres-cluster-2", "-n", "postgres"],
        None,
    );
    let said = String::from_utf8_lossy(&wrong.stderr);
    assert_eq!(wrong.status.code(), Some(1), "{said}");
    assert!(
        said.contains("kubectl cnpg promote postgres-cluster postgres-cluster-2 -n postgres"),
        "{said}"
    );
    // In the form it shows.
    sim.kubectl(&[
        "cnpg",
        "promote",
        "postgres-cluster",
        "postgres-cluster-2",
        "-n",
        "postgres",
    ]);
    sim.wait_healthy_primary(NS, CLUSTER, "postgres-cluster-2", 180);
    load.flowing(&sim, "the switchover");
    load.finish(&sim);
    let committed = superuser_sql_in(
        &sim,
        "postgres-cluster-2",
        "app",
        "SELECT count(*) FROM ledger",
    );
    let committed_app = superuser_sql(
        &sim,
        "postgres-cluster-2",
        "SELECT count(*) FROM pg_database WHERE datname = 'myapp'",
    );
    assert_eq!(committed_app, "1");

    // "Trigger Manual Backup" (the seed's own), then "List Backups".
    sim.apply(&common::seed_fixture(
        "001-backup-postgres-cluster-manual.yaml",
    ))
    .unwrap();
    let backup = sim.eventually("the manual backup completed", 240, || {
        let b = sim.json(&[
            "get",
            "backup",
            "-n",
            NS,
            "postgres-cluster-manual-20251006120000",
        ])?;
        match str_at(&b, "/status/phase") {
            Some("completed") => Some(b),
            Some("failed") => panic!("the manual backup failed: {b:#}"),
            _ => None,
        }
    });
    assert_eq!(backup.pointer("/status/majorVersion"), Some(&15.into()));
    let listed = sim.kubectl(&["get", "backups", "-n", "postgres"]);
    assert!(
        listed.contains("postgres-cluster-manual-20251006120000")
            && listed.contains("postgres-cluster-daily-"),
        "{listed}"
    );

    // "Restore from Backup": the seed's own manifest (with the image the backup was made by).
    sim.apply(
        &common::seed_fixture("001-cluster-postgres-cluster-restored-completed.yaml")
            .replace(IMAGE, RUNS),
    )
    .unwrap();
    sim.kubectl(&[
        "wait",
        "--for=condition=Ready",
        "--timeout=300s",
        "cluster/postgres-cluster-restored",
        "-n",
        "postgres",
    ]);
    // The ledger is the application owner's, in the app database.
    let restored = superuser_sql_in(
        &sim,
        "postgres-cluster-restored-1",
        "app",
        "SELECT count(*) FROM ledger",
    );
    assert_eq!(restored, committed, "every row committed before the backup");
}
