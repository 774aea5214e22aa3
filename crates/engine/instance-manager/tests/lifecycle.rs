//! A real PostgreSQL 15 server (Debian's, installed by scripts/install.sh): bootstrap, start,
//! readiness, crash (kill -9) and restart with crash recovery, clean stop. Runs PostgreSQL as
//! the `postgres` user when the tests run as root.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

use pgherd_instance_manager::{InitDbOptions, OsUser, Postgres, ShutdownMode};
use std::time::Duration;

fn server(root: &std::path::Path) -> Postgres {
    pgherd_testkit::instance(root, "pg")
}

#[test]
fn bootstrap_start_crash_recover_stop() {
    let dir = tempfile::tempdir().unwrap();
    let pg = server(dir.path());
    assert!(!pg.is_initialized());
    pg.initdb(&InitDbOptions {
        encoding: Some("UTF8".into()),
        data_checksums: true,
        ..Default::default()
    })
    .unwrap();
    assert!(pg.is_initialized());
    pg.write_file("postgresql.auto.conf", "listen_addresses = ''\n")
        .unwrap();

    let mut child = pg.start().unwrap();
    pg.wait_ready(Duration::from_secs(30)).unwrap();
    let pid = pg.postmaster_pid().expect("postmaster.pid");
    assert_eq!(pid, child.id());
    assert_eq!(pg.running_postmaster(), Some(pid));

    // Crash: kill -9 the postmaster, then start again; crash recovery must bring it back.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    child.wait().unwrap();
    // The PID left in postmaster.pid now names another live process (as after a pod's restart,
    // where PIDs start again): not this data's postmaster, nothing to adopt, stop or kill, and
    // the stale file goes before the next start.
    let text = std::fs::read_to_string(pg.pgdata.join("postmaster.pid")).unwrap();
    let rest = text.split_once('\n').unwrap().1;
    std::fs::write(
        pg.pgdata.join("postmaster.pid"),
        format!("{}\n{rest}", std::process::id()),
    )
    .unwrap();
    assert_eq!(pg.running_postmaster(), None);
    pg.kill_all(); // would kill this test's own process if it trusted the file
    pg.clear_stale_pid_file();
    assert!(!pg.pgdata.join("postmaster.pid").exists());
    // Orphaned backends may hold shared memory for a moment; the new postmaster waits for them.
    let mut child = pg.start().unwrap();
    pg.wait_ready(Duration::from_secs(30)).unwrap();
    let log = std::fs::read_to_string(&pg.log_file).unwrap();
    assert!(
        log.contains("database system was interrupted") || log.contains("not properly shut down"),
        "{log}"
    );

    pg.stop(ShutdownMode::Fast, Duration::from_secs(30))
        .unwrap();
    assert!(child.wait().unwrap().success() || !pg.is_ready());
    assert!(!pg.is_ready());
}

#[test]
fn refuses_root_and_unknown_users() {
    assert!(OsUser::lookup("root").is_err());
    assert!(OsUser::lookup("no-such-user-pgherd").is_err());
}

#[test]
fn observes_a_primary() {
    let server = pgherd_testkit::TestServer::start();
    let pg = &server.pg;
    let runtime = pgherd_testkit::runtime();
    let status = runtime
        .block_on(async {
            let client = pgherd_instance_manager::observe::connect(pg, "postgres").await?;
            client
                .batch_execute("CREATE TABLE t (x int); INSERT INTO t VALUES (1)")
                .await
                .unwrap();
            pgherd_instance_manager::observe::observe(&client, "c-1", pg.postmaster_pid()).await
        })
        .unwrap();
    assert!(status.is_primary);
    assert_eq!(status.role, pgherd_instance_protocol::Role::Primary);
    assert_eq!(status.timeline_id, Some(1));
    assert!(status.current_lsn.is_some_and(|l| l.0 > 0));
    assert!(status
        .system_id
        .as_deref()
        .is_some_and(|s| s.parse::<u64>().is_ok()));
    assert!(!status.pending_restart);
    assert!(status.postmaster_pid.is_some());
    assert!(status.replication_info.is_empty());
    server.stop();
}

#[test]
fn a_crashed_primary_is_ended_cleanly_before_its_demotion() {
    let server = pgherd_testkit::TestServer::start();
    let pg = &server.pg;
    let runtime = pgherd_testkit::runtime();
    runtime.block_on(async {
        let client = pgherd_instance_manager::observe::connect(pg, "postgres")
            .await
            .unwrap();
        client
            .batch_execute("CREATE TABLE t (x int); INSERT INTO t SELECT generate_series(1, 1000)")
            .await
            .unwrap();
    });
    // Killed, not stopped: pg_control says it was running.
    let pid = pg.postmaster_pid().unwrap();
    pg.kill_all();
    // Reaped, as the manager reaps its postmaster (a zombie would still hold the socket lock).
    let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid as i32), None);
    let before = pg.control_file().unwrap();
    assert!(!before.state.is_clean_shutdown(), "{before:?}");

    let token = runtime
        .block_on(pgherd_instance_manager::demotion::demote(pg, None))
        .unwrap_or_else(|e| {
            panic!(
                "{e}\n{}",
                std::fs::read_to_string(&pg.log_file).unwrap_or_default()
            )
        });
    let control = pg.control_file().unwrap();
    assert_eq!(
        control.state,
        pgherd_postgres::control_file::DbState::ShutDown
    );
    assert!(pg.has_standby_signal());
    let token = pgherd_api::replica_token::ReplicaToken::decode(&token).unwrap();
    assert_eq!(token.system_identifier, control.system_identifier);
    assert_eq!(token.timeline, control.timeline);
    assert_eq!(token.redo, control.redo);
    assert!(
        token.redo > before.redo,
        "recovery ended with a new checkpoint"
    );
    assert_eq!(
        pgherd_instance_manager::demotion::issued(pg).as_deref(),
        Some(token.encode().as_str())
    );
}
