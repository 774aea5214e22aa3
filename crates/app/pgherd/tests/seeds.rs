//! The seed manifests: the valid ones validate; the ones CloudNativePG rejects are rejected by
//! pgherd for the same reasons, naming the same fields.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

mod common;
use common::{pgherd, repo_root, stdout};

fn seed_files(invalid: bool) -> Vec<String> {
    let dir = repo_root().join("tests/fixtures/seeds");
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .expect("fixtures exist")
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .filter(|p| p.to_string_lossy().ends_with(".invalid.yaml") == invalid)
        .map(|p| {
            p.strip_prefix(repo_root())
                .unwrap_or(&p)
                .display()
                .to_string()
        })
        .collect();
    files.sort();
    files
}

#[test]
fn valid_seed_manifests_validate() {
    let files = seed_files(false);
    assert!(
        files.len() >= 12,
        "expected the seed fixtures, found {files:?}"
    );
    let args: Vec<&str> = std::iter::once("validate")
        .chain(files.iter().map(String::as_str))
        .collect();
    let out = pgherd(&args);
    let text = stdout(&out);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("0 error(s)"), "{text}");
}

/// Each rejected seed, validated on its own, with the errors (path and message fragment) it
/// must produce: no more, no fewer.
fn assert_rejected(file: &str, expected: &[(&str, &str)]) {
    let out = pgherd(&["validate", file]);
    let text = stdout(&out);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{file} must be rejected:\n{text}"
    );
    let errors: Vec<&str> = text
        .lines()
        .filter(|l| l.contains(": ") && !l.contains("warning:") && l.starts_with(file))
        .collect();
    for (path, message) in expected {
        assert!(
            errors
                .iter()
                .any(|l| l.contains(&format!(": {path}: ")) && l.contains(message)),
            "{file}: expected an error at {path} containing {message:?}, got:\n{text}"
        );
    }
    assert_eq!(
        errors.len(),
        expected.len(),
        "{file}: unexpected errors:\n{text}"
    );
}

#[test]
fn restore_without_storage_is_rejected_like_cloudnativepg() {
    assert_rejected(
        "tests/fixtures/seeds/001-cluster-postgres-cluster-restored.invalid.yaml",
        &[("spec.storage.size", "size not configured")],
    );
}

#[test]
fn removed_parameter_is_rejected_before_postgres_refuses_it() {
    assert_rejected(
        "tests/fixtures/seeds/001-cluster-write-heavy-parameters.invalid.yaml",
        &[(
            "spec.postgresql.parameters.checkpoint_segments",
            "does not exist in PostgreSQL 16",
        )],
    );
}

#[test]
fn crontab_schedule_and_object_owner_reference_are_rejected() {
    assert_rejected(
        "tests/fixtures/seeds/003-scheduledbackup-weekly.invalid.yaml",
        &[
            ("spec.backupOwnerReference", "must be a string"),
            ("spec.schedule", "month"),
        ],
    );
    let text = stdout(&pgherd(&[
        "validate",
        "tests/fixtures/seeds/003-scheduledbackup-weekly.invalid.yaml",
    ]));
    assert!(
        text.contains("0 0 2 * * 0"),
        "the hint must show the 6-field line meant:\n{text}"
    );
}

#[test]
fn restores_with_invented_fields_are_rejected() {
    for file in [
        "tests/fixtures/seeds/003-cluster-restore-b2.invalid.yaml",
        "tests/fixtures/seeds/003-cluster-restore-minio.invalid.yaml",
    ] {
        assert_rejected(
            file,
            &[
                ("spec.bootstrap.recovery.externalClusterName", "unknown field"),
                ("spec.bootstrap.recovery.backupID", "unknown field (hint: did you mean spec.bootstrap.recovery.recoveryTarget.backupID?)"),
                ("spec.bootstrap.recovery.source", "external cluster \"externalCluster\" not found"),
                ("spec.storage.size", "size not configured"),
            ],
        );
    }
    assert_rejected(
        "tests/fixtures/seeds/003-cluster-pitr.invalid.yaml",
        &[
            (
                "spec.bootstrap.recovery.externalClusterName",
                "unknown field",
            ),
            (
                "spec.bootstrap.recovery.targetTime",
                "did you mean spec.bootstrap.recovery.recoveryTarget.targetTime",
            ),
            ("spec.bootstrap.recovery.source", "not found"),
            ("spec.storage.size", "size not configured"),
        ],
    );
}

