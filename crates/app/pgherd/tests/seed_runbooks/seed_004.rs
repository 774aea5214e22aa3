//! Seed 004's runbook (local HA with MinIO) on the local platform.

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
    use super::*;
    use pgherd_testkit::local::{connect, Local};
    use pgherd_testkit::moto::{Moto, ACCESS_KEY, SECRET_KEY};
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
    super::status(local, "postgres-ha", "homepage-postgres")["endpoints"]["rw"]
        .as_str()
        .unwrap()
        .to_string()
}
