//! A real PostgreSQL 15 with the exporter's least-privilege role, and helpers to read metrics.
#![allow(dead_code)]

use pgherd_metrics::{Exporter, ExporterConfig, PgConnector};
use pgherd_testkit::TestServer;
use std::process::{Command, Stdio};
use std::time::Duration;

/// Connect as `user` over the server's Unix socket.
pub fn connector(server: &TestServer, user: &str) -> PgConnector {
    PgConnector {
        host: server.pg.socket_dir.display().to_string(),
        port: server.pg.port,
        user: user.into(),
        password: None,
        connect_timeout: Duration::from_secs(5),
    }
}

/// Run statements as the superuser.
pub async fn admin(server: &TestServer, database: &str, sql: &str) {
    use pgherd_metrics::Connector;
    let client = connector(server, "postgres")
        .connect(database)
        .await
        .unwrap();
    client.batch_execute(sql).await.unwrap();
}

/// A started server with the exporter role created.
pub async fn server() -> TestServer {
    let server = TestServer::start();
    admin(&server, "postgres", pgherd_metrics::EXPORTER_ROLE_SQL).await;
    server
}

/// An exporter connecting as the least-privilege role.
pub fn exporter(server: &TestServer, config: ExporterConfig) -> Exporter {
    Exporter::new(config, connector(server, pgherd_metrics::EXPORTER_ROLE))
}

/// The value of the sample `name{labels...}` (labels given as `k="v"` fragments that must all
/// be present), if exactly one line matches.
pub fn value(text: &str, name: &str, labels: &[&str]) -> Option<f64> {
    let matching: Vec<f64> = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            let series = l.rsplit_once(' ').map(|(s, _)| s).unwrap_or("");
            let metric = series.split('{').next().unwrap_or("");
            metric == name && labels.iter().all(|f| series.contains(f))
        })
        .filter_map(|l| l.rsplit_once(' ').and_then(|(_, v)| v.parse().ok()))
        .collect();
    match matching.as_slice() {
        [one] => Some(*one),
        _ => None,
    }
}

/// The lint messages promtool may report on CloudNativePG-compatible names (dashboards and
/// alerts depend on them): CNPG's counters have no `_total` suffix, two of its gauges have one,
/// its archiver counters end in `_count`, its error counter has a camelCase label, and a
/// DURATION column is exported in milliseconds. Anything else fails.
const ACCEPTED_LINT: &[&str] = &[
    "cnpg_pg_stat_archiver_archived_count non-histogram and non-summary metrics should not have \"_count\" suffix",
    "cnpg_pg_stat_archiver_failed_count non-histogram and non-summary metrics should not have \"_count\" suffix",
    "_milliseconds use base unit \"seconds\" instead of \"milliseconds\"",
    "counter metrics should have \"_total\" suffix",
    "cnpg_backends_total non-counter metrics should not have \"_total\" suffix",
    "cnpg_backends_waiting_total non-counter metrics should not have \"_total\" suffix",
    "cnpg_errors_total label names should be written in 'snake_case' not 'camelCase'",
];

/// `promtool check metrics` on `text`: no parse error and no lint problem beyond the accepted
/// ones.
pub fn promtool_check_metrics(text: &str) {
    use std::io::Write;
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus, installed by scripts/install.sh)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() {
        return;
    }
    assert_eq!(
        out.status.code(),
        Some(3),
        "promtool failed to parse the exposition:\n{report}\n---\n{text}"
    );
    let problems: Vec<&str> = report
        .lines()
        .filter(|l| !l.trim().is_empty())
        .filter(|l| !ACCEPTED_LINT.iter().any(|a| l.contains(a)))
        .collect();
    assert!(
        problems.is_empty(),
        "promtool lint problems:\n{}",
        problems.join("\n")
    );
}
