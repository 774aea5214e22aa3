//! The metrics exporter of every instance, through `pgherd local`: real values that move with
//! the database, a custom query file from a ConfigMap served, a broken custom query reported
//! while the rest is served, on the primary and on a replica.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

use pgherd_testkit::local::{connect, Local};
use pgherd_testkit::metrics::{scrape, value};
use std::path::Path;
use std::time::Duration;

const MANIFEST: &str = r#"apiVersion: postgresql.cnpg.io/v1
kind: Cluster
metadata:
  name: mon
spec:
  instances: 2
  imageName: ghcr.io/cloudnative-pg/postgresql:15.14
  storage:
    size: 1Gi
  monitoring:
    metricsQueriesTTL: "0"
    customQueriesConfigMap:
      - name: mon-queries
        key: queries
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: mon-queries
data:
  queries: |
    pg_app_rows:
      target_databases: [app]
      query: "SELECT count(*) AS total FROM pg_catalog.pg_class WHERE relname = 'metrics_probe'"
      metrics:
        - total:
            usage: GAUGE
            description: Tables named metrics_probe
    pg_broken:
      query: "SELECT no_such_column FROM pg_catalog.pg_class"
      metrics:
        - no_such_column:
            usage: GAUGE
            description: Never works
"#;

#[test]
fn every_instance_exports_metrics() {
    let local = Local::new(Path::new(env!("CARGO_BIN_EXE_pgherd")));
    let files = tempfile::tempdir().unwrap();
    let m = files.path().join("mon.yaml");
    std::fs::write(&m, MANIFEST).unwrap();
    local.run_ok(&["up", "-f", m.to_str().unwrap(), "--timeout-seconds", "180"]);
    let s = local.wait_for("mon", "2 ready instances", Duration::from_secs(120), |s| {
        s.ready_instances == 2
    });
    for i in &s.instances_status {
        let body = scrape(&i.metrics);
        assert_eq!(
            value(&body, "cnpg_collector_up", ""),
            Some(1.0),
            "{}: {body}",
            i.name
        );
        assert!(
            body.contains("cnpg_pg_replication_in_recovery"),
            "{}",
            i.name
        );
        assert_eq!(
            value(&body, "cnpg_pg_app_rows_total", ""),
            Some(0.0),
            "{}",
            i.name
        );
        // The broken query is counted, the rest is served.
        assert!(
            body.lines()
                .any(|l| l.starts_with("cnpg_collector_query_errors_total")
                    && l.contains("pg_broken")),
            "{}: {body}",
            i.name
        );
    }

    // Values move with the database.
    let primary = s
        .instances_status
        .iter()
        .find(|i| i.role == "primary")
        .unwrap();
    let commits =
        |body: &str| value(body, "cnpg_pg_stat_database_xact_commit", "datname=\"app\"").unwrap();
    let before = commits(&scrape(&primary.metrics));
    let rt = pgherd_testkit::runtime();
    rt.block_on(async {
        let c = connect(&local.app_config("mon", &s.endpoints["rw"]))
            .await
            .unwrap();
        c.batch_execute("CREATE TABLE metrics_probe (i int)")
            .await
            .unwrap();
        for i in 0..20 {
            c.execute("INSERT INTO metrics_probe VALUES ($1)", &[&i])
                .await
                .unwrap();
        }
    });
    // Statistics reach the cumulative stats system when the backend reports them (at the end
    // of each transaction, at most every second or so).
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let body = scrape(&primary.metrics);
        let grown = commits(&body) >= before + 20.0;
        let custom = value(&body, "cnpg_pg_app_rows_total", "") == Some(1.0);
        if grown && custom {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "metrics did not follow the database: before {before}\n{body}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}