#[test]
fn every_invalid_seed_has_a_test() {
    let covered = [
        "001-cluster-postgres-cluster-restored.invalid.yaml",
        "001-cluster-write-heavy-parameters.invalid.yaml",
        "003-scheduledbackup-weekly.invalid.yaml",
        "003-cluster-restore-b2.invalid.yaml",
        "003-cluster-restore-minio.invalid.yaml",
        "003-cluster-pitr.invalid.yaml",
    ];
    for file in seed_files(true) {
        assert!(
            covered.iter().any(|c| file.ends_with(c)),
            "{file} has no rejection test"
        );
    }
}

mod seed_runbooks;

/// Seed 004 ("PostgreSQL High Availability for Homepage", local MinIO) walked end to end: its
/// stack (which the seed describes but does not show: 2 instances, WAL archiving and backups
/// to `s3://postgres-backups/homepage`, 7-day retention, PgBouncer rw and ro, a backup every 6
/// hours), then every runbook step: ready, status, psql through the poolers and directly,
/// the manual Backup (the seed's own manifest), list backups, a switchover under a concurrent
/// writer, replication status, the metrics it names, and its point-in-time recovery (the seed's
/// own manifest, its endpoint pointed at moto and its target at a real instant), which must
/// hold exactly the rows committed before the target.
#[test]
fn seed_004_homepage_runbook() {
    use pgherd_testkit::local::{connect, Local};
    use pgherd_testkit::moto::{Moto, ACCESS_KEY, SECRET_KEY};
    use seed_runbooks::*;
    use std::time::Duration;
    const NS: &str = "postgres-ha";
    const SUPERUSER_PASSWORD: &str = "seed-004-secret";

    let moto = Moto::start();
    // "1. Ensure MinIO bucket exists"
    moto.create_bucket("postgres-backups");
    let local = Local::new(std::path::Path::new(env!("CARGO_BIN_EXE_pgherd")));
    let files = tempfile::tempdir().unwrap();
    let endpoint = moto.endpoint();
    // "2. Apply the PostgreSQL HA stack" (flux/infrastructure/postgres-ha/, as the seed
    // describes it).
    let stack = format!(
        r#"apiVersion: v1
kind: Secret
metadata:
  name: minio-backup-credentials
  namespace: {NS}
stringData:
  ACCESS_KEY_ID: {ACCESS_KEY}
  SECRET_ACCESS_KEY: {SECRET_KEY}
---
apiVersion: v1
kind: Secret
metadata:
  name: homepage-postgres-credentials
  namespace: {NS}
type: kubernetes.io/basic-auth
stringData:
  username: postgres
  password: {SUPERUSER_PASSWORD}
---
apiVersion: postgresql.cnpg.io/v1
kind: Cluster
metadata:
  name: homepage-postgres
  namespace: {NS}
spec:
  instances: 2
  storage:
    size: 10Gi
  enableSuperuserAccess: true
  superuserSecret:
    name: homepage-postgres-credentials
  bootstrap:
    initdb:
      database: homepage
      owner: homepage
  backup:
    retentionPolicy: "7d"
    barmanObjectStore:
      destinationPath: s3://postgres-backups/homepage
      endpointURL: {endpoint}
      s3Credentials:
        accessKeyId:
          name: minio-backup-credentials
          key: ACCESS_KEY_ID
        secretAccessKey:
          name: minio-backup-credentials
          key: SECRET_ACCESS_KEY
      wal:
        compression: gzip
      data:
        compression: gzip
  monitoring:
    enablePodMonitor: true
---
apiVersion: postgresql.cnpg.io/v1
kind: Pooler
metadata:
  name: homepage-postgres-pooler-rw
  namespace: {NS}
spec:
  cluster:
    name: homepage-postgres
  instances: 1
  type: rw
  pgbouncer:
    poolMode: session
---
apiVersion: postgresql.cnpg.io/v1
kind: Pooler
metadata:
  name: homepage-postgres-pooler-ro
  namespace: {NS}
spec:
  cluster:
    name: homepage-postgres
  instances: 1
  type: ro
  pgbouncer:
    poolMode: session
---
apiVersion: postgresql.cnpg.io/v1
kind: ScheduledBackup
metadata:
  name: homepage-postgres-every-6h
  namespace: {NS}
spec:
  schedule: "0 0 */6 * * *"
  immediate: true
  backupOwnerReference: self
  cluster:
    name: homepage-postgres
"#
    );
    let stack = write(files.path(), "postgres-ha.yaml", &stack);
    // "3. Wait for cluster to be ready"
    local.run_ok(&["up", "-f", &stack, "--timeout-seconds", "300"]);
    // "4. Check cluster status"
    let text = run_ns(&local, NS, &["status", "homepage-postgres"]);
    assert!(text.contains("Cluster in healthy state"), "{text}");
    let s = wait_status(
        &local,
        NS,
        "homepage-postgres",
        "poolers",
        Duration::from_secs(60),
        |s| {
            s["endpoints"]["homepage-postgres-pooler-rw"].is_string()
                && s["endpoints"]["homepage-postgres-pooler-ro"].is_string()
        },
    );
    let pooler_rw = s["endpoints"]["homepage-postgres-pooler-rw"]
        .as_str()
        .unwrap()
        .to_string();
    let pooler_ro = s["endpoints"]["homepage-postgres-pooler-ro"]
        .as_str()
        .unwrap()
        .to_string();
    let password = secret(&local, NS, "homepage-postgres-credentials", "password");
    assert_eq!(password, SUPERUSER_PASSWORD);
    let through = |addr: &str| config(addr, "postgres", &password, "homepage");
    let rt = pgherd_testkit::runtime();

    // "Connection Strings": the API through the rw pooler as postgres, db homepage; a writer
    // commits through it for the rest of the walk.
    rt.block_on(pgherd_testkit::writer::prepare(&through(&pooler_rw)))
        .unwrap();
    let writer = pgherd_testkit::writer::Writer::start(
        "seed-004",
        through(&pooler_rw),
        Duration::from_millis(20),
    );
    writer.wait_for_progress(5, Duration::from_secs(30));
    // Through the ro pooler: a standby.
    let in_recovery: bool = rt.block_on(async {
        let c = connect(&through(&pooler_ro)).await.unwrap();
        c.query_one("SELECT pg_is_in_recovery()", &[])
            .await
            .unwrap()
            .get(0)
    });
    assert!(in_recovery, "the ro pooler reaches a standby");
    // "Direct Connection (for admin/migrations)": psql -U postgres -d homepage.
    let out = local.run_ok(&[
        "psql",
        "homepage-postgres",
        "--superuser",
        "-n",
        NS,
        "--",
        "-d",
        "homepage",
        "-tAc",
        "SELECT current_user",
    ]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "postgres");

    // "Manual Backup", the seed's own Backup.
    let backup = write(
        files.path(),
        "backup.yaml",
        &fixture("004-backup-homepage-postgres-manual.yaml"),
    );
    local.run_ok(&["apply", "-f", &backup]);
    let b = wait_backup(
        &local,
        NS,
        "homepage-postgres-manual-20241205-120000",
        Duration::from_secs(180),
    );
    assert_eq!(b["status"]["method"], "barmanObjectStore", "{b:#}");
    // "Automatic Backups": the schedule's first one (immediate), the next in 6 hours.
    let schedule = get(&local, NS, "scheduledbackup", "homepage-postgres-every-6h");
    assert!(
        schedule["status"]["lastScheduleTime"].is_string()
            && schedule["status"]["nextScheduleTime"].is_string(),
        "{schedule:#}"
    );
    // "List Backups"
    let listed = run_ns(&local, NS, &["get", "backups", "-o", "json"]);
    assert!(
        listed.contains("homepage-postgres-manual-20241205-120000")
            && listed.contains("homepage-postgres-every-6h-"),
        "{listed}"
    );

    // "Manual Switchover", under the writer.
    let old_primary = status(&local, NS, "homepage-postgres")["currentPrimary"]
        .as_str()
        .unwrap()
        .to_string();
    let s = switch_over(&local, NS, "homepage-postgres", 1, 2, &writer);
    let target = s["currentPrimary"].as_str().unwrap().to_string();
    // "Replication status" on the new primary: the old one streams from it.
    let replicas = socket_query(
        &local,
        NS,
        "homepage-postgres",
        "postgres",
        "SELECT string_agg(application_name, ',') FROM pg_stat_replication",
    );
    assert_eq!(replicas, old_primary);

    // "Prometheus Metrics": the ones the seed names.
    let instances = s["instancesStatus"].as_array().unwrap().clone();
    let metrics_of = |name: &str| {
        let i = instances.iter().find(|i| i["name"] == name).unwrap();
        pgherd_testkit::metrics::scrape(i["metrics"].as_str().unwrap())
    };
    let primary_metrics = metrics_of(&target);
    for name in ["cnpg_collector_up", "cnpg_pg_database_size_bytes"] {
        assert!(
            primary_metrics.contains(name),
            "{name} missing:\n{primary_metrics}"
        );
    }
    assert!(metrics_of(&old_primary).contains("cnpg_pg_replication_lag"));

    // "Point-in-Time Recovery": rows before and after an instant; the seed's manifest, its
    // endpoint moto's and its target that instant.
    let (target_time, last_wal) = rt.block_on(async {
        let c = connect(&through(&rw_after(&local))).await.unwrap();
        c.batch_execute(
            "CREATE TABLE pitr (i int); INSERT INTO pitr SELECT generate_series(1, 10)",
        )
        .await
        .unwrap();
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let at = server_now(&c).await;
        tokio::time::sleep(Duration::from_millis(1100)).await;
        c.batch_execute("INSERT INTO pitr SELECT generate_series(11, 20)")
            .await
            .unwrap();
        let wal: String = c
            .query_one("SELECT pg_walfile_name(pg_current_wal_lsn())", &[])
            .await
            .unwrap()
            .get(0);
        c.batch_execute("SELECT pg_switch_wal()").await.unwrap();
        (at, wal)
    });
    wait_status(
        &local,
        NS,
        "homepage-postgres",
        "the WAL past the target archived",
        Duration::from_secs(120),
        |s| {
            s["walArchive"]["lastArchivedWAL"]
                .as_str()
                .is_some_and(|w| pgherd_postgres::wal::archived_through(&last_wal, w))
        },
    );
    let report = writer.stop();
    let recovery = fixture("004-cluster-homepage-postgres-recovery.yaml")
        .replace("http://minio.minio.svc.cluster.local:9000", &endpoint)
        .replace("2024-12-05T12:00:00Z", &target_time);
    let recovery = write(files.path(), "recovery.yaml", &recovery);
    local.run_ok(&["up", "-f", &recovery, "--timeout-seconds", "300"]);
    let rows: Vec<i32> = socket_query(
        &local,
        NS,
        "homepage-postgres-recovery",
        "homepage",
        "SELECT string_agg(i::text, ',' ORDER BY i) FROM pitr",
    )
    .split(',')
    .map(|v| v.parse().unwrap())
    .collect();
    assert_eq!(
        rows,
        (1..=10).collect::<Vec<_>>(),
        "exactly the rows before {target_time}"
    );

    // Nothing the writer was told was committed is lost on the source.
    let missing = rt
        .block_on(async {
            let c = connect(&through(&rw_after(&local))).await?;
            pgherd_testkit::writer::missing(&c, &report).await
        })
        .unwrap();
    assert!(missing.is_empty(), "acknowledged commits lost: {missing:?}");
}

