//! WAL archiving, backups and recovery through `pgherd local`, against a real S3-compatible
//! server (moto) behind a gate the test can close: continuous archiving under a pgbench load
//! with no segment missing, an object-store outage that loses nothing, base backups as
//! `Backup` objects, point-in-time recovery into a new cluster, and a cluster written for Azure
//! run against emulated storage (Azurite).
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

use pgherd_backup::layout::{parse_archived_wal, WalFileKind};
use pgherd_backup::store::{self, Destination, S3Keys, StoreConfig};
use pgherd_backup::ObjectStore as _;
use pgherd_local::status::LocalClusterStatus;
use pgherd_testkit::local::{connect, Local};
use pgherd_testkit::moto::{Gate, Moto, ACCESS_KEY, SECRET_KEY};
use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

fn manifest(cluster: &str, endpoint: &str, extra: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: Secret
metadata:
  name: s3-creds
stringData:
  ACCESS_KEY_ID: {ACCESS_KEY}
  ACCESS_SECRET_KEY: {SECRET_KEY}
  REGION: us-east-1
---
apiVersion: postgresql.cnpg.io/v1
kind: Cluster
metadata:
  name: {cluster}
spec:
  instances: 2
  imageName: ghcr.io/cloudnative-pg/postgresql:15.14
  storage:
    size: 1Gi
  backup:
    retentionPolicy: "30d"
    barmanObjectStore:
      destinationPath: s3://backups/pg
      endpointURL: {endpoint}
      s3Credentials:
        accessKeyId:
          name: s3-creds
          key: ACCESS_KEY_ID
        secretAccessKey:
          name: s3-creds
          key: ACCESS_SECRET_KEY
        region:
          name: s3-creds
          key: REGION
      wal:
        compression: gzip
        maxParallel: 4
      data:
        compression: gzip
{extra}"#
    )
}

fn archiving(s: &LocalClusterStatus) -> Option<(String, String)> {
    s.conditions
        .iter()
        .find(|c| c.condition_type == "ContinuousArchiving")
        .map(|c| (c.status.clone(), c.message.clone()))
}

fn last_archived(s: &LocalClusterStatus) -> String {
    s.wal_archive
        .as_ref()
        .and_then(|a| a.last_archived_wal.clone())
        .unwrap_or_default()
}

/// The WAL segment names (timeline 1) archived under `pg/<server>`.
async fn archived_segments(moto: &Moto, server: &str) -> BTreeSet<String> {
    let mut config = StoreConfig::new(Destination::S3 {
        bucket: "backups".into(),
        prefix: "pg".into(),
    });
    config.endpoint_url = Some(moto.endpoint());
    config.region = Some("us-east-1".into());
    config.s3_keys = Some(S3Keys {
        access_key_id: ACCESS_KEY.into(),
        secret_access_key: SECRET_KEY.into(),
        session_token: None,
    });
    let store = store::open(&config).unwrap();
    store
        .list(&format!("pg/{server}/wals/"))
        .await
        .unwrap()
        .iter()
        .filter_map(|o| parse_archived_wal(o.key.rsplit('/').next().unwrap_or("")))
        .filter(|(name, _)| name.kind() == WalFileKind::Segment)
        .map(|(name, _)| name.as_str().to_string())
        .collect()
}

