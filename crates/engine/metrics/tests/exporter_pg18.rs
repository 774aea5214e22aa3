//! The version-dependent queries (runonserver) against PostgreSQL 18 from /opt/postgresql/18
//! (scripts/install.sh): the checkpointer split, the reduced pg_stat_bgwriter and pg_stat_wal.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use pgherd_instance_manager::PgBinaries;
use pgherd_metrics::{Exporter, ExporterConfig, PgConnector};
use std::time::Duration;

#[tokio::test]
async fn postgresql_18_gets_the_checkpointer_and_bgwriter_split() {
    let Ok(binaries) = PgBinaries::locate(18, None) else {
        eprintln!("PostgreSQL 18 not installed in /opt/postgresql/18 (scripts/install.sh needs npm); skipped");
        return;
    };
    let server = pgherd_testkit::TestServer::start_with(binaries);
    let pg = &server.pg;
    let connector = |user: &str| PgConnector {
        host: pg.socket_dir.display().to_string(),
        port: pg.port,
        user: user.into(),
        password: None,
        connect_timeout: Duration::from_secs(5),
    };
    {
        use pgherd_metrics::Connector;
        let admin = connector("postgres").connect("postgres").await.unwrap();
        admin
            .batch_execute(pgherd_metrics::EXPORTER_ROLE_SQL)
            .await
            .unwrap();
    }
    let exporter = Exporter::new(
        ExporterConfig::new("c18").unwrap(),
        connector(pgherd_metrics::EXPORTER_ROLE),
    );
    let collection = exporter.collect().await;
    let text = collection.exposition.render();
    server.stop();
    assert!(collection.errors.is_empty(), "{:#?}", collection.errors);
    for present in [
        "cnpg_pg_stat_checkpointer_checkpoints_timed ",
        "cnpg_pg_stat_checkpointer_restartpoints_done ",
        "cnpg_pg_stat_bgwriter_buffers_clean ",
        "cnpg_pg_stat_bgwriter_stats_reset_time ",
        "cnpg_collector_wal_records{",
        "cnpg_collector_postgres_version{full=\"18.",
    ] {
        assert!(text.contains(present), "{present} missing:\n{text}");
    }
    for absent in [
        "cnpg_pg_stat_bgwriter_checkpoints_timed",
        "cnpg_collector_wal_write{",
    ] {
        assert!(!text.contains(absent), "{absent} on 18:\n{text}");
    }
}
