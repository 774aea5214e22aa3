//! Seed 001's runbook (three-node cluster) on the local platform.

/// Seed 001 ("PostgreSQL Cluster Service", three nodes) walked end to end: the cluster as the
/// seed describes it (3 instances of PostgreSQL 16, its parameter table, S3 backups, a daily
/// backup at 2 AM), the seed's own Pooler, then its runbook: status, the -rw/-ro/-r
/// endpoints, a database and user made as the superuser, replication status and lag, a manual
/// failover (switchover) under a writer through the pooler, the seed's manual Backup, list
/// backups, and its "Restore from Backup" cluster (its own manifest): the restore by backup
/// holds every row committed before the backup, with the hot-standby settings raised to the
/// source's `max_connections = 200`.
#[test]
fn seed_001_three_node_runbook() {
    use super::*;
    use crate::seed_stacks::three_node::IMAGE;
    use pgherd_testkit::local::{connect, Local};
    use pgherd_testkit::moto::Moto;
    use std::time::Duration;
    const NS: &str = "postgres";

    let moto = Moto::start();
    moto.create_bucket("postgres-backups");
    let local = Local::new(std::path::Path::new(env!("CARGO_BIN_EXE_pgherd")));
    let files = tempfile::tempdir().unwrap();
    let endpoint = moto.endpoint();
    let stack = crate::seed_stacks::three_node::stack(&endpoint, IMAGE);
    let stack = write(files.path(), "postgres-cluster.yaml", &stack);
    local.run_ok(&["up", "-f", &stack, "--timeout-seconds", "300"]);
    let pooler = write(
        files.path(),
        "pooler.yaml",
        &fixture("001-pooler-connection-pool-tuning.yaml"),
    );
    local.run_ok(&["apply", "-f", &pooler]);
    // "Checking Cluster Status"
    let text = run_ns(&local, NS, &["status", "postgres-cluster"]);
    assert!(text.contains("Cluster in healthy state"), "{text}");
    let s = wait_status(
        &local,
        NS,
        "postgres-cluster",
        "the pooler",
        Duration::from_secs(90),
        |s| s["endpoints"]["postgres-cluster-pooler-rw"].is_string() && s["readyInstances"] == 3,
    );
    let endpoint_of =
        |s: &serde_json::Value, k: &str| s["endpoints"][k].as_str().unwrap().to_string();
    let app = |addr: &str| {
        config(
            addr,
            &secret(&local, NS, "postgres-cluster-app", "username"),
            &secret(&local, NS, "postgres-cluster-app", "password"),
            "app",
        )
    };
    let rt = pgherd_testkit::runtime();
    // "Connection Details": -rw writes, -ro is a replica, -r answers.
    rt.block_on(async {
        for (k, standby) in [("rw", Some(false)), ("ro", Some(true)), ("r", None)] {
            let c = connect(&app(&endpoint_of(&s, k))).await.unwrap();
            let in_recovery: bool = c
                .query_one("SELECT pg_is_in_recovery()", &[])
                .await
                .unwrap()
                .get(0);
            if let Some(expected) = standby {
                assert_eq!(in_recovery, expected, "{k}");
            }
        }
    });
    // "Creating a Database", as the superuser in the primary's pod.
    socket_query(
        &local,
        NS,
        "postgres-cluster",
        "postgres",
        "CREATE DATABASE myapp",
    );
    socket_query(
        &local,
        NS,
        "postgres-cluster",
        "postgres",
        "CREATE USER myapp_user WITH ENCRYPTED PASSWORD 'secure_password'; GRANT ALL PRIVILEGES ON DATABASE myapp TO myapp_user",
    );
    rt.block_on(async {
        let c = connect(&config(
            &endpoint_of(&s, "rw"),
            "myapp_user",
            "secure_password",
            "myapp",
        ))
        .await
        .unwrap();
        c.batch_execute(
            "CREATE SCHEMA mine; CREATE TABLE mine.t (i int); INSERT INTO mine.t VALUES (1)",
        )
        .await
        .unwrap();
    });
    // "Monitoring Replication"
    let replicas = socket_query(
        &local,
        NS,
        "postgres-cluster",
        "postgres",
        "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'",
    );
    assert_eq!(replicas, "2");

    // "Connection Pooler", with a writer through it for the failover.
    let pooler_rw = endpoint_of(&s, "postgres-cluster-pooler-rw");
    rt.block_on(pgherd_testkit::writer::prepare(&app(&pooler_rw)))
        .unwrap();
    let writer = pgherd_testkit::writer::Writer::start(
        "seed-001",
        app(&pooler_rw),
        Duration::from_millis(20),
    );
    writer.wait_for_progress(5, Duration::from_secs(30));

    // "Manual Failover": a switchover to postgres-cluster-2 (the seed's line lacks the
    // cluster's name, which `kubectl cnpg promote` needs).
    let s = switch_over(&local, NS, "postgres-cluster", 3, 3, &writer);
    let report = writer.stop();

    // "Trigger Manual Backup" (the seed's own), then "List Backups".
    let backup = write(
        files.path(),
        "backup.yaml",
        &fixture("001-backup-postgres-cluster-manual.yaml"),
    );
    local.run_ok(&["apply", "-f", &backup]);
    let b = wait_backup(
        &local,
        NS,
        "postgres-cluster-manual-20251006120000",
        Duration::from_secs(180),
    );
    assert_eq!(b["status"]["majorVersion"], 16, "{b:#}");
    let listed = run_ns(&local, NS, &["get", "backups", "-o", "json"]);
    assert!(
        listed.contains("postgres-cluster-manual-20251006120000")
            && listed.contains("postgres-cluster-daily-"),
        "{listed}"
    );
    let committed: i64 = rt.block_on(async {
        let c = connect(&app(&endpoint_of(&s, "rw"))).await.unwrap();
        c.query_one(
            &format!("SELECT count(*) FROM {}", pgherd_testkit::writer::TABLE),
            &[],
        )
        .await
        .unwrap()
        .get(0)
    });

    // "Restore from Backup": the seed's completed manifest.
    let restore = write(
        files.path(),
        "restored.yaml",
        &fixture("001-cluster-postgres-cluster-restored-completed.yaml"),
    );
    local.run_ok(&["up", "-f", &restore, "--timeout-seconds", "300"]);
    let restored_rows = socket_query(
        &local,
        NS,
        "postgres-cluster-restored",
        "app",
        &format!("SELECT count(*) FROM {}", pgherd_testkit::writer::TABLE),
    );
    assert_eq!(
        restored_rows,
        committed.to_string(),
        "every row committed before the backup"
    );
    let present: std::collections::BTreeSet<i64> = socket_query(
        &local,
        NS,
        "postgres-cluster-restored",
        "app",
        &format!(
            "SELECT coalesce(string_agg(seq::text, ','), '') FROM {} WHERE source = 'seed-001'",
            pgherd_testkit::writer::TABLE
        ),
    )
    .split(',')
    .filter_map(|v| v.parse().ok())
    .collect();
    let missing: Vec<i64> = report
        .acknowledged
        .iter()
        .map(|(seq, _)| *seq)
        .filter(|seq| !present.contains(seq))
        .collect();
    assert!(
        missing.is_empty(),
        "acknowledged before the backup, missing after the restore: {missing:?}"
    );
    assert_eq!(
        socket_query(
            &local,
            NS,
            "postgres-cluster-restored",
            "myapp",
            "SELECT i FROM mine.t"
        ),
        "1"
    );
}
