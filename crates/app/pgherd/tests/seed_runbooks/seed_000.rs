//! Seed 000's runbook (shared staging cluster) on the local platform.

/// Seed 000 ("Shared PostgreSQL Cluster", stage) walked end to end: the base cluster as the
/// seed describes it (PostgreSQL 17.2, one instance, S3 backups with 30-day retention and gzip,
/// PodMonitor; its overlay's credentials Secret), then its runbook: status, backups and
/// scheduled backups, the app credentials and `psql -U app -d app`, the seed's Database,
/// scaling to 3, and its point-in-time recovery (the seed's own manifest, its credentials
/// filled in and its target a real instant): refused first with the image to use (the
/// manifest names none, and the default image is another major than the backup's), then run
/// with that image, holding exactly the rows committed before the target.
#[test]
fn seed_000_shared_cluster_runbook() {
    use super::*;
    use pgherd_testkit::local::{connect, Local};
    use pgherd_testkit::moto::Moto;
    use std::time::Duration;
    const NS: &str = "postgres-stage";

    let moto = Moto::start();
    // "2. S3 Bucket Setup"
    moto.create_bucket("cloudnativepg-backups");
    let local = Local::new(std::path::Path::new(env!("CARGO_BIN_EXE_pgherd")));
    let files = tempfile::tempdir().unwrap();
    let endpoint = moto.endpoint();
    use crate::seed_stacks::shared::credentials;
    let cluster = |instances: u32| crate::seed_stacks::shared::cluster(instances, &endpoint);
    let stack = write(
        files.path(),
        "stage.yaml",
        &format!("{}{}", credentials(NS), cluster(1)),
    );
    local.run_ok(&["up", "-f", &stack, "--timeout-seconds", "300"]);
    // "Check Cluster Status"
    let text = run_ns(&local, NS, &["status", "postgres-shared"]);
    assert!(text.contains("Cluster in healthy state"), "{text}");
    // "Check Backup Status": the schedule's immediate backup, and the schedule.
    let deadline = std::time::Instant::now() + Duration::from_secs(180);
    loop {
        let listed = run_ns(&local, NS, &["get", "backups", "-o", "json"]);
        if listed.contains("postgres-shared-daily-") && listed.contains("\"completed\"") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no scheduled backup completed: {listed}\n{}",
            local.logs()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let schedule = get(&local, NS, "scheduledbackup", "postgres-shared-daily");
    assert!(
        schedule["status"]["nextScheduleTime"].is_string(),
        "{schedule:#}"
    );
    // "Database Connection": the operator's app credentials, psql -U app -d app.
    let password = secret(&local, NS, "postgres-shared-app", "password");
    let s = status(&local, NS, "postgres-shared");
    let rw = |s: &serde_json::Value| s["endpoints"]["rw"].as_str().unwrap().to_string();
    let app = |addr: &str| config(addr, "app", &password, "app");
    let rt = pgherd_testkit::runtime();
    rt.block_on(async {
        let c = connect(&app(&rw(&s))).await.unwrap();
        assert_eq!(
            c.query_one("SELECT current_user::text", &[])
                .await
                .unwrap()
                .get::<_, String>(0),
            "app"
        );
    });
    // "Database Management": the seed's Database.
    let database = write(
        files.path(),
        "database.yaml",
        &fixture("000-database-product-a-api-stage.yaml"),
    );
    local.run_ok(&["apply", "-f", &database]);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while get(&local, NS, "database", "product-a-api-stage")["status"]["applied"] != true {
        assert!(
            std::time::Instant::now() < deadline,
            "{:#}",
            get(&local, NS, "database", "product-a-api-stage")
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    assert_eq!(
        socket_query(
            &local,
            NS,
            "postgres-shared",
            "postgres",
            "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = 'api_db'"
        ),
        "app"
    );
    // "Scaling to Multi-Node": 3 instances, streaming.
    let scaled = write(files.path(), "stage-3.yaml", &cluster(3));
    local.run_ok(&["apply", "-f", &scaled]);
    let s = healthy(&local, NS, "postgres-shared", "3 instances", 3);
    assert_eq!(
        socket_query(
            &local,
            NS,
            "postgres-shared",
            "postgres",
            "SELECT count(*) FROM pg_stat_replication"
        ),
        "2"
    );

    // "Point-in-Time Recovery (PITR)": rows on either side of an instant, WAL archived past it.
    let (target, last_wal) = rt.block_on(async {
        let c = connect(&app(&rw(&s))).await.unwrap();
        let at = pgherd_testkit::pitr::rows_around_an_instant(&c)
            .await
            .unwrap();
        let wal: String = c
            .query_one("SELECT pg_walfile_name(pg_current_wal_lsn())", &[])
            .await
            .unwrap()
            .get(0);
        (at, wal)
    });
    socket_query(
        &local,
        NS,
        "postgres-shared",
        "postgres",
        "SELECT pg_switch_wal()",
    );
    wait_status(
        &local,
        NS,
        "postgres-shared",
        "the WAL past the target archived",
        Duration::from_secs(120),
        |s| {
            s["walArchive"]["lastArchivedWAL"]
                .as_str()
                .is_some_and(|w| pgherd_postgres::wal::archived_through(&last_wal, w))
        },
    );
    let pitr = crate::seed_stacks::shared::pitr(
        &fixture("000-cluster-postgres-restored-pitr.yaml"),
        &endpoint,
        &target,
        None,
    );
    assert!(pitr.contains(&endpoint) && pitr.contains(&target), "{pitr}");
    // As written it names no image: the default one runs another major than the backup's.
    let refused = write(
        files.path(),
        "restored.yaml",
        &format!("{}{pitr}", credentials("default")),
    );
    let out = local.run(&["up", "-f", &refused, "--timeout-seconds", "600"]);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("holds PostgreSQL 17 data")
            && err.contains("ghcr.io/cloudnative-pg/postgresql:17"),
        "{err}"
    );
    local.run_ok(&["delete", "cluster", "postgres-restored"]);
    // With the image the error names.
    let fixed = write(
        files.path(),
        "restored-17.yaml",
        &pitr.replace(
            "  instances: 1\n",
            "  instances: 1\n  imageName: ghcr.io/cloudnative-pg/postgresql:17.2\n",
        ),
    );
    local.run_ok(&["up", "-f", &fixed, "--timeout-seconds", "300"]);
    let rows = socket_query(
        &local,
        "default",
        "postgres-restored",
        "app",
        "SELECT string_agg(i::text, ',' ORDER BY i) FROM pitr",
    );
    assert_eq!(
        rows,
        (1..=10)
            .map(|i| i.to_string())
            .collect::<Vec<_>>()
            .join(","),
        "exactly the rows before {target}"
    );
}
