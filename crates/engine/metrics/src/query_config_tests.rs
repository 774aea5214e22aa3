use super::*;

fn field_error(text: &str) -> (String, String, String) {
    match QuerySet::from_yaml("custom.yaml", text).unwrap_err() {
        QueryConfigError::Field {
            query,
            field,
            message,
            ..
        } => (query, field, message),
        other => panic!("expected a field error, got {other}"),
    }
}

#[test]
fn parses_cnpg_format_with_all_fields() {
    let set = QuerySet::from_yaml(
        "custom.yaml",
        r#"
pg_stat_user_tables:
  query: "SELECT current_database() datname, relname, seq_scan FROM pg_stat_user_tables"
  target_databases: ["*"]
  master: true
  cache_seconds: 60
  runonserver: ">=12.0.0"
  predicate_query: "SELECT true"
  metrics:
    - datname:
        usage: "LABEL"
        description: "Name of the database"
    - relname:
        usage: "LABEL"
        description: "Name of the table"
    - seq_scan:
        usage: "COUNTER"
        description: "Number of sequential scans initiated on this table"
"#,
    )
    .unwrap();
    let q = &set.queries()[0];
    assert_eq!(q.key, "pg_stat_user_tables");
    assert!(q.primary, "master is primary's alias");
    assert_eq!(q.cache_seconds, Some(60));
    assert_eq!(q.target_databases, ["*"]);
    assert_eq!(q.label_columns(), ["datname", "relname"]);
    assert_eq!(
        q.metrics[2].metric_name(&q.prefix).as_deref(),
        Some("cnpg_pg_stat_user_tables_seq_scan")
    );
    assert!(set.warnings().is_empty(), "{:?}", set.warnings());
}

#[test]
fn name_override_and_later_definitions_win() {
    let mut set = QuerySet::from_yaml(
        "a",
        "q:\n  query: SELECT 1 AS x\n  metrics:\n    - x: {usage: GAUGE}\n",
    )
    .unwrap();
    set.add_yaml(
        "b",
        "q:\n  name: renamed\n  query: SELECT 2 AS y\n  metrics:\n    - y: {usage: GAUGE, name: why}\n",
    )
    .unwrap();
    assert_eq!(set.queries().len(), 1);
    let q = &set.queries()[0];
    assert_eq!(
        q.metrics[0].metric_name(&q.prefix).as_deref(),
        Some("cnpg_renamed_why")
    );
    assert!(
        set.warnings()[0].contains("replaces"),
        "{:?}",
        set.warnings()
    );
}

#[test]
fn unknown_keys_are_warnings_not_errors() {
    let set = QuerySet::from_yaml(
        "f",
        "q:\n  query: SELECT 1 AS x\n  target_database: [app]\n  metrics:\n    - x: {usage: GAUGE, unit: s}\n",
    )
    .unwrap();
    assert_eq!(set.warnings().len(), 2, "{:?}", set.warnings());
    assert!(set.warnings()[0].contains("target_database"));
}

#[test]
fn errors_name_the_query_the_field_and_the_fix() {
    let (q, f, m) = field_error("q:\n  query: SELECT 1\n  metrics:\n    - x: {usage: GAGE}\n");
    assert_eq!((q.as_str(), f.as_str()), ("q", "metrics[0].x.usage"));
    assert!(m.contains("GAUGE, MAPPEDMETRIC"), "{m}");

    let (_, f, m) = field_error("q:\n  metrics:\n    - x: {usage: GAUGE}\n");
    assert_eq!(f, "query");
    assert!(m.contains("SQL"), "{m}");

    let (_, f, _) = field_error("q:\n  query: SELECT 1\n");
    assert_eq!(f, "metrics");

    let (_, f, _) =
        field_error("q:\n  query: SELECT 1\n  metrics:\n    - x: {usage: MAPPEDMETRIC}\n");
    assert_eq!(f, "metrics[0].x.metric_mapping");

    let (_, f, m) = field_error(
        "q:\n  query: SELECT 1\n  runonserver: \"at least 12\"\n  metrics:\n    - x: {usage: GAUGE}\n",
    );
    assert_eq!(f, "runonserver");
    assert!(m.contains(">=12.0.0"), "{m}");

    let (q, f, m) =
        field_error("my-query:\n  query: SELECT 1\n  metrics:\n    - x: {usage: GAUGE}\n");
    assert_eq!((q.as_str(), f.as_str()), ("my-query", "(key)"));
    assert!(m.contains("my_query"), "{m}");

    let (_, f, _) = field_error("q:\n  query: SELECT 1\n  primary: maybe\n  metrics: []\n");
    assert_eq!(f, "(query)");

    let err = QuerySet::from_yaml("f", "- just\n- a list\n").unwrap_err();
    assert!(
        err.to_string().starts_with("f: the top level is not a map"),
        "{err}"
    );
    let err = QuerySet::from_yaml("f", "q: [unclosed\n").unwrap_err();
    assert!(err.to_string().contains("not valid YAML"), "{err}");
}

#[test]
fn default_and_collector_queries_parse_with_cnpg_names() {
    let set = crate::default_queries().unwrap();
    assert!(set.warnings().is_empty(), "{:?}", set.warnings());
    let collector = QuerySet::from_yaml("c", crate::COLLECTOR_QUERIES).unwrap();
    assert!(
        collector.warnings().is_empty(),
        "{:?}",
        collector.warnings()
    );
    let names = crate::default_metric_names();
    for expected in [
        "cnpg_backends_total",
        "cnpg_backends_max_tx_duration_seconds",
        "cnpg_backends_waiting_total",
        "cnpg_pg_database_size_bytes",
        "cnpg_pg_database_xid_age",
        "cnpg_pg_database_mxid_age",
        "cnpg_pg_postmaster_start_time",
        "cnpg_pg_replication_lag",
        "cnpg_pg_replication_in_recovery",
        "cnpg_pg_replication_is_wal_receiver_up",
        "cnpg_pg_replication_streaming_replicas",
        "cnpg_pg_replication_slots_active",
        "cnpg_pg_replication_slots_pg_wal_lsn_diff",
        "cnpg_pg_stat_archiver_archived_count",
        "cnpg_pg_stat_archiver_seconds_since_last_archival",
        "cnpg_pg_stat_bgwriter_checkpoints_timed",
        "cnpg_pg_stat_bgwriter_stats_reset_time",
        "cnpg_pg_stat_checkpointer_restartpoints_done",
        "cnpg_pg_stat_database_xact_commit",
        "cnpg_pg_stat_database_blk_write_time",
        "cnpg_pg_stat_replication_replay_lag_seconds",
        "cnpg_pg_settings_setting",
        "cnpg_pg_extensions_update_available",
        "cnpg_collector_up",
        "cnpg_collector_pg_wal",
        "cnpg_collector_pg_wal_archive_status",
        "cnpg_collector_sync_replicas",
        "cnpg_collector_wal_bytes",
        "cnpg_collector_lo_pages",
        "cnpg_collector_last_available_backup_timestamp",
    ] {
        assert!(
            names.contains(expected),
            "{expected} missing from {names:?}"
        );
    }
}
