//! deploy/monitoring: the alert rules load and pass their unit tests (promtool), the dashboard's
//! queries are valid PromQL, and every metric the rules, their tests and the dashboard use is
//! one pgherd exports with its default queries.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;

fn monitoring_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../deploy/monitoring")
}

fn read(name: &str) -> String {
    std::fs::read_to_string(monitoring_dir().join(name)).unwrap()
}

fn promtool(args: &[&str]) {
    let out = Command::new("promtool")
        .args(args)
        .current_dir(monitoring_dir())
        .output()
        .expect("promtool (Debian package prometheus, installed by scripts/install.sh)");
    assert!(
        out.status.success(),
        "promtool {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn referenced_metrics(text: &str) -> BTreeSet<String> {
    regex::Regex::new(r"\bcnpg_[a-zA-Z0-9_]+")
        .unwrap()
        .find_iter(text)
        .map(|m| m.as_str().to_string())
        .collect()
}

fn assert_exported(what: &str, used: &BTreeSet<String>) {
    let exported = pgherd_metrics::default_metric_names();
    let unknown: Vec<_> = used.difference(&exported).collect();
    assert!(
        unknown.is_empty(),
        "{what} uses metrics pgherd does not export: {unknown:?}"
    );
    assert!(!used.is_empty(), "{what} uses no pgherd metric");
}

fn dashboard_exprs() -> Vec<String> {
    let dashboard: serde_json::Value =
        serde_json::from_str(&read("grafana-dashboard.json")).unwrap();
    let mut exprs = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            exprs.push(target["expr"].as_str().unwrap().to_string());
        }
    }
    assert!(exprs.len() >= 20, "{} queries", exprs.len());
    exprs
}

#[test]
fn alert_rules_load_and_pass_their_unit_tests() {
    promtool(&["check", "rules", "alerts.yaml"]);
    promtool(&["test", "rules", "alerts-test.yaml"]);
}

#[test]
fn alert_rules_and_their_tests_use_only_exported_metrics() {
    let rules: serde_yaml_ng::Value = serde_yaml_ng::from_str(&read("alerts.yaml")).unwrap();
    let mut exprs = String::new();
    let mut alerts = BTreeSet::new();
    for group in rules["groups"].as_sequence().unwrap() {
        for rule in group["rules"].as_sequence().unwrap() {
            exprs.push_str(rule["expr"].as_str().unwrap());
            exprs.push('\n');
            alerts.insert(rule["alert"].as_str().unwrap().to_string());
        }
    }
    assert_exported("alerts.yaml", &referenced_metrics(&exprs));
    let tests = read("alerts-test.yaml");
    assert_exported("alerts-test.yaml", &referenced_metrics(&tests));
    for alert in &alerts {
        assert!(
            tests.contains(&format!("alertname: {alert}\n")),
            "alert {alert} has no unit test in alerts-test.yaml"
        );
    }
}

#[test]
fn dashboard_queries_are_valid_promql_on_exported_metrics() {
    let exprs = dashboard_exprs();
    assert_exported(
        "grafana-dashboard.json",
        &referenced_metrics(&read("grafana-dashboard.json")),
    );
    // promtool parses PromQL only in rule files: check each query as a recording rule, with
    // Grafana's variables replaced by what they expand to.
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (i, expr) in exprs.iter().enumerate() {
        let expanded = expr
            .replace("$__rate_interval", "5m")
            .replace("$cluster", ".*")
            .replace("$instance", ".*");
        rules.push_str(&format!(
            "      - record: dashboard:query{i}\n        expr: {}\n",
            serde_json::to_string(&expanded).unwrap()
        ));
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dashboard-rules.yaml");
    std::fs::write(&path, rules).unwrap();
    promtool(&["check", "rules", path.to_str().unwrap()]);
}

/// CloudNativePG's rules as shipped (rendered from the chart's templates, see the README there)
/// load; that they stay quiet on a healthy cluster is `monitoring_dashboard` in the pgherd
/// crate's tests (a real Prometheus against a local cluster).
#[test]
fn cloudnative_pg_rules_load_and_their_origin_is_stated() {
    promtool(&["check", "rules", "cloudnative-pg/alerts.yaml"]);
    let readme = read("cloudnative-pg/README.md");
    for needle in [
        "cloudnative-pg/grafana-dashboards",
        "cloudnative-pg/charts",
        "Apache-2.0",
    ] {
        assert!(readme.contains(needle), "README.md does not say {needle}");
    }
    assert!(read("cloudnative-pg/LICENSE").contains("Apache License"));
    let dashboard: serde_json::Value =
        serde_json::from_str(&read("cloudnative-pg/grafana-dashboard.json")).unwrap();
    assert!(dashboard["templating"]["list"].as_array().is_some());
}
