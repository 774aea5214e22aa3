//! A network partition isolating the primary. Each instance runs in its own network namespace
//! (created and removed by this test, joined by a bridge on the host, where the control plane
//! and the -rw endpoint live); cutting the primary's link isolates it from the controller, the
//! endpoints and its replicas at once.
//!
//! Under a writer through -rw, a probe writer on every instance, and one more probe *inside*
//! the primary's namespace (a client on the isolated side): a replica takes over, the isolated
//! primary acknowledges nothing once the new primary has, no acknowledged commit is lost, and
//! when the link comes back the old primary rejoins as a replica without a human.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

mod chaos;

use chaos::*;
use pgherd_testkit::local::Local;
use pgherd_testkit::writer::Writer;
use std::path::Path;
use std::time::{Duration, Instant};

#[test]
fn a_partitioned_primary_is_replaced_and_rejoins() {
    let net = Network::create(3);
    let local = Local::new(Path::new(env!("CARGO_BIN_EXE_pgherd")));
    let files = tempfile::tempdir().unwrap();
    let m = manifest_annotated(
        files.path(),
        &format!("    pgherd.io/netns-prefix: {}\n", net.prefix),
    );
    local.run_ok(&["up", "-f", m.to_str().unwrap(), "--timeout-seconds", "180"]);
    let s = healthy(&local);
    for i in &s.instances_status {
        assert_eq!(
            i.host,
            format!("{}.{}", net.subnet, serial(&i.name)),
            "{} listens in its own namespace",
            i.name
        );
    }
    // CI cuts once; PGHERD_CHAOS_ROUNDS=N cuts N times (each time the current primary).
    let rounds: usize = std::env::var("PGHERD_CHAOS_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(1);
    for _ in 0..rounds {
        partition_round(&local, &net);
    }
}

/// Cut the current primary's link under the writers, let a replica take over, heal, check.
fn partition_round(local: &Local, net: &Network) {
    let s = healthy(local);
    let primary = s.current_primary.clone().unwrap();
    let primary_status = s
        .instances_status
        .iter()
        .find(|i| i.name == primary)
        .unwrap();
    let old_postmaster = primary_status.pid.unwrap();

    let mut writers = Writers::start(local, &s);
    // A client on the primary's side of the partition.
    let inside = Writer::start_in(
        "inside",
        local.app_config(
            CLUSTER,
            &format!("{}:{}", primary_status.host, primary_status.port),
        ),
        Duration::from_millis(20),
        Some(net.namespace(serial(&primary))),
    );
    writers.rw.wait_for_progress(20, Duration::from_secs(20));
    inside.wait_for_progress(5, Duration::from_secs(20));

    let cut = Instant::now();
    net.link(serial(&primary), false);
    // When the isolated primary's PostgreSQL stops (by its own lease, or fenced).
    let stopped = std::thread::spawn(move || {
        while pgherd_instance_manager::process::is_alive(old_postmaster) {
            assert!(
                cut.elapsed() < Duration::from_secs(60),
                "the isolated primary's PostgreSQL still runs"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        cut.elapsed()
    });
    let after = local.wait_for(
        CLUSTER,
        "a failover away from the isolated primary",
        Duration::from_secs(60),
        |s| s.current_primary.as_deref().is_some_and(|p| p != primary),
    );
    let promoted = cut.elapsed();
    let stopped = stopped.join().unwrap();
    writers.rw.wait_for_progress(20, Duration::from_secs(60));
    // Some time with the new primary serving while the old one is still cut off.
    std::thread::sleep(Duration::from_secs(3));
    net.link(serial(&primary), true);

    let inside = inside.stop();
    writers.probes.push(Writer::start(
        "after-heal",
        local.app_config(CLUSTER, &after.endpoints["rw"]),
        Duration::from_millis(50),
    ));
    let report = writers.stop_and_check(local);
    let first_new = report
        .acknowledged
        .iter()
        .find(|(_, at)| *at > cut)
        .map(|(_, at)| *at)
        .expect("a commit through -rw after the partition");
    // Never two writable primaries: nothing the isolated side acknowledged came after the
    // new primary's first commit.
    let late: Vec<i64> = inside
        .acknowledged
        .iter()
        .filter(|(_, at)| *at >= first_new)
        .map(|(seq, _)| *seq)
        .collect();
    assert!(
        late.is_empty(),
        "the isolated primary acknowledged {late:?} after the new primary's first commit"
    );
    // Every acknowledged commit of the isolated side survived too.
    let rt = pgherd_testkit::runtime();
    let healed = healthy(local);
    rt.block_on(async {
        let c = pgherd_testkit::local::connect(&local.app_config(CLUSTER, &healed.endpoints["rw"]))
            .await
            .unwrap();
        let lost = pgherd_testkit::writer::missing(&c, &inside).await.unwrap();
        assert!(
            lost.is_empty(),
            "inside: acknowledged commits lost: {lost:?}"
        );
    });
    let old = healed
        .instances_status
        .iter()
        .find(|i| i.name == primary)
        .unwrap();
    assert_eq!(old.role, "replica", "{primary} rejoined as a replica");
    if std::env::var_os("PGHERD_TEST_LOGS").is_some() {
        eprintln!("{}", local.logs());
    }
    eprintln!(
        "partition of {primary}: new primary {} promoted {promoted:?} after the cut; old PostgreSQL stopped {:?} after the cut; longest write gap {:?}; {} commits acknowledged, {} in doubt; isolated side: {} acknowledged before the cut, {} failed",
        after.current_primary.as_deref().unwrap_or("-"),
        stopped,
        report.longest_gap(),
        report.acknowledged.len(),
        report.failed,
        inside.acknowledged.len(),
        inside.failed,
    );
}
