//! The exporter against a real PostgreSQL 15, connecting as the least-privilege
//! `cnpg_metrics_exporter` role (pg_monitor only).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use pgherd_metrics::{ClusterFacts, ErrorCategory, ExporterConfig};
use std::time::{Duration, Instant};
use support::{admin, exporter, promtool_check_metrics, server, value};

#[tokio::test]
async fn default_queries_are_served_and_counters_move() {
    let server = server().await;
    admin(&server, "postgres", "CREATE DATABASE app").await;
    admin(
        &server,
        "postgres",
        "CREATE ROLE expiring LOGIN VALID UNTIL '2030-01-01 00:00:00+00'",
    )
    .await;
    let mut config = ExporterConfig::from_monitoring("c1", false, Some("0"), &[]).unwrap();
    config.volumes = vec![("pgdata".into(), server.pg.pgdata.clone())];
    let exporter = exporter(&server, config);
    exporter.set_facts(ClusterFacts {
        last_available_backup_timestamp: Some(1_700_000_000.0),
        sync_replicas_min: Some(0),
        ..ClusterFacts::default()
    });

    let first = exporter.collect().await;
    assert!(first.errors.is_empty(), "{:#?}", first.errors);
    let text = first.exposition.render();
    let commits = |text: &str| {
        value(
            text,
            "cnpg_pg_stat_database_xact_commit",
            &["datname=\"app\""],
        )
        .unwrap_or_else(|| panic!("xact_commit for app in\n{text}"))
    };
    let before = commits(&text);
    // The shared-objects row, as CloudNativePG's default query gives it.
    assert!(
        value(&text, "cnpg_pg_stat_database_blks_hit", &["datname=\"\""]).is_some(),
        "no datname=\"\" row in\n{text}"
    );
    // No backup yet: the backup timestamps are there, at 0.
    assert_eq!(
        value(&text, "cnpg_collector_last_failed_backup_timestamp", &[]),
        Some(0.0)
    );
    assert_eq!(
        value(&text, "cnpg_collector_first_recoverability_point", &[]),
        Some(0.0)
    );
    assert_eq!(
        value(&text, "cnpg_collector_up", &["cluster=\"c1\""]),
        Some(1.0)
    );
    assert_eq!(
        value(&text, "cnpg_pg_replication_in_recovery", &[]),
        Some(0.0)
    );
    assert!(value(&text, "cnpg_collector_pg_wal", &["value=\"count\""]).unwrap() >= 1.0);
    assert!(value(&text, "cnpg_collector_pg_wal", &["value=\"size\""]).unwrap() > 0.0);
    assert!(value(
        &text,
        "cnpg_collector_pg_wal_archive_status",
        &["value=\"ready\""]
    )
    .is_some());
    assert_eq!(
        value(
            &text,
            "cnpg_collector_sync_replicas",
            &["value=\"expected\""]
        ),
        Some(0.0)
    );
    assert_eq!(
        value(&text, "cnpg_collector_sync_replicas", &["value=\"min\""]),
        Some(0.0)
    );
    // As CloudNativePG: observed is what synchronous_standby_names requests.
    assert_eq!(
        value(
            &text,
            "cnpg_collector_sync_replicas",
            &["value=\"observed\""]
        ),
        Some(0.0)
    );
    assert_eq!(
        value(
            &text,
            "cnpg_collector_sync_replicas",
            &["value=\"streaming\""]
        ),
        Some(0.0)
    );
    assert!(value(&text, "cnpg_collector_lo_pages", &["datname=\"app\""]).is_some());
    assert!(value(&text, "cnpg_collector_wal_records", &[]).unwrap() > 0.0);
    assert!(value(&text, "cnpg_pg_database_size_bytes", &["datname=\"app\""]).unwrap() > 0.0);
    assert!(
        value(
            &text,
            "cnpg_pg_settings_setting",
            &["name=\"max_connections\""]
        )
        .unwrap()
            > 0.0
    );
    assert!(value(&text, "cnpg_pg_postmaster_start_time", &[]).unwrap() > 1.6e9);
    assert!(value(
        &text,
        "cnpg_pg_extensions_update_available",
        &["datname=\"app\"", "extname=\"plpgsql\""]
    )
    .is_some());
    assert!(value(&text, "cnpg_pg_stat_archiver_archived_count", &[]).is_some());
    assert!(value(&text, "cnpg_pg_stat_bgwriter_checkpoints_timed", &[]).is_some());
    assert!(value(&text, "cnpg_backends_waiting_total", &[]).is_some());
    assert!(
        value(
            &text,
            "cnpg_collector_volume_size_bytes",
            &["volume=\"pgdata\""]
        )
        .unwrap()
            > 0.0
    );
    assert_eq!(
        value(&text, "cnpg_collector_last_available_backup_timestamp", &[]),
        Some(1.7e9)
    );
    // "major.minor" as CloudNativePG has it, without Debian's " (Debian ...)" suffix.
    let version = regex::Regex::new(
        r#"cnpg_collector_postgres_version\{full="15\.[0-9]+",cluster="c1"\} 15\.[0-9]+\n"#,
    )
    .unwrap();
    assert!(version.is_match(&text), "{text}");
    assert!(!text.contains("cnpg_pg_stat_checkpointer"), "PG17+ only");
    assert_eq!(
        value(
            &text,
            "cnpg_pg_roles_password_valid_until_seconds",
            &["rolname=\"expiring\""]
        ),
        Some(1_893_456_000.0)
    );
    let version = value(&text, "cnpg_collector_postgres_version", &[]).unwrap();
    assert!(
        (15.0..16.0).contains(&version) && version != 15.0,
        "{version}"
    );
    promtool_check_metrics(&text);

    admin(
        &server,
        "app",
        "CREATE TABLE t (x int); INSERT INTO t VALUES (1); INSERT INTO t VALUES (2); INSERT INTO t VALUES (3);",
    )
    .await;
    // The statistics collector publishes at transaction end, reads see a snapshot: give it time.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = exporter.render().await;
        let after = commits(&text);
        if after >= before + 1.0 {
            assert!(value(&text, "cnpg_collector_collections_total", &[]).unwrap() >= 2.0);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "xact_commit stayed at {after} (was {before})"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

const CUSTOM: &str = r#"
pg_stat_user_tables:
  target_databases:
    - '*'
  query: |
    SELECT current_database() AS datname, relname, n_live_tup, seq_scan
    FROM pg_stat_user_tables
  metrics:
    - datname:
        usage: "LABEL"
        description: "Name of the database"
    - relname:
        usage: "LABEL"
        description: "Name of the table"
    - n_live_tup:
        usage: "GAUGE"
        description: "Estimated number of live rows"
    - seq_scan:
        usage: "COUNTER"
        description: "Sequential scans"
broken:
  query: "SELECT no_such_column FROM pg_catalog.pg_class"
  metrics:
    - no_such_column:
        usage: "GAUGE"
        description: "never there"
slow:
  query: "SELECT 1 AS one FROM pg_catalog.pg_sleep(30)"
  metrics:
    - one:
        usage: "GAUGE"
        description: "never answers in time"
writer:
  query: "CREATE TABLE sneaky (x int); SELECT 1 AS one"
  metrics:
    - one:
        usage: "GAUGE"
        description: "several statements are refused"
latency:
  query: "SELECT ARRAY[0.1, 1]::float8[] AS lat, ARRAY[2, 5]::int8[] AS lat_bucket, 3.5 AS lat_sum, 6 AS lat_count"
  metrics:
    - lat:
        usage: "HISTOGRAM"
        description: "a histogram in CNPG's convention"
replica_only:
  predicate_query: "SELECT pg_catalog.pg_is_in_recovery()"
  query: "SELECT 1 AS one"
  metrics:
    - one:
        usage: "GAUGE"
        description: "skipped on a primary"
mapped:
  master: true
  query: "SELECT 'on' AS state, '1.5s' AS took"
  metrics:
    - state:
        usage: "MAPPEDMETRIC"
        description: "a mapped state"
        metric_mapping:
          "on": 1
          "off": 0
    - took:
        usage: "DURATION"
        description: "a duration"
"#;

#[tokio::test]
async fn custom_queries_broken_and_slow_ones_do_not_break_the_scrape() {
    let server = server().await;
    admin(&server, "postgres", "CREATE DATABASE app").await;
    admin(&server, "app", "CREATE TABLE items (id int); INSERT INTO items SELECT generate_series(1, 10); ANALYZE items;").await;
    let mut config = ExporterConfig::from_monitoring(
        "c1",
        false,
        Some("30s"),
        &[("ConfigMap c1-monitoring key queries".into(), CUSTOM.into())],
    )
    .unwrap();
    config.statement_timeout = Duration::from_secs(1);
    let exporter = exporter(&server, config);

    let started = Instant::now();
    let collection = exporter.collect().await;
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(8),
        "the slow query held the scrape {took:?}"
    );
    let text = collection.exposition.render();
    let failed: Vec<_> = collection
        .errors
        .iter()
        .map(|e| (e.query.as_str(), e.category))
        .collect();
    assert!(
        failed.contains(&("broken", ErrorCategory::Sql)),
        "{failed:?}"
    );
    assert!(
        failed.contains(&("slow", ErrorCategory::Timeout)),
        "{failed:?}"
    );
    assert!(
        failed.contains(&("writer", ErrorCategory::Sql)),
        "{failed:?}"
    );
    assert_eq!(failed.len(), 3, "{:#?}", collection.errors);
    assert_eq!(
        value(
            &text,
            "cnpg_pg_stat_user_tables_n_live_tup",
            &["datname=\"app\"", "relname=\"items\""]
        ),
        Some(10.0),
        "{text}"
    );
    assert_eq!(value(&text, "cnpg_mapped_state", &[]), Some(1.0));
    assert_eq!(
        value(&text, "cnpg_mapped_took_milliseconds", &[]),
        Some(1500.0)
    );
    assert!(
        !text.contains("cnpg_replica_only_one"),
        "predicate false: skipped"
    );
    assert_eq!(
        value(&text, "cnpg_latency_lat_bucket", &["le=\"0.1\""]),
        Some(2.0)
    );
    assert_eq!(
        value(&text, "cnpg_latency_lat_bucket", &["le=\"+Inf\""]),
        Some(6.0)
    );
    assert_eq!(value(&text, "cnpg_latency_lat_sum", &[]), Some(3.5));
    assert!(
        text.contains("# TYPE cnpg_latency_lat histogram\n"),
        "{text}"
    );
    assert!(value(
        &text,
        "cnpg_pg_stat_database_xact_commit",
        &["datname=\"app\""]
    )
    .is_some());
    assert_eq!(
        value(
            &text,
            "cnpg_collector_query_errors_total",
            &["query=\"slow\"", "category=\"timeout\""]
        ),
        Some(1.0)
    );
    assert_eq!(
        value(&text, "cnpg_errors_total", &["errorUserQueries=\"broken\""]),
        Some(1.0)
    );
    assert_eq!(
        value(&text, "cnpg_collector_last_collection_error", &[]),
        Some(1.0)
    );
    assert_eq!(value(&text, "cnpg_collector_up", &[]), Some(1.0));
    promtool_check_metrics(&text);
    // The multi-statement query was refused before it could write.
    let listed = exporter.collect().await;
    let text = listed.exposition.render();
    assert!(
        value(&text, "cnpg_cache_hits", &[]).unwrap() > 10.0,
        "results are cached for 30s"
    );
    assert_eq!(
        value(
            &text,
            "cnpg_collector_query_errors_total",
            &["query=\"slow\"", "category=\"timeout\""]
        ),
        Some(2.0),
        "failures are not cached"
    );
    // Reloaded custom queries replace the old ones, cached results included.
    let reloaded = pgherd_metrics::QuerySet::from_yaml(
        "reloaded",
        "fresh:\n  query: SELECT 7 AS seven\n  metrics:\n    - seven: {usage: GAUGE}\n",
    )
    .unwrap();
    exporter.set_queries(reloaded);
    let text = exporter.render().await;
    assert_eq!(value(&text, "cnpg_fresh_seven", &[]), Some(7.0));
    assert!(
        !text.contains("cnpg_pg_stat_user_tables_n_live_tup"),
        "{text}"
    );
    assert!(
        !text.contains("cnpg_pg_stat_database_xact_commit"),
        "{text}"
    );
    assert!(exporter.metric_names().contains("cnpg_fresh_seven"));
    admin(&server, "app", "DO $$ BEGIN IF EXISTS (SELECT 1 FROM pg_class WHERE relname = 'sneaky') THEN RAISE 'sneaky exists'; END IF; END $$").await;
}

#[tokio::test]
async fn scrape_budget_bounds_the_whole_collection_and_down_is_reported() {
    let server = server().await;
    let slow = "slow1:\n  query: SELECT 1 AS one FROM pg_catalog.pg_sleep(5)\n  metrics:\n    - one: {usage: GAUGE}\nslow2:\n  query: SELECT 1 AS one FROM pg_catalog.pg_sleep(5)\n  metrics:\n    - one: {usage: GAUGE}\n";
    let mut config =
        ExporterConfig::from_monitoring("c1", true, None, &[("custom".into(), slow.into())])
            .unwrap();
    config.statement_timeout = Duration::from_secs(10);
    config.scrape_timeout = Duration::from_secs(2);
    let exporter = std::sync::Arc::new(exporter(&server, config));
    let started = Instant::now();
    let collection = exporter.collect().await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    let categories: Vec<_> = collection.errors.iter().map(|e| e.category).collect();
    assert!(
        categories.contains(&ErrorCategory::Timeout),
        "{categories:?}"
    );
    assert!(
        categories.contains(&ErrorCategory::Deadline),
        "{categories:?}"
    );
    let text = collection.exposition.render();
    assert!(
        !text.contains("cnpg_pg_stat_database"),
        "default queries disabled"
    );
    assert_eq!(value(&text, "cnpg_collector_up", &[]), Some(1.0));

    // Served over HTTP by the router.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = pgherd_metrics::router(exporter.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let body = http_get(addr, "/metrics").await;
    assert!(body.starts_with("HTTP/1.1 200"), "{body}");
    assert!(body.contains("text/plain; version=0.0.4"), "{body}");
    assert!(
        body.contains("cnpg_collector_up{cluster=\"c1\"} 1"),
        "{body}"
    );

    server.stop();
    let text = exporter.render().await;
    assert_eq!(
        value(&text, "cnpg_collector_up", &["cluster=\"c1\""]),
        Some(0.0),
        "{text}"
    );
    assert_eq!(
        value(&text, "cnpg_collector_last_collection_error", &[]),
        Some(1.0)
    );
    promtool_check_metrics(&text);
}

async fn http_get(addr: std::net::SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut out = String::new();
    tokio::time::timeout(Duration::from_secs(30), stream.read_to_string(&mut out))
        .await
        .unwrap()
        .unwrap();
    out
}

/// The ConfigMap's queries of examples/cluster-monitoring.yaml, checked to be the ones its
/// Cluster refers to.
fn example_queries() -> String {
    use serde::Deserialize;
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../examples/cluster-monitoring.yaml");
    let text = std::fs::read_to_string(path).unwrap();
    let docs: Vec<serde_yaml_ng::Value> = serde_yaml_ng::Deserializer::from_str(&text)
        .map(|d| serde_yaml_ng::Value::deserialize(d).unwrap())
        .collect();
    let cluster = docs.iter().find(|d| d["kind"] == "Cluster").unwrap();
    let selector = &cluster["spec"]["monitoring"]["customQueriesConfigMap"][0];
    let config_map = docs
        .iter()
        .find(|d| d["kind"] == "ConfigMap" && d["metadata"]["name"] == selector["name"])
        .expect("the ConfigMap the Cluster refers to");
    let key = selector["key"].as_str().unwrap();
    config_map["data"][key].as_str().unwrap().to_string()
}

#[tokio::test]
async fn the_example_custom_queries_are_served() {
    let queries = example_queries();
    let parsed = pgherd_metrics::QuerySet::from_yaml("example", &queries).unwrap();
    assert!(parsed.warnings().is_empty(), "{:?}", parsed.warnings());
    let server = server().await;
    admin(&server, "postgres", "CREATE DATABASE app").await;
    admin(
        &server,
        "app",
        "CREATE TABLE orders (id int); INSERT INTO orders SELECT generate_series(1, 5); ANALYZE orders;",
    )
    .await;
    admin(&server, "app", "VACUUM orders").await;
    let config = ExporterConfig::from_monitoring(
        "cluster-monitoring",
        false,
        Some("0"),
        &[(
            "ConfigMap cluster-monitoring-queries key queries".into(),
            queries,
        )],
    )
    .unwrap();
    let exporter = exporter(&server, config);
    let table = [
        "datname=\"app\"",
        "schemaname=\"public\"",
        "relname=\"orders\"",
    ];
    // Statistics reach the shared view when the writing backend reports them: retry briefly.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let collection = exporter.collect().await;
        assert!(collection.errors.is_empty(), "{:#?}", collection.errors);
        let text = collection.exposition.render();
        let live = value(&text, "cnpg_pg_stat_user_tables_n_live_tup", &table);
        let vacuumed = value(
            &text,
            "cnpg_pg_stat_user_tables_seconds_since_vacuum",
            &table,
        );
        if live == Some(5.0) && vacuumed.is_some_and(|s| s >= 0.0) {
            promtool_check_metrics(&text);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{live:?} {vacuumed:?} in\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
