//! The hot-standby settings a server recorded in `global/pg_control` are read for every
//! installed major, server-only builds (no `pg_controldata`) included: a recovery or a standby
//! of those majors is raised to them as CloudNativePG raises it (issue 21: "max_connections =
//! 100 is a lower setting than on the primary server").
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

use pgherd_instance_manager::{PgBinaries, ShutdownMode};
use std::time::Duration;

#[test]
fn the_recorded_hot_standby_settings_are_read_on_every_installed_major() {
    let conf = "max_connections = 123\nmax_worker_processes = 9\nmax_wal_senders = 11\nmax_prepared_transactions = 13\nmax_locks_per_transaction = 77\n";
    let mut tried = Vec::new();
    for major in [13, 14, 15, 16, 17, 18] {
        let Ok(binaries) = PgBinaries::locate(major, None) else {
            continue;
        };
        let server = pgherd_testkit::TestServer::start_configured(binaries, conf);
        server
            .pg
            .stop(ShutdownMode::Fast, Duration::from_secs(30))
            .unwrap();
        let read = server.pg.controldata_minimums().unwrap();
        assert_eq!(
            read,
            [
                ("max_connections", 123),
                ("max_worker_processes", 9),
                ("max_wal_senders", 11),
                ("max_prepared_transactions", 13),
                ("max_locks_per_transaction", 77)
            ],
            "PostgreSQL {major}"
        );
        tried.push(major);
    }
    assert!(
        tried.contains(&pgherd_testkit::TEST_MAJOR),
        "at least the test machine's PostgreSQL {} (tried {tried:?})",
        pgherd_testkit::TEST_MAJOR
    );
    eprintln!("read on PostgreSQL {tried:?}");
}
