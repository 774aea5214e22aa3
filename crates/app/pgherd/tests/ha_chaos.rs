//! HA under faults, through the CLI with real PostgreSQL: a 3-instance cluster with quorum
//! synchronous replication (ANY 1), a writer committing through `-rw`, and a probe writer on
//! every instance's own port. After each fault the cluster must heal without a human, and
//! every acknowledged commit (the writer's and every probe's) must be on the final primary:
//! a probe write acknowledged by an old primary after a new one was promoted would be missing,
//! so this also proves there were never two writable primaries.
//!
//! Faults: kill -9 of the primary's instance manager and PostgreSQL together; kill -9 of the
//! primary's postmaster alone; SIGSTOP of the primary's PostgreSQL (longer than detection),
//! then SIGCONT; a switchover (`local promote`).
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

mod chaos;

use chaos::*;
use pgherd_testkit::local::{connect, Local};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[test]
fn failover_switchover_and_fencing_under_a_writer() {
    // Bound by name, every field: the guard and the directory must live to the end.
    let Started {
        _serial,
        local,
        files: _files,
        manifest: _m,
    } = start();
    let s = healthy(&local);
    assert_eq!(
        s.current_primary.as_deref(),
        Some("ha-1"),
        "{}",
        local.logs()
    );

    // CI runs each fault once; PGHERD_CHAOS_ROUNDS=N repeats the sequence N times.
    let rounds: usize = std::env::var("PGHERD_CHAOS_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(1);
    for round in 1..=rounds {
        eprintln!("round {round}/{rounds}");
        under_load(&local, "kill -9 manager+postgres", |primary| {
            kill_node(&local, primary)
        });
        // Normally a failover; when the replicas' reports are late (a loaded machine) the quorum
        // rule cannot compare them, and the node is restarted in place instead: both keep every
        // acknowledged commit, which under_load checked.

        under_load(&local, "kill -9 postmaster", |primary| {
            let dir = instance_dir(&local, primary);
            let postmaster = pid_in(&dir.join("pgdata/postmaster.pid"));
            let at = Instant::now();
            signal(postmaster, false, nix::sys::signal::Signal::SIGKILL);
            at
        });

        under_load(&local, "SIGSTOP postgres 5s", |primary| {
            // The whole instance freezes: the postmaster and every PostgreSQL process it started.
            let dir = instance_dir(&local, primary);
            let postmaster = pid_in(&dir.join("pgdata/postmaster.pid"));
            let pm = u32::try_from(postmaster).unwrap();
            let at = Instant::now();
            signal(postmaster, false, nix::sys::signal::Signal::SIGSTOP);
            let frozen = pgherd_instance_manager::process::children(pm);
            for child in &frozen {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(i32::try_from(*child).unwrap()),
                    nix::sys::signal::Signal::SIGSTOP,
                );
            }
            std::thread::sleep(Duration::from_secs(5));
            // Resuming must not let the old primary accept a write: it was fenced meanwhile.
            for pid in std::iter::once(pm).chain(frozen) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(i32::try_from(pid).unwrap()),
                    nix::sys::signal::Signal::SIGCONT,
                );
            }
            at
        });

        under_load(&local, "switchover", |primary| {
            let s = local.status(CLUSTER);
            let target = s
                .instances_status
                .iter()
                .find(|i| i.name != primary && i.ready)
                .map(|i| i.name.clone())
                .unwrap();
            let at = Instant::now();
            local.run_ok(&["promote", CLUSTER, &target]);
            at
        });
    }
    // The control plane counted them.
    let metrics = local.control_plane_metrics();
    let count = |name: &str, labels: &str| {
        pgherd_testkit::metrics::value(&metrics, name, labels).unwrap_or(0.0)
    };
    assert!(count("pgherd_switchovers_total", "") >= 1.0, "{metrics}");
    assert!(count("pgherd_failovers_total", "") >= 1.0, "{metrics}");
    assert!(
        count("controller_runtime_reconcile_total", "result=\"success\"") > 10.0,
        "{metrics}"
    );

    // Fencing: a fenced replica stops and stays stopped; unfencing brings it back.
    let s = healthy(&local);
    let replica = s
        .instances_status
        .iter()
        .find(|i| i.role == "replica")
        .map(|i| i.name.clone())
        .unwrap();
    local.run_ok(&["fence", CLUSTER, &replica]);
    local.wait_for(
        CLUSTER,
        "the fenced replica to stop",
        Duration::from_secs(30),
        |s| {
            s.instances_status
                .iter()
                .any(|i| i.name == replica && i.pid.is_none() && !i.ready)
        },
    );
    std::thread::sleep(Duration::from_secs(2));
    assert!(!local
        .status(CLUSTER)
        .instances_status
        .iter()
        .any(|i| i.name == replica && i.ready));
    local.run_ok(&["unfence", CLUSTER, &replica]);
    let s = healthy(&local);

    // A fenced primary is not failed over; its replicas keep running and, once it is more than
    // a reconnection, say why they do not stream.
    let primary = s.current_primary.clone().unwrap();
    local.run_ok(&["fence", CLUSTER, &primary]);
    let s = local.wait_for(
        CLUSTER,
        "the replicas to report that they do not stream",
        Duration::from_secs(60),
        |s| {
            s.instances_status
                .iter()
                .filter(|i| i.name != primary)
                .all(|i| {
                    i.error
                        .as_deref()
                        .is_some_and(|e| e.contains(&format!("not streaming from {primary}")))
                })
        },
    );
    assert_eq!(s.current_primary.as_deref(), Some(primary.as_str()));
    assert_eq!(s.target_primary.as_deref(), Some(primary.as_str()));
    local.run_ok(&["unfence", CLUSTER, &primary]);
    let s = healthy(&local);
    assert!(
        s.instances_status.iter().all(|i| i.error.is_none()),
        "{s:#?}"
    );
}

