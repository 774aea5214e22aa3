//! In-place major upgrades as CloudNativePG 1.26+ does them, on the local platform: changing a
//! Cluster's image to a higher major stops it, runs `pg_upgrade` (its checks first) on the
//! primary's data, clones the replicas again, and reports "Upgrading Postgres major version"
//! and `pgDataImageInfo`. A downgrade is refused when applied; a failed upgrade leaves the
//! cluster running its old major on unchanged data, and a restart retries it.
//! 15 is Debian's (complete); the upgrade runs with PyPI's complete 18 tool set
//! (`/opt/postgresql/tools-18`), the upgraded cluster on npm's 18 server (with TLS).
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

mod chaos;
use chaos::{healthy, instance_dir, kill_node, manifest_full, start_with, under_load, CLUSTER};
use pgherd_local::status::LocalClusterStatus;
use pgherd_testkit::local::{connect, Local};
use std::path::Path;
use std::time::Duration;

const FROM: &str = "ghcr.io/cloudnative-pg/postgresql:15";
const TO: &str = "ghcr.io/cloudnative-pg/postgresql:18";
const MAJOR_UPGRADE: &str = "Upgrading Postgres major version";
const ROLE_PASSWORD: &str = "alice-Secret-1";

/// The test cluster on `image`, with a managed role (password from a Secret) and
/// `pg_stat_statements` managed by its parameters.
fn write_manifest(dir: &Path, image: &str, instances: u32) -> std::path::PathBuf {
    let path = manifest_full(
        dir,
        "",
        image,
        "    parameters:\n      pg_stat_statements.max: \"1000\"\n  managed:\n    roles:\n      - name: alice\n        ensure: present\n        login: true\n        passwordSecret:\n          name: alice-password\n",
    );
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("instances: 3", &format!("instances: {instances}"));
    let text = if instances == 1 {
        // No synchronous standby to wait for.
        text.replace("    synchronous:\n      method: any\n      number: 1\n", "")
    } else {
        text
    };
    std::fs::write(
        &path,
        format!("{text}---\napiVersion: v1\nkind: Secret\nmetadata:\n  name: alice-password\ntype: kubernetes.io/basic-auth\nstringData:\n  username: alice\n  password: {ROLE_PASSWORD}\n"),
    )
    .unwrap();
    path
}

fn apply(local: &Local, file: &Path) -> std::process::Output {
    local.run(&["apply", "-f", file.to_str().unwrap()])
}

fn sql(local: &Local, addr: &str, statements: &str) {
    let rt = pgherd_testkit::runtime();
    rt.block_on(async {
        let c = connect(&local.app_config(CLUSTER, addr)).await.unwrap();
        c.batch_execute(statements).await.unwrap();
    });
}

/// `server_version_num` and the rows of `t` at `addr`.
fn version_and_rows(local: &Local, addr: &str) -> (String, i64) {
    let rt = pgherd_testkit::runtime();
    rt.block_on(async {
        let c = connect(&local.app_config(CLUSTER, addr)).await.unwrap();
        let v: String = c
            .query_one("SHOW server_version_num", &[])
            .await
            .unwrap()
            .get(0);
        let n: i64 = c
            .query_one("SELECT count(*) FROM t", &[])
            .await
            .unwrap()
            .get(0);
        (v, n)
    })
}

/// Wait until the cluster is healthy on `major`'s data, noting whether the upgrade phase was
/// seen on the way.
fn healthy_on(local: &Local, major: i64, ready: usize) -> (LocalClusterStatus, bool) {
    let seen = std::cell::Cell::new(false);
    let s = local.wait_for(
        CLUSTER,
        &format!("healthy on PostgreSQL {major}"),
        Duration::from_secs(300),
        |s| {
            if s.phase == MAJOR_UPGRADE {
                seen.set(true);
            }
            s.phase == chaos::HEALTHY
                && s.ready_instances == ready
                && s.pg_data_image_info
                    .as_ref()
                    .is_some_and(|d| d.major_version == major)
        },
    );
    (s, seen.get())
}

