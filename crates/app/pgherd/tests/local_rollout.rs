//! `primaryUpdateMethod: switchover`: a rolling restart switches the primary over to a replica
//! instead of restarting it in place (issue: "primaryUpdateMethod: switchover is ignored").
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

use pgherd_testkit::local::{cluster_manifest, connect, Local};
use pgherd_testkit::writer::Writer;
use std::path::Path;
use std::time::Duration;

#[test]
fn a_rolling_restart_switches_the_primary_over_when_asked() {
    let local = Local::new(Path::new(env!("CARGO_BIN_EXE_pgherd")));
    let dir = tempfile::tempdir().unwrap();
    local.up(
        dir.path(),
        "roll",
        &cluster_manifest("roll", 2, "  primaryUpdateMethod: switchover\n"),
        2,
    );
    let before = local.status("roll");
    let old_primary = before.current_primary.clone().unwrap();
    let pid_of = |s: &pgherd_local::status::LocalClusterStatus, name: &str| {
        s.instances_status
            .iter()
            .find(|i| i.name == name)
            .and_then(|i| i.pid)
    };
    let old_pids: Vec<Option<u32>> = before.instances_status.iter().map(|i| i.pid).collect();
    local.run_ok(&["restart", "roll"]);
    let after = local.wait_for(
        "roll",
        "both restarted, primary switched over",
        Duration::from_secs(120),
        |s| {
            s.phase == "Cluster in healthy state"
                && s.ready_instances == 2
                && s.current_primary.as_deref() != Some(old_primary.as_str())
                && s.instances_status
                    .iter()
                    .all(|i| i.pid.is_some() && !old_pids.contains(&i.pid))
        },
    );
    assert_ne!(
        pid_of(&after, &old_primary),
        None,
        "the old primary runs again, as a replica"
    );
}

