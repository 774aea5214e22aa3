//! Deleting a Cluster removes its data, as CloudNativePG removes its PVCs; `--keep-data` keeps
//! it, and a new Cluster of the same name then refuses to start over it instead of silently
//! coming back with the old data and skipping its bootstrap (seed 000's "Full Cluster Recovery").
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

use pgherd_testkit::local::{cluster_manifest, connect, Local};
use std::path::Path;

fn tables(local: &Local) -> i64 {
    let s = local.status("del");
    pgherd_testkit::runtime().block_on(async {
        let c = connect(&local.app_config("del", &s.endpoints["rw"]))
            .await
            .unwrap();
        c.batch_execute("CREATE TABLE IF NOT EXISTS marker (x int)")
            .await
            .unwrap();
        c.query_one("SELECT count(*) FROM marker", &[])
            .await
            .unwrap()
            .get(0)
    })
}

#[test]
fn deleting_a_cluster_removes_its_data_or_keeps_it_out_of_a_new_ones_way() {
    let local = Local::new(Path::new(env!("CARGO_BIN_EXE_pgherd")));
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = local.up(dir.path(), "del", &cluster_manifest("del", 1, ""), 1);
    let file = path.to_str().unwrap();
    assert_eq!(tables(&local), 0);
    let rt = pgherd_testkit::runtime();
    rt.block_on(async {
        let s = local.status("del");
        let c = connect(&local.app_config("del", &s.endpoints["rw"]))
            .await
            .unwrap();
        c.batch_execute("INSERT INTO marker VALUES (1)")
            .await
            .unwrap();
    });

    // Kept: a new cluster of that name refuses to start over the old data.
    local.run_ok(&["delete", "cluster", "del", "--keep-data"]);
    let kept = local.state.join("clusters/default/del/instances");
    assert!(kept.is_dir());
    let out = local.run(&["apply", "-f", file]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("holds the data of a deleted cluster"),
        "{stderr}"
    );
    assert!(kept.is_dir(), "the kept data is left alone");

    // The user moves it away: a new cluster starts from scratch.
    std::fs::remove_dir_all(local.state.join("clusters/default/del")).unwrap();
    local.run_ok(&["up", "-f", file, "--timeout-seconds", "120"]);
    assert_eq!(tables(&local), 0, "a new cluster, not the old data");

    // Deleted without --keep-data: the data goes with it, and the name is free again.
    local.run_ok(&["delete", "cluster", "del"]);
    assert!(!local.state.join("clusters/default/del").exists());
    local.run_ok(&["up", "-f", file, "--timeout-seconds", "120"]);
    assert_eq!(tables(&local), 0);
}
