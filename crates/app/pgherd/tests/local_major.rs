//! A second PostgreSQL major through the local platform: `imageName` 18.x runs the 18 server
//! binaries `scripts/install.sh` puts in /opt/postgresql/18 (a server-only build: initdb, pg_ctl,
//! postgres). A replica of that major needs pg_basebackup, which that build lacks: the status says
//! so, and the primary keeps serving.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

use pgherd_testkit::local::{connect, Local};
use std::path::Path;
use std::time::Duration;

fn manifest(dir: &Path, instances: u32) -> std::path::PathBuf {
    let path = dir.join(format!("pg18-{instances}.yaml"));
    std::fs::write(
        &path,
        format!("apiVersion: postgresql.cnpg.io/v1\nkind: Cluster\nmetadata:\n  name: pg18\nspec:\n  instances: {instances}\n  imageName: ghcr.io/cloudnative-pg/postgresql:18.4-system-trixie\n  storage:\n    size: 1Gi\n"),
    )
    .unwrap();
    path
}

#[test]
fn postgresql_18_from_the_image_tag() {
    let local = Local::new(Path::new(env!("CARGO_BIN_EXE_pgherd")));
    let files = tempfile::tempdir().unwrap();
    let one = manifest(files.path(), 1);
    local.run_ok(&[
        "up",
        "-f",
        one.to_str().unwrap(),
        "--timeout-seconds",
        "120",
    ]);
    let s = local.status("pg18");
    assert_eq!(s.phase, "Cluster in healthy state");
    let rt = pgherd_testkit::runtime();
    let version: String = rt.block_on(async {
        let c = connect(&local.app_config("pg18", &s.endpoints["rw"]))
            .await
            .unwrap();
        c.query_one("SHOW server_version_num", &[])
            .await
            .unwrap()
            .get(0)
    });
    assert!(version.starts_with("18"), "server_version_num {version}");

    let two = manifest(files.path(), 2);
    local.run_ok(&["apply", "-f", two.to_str().unwrap()]);
    let s = local.wait_for(
        "pg18",
        "the replica's error",
        Duration::from_secs(60),
        |s| {
            s.instances_status.iter().any(|i| {
                i.error
                    .as_deref()
                    .is_some_and(|e| e.contains("pg_basebackup"))
            })
        },
    );
    assert_ne!(s.phase, "Cluster in healthy state");
    assert_eq!(s.current_primary.as_deref(), Some("pg18-1"));
}