fn pgbench(local: &Local, cluster: &str, addr: &str, args: &[&str]) {
    let (host, port) = addr.rsplit_once(':').unwrap();
    let out = std::process::Command::new("/usr/lib/postgresql/15/bin/pgbench")
        .args(["-h", host, "-p", port, "-U"])
        .arg(local.app_secret(cluster, "username"))
        .args(args)
        .arg(local.app_secret(cluster, "dbname"))
        .env("PGPASSWORD", local.app_secret(cluster, "password"))
        .env("PGSSLMODE", "require")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "pgbench {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Closes the current segment on the primary; returns its name.
async fn switch_wal(local: &Local, cluster: &str, rw: &str) -> String {
    let c = connect(&local.app_config(cluster, rw)).await.unwrap();
    c.batch_execute("CREATE TABLE IF NOT EXISTS switches (at timestamptz DEFAULT now()); INSERT INTO switches DEFAULT VALUES")
        .await
        .unwrap();
    let name: String = c
        .query_one("SELECT pg_walfile_name(pg_current_wal_lsn())", &[])
        .await
        .unwrap()
        .get(0);
    c.batch_execute("SELECT pg_switch_wal()").await.unwrap();
    name
}

/// Lets the application user switch WAL (the test's way to close segments).
const GRANT_SWITCH: &str = "  bootstrap:
    initdb:
      postInitApplicationSQL:
        - GRANT EXECUTE ON FUNCTION pg_catalog.pg_switch_wal() TO app
";

#[test]
fn continuous_archiving_survives_an_outage() {
    let moto = Moto::start();
    moto.create_bucket("backups");
    let gate = Gate::start(moto.port);
    let local = Local::new(Path::new(env!("CARGO_BIN_EXE_pgherd")));
    let files = tempfile::tempdir().unwrap();
    let (_, s) = local.up(
        files.path(),
        "arch",
        &manifest("arch", &gate.endpoint(), GRANT_SWITCH),
        2,
    );
    let rw = s.endpoints["rw"].clone();
    let rt = pgherd_testkit::runtime();

    // Under a pgbench load every segment reaches the archive, in order, none missing.
    pgbench(&local, "arch", &rw, &["-i", "-s", "4", "-q"]);
    pgbench(&local, "arch", &rw, &["-T", "8", "-c", "4", "-j", "2"]);
    let before = rt.block_on(switch_wal(&local, "arch", &rw));
    let s = local.wait_for("arch", "the load archived", Duration::from_secs(120), |s| {
        archiving(s).is_some_and(|(st, _)| st == "True") && last_archived(s) >= before
    });
    assert!(s.wal_archive.as_ref().unwrap().last_error.is_none());
    let archived = rt.block_on(archived_segments(&moto, "arch"));
    let expected: BTreeSet<String> = (1..=u64::from_str_radix(&before[16..], 16).unwrap())
        .map(|n| format!("00000001{:08X}{:08X}", n >> 8, n & 0xFF))
        .collect();
    let missing: Vec<&String> = expected.difference(&archived).collect();
    assert!(missing.is_empty(), "not archived: {missing:?}");

    // An outage: archiving fails, says so, keeps the WAL; when the store is back it resumes
    // by itself and nothing is missing.
    gate.set_open(false);
    let mut during = Vec::new();
    for _ in 0..3 {
        pgbench(&local, "arch", &rw, &["-t", "2000", "-c", "2"]);
        during.push(rt.block_on(switch_wal(&local, "arch", &rw)));
    }
    let s = local.wait_for("arch", "archiving to fail", Duration::from_secs(120), |s| {
        archiving(s).is_some_and(|(st, _)| st == "False")
    });
    let (_, message) = archiving(&s).unwrap();
    assert!(
        !message.is_empty() && !message.contains(SECRET_KEY),
        "{message}"
    );
    let archived = rt.block_on(archived_segments(&moto, "arch"));
    assert!(
        !archived.contains(during.last().unwrap()),
        "archived through a closed gate?"
    );
    gate.set_open(true);
    let last = during.last().unwrap().clone();
    local.wait_for(
        "arch",
        "archiving to resume",
        Duration::from_secs(180),
        |s| archiving(s).is_some_and(|(st, _)| st == "True") && last_archived(s) >= last,
    );
    let archived = rt.block_on(archived_segments(&moto, "arch"));
    for name in &during {
        assert!(archived.contains(name), "{name} lost in the outage");
    }
}

fn recovery_manifest(cluster: &str, endpoint: &str, target: &str) -> String {
    let external = format!(
        r#"  externalClusters:
    - name: origin
      barmanObjectStore:
        destinationPath: s3://backups/pg
        serverName: src
        endpointURL: {endpoint}
        s3Credentials:
          accessKeyId:
            name: s3-creds
            key: ACCESS_KEY_ID
          secretAccessKey:
            name: s3-creds
            key: ACCESS_SECRET_KEY
          region:
            name: s3-creds
            key: REGION
        wal:
          maxParallel: 4
  bootstrap:
    recovery:
      source: origin
{target}"#
    );
    manifest(cluster, endpoint, &external)
}

fn barman_env() -> Vec<(&'static str, &'static str)> {
    vec![
        ("AWS_ACCESS_KEY_ID", ACCESS_KEY),
        ("AWS_SECRET_ACCESS_KEY", SECRET_KEY),
        ("AWS_DEFAULT_REGION", "us-east-1"),
    ]
}

#[test]
fn backup_and_point_in_time_recovery() {
    let moto = Moto::start();
    moto.create_bucket("backups");
    let local = Local::new(Path::new(env!("CARGO_BIN_EXE_pgherd")));
    let files = tempfile::tempdir().unwrap();
    // The source runs with more connections than the recovered clusters will ask for (the
    // default 100): recovery raises the hot-standby settings from the backup's control data.
    let (_, s) = local.up(
        files.path(),
        "src",
        &manifest(
            "src",
            &moto.endpoint(),
            &format!(
                "{GRANT_SWITCH}  postgresql:\n    parameters:\n      max_connections: \"150\"\n"
            ),
        ),
        2,
    );
    let rw = s.endpoints["rw"].clone();
    let rt = pgherd_testkit::runtime();
    let insert = |from: i32, to: i32| {
        rt.block_on(async {
            let c = connect(&local.app_config("src", &rw)).await.unwrap();
            c.batch_execute("CREATE TABLE IF NOT EXISTS items (i int PRIMARY KEY)")
                .await
                .unwrap();
            c.execute(
                "INSERT INTO items SELECT generate_series($1::int, $2::int)",
                &[&from, &to],
            )
            .await
            .unwrap();
            let now: String = c
                .query_one(
                    "SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')",
                    &[],
                )
                .await
                .unwrap()
                .get(0);
            now
        })
    };
    insert(1, 10);

    // A base backup (from the standby, the default target), as `kubectl cnpg backup` does.
    let out = local.run_ok(&["backup", "src", "--backup-name", "first"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("first: completed"), "{text}");
    let backup = local.run_ok(&["get", "backup", "first", "-o", "json"]);
    let backup: serde_json::Value = serde_json::from_slice(&backup.stdout).unwrap();
    let status = &backup["status"];
    assert_eq!(status["phase"], "completed", "{backup}");
    assert_eq!(status["instanceID"]["podName"], "src-2", "{backup}");
    let backup_id = status["backupId"].as_str().unwrap().to_string();
    // Taken on the standby, it completed only once the primary archived the segment it ends
    // in: restorable at once.
    let end_wal = status["endWal"].as_str().unwrap().to_string();
    let now = local.wait_for("src", "its status", Duration::from_secs(5), |_| true);
    assert!(
        pgherd_postgres::wal::archived_through(&end_wal, &last_archived(&now)),
        "completed with {end_wal} not archived (last {})",
        last_archived(&now)
    );
    assert!(
        status["beginWal"].is_string() && status["endLSN"].is_string(),
        "{backup}"
    );
    let s = local.wait_for("src", "the catalog read", Duration::from_secs(30), |s| {
        s.last_successful_backup.is_some()
    });
    assert!(s.first_recoverability_point.is_some());
    let text = String::from_utf8_lossy(&local.run_ok(&["status", "src"]).stdout).into_owned();
    assert!(
        text.lines()
            .any(|l| l.starts_with("Working WAL archiving:") && l.ends_with(" OK"))
            && text
                .lines()
                .any(|l| l.starts_with("Last Successful Backup:") && l.contains(" 20")),
        "{text}"
    );
    assert!(s
        .conditions
        .iter()
        .any(|c| c.condition_type == "LastBackupSucceeded" && c.status == "True"));
    // barman-cloud reads it.
    let list = std::process::Command::new("barman-cloud-backup-list")
        .envs(barman_env())
        .args(["--endpoint-url", &moto.endpoint(), "--format", "json"])
        .args(["s3://backups/pg", "src"])
        .output()
        .unwrap();
    let listed = String::from_utf8_lossy(&list.stdout);
    assert!(
        listed.contains(&backup_id),
        "{listed}{}",
        String::from_utf8_lossy(&list.stderr)
    );

    // Two more batches around a point in time; WAL shipped past them.
    insert(11, 20);
    std::thread::sleep(Duration::from_millis(1100));
    let target = insert(0, -1); // no rows: just the server's clock between the batches
    std::thread::sleep(Duration::from_millis(1100));
    insert(21, 30);
    let last = rt.block_on(switch_wal(&local, "src", &rw));
    local.wait_for("src", "WAL archived", Duration::from_secs(120), |s| {
        last_archived(s) >= last
    });

    // A target before every backup: a clear error, nothing started.
    let bad = files.path().join("bad.yaml");
    std::fs::write(
        &bad,
        recovery_manifest(
            "too-early",
            &moto.endpoint(),
            "      recoveryTarget:\n        targetTime: \"2001-01-01T00:00:00Z\"\n",
        ),
    )
    .unwrap();
    local.run_ok(&["apply", "-f", bad.to_str().unwrap()]);
    let s = local.wait_for(
        "too-early",
        "the recovery to fail",
        Duration::from_secs(60),
        |s| {
            s.instances_status.iter().any(|i| {
                i.error
                    .as_deref()
                    .is_some_and(|e| e.contains("no completed backup"))
            })
        },
    );
    assert_eq!(s.ready_instances, 0);
    local.run_ok(&["delete", "cluster", "too-early"]);
    // `local up` of a recovery that cannot work stops at once (exit 1, no waiting out its
    // timeout): its stderr.
    let up_refused = |name: &str, manifest: String| {
        let file = files.path().join(format!("{name}.yaml"));
        std::fs::write(&file, manifest).unwrap();
        let out = local.run(&[
            "up",
            "-f",
            file.to_str().unwrap(),
            "--timeout-seconds",
            "900",
        ]);
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(1), "{err}");
        err
    };
    // A serverName with nothing under it: the server names and backups the store does hold.
    let err = up_refused(
        "wrong-server",
        recovery_manifest("wrong-server", &moto.endpoint(), "")
            .replace("serverName: src", "serverName: srcx"),
    );
    assert!(
        err.contains("cannot start")
            && err.contains("server names in the store: src (backups ")
            && err.contains(&backup_id),
        "{err}"
    );
    local.run_ok(&["delete", "cluster", "wrong-server"]);
    // The backup the catalog offers is PostgreSQL 15: an image of another major is refused
    // before anything is restored, naming the image to use.
    let err = up_refused(
        "wrong-major",
        recovery_manifest("wrong-major", &moto.endpoint(), "")
            .replace("postgresql:15.14", "postgresql:16"),
    );
    assert!(
        err.contains("holds PostgreSQL 15 data")
            && err.contains("ghcr.io/cloudnative-pg/postgresql:15")
            && !err.contains("incompatible"),
        "{err}"
    );
    let s = local.status("wrong-major");
    assert_eq!(s.ready_instances, 0);
    // Plain `local status` shows the reason too.
    let text =
        String::from_utf8_lossy(&local.run_ok(&["status", "wrong-major"]).stdout).into_owned();
    assert!(text.contains("holds PostgreSQL 15 data"), "{text}");
    local.run_ok(&["delete", "cluster", "wrong-major"]);
    // A target after the end of the archive: PostgreSQL's reason, in the instance's status.
    let late = files.path().join("late.yaml");
    std::fs::write(
        &late,
        recovery_manifest(
            "too-late",
            &moto.endpoint(),
            "      recoveryTarget:\n        targetTime: \"2099-01-01 00:00:00+00\"\n",
        ),
    )
    .unwrap();
    local.run_ok(&["apply", "-f", late.to_str().unwrap()]);
    local.wait_for(
        "too-late",
        "the recovery to fail",
        Duration::from_secs(90),
        |s| {
            s.instances_status.iter().any(|i| {
                i.error
                    .as_deref()
                    .is_some_and(|e| e.contains("recovery ended before configured recovery target"))
            })
        },
    );
    local.run_ok(&["delete", "cluster", "too-late"]);

    // Point-in-time recovery into a new cluster: exactly the rows committed before the target.
    let r = files.path().join("restored.yaml");
    std::fs::write(
        &r,
        recovery_manifest(
            "restored",
            &moto.endpoint(),
            &format!("      recoveryTarget:\n        targetTime: \"{target}\"\n"),
        ),
    )
    .unwrap();
    local.run_ok(&["apply", "-f", r.to_str().unwrap()]);
    let s = local.wait_for(
        "restored",
        "2 ready instances",
        Duration::from_secs(120),
        |s| s.ready_instances == 2,
    );
    let restored_rw = s.endpoints["rw"].clone();
    let (count, max): (i64, i32) = rt.block_on(async {
        let c = connect(&local.app_config("restored", &restored_rw))
            .await
            .unwrap();
        let row = c
            .query_one("SELECT count(*), max(i) FROM items", &[])
            .await
            .unwrap();
        (row.get(0), row.get(1))
    });
    let recovery_log: String = std::fs::read_dir(
        local
            .state
            .join("clusters/default/restored/instances/restored-1/log"),
    )
    .into_iter()
    .flatten()
    .flatten()
    .filter_map(|e| std::fs::read_to_string(e.path()).ok())
    .flat_map(|t| {
        t.lines()
            .filter(|l| l.contains("recover") || l.contains("restored") || l.contains("target"))
            .map(str::to_string)
            .collect::<Vec<_>>()
    })
    .collect::<Vec<_>>()
    .join("\n");
    assert_eq!(
        (count, max),
        (20, 20),
        "recovered to {target}\n{recovery_log}\n{}",
        local.logs()
    );
    // It archives under its own name, on a new timeline.
    let last = rt.block_on(switch_wal(&local, "restored", &restored_rw));
    let s = local.wait_for(
        "restored",
        "its own archive",
        Duration::from_secs(120),
        |s| last_archived(s) >= last,
    );
    assert!(s.timeline.unwrap_or(1) > 1, "{s:?}");
    assert!(archiving(&s).is_some_and(|(st, _)| st == "True"));
}

/// Seed 003's form: the barman-cloud plugin with an `ObjectStore` (here on a local directory),
/// and a ScheduledBackup with `immediate` and `method: plugin`.
#[test]
fn plugin_object_store_and_scheduled_backup() {
    let local = Local::new(Path::new(env!("CARGO_BIN_EXE_pgherd")));
    let files = tempfile::tempdir().unwrap();
    let store_dir = files.path().join("store");
    let user = pgherd_testkit::postgres_user();
    user.own_dir(&store_dir, 0o700).unwrap();
    std::fs::set_permissions(
        files.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let m = files.path().join("plugin.yaml");
    std::fs::write(
        &m,
        format!(
            r#"apiVersion: barmancloud.cnpg.io/v1
kind: ObjectStore
metadata:
  name: local-store
spec:
  configuration:
    destinationPath: file://{}
    wal:
      compression: zstd
      maxParallel: 2
    data:
      compression: gzip
      immediateCheckpoint: true
  retentionPolicy: "30d"
---
apiVersion: postgresql.cnpg.io/v1
kind: Cluster
metadata:
  name: plug
spec:
  instances: 1
  imageName: ghcr.io/cloudnative-pg/postgresql:15.14
  storage:
    size: 1Gi
  plugins:
    - name: barman-cloud.cloudnative-pg.io
      isWALArchiver: true
      parameters:
        barmanObjectName: local-store
---
apiVersion: postgresql.cnpg.io/v1
kind: ScheduledBackup
metadata:
  name: plug-daily
spec:
  schedule: "0 0 3 * * *"
  immediate: true
  backupOwnerReference: self
  method: plugin
  pluginConfiguration:
    name: barman-cloud.cloudnative-pg.io
  cluster:
    name: plug
"#,
            store_dir.display()
        ),
    )
    .unwrap();
    local.run_ok(&["up", "-f", m.to_str().unwrap(), "--timeout-seconds", "180"]);
    let s = local.wait_for("plug", "a backup", Duration::from_secs(120), |s| {
        s.last_successful_backup.is_some()
    });
    assert!(s.first_recoverability_point.is_some());
    let backups = local.run_ok(&["get", "backup", "-o", "json"]);
    let text = String::from_utf8_lossy(&backups.stdout);
    assert!(
        text.contains("plug-daily-")
            && text.contains("\"completed\"")
            && text.contains("\"plugin\""),
        "{text}"
    );
    let schedule = local.run_ok(&["get", "scheduledbackup", "plug-daily", "-o", "json"]);
    let schedule: serde_json::Value = serde_json::from_slice(&schedule.stdout).unwrap();
    assert!(
        schedule["status"]["nextScheduleTime"]
            .as_str()
            .is_some_and(|t| t.ends_with("T03:00:00Z")),
        "{schedule}"
    );
    assert!(
        local.control_plane_metrics().contains(
            "pgherd_backups_total{namespace=\"default\",cluster=\"plug\",phase=\"completed\"} 1"
        ),
        "{}",
        local.control_plane_metrics()
    );
    // A new replica from the object store (the latest backup, the archive, then streaming)
    // has what was committed after the backup.
    let rt = pgherd_testkit::runtime();
    let rw = s.endpoints["rw"].clone();
    rt.block_on(async {
        let c = connect(&local.app_config("plug", &rw)).await.unwrap();
        c.batch_execute("CREATE TABLE after_backup (i int); INSERT INTO after_backup VALUES (42)")
            .await
            .unwrap();
    });
    let scaled = std::fs::read_to_string(&m)
        .unwrap()
        .replace("  instances: 1\n", "  instances: 2\n")
        .replace(
            "  name: plug\nspec:",
            "  name: plug\n  annotations:\n    pgherd.io/replica-source: object-store\nspec:",
        );
    std::fs::write(&m, scaled).unwrap();
    local.run_ok(&["apply", "-f", m.to_str().unwrap()]);
    let s = local.wait_for(
        "plug",
        "the second instance",
        Duration::from_secs(120),
        |s| s.ready_instances == 2,
    );
    let manager_log = std::fs::read_to_string(
        local
            .state
            .join("clusters/default/plug/instances/plug-2/manager.log"),
    )
    .unwrap();
    assert!(
        manager_log.contains("replica restored from the object store"),
        "{manager_log}"
    );
    let ro = s.endpoints["ro"].clone();
    let value: i32 = rt.block_on(async {
        let c = connect(&local.app_config("plug", &ro)).await.unwrap();
        c.query_one("SELECT i FROM after_backup", &[])
            .await
            .unwrap()
            .get(0)
    });
    assert_eq!(value, 42);
    // The layout is barman-cloud's: base/<id>/backup.info, data.tar.gz; WAL zstd-compressed.
    let base: Vec<_> = std::fs::read_dir(store_dir.join("plug/base"))
        .unwrap()
        .flatten()
        .collect();
    assert_eq!(base.len(), 1);
    assert!(base[0].path().join("backup.info").is_file());
    assert!(base[0].path().join("data.tar.gz").is_file());

    // Recovering that PostgreSQL 15 Backup into the default image (18) is refused before
    // anything is restored, with the image to use.
    let backups: serde_json::Value = serde_json::from_slice(&backups.stdout).unwrap();
    let backup_name = backups["items"][0]["metadata"]["name"].as_str().unwrap();
    let wrong = files.path().join("wrong-major.yaml");
    std::fs::write(
        &wrong,
        format!("apiVersion: postgresql.cnpg.io/v1\nkind: Cluster\nmetadata:\n  name: wrong-major\nspec:\n  instances: 1\n  storage:\n    size: 1Gi\n  bootstrap:\n    recovery:\n      backup:\n        name: {backup_name}\n"),
    )
    .unwrap();
    local.run_ok(&["apply", "-f", wrong.to_str().unwrap()]);
    local.wait_for(
        "wrong-major",
        "the major mismatch reported",
        Duration::from_secs(60),
        |s| {
            s.instances_status.iter().any(|i| {
                i.error.as_deref().is_some_and(|e| {
                    e.contains("holds PostgreSQL 15 data")
                        && e.contains("ghcr.io/cloudnative-pg/postgresql:15")
                })
            })
        },
    );
}

/// Interoperability: a server archived by `barman-cloud-wal-archive` and backed up by
/// `barman-cloud-backup` (as CloudNativePG does) becomes a pgherd cluster by
/// `bootstrap.recovery`, with every committed row.
#[test]
fn recover_a_cluster_from_barman_cloud() {
    let moto = Moto::start();
    moto.create_bucket("legacy");
    let dir = tempfile::tempdir().unwrap();
    let pg = pgherd_testkit::instance(dir.path(), "legacy");
    pg.initdb(&pgherd_instance_manager::InitDbOptions::default())
        .unwrap();
    pg.write_file("pg_hba.conf", "local all all trust\n")
        .unwrap();
    let archive = format!(
        "env AWS_ACCESS_KEY_ID={ACCESS_KEY} AWS_SECRET_ACCESS_KEY={SECRET_KEY} AWS_DEFAULT_REGION=us-east-1 \
         barman-cloud-wal-archive --endpoint-url {} --gzip s3://legacy/pg legacy %p",
        moto.endpoint()
    );
    pg.write_file(
        "postgresql.auto.conf",
        &format!("listen_addresses = ''\narchive_mode = on\narchive_command = '{archive}'\n"),
    )
    .unwrap();
    let mut child = pg.start().unwrap();
    pg.wait_ready_child(&mut child, Duration::from_secs(60))
        .unwrap();
    let psql = |sql: &str| -> String {
        let out = std::process::Command::new("/usr/lib/postgresql/15/bin/psql")
            .args(["-h", pg.socket_dir.to_str().unwrap(), "-p"])
            .arg(pg.port.to_string())
            .args(["-U", "postgres", "-d", "postgres", "-Atc", sql])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{sql}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    psql("CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t SELECT generate_series(1, 500)");
    let out = std::process::Command::new("barman-cloud-backup")
        .envs(barman_env())
        .args([
            "--cloud-provider",
            "aws-s3",
            "--endpoint-url",
            &moto.endpoint(),
        ])
        .args([
            "-h",
            pg.socket_dir.to_str().unwrap(),
            "-p",
            &pg.port.to_string(),
        ])
        .args(["-U", "postgres", "--gzip", "--name", "by-barman"])
        .args(["s3://legacy/pg", "legacy"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "barman-cloud-backup: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    psql("INSERT INTO t SELECT generate_series(501, 1000)");
    let last = psql("SELECT pg_walfile_name(pg_current_wal_lsn())");
    psql("SELECT pg_switch_wal()");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while psql("SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver") < last {
        assert!(
            std::time::Instant::now() < deadline,
            "barman-cloud-wal-archive did not ship {last}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let _ = pg.stop(
        pgherd_instance_manager::ShutdownMode::Fast,
        Duration::from_secs(30),
    );
    let _ = child.wait();

    let local = Local::new(Path::new(env!("CARGO_BIN_EXE_pgherd")));
    let m = dir.path().join("migrated.yaml");
    let manifest = recovery_manifest("migrated", &moto.endpoint(), "")
        .replace("s3://backups/pg", "s3://legacy/pg")
        .replace("serverName: src", "serverName: legacy");
    std::fs::write(&m, manifest).unwrap();
    local.run_ok(&["up", "-f", m.to_str().unwrap(), "--timeout-seconds", "180"]);
    let s = local.wait_for(
        "migrated",
        "2 ready instances",
        Duration::from_secs(120),
        |s| s.ready_instances == 2,
    );
    assert_eq!(
        superuser_query(&local, &s, "migrated", "SELECT count(*), max(id) FROM t"),
        "1000|1000"
    );

    // By backupID, to the end of that backup (targetImmediate): the 500 rows it holds.
    let list = std::process::Command::new("barman-cloud-backup-list")
        .envs(barman_env())
        .args(["--endpoint-url", &moto.endpoint(), "--format", "json"])
        .args(["s3://legacy/pg", "legacy"])
        .output()
        .unwrap();
    let list: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    let id = list["backups_list"][0]["backup_id"]
        .as_str()
        .unwrap()
        .to_string();
    let manifest = recovery_manifest(
        "by-id",
        &moto.endpoint(),
        &format!("      recoveryTarget:\n        backupID: {id}\n        targetImmediate: true\n"),
    )
    .replace("s3://backups/pg", "s3://legacy/pg")
    .replace("serverName: src", "serverName: legacy")
    .replace("  instances: 2\n", "  instances: 1\n");
    let (_, s) = local.up(dir.path(), "by-id", &manifest, 1);
    assert_eq!(
        superuser_query(&local, &s, "by-id", "SELECT count(*), max(id) FROM t"),
        "500|500"
    );
}

/// `sql` on the cluster's primary as the superuser (peer, over its socket), `a|b` rows.
fn superuser_query(local: &Local, s: &LocalClusterStatus, cluster: &str, sql: &str) -> String {
    let primary = s
        .instances_status
        .iter()
        .find(|i| i.role == "primary")
        .unwrap();
    let run_dir = pgherd_local::sockets::socket_dir(
        &local
            .state
            .join(format!("clusters/default/{cluster}/instances"))
            .join(&primary.name),
    );
    let out = std::process::Command::new("runuser")
        .args(["-u", "postgres", "--", "/usr/lib/postgresql/15/bin/psql"])
        .args([
            "-h",
            run_dir.to_str().unwrap(),
            "-p",
            &primary.port.to_string(),
        ])
        .args(["-d", "postgres", "-Atc", sql])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A cluster written for Azure, run against emulated storage (Azurite) as barman-cloud takes it:
/// the destination `http://HOST:PORT/ACCOUNT/CONTAINER/...` and a connection string from a
/// Secret. WAL is archived there and a backup completes; both are read back from the store.
#[test]
fn archiving_and_backups_to_azure() {
    let azurite = pgherd_testkit::azurite::Azurite::start();
    azurite.create_container("backups");
    let local = Local::new(Path::new(env!("CARGO_BIN_EXE_pgherd")));
    let files = tempfile::tempdir().unwrap();
    let manifest = format!(
        r#"apiVersion: v1
kind: Secret
metadata:
  name: azure-creds
stringData:
  AZURE_CONNECTION_STRING: "{connection}"
---
apiVersion: postgresql.cnpg.io/v1
kind: Cluster
metadata:
  name: az
spec:
  instances: 1
  imageName: ghcr.io/cloudnative-pg/postgresql:15.14
  storage:
    size: 1Gi
  backup:
    barmanObjectStore:
      destinationPath: {url}/backups/pg
      azureCredentials:
        connectionString:
          name: azure-creds
          key: AZURE_CONNECTION_STRING
      wal:
        compression: gzip
      data:
        immediateCheckpoint: true
{GRANT_SWITCH}"#,
        connection = azurite.connection_string(),
        url = azurite.account_url(),
    );
    let (_, s) = local.up(files.path(), "az", &manifest, 1);
    let rw = s.endpoints["rw"].clone();
    let rt = pgherd_testkit::runtime();
    let last = rt.block_on(switch_wal(&local, "az", &rw));
    let s = local.wait_for(
        "az",
        "WAL archived to Azure",
        Duration::from_secs(120),
        |s| last_archived(s) >= last,
    );
    assert_eq!(
        archiving(&s).map(|(status, _)| status).as_deref(),
        Some("True")
    );
    local.run_ok(&["backup", "az", "--backup-name", "az-first"]);
    let backup: serde_json::Value = serde_json::from_slice(
        &local
            .run_ok(&["get", "backup", "az-first", "-o", "json"])
            .stdout,
    )
    .unwrap();
    assert_eq!(backup["status"]["phase"], "completed", "{backup}");

    // Both are in the container, in barman's layout.
    let cfg = pgherd_api::barman::BarmanObjectStoreConfiguration {
        destination_path: format!("{}/backups/pg", azurite.account_url()),
        ..Default::default()
    };
    let mut config = StoreConfig::from_barman(&cfg, &|_| unreachable!()).unwrap();
    config.azure_keys = Some(store::AzureKeys::AccountKey(
        pgherd_testkit::azurite::ACCOUNT_KEY.into(),
    ));
    let store = store::open(&config).unwrap();
    let keys: Vec<String> = rt
        .block_on(store.list("pg/az/"))
        .unwrap()
        .into_iter()
        .map(|o| o.key)
        .collect();
    let id = backup["status"]["backupId"].as_str().unwrap();
    assert!(
        keys.iter()
            .any(|k| k.starts_with("pg/az/wals/") && k.contains(&last)),
        "{last} not in {keys:?}"
    );
    assert!(
        keys.contains(&format!("pg/az/base/{id}/data.tar")),
        "{keys:?}"
    );
    local.run_ok(&["down"]);
}