/// The manifest with `dataDurability` set.
fn manifest_with_durability(dir: &Path, durability: &str) -> PathBuf {
    let path = dir.join(format!("ha-{durability}.yaml"));
    let text = std::fs::read_to_string(manifest(dir)).unwrap().replace(
        "      number: 1\n",
        &format!("      number: 1\n      dataDurability: {durability}\n"),
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// Whether one INSERT through -rw commits within `wait`.
fn commits_within(local: &Local, wait: Duration) -> bool {
    let s = local.status(CLUSTER);
    let rt = pgherd_testkit::runtime();
    rt.block_on(async {
        let Ok(c) = connect(&local.app_config(CLUSTER, &s.endpoints["rw"])).await else {
            return false;
        };
        let insert = c.execute(
            "INSERT INTO pgherd_writes (source, seq) VALUES ('durability', (SELECT count(*) FROM pgherd_writes))",
            &[],
        );
        // Dropping the connection on timeout abandons the commit without acknowledging it.
        matches!(tokio::time::timeout(wait, insert).await, Ok(Ok(_)))
    })
}

#[test]
fn control_plane_killed_mid_failover_and_synchronous_durability() {
    // Bound by name, every field: the guard and the directory must live to the end.
    let Started {
        _serial,
        local,
        files,
        manifest: m,
    } = start();

    // The control plane dies as soon as the failover has started; a new one finishes it.
    under_load(&local, "control plane killed mid-failover", |primary| {
        let at = kill_node(&local, primary);
        let deadline = Instant::now() + Duration::from_secs(10);
        while local.status(CLUSTER).target_primary.as_deref() == Some(primary) {
            assert!(
                Instant::now() < deadline,
                "the failover did not start\n{}",
                local.logs()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        let control_plane = pid_in(&local.state.join("control-plane.pid"));
        signal(control_plane, false, nix::sys::signal::Signal::SIGKILL);
        local.run_ok(&["up", "-f", m.to_str().unwrap(), "--detach"]);
        at
    });

    // required: with every synchronous standby fenced, commits wait rather than lose
    // durability; they complete when a standby is back.
    let s = healthy(&local);
    let replicas: Vec<String> = s
        .instances_status
        .iter()
        .filter(|i| i.role == "replica")
        .map(|i| i.name.clone())
        .collect();
    assert!(commits_within(&local, Duration::from_secs(10)));
    fence_all(&local, &replicas, true);
    assert!(
        !commits_within(&local, Duration::from_secs(2)),
        "required: a commit must wait for a synchronous standby"
    );
    fence_all(&local, &replicas, false);
    healthy(&local);
    assert!(commits_within(&local, Duration::from_secs(10)));

    // preferred: the same loss degrades to asynchronous; commits go on.
    let preferred = manifest_with_durability(files.path(), "preferred");
    local.run_ok(&["apply", "-f", preferred.to_str().unwrap()]);
    fence_all(&local, &replicas, true);
    let deadline = Instant::now() + Duration::from_secs(15);
    while !commits_within(&local, Duration::from_secs(2)) {
        assert!(
            Instant::now() < deadline,
            "preferred: commits must go on without standbys"
        );
    }
    fence_all(&local, &replicas, false);
    healthy(&local);
}

fn send_signal(pid: i32, sig: nix::sys::signal::Signal) {
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig);
}

/// Whether a commit directly on `port` (bypassing -rw) succeeds within `wait`.
fn commits_on(local: &Local, port: u16, wait: Duration) -> bool {
    let rt = pgherd_testkit::runtime();
    rt.block_on(async {
        let config = local.app_config(CLUSTER, &format!("127.0.0.1:{port}"));
        let attempt = async {
            let c = connect(&config).await.ok()?;
            c.execute(
                "INSERT INTO pgherd_writes (source, seq) VALUES ('lease', (SELECT count(*) FROM pgherd_writes))",
                &[],
            )
            .await
            .ok()
        };
        matches!(tokio::time::timeout(wait, attempt).await, Ok(Some(_)))
    })
}

#[test]
fn an_isolated_primary_stops_by_itself_and_resumes() {
    use nix::sys::signal::Signal;
    // Bound by name, every field: the guard and the directory must live to the end.
    let Started {
        _serial,
        local,
        files: _files,
        manifest: _m,
    } = start();
    let s = healthy(&local);
    let primary = s.current_primary.clone().unwrap();
    let primary_port = s
        .instances_status
        .iter()
        .find(|i| i.name == primary)
        .unwrap()
        .port;
    let writers = Writers::start(&local, &s);
    writers.rw.wait_for_progress(20, Duration::from_secs(20));
    let lease = pgherd_controller::ha::PRIMARY_LEASE;

    // The controller is gone (frozen): the replicas still stream from the primary, a
    // majority, so it keeps serving well past its lease.
    let control_plane = pid_in(&local.state.join("control-plane.pid"));
    send_signal(control_plane, Signal::SIGSTOP);
    std::thread::sleep(lease * 2);
    assert!(
        commits_on(&local, primary_port, Duration::from_secs(5)),
        "with its replicas, the primary keeps serving while the controller is away"
    );

    // Its peers' managers go silent too: isolated, it must stop accepting writes on its own
    // within its lease.
    let peers: Vec<i32> = s
        .instances_status
        .iter()
        .filter(|i| i.name != primary)
        .map(|i| pid_in(&instance_dir(&local, &i.name).join("manager.pid")))
        .collect();
    for p in &peers {
        send_signal(*p, Signal::SIGSTOP);
    }
    let isolated = Instant::now();
    let deadline = isolated + lease + Duration::from_secs(2);
    while commits_on(&local, primary_port, Duration::from_millis(500)) {
        assert!(
            Instant::now() < deadline,
            "the isolated primary still accepts writes {:?} after losing everyone",
            isolated.elapsed()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!(
        "isolated primary stopped accepting writes {:?} after isolation (lease {lease:?})",
        isolated.elapsed()
    );
    // A refused commit under load may be a slow connection, not a stop: past the lease (and
    // the margin), no commit may succeed any more.
    std::thread::sleep(deadline.saturating_duration_since(Instant::now()));
    assert!(
        !commits_on(&local, primary_port, Duration::from_secs(1)),
        "the isolated primary accepts writes {:?} after losing everyone",
        isolated.elapsed()
    );

    // Any local user can reach the status endpoint. A lease renewal without the controller's
    // token is refused: it used to make the isolated primary writable again (two primaries in a
    // real partition).
    let endpoint = s
        .instances_status
        .iter()
        .find(|i| i.name == primary)
        .unwrap()
        .status_endpoint
        .clone();
    let until = Instant::now() + lease * 2;
    while Instant::now() < until {
        assert_eq!(
            http_status(&local, &endpoint, "/pg/status?lease=1", None),
            401
        );
        assert_eq!(
            http_status(
                &local,
                &endpoint,
                "/pg/status?lease=1",
                Some("Bearer guessed")
            ),
            401
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        !commits_on(&local, primary_port, Duration::from_secs(1)),
        "renewals without the controller's token made the isolated primary writable"
    );

    // Everyone back: the cluster heals and nothing acknowledged was lost.
    for p in &peers {
        send_signal(*p, Signal::SIGCONT);
    }
    send_signal(control_plane, Signal::SIGCONT);
    writers.rw.wait_for_progress(20, Duration::from_secs(60));
    writers.stop_and_check(&local);
}

/// The HTTP status code of `GET path` at `address`, as any local user gets it: over TLS
/// trusting the cluster CA, presenting the cluster's `streaming_replica` certificate (signed by
/// the cluster CA, but not the controller's).
fn http_status(local: &Local, address: &str, path: &str, authorization: Option<&str>) -> u16 {
    let certs = local
        .state
        .join(format!("clusters/default/{CLUSTER}/certs"));
    pgherd_testkit::status_request(
        address,
        path,
        authorization,
        &certs.join("ca.crt"),
        Some((
            &certs.join("streaming_replica.crt"),
            &certs.join("streaming_replica.key"),
        )),
    )
    .0
}

#[test]
fn a_full_disk_on_the_primary_fails_over_and_keeps_its_data() {
    let _serial = exclusive();
    let local = Local::new(Path::new(env!("CARGO_BIN_EXE_pgherd")));
    let _volumes = Volumes::mount(&local, &["ha-1", "ha-2", "ha-3"], "400m");
    let files = tempfile::tempdir().unwrap();
    let m = manifest(files.path());
    local.run_ok(&["up", "-f", m.to_str().unwrap(), "--timeout-seconds", "180"]);
    let s = healthy(&local);
    assert_eq!(s.current_primary.as_deref(), Some("ha-1"));
    let writers = Writers::start(&local, &s);
    writers.rw.wait_for_progress(20, Duration::from_secs(20));

    let filler = fill(&instance_dir(&local, "ha-1"));
    let after = local.wait_for(
        CLUSTER,
        "a failover away from the full disk",
        Duration::from_secs(60),
        |s| s.current_primary.as_deref().is_some_and(|p| p != "ha-1"),
    );
    writers.rw.wait_for_progress(20, Duration::from_secs(60));
    eprintln!(
        "full disk on ha-1: new primary {}",
        after.current_primary.as_deref().unwrap_or("-")
    );
    // The space comes back: the old primary rejoins by itself.
    std::fs::remove_file(filler).unwrap();
    let report = writers.stop_and_check(&local);
    eprintln!(
        "full disk: longest write gap {:?}, {} commits acknowledged",
        report.longest_gap(),
        report.acknowledged.len()
    );
}
