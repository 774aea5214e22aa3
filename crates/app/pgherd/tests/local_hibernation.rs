//! Hibernation on the local platform (`pgherd local hibernate on|off`, the
//! `cnpg.io/hibernation` annotation `kubectl cnpg hibernate` writes): every instance's
//! PostgreSQL stops and the data stays; the `cnpg.io/hibernation` condition says `Hibernated`;
//! waking brings the same primary back on the same timeline (no failover), then the replicas,
//! and every commit acknowledged before is there. `local down` then `local up` resumes a
//! cluster, and an instance whose manager cannot start there says why.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

use pgherd_testkit::local::{cluster_manifest, connect, Local};
use pgherd_testkit::writer::{missing, Writer};
use std::path::Path;
use std::time::Duration;

fn hibernation_condition(s: &pgherd_local::status::LocalClusterStatus) -> Option<(String, String)> {
    s.conditions
        .iter()
        .find(|c| c.condition_type == "cnpg.io/hibernation")
        .map(|c| (c.status.clone(), c.reason.clone()))
}

#[test]
fn a_hibernated_cluster_stops_everything_and_wakes_on_the_same_primary() {
    let local = Local::new(Path::new(env!("CARGO_BIN_EXE_pgherd")));
    let dir = tempfile::tempdir().unwrap();
    local.up(dir.path(), "hib", &cluster_manifest("hib", 3, ""), 3);
    let before = local.status("hib");
    let primary = before.current_primary.clone().unwrap();
    let rt = pgherd_testkit::runtime();
    rt.block_on(pgherd_testkit::writer::prepare(
        &local.app_config("hib", &before.endpoints["rw"]),
    ))
    .unwrap();
    let writer = Writer::start(
        "before",
        local.app_config("hib", &before.endpoints["rw"]),
        Duration::from_millis(5),
    );
    writer.wait_for_progress(50, Duration::from_secs(60));
    let report = writer.stop();

    local.run_ok(&["hibernate", "on", "hib"]);
    let asleep = local.wait_for("hib", "hibernated", Duration::from_secs(120), |s| {
        hibernation_condition(s) == Some(("True".into(), "Hibernated".into()))
    });
    assert_eq!(asleep.phase, "Cluster in hibernation");
    assert_eq!(asleep.current_primary.as_deref(), Some(primary.as_str()));
    assert!(
        asleep.instances_status.iter().all(|i| i.pid.is_none()),
        "a PostgreSQL still runs: {:?}",
        asleep.instances_status
    );
    let refused = rt.block_on(async {
        tokio::time::timeout(
            Duration::from_secs(5),
            connect(&local.app_config("hib", &before.endpoints["rw"])),
        )
        .await
        .map(|r| r.is_err())
        .unwrap_or(true)
    });
    assert!(refused, "-rw still answers while hibernated");
    // It stays asleep: no pass starts anything or fails over.
    std::thread::sleep(Duration::from_secs(3));
    let still = local.status("hib");
    assert_eq!(still.current_primary.as_deref(), Some(primary.as_str()));
    assert!(still.instances_status.iter().all(|i| i.pid.is_none()));

    local.run_ok(&["hibernate", "off", "hib"]);
    let awake = local.wait_for("hib", "awake", Duration::from_secs(120), |s| {
        s.phase == "Cluster in healthy state"
            && s.ready_instances == 3
            && hibernation_condition(s).is_none()
    });
    assert_eq!(
        awake.current_primary.as_deref(),
        Some(primary.as_str()),
        "waking failed over"
    );
    assert_eq!(
        awake.timeline, before.timeline,
        "waking changed the timeline"
    );
    let lost = rt.block_on(async {
        let c = connect(&local.app_config("hib", &awake.endpoints["rw"]))
            .await
            .unwrap();
        missing(&c, &report).await.unwrap()
    });
    assert!(lost.is_empty(), "acknowledged commits lost: {lost:?}");
}

#[test]
fn a_resumed_instance_whose_manager_cannot_listen_says_why_and_recovers() {
    let local = Local::new(Path::new(env!("CARGO_BIN_EXE_pgherd")));
    let dir = tempfile::tempdir().unwrap();
    let (file, up) = local.up(dir.path(), "busy", &cluster_manifest("busy", 1, ""), 1);
    let status_endpoint = up.instances_status[0].status_endpoint.clone();
    local.run_ok(&["down"]);
    // Another program took the instance's status port while the cluster was down.
    let taken = std::net::TcpListener::bind(&status_endpoint).unwrap();
    let out = local.run(&[
        "up",
        "-f",
        file.to_str().unwrap(),
        "--timeout-seconds",
        "15",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "busy: busy-1: its instance manager exited: cannot listen on {status_endpoint} (status port of busy-1)"
        )),
        "{stderr}"
    );
    // The port is free again: the next start succeeds and the error is gone.
    drop(taken);
    let healthy = local.wait_for("busy", "healthy again", Duration::from_secs(120), |s| {
        s.ready_instances == 1
    });
    assert!(healthy.instances_status[0].error.is_none(), "{healthy:#?}");
}
