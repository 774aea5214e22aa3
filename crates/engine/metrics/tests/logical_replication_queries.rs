//! Custom queries shaped like the CloudNativePG cluster chart's logical-replication
//! instrumentation (timestamps declared GAUGE, `pg_stat_subscription` joined per database,
//! every database) against a real PostgreSQL 15 holding a subscription: served without a
//! single query error, timestamps as seconds since the epoch, as CloudNativePG does.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use pgherd_metrics::ExporterConfig;
use support::{admin, exporter, server, value};

const QUERIES: &str = r#"
subscription_stats:
  query: |
    SELECT current_database() AS datname, s.subname, s.subenabled AS enabled,
           sss.apply_error_count, sss.stats_reset, ss.last_msg_receipt_time,
           now() AS sampled_at, now()::timestamp AS sampled_local, current_date AS today
      FROM pg_catalog.pg_subscription s
      LEFT JOIN pg_catalog.pg_stat_subscription ss ON ss.subid = s.oid
      LEFT JOIN pg_catalog.pg_stat_subscription_stats sss ON sss.subid = s.oid;
  target_databases: ["*"]
  metrics:
    - datname: {usage: LABEL, description: Database}
    - subname: {usage: LABEL, description: Subscription}
    - enabled: {usage: GAUGE, description: Enabled}
    - apply_error_count: {usage: COUNTER, description: Apply errors}
    - stats_reset: {usage: GAUGE, description: Statistics reset}
    - last_msg_receipt_time: {usage: GAUGE, description: Last message received}
    - sampled_at: {usage: GAUGE, description: Now}
    - sampled_local: {usage: GAUGE, description: Now without a time zone}
    - today: {usage: GAUGE, description: Today}
"#;

#[tokio::test]
async fn timestamp_gauges_are_seconds_and_nothing_errors() {
    let server = server().await;
    admin(&server, "postgres", "CREATE DATABASE app").await;
    admin(
        &server,
        "app",
        "CREATE SUBSCRIPTION orders CONNECTION 'host=/nonexistent dbname=app' PUBLICATION orders \
         WITH (connect = false, enabled = false, create_slot = false, slot_name = NONE)",
    )
    .await;
    // A session time zone far from UTC must not shift the values.
    admin(
        &server,
        "postgres",
        "ALTER ROLE cnpg_metrics_exporter SET timezone = 'Asia/Kathmandu'",
    )
    .await;
    let config = ExporterConfig::from_monitoring(
        "c1",
        true,
        Some("0"),
        &[("ConfigMap c1-logical key queries".into(), QUERIES.into())],
    )
    .unwrap();
    let exporter = exporter(&server, config);
    let collection = exporter.collect().await;
    let text = collection.exposition.render();
    server.stop();
    assert!(collection.errors.is_empty(), "{:#?}", collection.errors);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let labels = ["datname=\"app\"", "subname=\"orders\""];
    let at =
        |name: &str| value(&text, name, &labels).unwrap_or_else(|| panic!("{name} in\n{text}"));
    assert!(
        (at("cnpg_subscription_stats_sampled_at") - now).abs() < 60.0,
        "{text}"
    );
    assert!(
        (at("cnpg_subscription_stats_sampled_local") - now).abs() < 60.0,
        "{text}"
    );
    assert!(
        (now - at("cnpg_subscription_stats_today")) < 86_400.0 + 60.0,
        "{text}"
    );
    assert_eq!(at("cnpg_subscription_stats_enabled"), 0.0);
    assert!(
        at("cnpg_subscription_stats_last_msg_receipt_time").is_nan(),
        "no worker: NULL"
    );
}