/// CloudNativePG's image catalogs: a cluster with `imageCatalogRef` runs the catalog's image for
/// its major (`status.image`), and a change of that entry rolls the cluster onto the new image,
/// every instance restarted, while a writer commits through `-rw` and loses nothing.
#[test]
fn a_catalog_change_rolls_the_clusters_that_use_it() {
    let local = Local::new(Path::new(env!("CARGO_BIN_EXE_pgherd")));
    let dir = tempfile::tempdir().unwrap();
    let catalog = |image: &str| {
        format!(
            "apiVersion: postgresql.cnpg.io/v1\nkind: ImageCatalog\nmetadata:\n  name: pg-images\nspec:\n  images:\n    - major: 15\n      image: {image}\n"
        )
    };
    let cluster = cluster_manifest(
        "cat",
        2,
        "  imageCatalogRef:\n    apiGroup: postgresql.cnpg.io\n    kind: ImageCatalog\n    name: pg-images\n    major: 15\n",
    )
    .replace("  imageName: ghcr.io/cloudnative-pg/postgresql:15.14\n", "");
    let first = "ghcr.io/cloudnative-pg/postgresql:15.14";
    let second = "ghcr.io/cloudnative-pg/postgresql:15.15-system-trixie";
    local.up(
        dir.path(),
        "cat",
        &format!("{}---\n{cluster}", catalog(first)),
        2,
    );
    let image = || {
        let out = local.run_ok(&["get", "cluster", "cat", "-o", "json"]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v["status"]["image"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    assert_eq!(image(), first);
    let before = local.status("cat");
    let old_pids: Vec<Option<u32>> = before.instances_status.iter().map(|i| i.pid).collect();

    let rw = before.endpoints["rw"].clone();
    let writer_config = local.app_config("cat", &rw);
    let rt = pgherd_testkit::runtime();
    rt.block_on(pgherd_testkit::writer::prepare(&writer_config))
        .unwrap();
    let writer = Writer::start("catalog", writer_config, Duration::from_millis(10));
    writer.wait_for_progress(10, Duration::from_secs(30));

    let file = dir.path().join("catalog.yaml");
    std::fs::write(&file, catalog(second)).unwrap();
    local.run_ok(&["apply", "-f", file.to_str().unwrap()]);
    local.wait_for(
        "cat",
        "every instance restarted on the new image",
        Duration::from_secs(180),
        |s| {
            s.phase == "Cluster in healthy state"
                && s.ready_instances == 2
                && s.instances_status
                    .iter()
                    .all(|i| i.pid.is_some() && !old_pids.contains(&i.pid))
        },
    );
    assert_eq!(image(), second);
    writer.wait_for_progress(10, Duration::from_secs(60));
    let report = writer.stop();
    let rw = local.status("cat").endpoints["rw"].clone();
    let lost = rt.block_on(async {
        let c = connect(&local.app_config("cat", &rw)).await.unwrap();
        pgherd_testkit::writer::missing(&c, &report).await.unwrap()
    });
    assert!(lost.is_empty(), "acknowledged commits lost: {lost:?}");
    eprintln!(
        "catalog roll: {} commits acknowledged, {} in doubt, longest write gap {:?}",
        report.acknowledged.len(),
        report.failed,
        report.longest_gap()
    );
}

/// `local restart CLUSTER INSTANCE` and `--primary` (the seeds' `kubectl cnpg restart
/// postgres-cluster --primary`): that instance alone restarts, in place (the primary stays
/// the primary), while a writer commits through -rw and loses nothing it was told was
/// committed.
#[test]
fn a_single_instance_restarts_alone() {
    let local = Local::new(Path::new(env!("CARGO_BIN_EXE_pgherd")));
    let dir = tempfile::tempdir().unwrap();
    let (_, before) = local.up(dir.path(), "one", &cluster_manifest("one", 2, ""), 2);
    let primary = before.current_primary.clone().unwrap();
    let replica = before
        .instances_status
        .iter()
        .find(|i| i.name != primary)
        .unwrap()
        .name
        .clone();
    let pid = |s: &pgherd_local::status::LocalClusterStatus, name: &str| {
        s.instances_status
            .iter()
            .find(|i| i.name == name)
            .and_then(|i| i.pid)
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let config = local.app_config("one", &before.endpoints["rw"]);
    rt.block_on(pgherd_testkit::writer::prepare(&config))
        .unwrap();
    let writer = Writer::start("single", config.clone(), Duration::from_millis(10));
    writer.wait_for_progress(5, Duration::from_secs(10));

    // Not an instance of the cluster: refused, naming those that are.
    let out = local.run(&["restart", "one", "7"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(&replica),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The replica by its serial.
    let serial = replica.rsplit('-').next().unwrap();
    local.run_ok(&["restart", "one", serial]);
    let (p0, r0) = (pid(&before, &primary), pid(&before, &replica));
    let s = local.wait_for(
        "one",
        "the replica restarted",
        Duration::from_secs(60),
        |s| s.ready_instances == 2 && pid(s, &replica).is_some_and(|p| Some(p) != r0),
    );
    assert_eq!(pid(&s, &primary), p0, "the primary was not restarted");

    // `--primary`: in place, the same primary afterwards; the replica untouched.
    let r1 = pid(&s, &replica);
    let out = local.run_ok(&["restart", "one", "--primary"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("in-place"));
    let s = local.wait_for(
        "one",
        "the primary restarted",
        Duration::from_secs(60),
        |s| {
            s.ready_instances == 2
                && s.phase == "Cluster in healthy state"
                && pid(s, &primary).is_some_and(|p| Some(p) != p0)
        },
    );
    assert_eq!(s.current_primary.as_deref(), Some(primary.as_str()));
    assert_eq!(pid(&s, &replica), r1, "the replica was not restarted");
    writer.wait_for_progress(5, Duration::from_secs(30));

    let report = writer.stop();
    let missing = rt
        .block_on(async {
            let client = pgherd_testkit::local::connect(&config).await?;
            pgherd_testkit::writer::missing(&client, &report).await
        })
        .unwrap();
    assert!(missing.is_empty(), "acknowledged commits lost: {missing:?}");
}
