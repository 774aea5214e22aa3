//! One cluster's trouble never holds up another cluster (issue 13, item 4): a cluster whose
//! object store accepts connections and never answers must not delay another cluster's
//! failover, nor keep the control plane from renewing the lease of a 2-instance cluster's
//! primary whose replica is down (that primary would stop itself: it can reach neither the
//! controller nor a majority).
//!
//! Each cluster has its own task in the control plane; the backup catalog is read beside the
//! passes. Before, one sequential loop waited up to 30 s on the catalog of a new cluster.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

mod chaos;

use chaos::*;
use pgherd_testkit::local::{cluster_manifest, connect, Local};
use pgherd_testkit::writer::{self, Writer};
use std::io::Write as _;
use std::net::TcpListener;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const PAIR: &str = "pair";
/// Synchronous replication (`dataDurability: required`): only then is a failover after a
/// killed primary bound to keep every acknowledged commit. Asynchronous, the killed primary
/// may take its last commits with it, as with CloudNativePG.
const PAIR_SPEC: &str =
    "  postgresql:\n    synchronous:\n      method: any\n      number: 1\n      dataDurability: required\n";

/// An "object store" that accepts every connection and never says a word. Returns its URL
/// and the number of connections accepted so far.
fn silent_store() -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().flatten() {
            counter.fetch_add(1, Ordering::Relaxed);
            held.push(stream);
        }
    });
    (url, accepted)
}

/// A one-instance cluster whose backups go to `url`.
fn stuck_cluster(dir: &Path, name: &str, url: &str) -> String {
    let path = dir.join(format!("{name}.yaml"));
    let mut f = std::fs::File::create(&path).unwrap();
    write!(
        f,
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: {name}-creds\nstringData:\n  ACCESS_KEY_ID: key\n  ACCESS_SECRET_KEY: secret\n---\n{}",
        cluster_manifest(
            name,
            1,
            &format!("  backup:\n    barmanObjectStore:\n      destinationPath: s3://never/{name}\n      endpointURL: {url}\n      s3Credentials:\n        accessKeyId:\n          name: {name}-creds\n          key: ACCESS_KEY_ID\n        secretAccessKey:\n          name: {name}-creds\n          key: ACCESS_SECRET_KEY\n"),
        )
    )
    .unwrap();
    path.to_str().unwrap().to_string()
}

fn pair_dir(local: &Local, instance: &str) -> std::path::PathBuf {
    local
        .state
        .join(format!("clusters/default/{PAIR}/instances/{instance}"))
}

/// Freeze (or thaw) an instance: its manager and its whole PostgreSQL.
fn freeze(local: &Local, instance: &str, on: bool) {
    let dir = pair_dir(local, instance);
    let sig = if on {
        nix::sys::signal::Signal::SIGSTOP
    } else {
        nix::sys::signal::Signal::SIGCONT
    };
    signal(pid_in(&dir.join("manager.pid")), false, sig);
    signal(pid_in(&dir.join("pgdata/postmaster.pid")), true, sig);
}

/// Apply a cluster with a silent object store; returns once the store has been contacted.
fn apply_stuck(local: &Local, dir: &Path, name: &str) {
    let (url, accepted) = silent_store();
    local.run_ok(&["apply", "-f", &stuck_cluster(dir, name, &url)]);
    let deadline = Instant::now() + Duration::from_secs(60);
    while accepted.load(Ordering::Relaxed) == 0 {
        assert!(
            Instant::now() < deadline,
            "{name} never contacted its object store\n{}",
            local.logs()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_silent_object_store_holds_up_no_other_cluster() {
    let _serial = exclusive();
    let local = Local::new(Path::new(env!("CARGO_BIN_EXE_pgherd")));
    let files = tempfile::tempdir().unwrap();
    let (_, s) = local.up(files.path(), PAIR, &cluster_manifest(PAIR, 2, PAIR_SPEC), 2);
    let primary = s.current_primary.clone().unwrap();
    let replica = s
        .instances_status
        .iter()
        .find(|i| i.name != primary)
        .unwrap()
        .name
        .clone();
    let config = local.app_config(PAIR, &s.endpoints["rw"]);
    pgherd_testkit::runtime()
        .block_on(writer::prepare(&config))
        .unwrap();
    let rw = Writer::start("rw", config.clone(), Duration::from_millis(10));
    rw.wait_for_progress(20, Duration::from_secs(20));

    // 1. The replica is frozen: the primary keeps its lease only through the control plane,
    //    which meanwhile meets a cluster whose object store never answers. (Commits wait for
    //    the frozen synchronous standby meanwhile; the primary must still be up and primary.)
    freeze(&local, &replica, true);
    apply_stuck(&local, files.path(), "stuck-a");
    // Longer than the primary's lease: an unrenewed lease would have stopped it by now.
    let lease = pgherd_controller::ha::PRIMARY_LEASE;
    std::thread::sleep(lease * 2);
    pgherd_testkit::runtime().block_on(async {
        let c = connect(&config).await.expect("the primary stopped serving");
        let row = c
            .query_one("SELECT pg_is_in_recovery()", &[])
            .await
            .unwrap();
        assert!(!row.get::<_, bool>(0), "the primary is no longer primary");
    });
    let log = std::fs::read_to_string(pair_dir(&local, &primary).join("manager.log")).unwrap();
    assert!(
        !log.contains("lease expired"),
        "the primary stopped itself:\n{}",
        local.logs()
    );
    freeze(&local, &replica, false);
    local.wait_for(PAIR, "both ready", Duration::from_secs(60), |s| {
        s.ready_instances == 2 && s.phase == HEALTHY
    });
    rw.wait_for_progress(20, Duration::from_secs(30));

    // 2. The primary's node dies while another new cluster's object store is silent: the
    //    failover happens as it would alone (seconds, not the catalog's 30 s time limit).
    apply_stuck(&local, files.path(), "stuck-b");
    let fault = {
        let dir = pair_dir(&local, &primary);
        let manager = pid_in(&dir.join("manager.pid"));
        let postmaster = pid_in(&dir.join("pgdata/postmaster.pid"));
        signal(manager, false, nix::sys::signal::Signal::SIGSTOP);
        let at = Instant::now();
        pgherd_instance_manager::process::kill_tree(u32::try_from(postmaster).unwrap());
        signal(manager, false, nix::sys::signal::Signal::SIGKILL);
        at
    };
    let after = local.wait_for(PAIR, "the replica promoted", Duration::from_secs(15), |s| {
        s.current_primary.as_deref() == Some(replica.as_str())
            && s.instances_status
                .iter()
                .any(|i| i.name == replica && i.ready && i.role == "primary")
    });
    eprintln!(
        "failover to {} {:?} after the fault",
        after.current_primary.as_deref().unwrap_or("-"),
        fault.elapsed()
    );
    rw.wait_for_progress(20, Duration::from_secs(30));
    let report = rw.stop();
    let healthy = local.wait_for(PAIR, "healthy again", Duration::from_secs(120), |s| {
        s.ready_instances == 2 && s.phase == HEALTHY
    });
    pgherd_testkit::runtime().block_on(async {
        let c = connect(&local.app_config(PAIR, &healthy.endpoints["rw"]))
            .await
            .unwrap();
        let lost = writer::missing(&c, &report).await.unwrap();
        assert!(lost.is_empty(), "acknowledged commits lost: {lost:?}");
    });
}