/// The source cluster's current rw endpoint (seed 004).
fn rw_after(local: &pgherd_testkit::local::Local) -> String {
    seed_runbooks::status(local, "postgres-ha", "homepage-postgres")["endpoints"]["rw"]
        .as_str()
        .unwrap()
        .to_string()
}

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
    use pgherd_testkit::local::{connect, Local};
    use pgherd_testkit::moto::{Moto, ACCESS_KEY, SECRET_KEY};
    use seed_runbooks::*;
    use std::time::Duration;
    const NS: &str = "postgres";

    let moto = Moto::start();
    moto.create_bucket("postgres-backups");
    let local = Local::new(std::path::Path::new(env!("CARGO_BIN_EXE_pgherd")));
    let files = tempfile::tempdir().unwrap();
    let endpoint = moto.endpoint();
    let stack = format!(
        r#"apiVersion: v1
kind: Secret
metadata:
  name: postgres-backup-s3
  namespace: {NS}
stringData:
  ACCESS_KEY_ID: {ACCESS_KEY}
  ACCESS_SECRET_KEY: {SECRET_KEY}
---
apiVersion: postgresql.cnpg.io/v1
kind: Cluster
metadata:
  name: postgres-cluster
  namespace: {NS}
spec:
  instances: 3
  imageName: ghcr.io/cloudnative-pg/postgresql:16.3
  enableSuperuserAccess: true
  storage:
    size: 50Gi
    storageClass: nfs-postgres-v2
  postgresql:
    parameters:
      max_connections: "200"
      shared_buffers: "128MB"
      effective_cache_size: "3GB"
      work_mem: "8MB"
      wal_buffers: "16MB"
      maintenance_work_mem: "64MB"
      max_wal_size: "1GB"
      checkpoint_timeout: "5min"
    pg_hba:
      - host all all 10.0.0.0/8 scram-sha-256
      - host all all 172.16.0.0/12 scram-sha-256
      - host all all 192.168.0.0/16 scram-sha-256
  backup:
    barmanObjectStore:
      destinationPath: s3://postgres-backups/postgres-cluster
      endpointURL: {endpoint}
      s3Credentials:
        accessKeyId:
          name: postgres-backup-s3
          key: ACCESS_KEY_ID
        secretAccessKey:
          name: postgres-backup-s3
          key: ACCESS_SECRET_KEY
    retentionPolicy: "30d"
---
apiVersion: postgresql.cnpg.io/v1
kind: ScheduledBackup
metadata:
  name: postgres-cluster-daily
  namespace: {NS}
spec:
  schedule: "0 0 2 * * *"
  immediate: true
  backupOwnerReference: self
  cluster:
    name: postgres-cluster
"#
    );
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