#[test]
fn upgrade_15_to_18_keeps_data_and_roles_and_stays_highly_available() {
    let started = start_with(|dir| write_manifest(dir, FROM, 3));
    let local = &started.local;
    let s = healthy(local);
    assert_eq!(
        s.pg_data_image_info.as_ref().map(|d| d.major_version),
        Some(15),
        "{s:#?}"
    );
    let rw = s.endpoints["rw"].clone();
    sql(
        local,
        &rw,
        "CREATE TABLE t (id int PRIMARY KEY, v text); \
         INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, 1000) g;",
    );

    let file = write_manifest(started.files.path(), TO, 3);
    let out = apply(local, &file);
    assert!(out.status.success(), "{out:?}");
    let (s, saw_phase) = healthy_on(local, 18, 3);
    assert!(saw_phase, "the phase {MAJOR_UPGRADE:?} was never shown");
    assert_eq!(s.pg_data_image_info.as_ref().unwrap().image, TO);

    // The primary and both re-cloned replicas run 18 with every row.
    for i in &s.instances_status {
        assert!(i.ready, "{i:?}");
        let (version, rows) = version_and_rows(local, &format!("{}:{}", i.host, i.port));
        assert!(version.starts_with("18"), "{}: {version}", i.name);
        assert_eq!(rows, 1000, "{}", i.name);
    }
    assert_eq!(
        s.instances_status
            .iter()
            .filter(|i| i.role == "replica")
            .count(),
        2,
        "{s:#?}"
    );
    // The managed role logs in with its password (SCRAM verifier carried over), the managed
    // extension is still there, the application role owns its database.
    let rt = pgherd_testkit::runtime();
    rt.block_on(async {
        let mut alice = local.app_config(CLUSTER, &rw);
        alice
            .user("alice")
            .password(ROLE_PASSWORD)
            .dbname("postgres");
        let c = connect(&alice)
            .await
            .expect("alice logs in after the upgrade");
        let v: String = c
            .query_one("SHOW server_version_num", &[])
            .await
            .unwrap()
            .get(0);
        assert!(v.starts_with("18"), "{v}");
        let app = connect(&local.app_config(CLUSTER, &rw)).await.unwrap();
        let n: i64 = app
            .query_one(
                "SELECT count(*) FROM pg_extension WHERE extname = 'pg_stat_statements'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(n, 1);
    });
    // CloudNativePG's status: pgDataImageInfo, no target left.
    let out = local.run_ok(&["get", "cluster", CLUSTER, "-o", "json"]);
    let got: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let status = &got["status"];
    assert_eq!(status["pgDataImageInfo"]["majorVersion"], 18, "{status:#}");
    assert_eq!(status["pgDataImageInfo"]["image"], TO, "{status:#}");
    assert!(status.get("targetPGDataImageInfo").is_none(), "{status:#}");
    // The old data was kept until the upgraded cluster was healthy, then removed by the
    // instances' managers.
    for i in &s.instances_status {
        local.eventually(&format!("{}'s old data removed", i.name), 60, || {
            (!instance_dir(local, &i.name)
                .join("pgdata.major-15")
                .exists())
            .then_some(())
        });
    }

    // Highly available on 18: a failover under a writer loses nothing acknowledged.
    under_load(
        local,
        "after the upgrade: kill the primary's node",
        |primary| kill_node(local, primary),
    );
    healthy(local);

    // Back to 15: refused, with the reason.
    let file = write_manifest(started.files.path(), FROM, 3);
    let out = apply(local, &file);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("spec.imageName: can't downgrade from major 18 to 15"),
        "{stderr}"
    );
}

#[test]
fn a_failed_upgrade_keeps_the_old_major_running_and_a_restart_retries_it() {
    let started = start_with(|dir| write_manifest(dir, FROM, 1));
    let local = &started.local;
    let s = local.wait_for(CLUSTER, "healthy", Duration::from_secs(120), |s| {
        s.phase == chaos::HEALTHY && s.ready_instances == 1
    });
    let rw = s.endpoints["rw"].clone();
    // pg_upgrade's checks refuse reg* types in user tables.
    sql(
        local,
        &rw,
        "CREATE TABLE t (id int); INSERT INTO t SELECT generate_series(1, 10); \
         CREATE TABLE blocker (f regproc);",
    );
    let file = write_manifest(started.files.path(), TO, 1);
    assert!(apply(local, &file).status.success());
    let s = local.wait_for(
        CLUSTER,
        "the failed upgrade, the old major running",
        Duration::from_secs(300),
        |s| {
            s.phase_reason
                .as_deref()
                .is_some_and(|r| r.contains("failed"))
                && s.ready_instances == 1
        },
    );
    let reason = s.phase_reason.clone().unwrap();
    assert_eq!(s.phase, MAJOR_UPGRADE);
    assert!(reason.contains("reg*"), "{reason}");
    assert!(reason.contains("runs PostgreSQL 15"), "{reason}");
    assert_eq!(s.pg_data_image_info.as_ref().unwrap().major_version, 15);
    let (version, rows) = version_and_rows(local, &rw);
    assert!(version.starts_with("15"), "{version}");
    assert_eq!(rows, 10);
    // The old data was never touched nor moved.
    assert!(!instance_dir(local, "ha-1").join("pgdata.major-15").exists());

    // Fixed, then retried by a restart.
    sql(local, &rw, "DROP TABLE blocker;");
    local.run_ok(&["restart", CLUSTER]);
    let (_, _) = healthy_on(local, 18, 1);
    let s = local.status(CLUSTER);
    assert!(s.phase_reason.is_none(), "{s:#?}");
    let (version, rows) = version_and_rows(local, &s.endpoints["rw"]);
    assert!(version.starts_with("18"), "{version}");
    assert_eq!(rows, 10);
}