/// Seed 002 ("CloudNativePG - PostgreSQL HA Cluster" for SaaSOdoo) walked end to end: the
/// cluster, roles, Databases and PgBouncer it describes (its files are listed, not shown:
/// 3 instances of PostgreSQL 18 with 1–2 synchronous standbys, the managed roles and database
/// owners of its tables, a 2-instance transaction-mode `rw` pooler), then its runbook: ready,
/// the Databases, `\l`/`\du`, replication status, the pooler's admin console as `postgres`
/// (refused at once, as CloudNativePG's), `SELECT version()` through the pooler, a
/// switchover, a rolling restart, `restart --primary`, scaling to 5 and back (its scale to 2
/// is refused, as CloudNativePG refuses it) — all under a
/// writer through the pooler that must lose nothing acknowledged — and the cleanup.
#[test]
fn seed_002_saasodoo_runbook() {
    use pgherd_testkit::local::{connect, Local};
    use seed_runbooks::*;
    use std::time::Duration;
    const NS: &str = "saasodoo";
    let roles = [
        ("auth_service", "cnpg-auth-service"),
        ("billing_service", "cnpg-billing-service"),
        ("instance_service", "cnpg-instance-service"),
        ("database_service", "cnpg-database-service"),
        ("readonly_user", "cnpg-readonly-user"),
        ("backup_user", "cnpg-backup-user"),
        ("notification_service", "cnpg-notification-service"),
        ("analytics_service", "cnpg-analytics-service"),
    ];
    let databases = [
        ("auth", "auth_service"),
        ("billing", "billing_service"),
        ("instance", "instance_service"),
        ("communication", "notification_service"),
        ("analytics", "analytics_service"),
    ];
    let local = Local::new(std::path::Path::new(env!("CARGO_BIN_EXE_pgherd")));
    let files = tempfile::tempdir().unwrap();
    let mut secrets = String::new();
    let mut managed = String::new();
    for (role, secret) in roles {
        secrets.push_str(&format!("apiVersion: v1\nkind: Secret\nmetadata:\n  name: {secret}\n  namespace: {NS}\n  labels:\n    app.kubernetes.io/name: postgres\ntype: kubernetes.io/basic-auth\nstringData:\n  username: {role}\n  password: {role}-pw\n---\n"));
        let extra = match role {
            "backup_user" => "        replication: true\n",
            _ => "",
        };
        managed.push_str(&format!("      - name: {role}\n        ensure: present\n        login: true\n{extra}        passwordSecret:\n          name: {secret}\n"));
    }
    let cluster = |instances: u32| {
        format!("apiVersion: postgresql.cnpg.io/v1\nkind: Cluster\nmetadata:\n  name: postgres-cluster\n  namespace: {NS}\nspec:\n  instances: {instances}\n  imageName: ghcr.io/cloudnative-pg/postgresql:18.1\n  minSyncReplicas: 1\n  maxSyncReplicas: 2\n  enableSuperuserAccess: true\n  storage:\n    size: 20Gi\n    storageClass: rook-cephfs\n  monitoring:\n    enablePodMonitor: true\n  managed:\n    roles:\n{managed}")
    };
    let mut dbs = String::new();
    for (db, owner) in databases {
        dbs.push_str(&format!("---\napiVersion: postgresql.cnpg.io/v1\nkind: Database\nmetadata:\n  name: {db}\n  namespace: {NS}\nspec:\n  name: {db}\n  owner: {owner}\n  cluster:\n    name: postgres-cluster\n"));
    }
    let pooler = format!("---\napiVersion: postgresql.cnpg.io/v1\nkind: Pooler\nmetadata:\n  name: postgres-cluster-pooler-rw\n  namespace: {NS}\nspec:\n  cluster:\n    name: postgres-cluster\n  instances: 2\n  type: rw\n  pgbouncer:\n    poolMode: transaction\n");
    // Steps 2–4 and 6: secrets, cluster, databases, pooler.
    let stack = write(
        files.path(),
        "stack.yaml",
        &format!("{secrets}{}{dbs}{pooler}", cluster(3)),
    );
    local.run_ok(&["up", "-f", &stack, "--timeout-seconds", "300"]);
    let s = wait_status(
        &local,
        NS,
        "postgres-cluster",
        "ready with its pooler",
        Duration::from_secs(120),
        |s| {
            s["phase"] == "Cluster in healthy state"
                && s["readyInstances"] == 3
                && s["endpoints"]["postgres-cluster-pooler-rw"].is_string()
        },
    );
    for (db, _) in databases {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while get(&local, NS, "database", db)["status"]["applied"] != true {
            assert!(
                std::time::Instant::now() < deadline,
                "Database {db} not applied: {:#}",
                get(&local, NS, "database", db)
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }
    // "Database Verification": \l and \du.
    let listed = socket_query(&local, NS, "postgres-cluster", "postgres", "SELECT string_agg(datname || ':' || pg_get_userbyid(datdba), ',' ORDER BY datname) FROM pg_database");
    for (db, owner) in databases {
        assert!(listed.contains(&format!("{db}:{owner}")), "{listed}");
    }
    let users = socket_query(
        &local,
        NS,
        "postgres-cluster",
        "postgres",
        "SELECT string_agg(rolname || ':' || rolreplication, ',') FROM pg_roles",
    );
    for (role, _) in roles {
        assert!(
            users.contains(&format!("{role}:{}", role == "backup_user")),
            "{users}"
        );
    }
    // "Replication Status": 2 synchronous standbys.
    let sync = socket_query(
        &local,
        NS,
        "postgres-cluster",
        "postgres",
        "SELECT count(*) FROM pg_stat_replication WHERE sync_state IN ('sync', 'quorum')",
    );
    assert_eq!(sync, "2");
    // "PgBouncer Status": the admin console as postgres over TCP is refused at once.
    let pooler_rw = s["endpoints"]["postgres-cluster-pooler-rw"]
        .as_str()
        .unwrap()
        .to_string();
    let superuser = secret(&local, NS, "postgres-cluster-superuser", "password");
    let rt = pgherd_testkit::runtime();
    rt.block_on(async {
        let refused = tokio::time::timeout(
            Duration::from_secs(60),
            connect(&config(&pooler_rw, "postgres", &superuser, "pgbouncer")),
        )
        .await
        .expect("an answer, not a wait");
        let Err(e) = refused else {
            panic!("the admin console over TCP let postgres in")
        };
        assert_eq!(
            e.as_db_error().map(|d| d.message()),
            Some("login rejected"),
            "{e:?}"
        );
        // "Connection Issues": SELECT version() through the pooler as postgres.
        let c = connect(&config(&pooler_rw, "postgres", &superuser, "postgres"))
            .await
            .unwrap();
        let version: String = c.query_one("SELECT version()", &[]).await.unwrap().get(0);
        assert!(version.starts_with("PostgreSQL 18"), "{version}");
    });
    // A service writes through the pooler for the HA steps.
    let service = config(&pooler_rw, "auth_service", "auth_service-pw", "auth");
    rt.block_on(pgherd_testkit::writer::prepare(&service))
        .unwrap();
    let writer = pgherd_testkit::writer::Writer::start(
        "seed-002",
        service.clone(),
        Duration::from_millis(20),
    );
    writer.wait_for_progress(5, Duration::from_secs(30));
    let pids = |s: &serde_json::Value| -> Vec<(String, u64)> {
        s["instancesStatus"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| {
                (
                    i["name"].as_str().unwrap().to_string(),
                    i["pid"].as_u64().unwrap_or(0),
                )
            })
            .collect()
    };
    // "Manual Failover (Switchover)"
    let s = switch_over(&local, NS, "postgres-cluster", 3, 3, &writer);
    // "Rolling Restart": every instance restarted.
    let before = pids(&s);
    run_ns(&local, NS, &["restart", "postgres-cluster"]);
    let s = wait_status(
        &local,
        NS,
        "postgres-cluster",
        "every instance restarted",
        Duration::from_secs(240),
        |s| {
            s["phase"] == "Cluster in healthy state"
                && pids(s)
                    .iter()
                    .zip(&before)
                    .all(|(a, b)| a.0 == b.0 && a.1 != 0 && a.1 != b.1)
        },
    );
    commits_again(&local, &writer, "the rolling restart");
    // "Restart only primary": in place, the same primary, the standbys untouched.
    let before = pids(&s);
    let primary = s["currentPrimary"].as_str().unwrap().to_string();
    run_ns(&local, NS, &["restart", "postgres-cluster", "--primary"]);
    let s = wait_status(
        &local,
        NS,
        "postgres-cluster",
        "the primary restarted",
        Duration::from_secs(120),
        |s| {
            s["phase"] == "Cluster in healthy state"
                && s["readyInstances"] == 3
                && pids(s)
                    .iter()
                    .zip(&before)
                    .any(|(a, b)| a.0 == primary && a.1 != 0 && a.1 != b.1)
        },
    );
    assert_eq!(s["currentPrimary"], primary.as_str());
    for (a, b) in pids(&s).iter().zip(&before) {
        if a.0 != primary {
            assert_eq!(a.1, b.1, "{} was restarted too", a.0);
        }
    }
    commits_again(&local, &writer, "the primary's restart");
    // "Scaling Instances": to 5; "to 2 (minimum for sync replication)" is refused as
    // CloudNativePG's webhook refuses that patch (maxSyncReplicas 2 needs 3 instances), and the
    // cluster stays as it was; back to 3.
    let scale = |n: u32| write(files.path(), &format!("cluster-{n}.yaml"), &cluster(n));
    local.run_ok(&["apply", "-f", &scale(5)]);
    healthy(&local, NS, "postgres-cluster", "5 instances", 5);
    commits_again(&local, &writer, "scaling to 5");
    let out = local.run(&["apply", "-f", &scale(2)]);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("spec.maxSyncReplicas: must be lower than the number of instances"),
        "{err}"
    );
    assert_eq!(status(&local, NS, "postgres-cluster")["instances"], 5);
    local.run_ok(&["apply", "-f", &scale(3)]);
    healthy(&local, NS, "postgres-cluster", "3 instances", 3);
    commits_again(&local, &writer, "scaling to 3");
    let report = writer.stop();
    let missing = rt
        .block_on(async {
            let c = connect(&service).await?;
            pgherd_testkit::writer::missing(&c, &report).await
        })
        .unwrap();
    assert!(missing.is_empty(), "acknowledged commits lost: {missing:?}");
    // "Cleanup"
    run_ns(&local, NS, &["delete", "cluster", "postgres-cluster"]);
    assert!(!local
        .run(&["status", "postgres-cluster", "-n", NS])
        .status
        .success());
}
