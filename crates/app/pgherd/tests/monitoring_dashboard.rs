//! CloudNativePG's own Grafana cluster dashboard and alert rules
//! (`deploy/monitoring/cloudnative-pg/`) against a local cluster, through a real Prometheus:
//! a 3-instance cluster with an `rw` Pooler, Prometheus (the Debian package's binary) scraping
//! every instance's exporter, the PgBouncer exporter and the control plane every 2 s with the
//! labels a PodMonitor gives (`namespace`, `pod`, `job`), and loading CloudNativePG's rules and
//! pgherd's own. Every panel query of the dashboard is evaluated through the HTTP API with its
//! template variables resolved as Grafana resolves them: each one that does not need
//! Kubernetes returns data, and so does every query of pgherd's own dashboard; no alert is
//! pending or firing on the healthy cluster.
//!
//! The queries that cannot have data here are listed below, each with its reason.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

use pgherd_testkit::local::{cluster_manifest, connect, Local};
use pgherd_testkit::prometheus::{api, label_values, query, Target};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// The names CloudNativePG's rendered rules were written for (see its README).
const CLUSTER: &str = "cluster-example";
const NAMESPACE: &str = "default";
/// The namespace label given to the control plane's target (the operator's namespace).
const OPERATOR_NAMESPACE: &str = "cnpg-system";
/// Grafana's `$__rate_interval` for a 2 s scrape interval (4 × the scrape interval).
const RATE_INTERVAL: &str = "8s";

/// Panel queries that need what only Kubernetes exports, by a fragment of the query: reviewed,
/// each with its reason. A query listed here must return nothing (else the entry is wrong).
const KUBERNETES_ONLY: &[(&str, &str)] = &[
    (
        "kube_pod_",
        "kube-state-metrics' pod series (readiness, node, resource requests): no pods locally",
    ),
    (
        "kube_node_labels",
        "kube-state-metrics' node labels (zones): no nodes locally",
    ),
    (
        "kubelet_volume_stats_",
        "the kubelet's PVC statistics: locally the exporter's cnpg_collector_volume_*_bytes say it",
    ),
    (
        "container_memory_working_set_bytes",
        "cAdvisor's container memory (kubelet): no containers locally",
    ),
    (
        "node_namespace_pod_container:container_cpu_usage_seconds_total",
        "kube-prometheus' recording rule over cAdvisor's container CPU: no containers locally",
    ),
];

/// Panel queries that have data only after an event a new, healthy cluster has not had.
const NEEDS_EVENT: &[(&str, &str)] = &[
    (
        "first_recoverability_point\",namespace=~\"$namespace\",pod=~\"$instances\"})*1000 > 0",
        "shows the first recoverability point only once a base backup completed (the exporter \
         gives 0 before, as CloudNativePG's does); this test takes no backup",
    ),
    (
        "increase(cnpg_collector_query_errors_total",
        "pgherd's dashboard: a query's error counter exists once that query failed (its labels \
         name the query, database and category); a healthy cluster has none",
    ),
];

/// Panel queries that return nothing because pgherd lacks something: known gaps, each with its
/// reason (none must be silently skipped).
const KNOWN_GAPS: &[(&str, &str)] = &[];

/// The alerts on `cnpg_pg_replication_lag` with a threshold of a second (see where they are
/// accepted as pending).
const TRANSIENT_LAG_ALERTS: &[&str] = &[
    "CNPGClusterHighReplicationLag",
    "CNPGClusterPhysicalReplicationLagWarning",
];

/// Template variables whose own query finds nothing locally: known gaps, with the reason and
/// the value the test gives them instead.
const VARIABLE_GAPS: &[(&str, &str)] = &[(
    "operatorNamespace",
    "the dashboard finds the operator's namespace from its admission webhook's request counter \
     (controller_runtime_webhook_requests_total{webhook=\"/mutate-postgresql-cnpg-io-v1-cluster\"}); \
     the local platform has no admission webhook (`pgherd local up`/`apply` default and validate \
     manifests in the CLI), so the variable's list is empty: the test, like a user, sets it to \
     the namespace label given to the control plane's target",
)];

/// The share of the host file system holding `path` that is not available (what
/// `PgherdDiskAlmostFull` measures: locally an instance's volumes are the host's file system).
fn host_disk_used(path: &Path) -> f64 {
    let out = Command::new("df").arg("-Pk").arg(path).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let fields: Vec<f64> = text
        .lines()
        .nth(1)
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|f| f.parse().ok())
        .collect();
    match fields.as_slice() {
        [size, _used, available, ..] if *size > 0.0 => 1.0 - available / size,
        _ => panic!("df: {text}"),
    }
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../..")
}

/// Every panel query of the dashboard: (panel title, expression).
fn panel_queries(dashboard: &Value) -> Vec<(String, String)> {
    fn walk(panels: &Value, out: &mut Vec<(String, String)>) {
        for p in panels.as_array().into_iter().flatten() {
            walk(&p["panels"], out);
            for t in p["targets"].as_array().into_iter().flatten() {
                let expr = t["expr"].as_str().unwrap_or_default().trim();
                if !expr.is_empty() {
                    let title = p["title"].as_str().unwrap_or("(untitled)").to_string();
                    out.push((title, expr.to_string()));
                }
            }
        }
    }
    let mut out = Vec::new();
    walk(&dashboard["panels"], &mut out);
    out
}

/// Grafana's substitution of the template variables (a multi-value variable in a regex
/// matcher becomes `(a|b)`).
fn substitute(expr: &str, vars: &[(&str, String)]) -> String {
    let mut e = expr.to_string();
    for (name, value) in vars {
        e = e
            .replace(&format!("${{{name}}}"), value)
            .replace(&format!("${name}"), value);
    }
    e
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    Data,
    Kubernetes,
    Event,
    Gap,
}

fn classify(expr: &str) -> (Class, &'static str) {
    for (list, class) in [
        (KUBERNETES_ONLY, Class::Kubernetes),
        (NEEDS_EVENT, Class::Event),
        (KNOWN_GAPS, Class::Gap),
    ] {
        if let Some((_, why)) = list.iter().find(|(f, _)| expr.contains(f)) {
            return (class, why);
        }
    }
    (Class::Data, "")
}

/// Evaluates each of `queries` with `vars` substituted: the table (series, class, panel,
/// query), what went wrong, and the count per class.
fn evaluate(
    addr: &str,
    queries: &[(String, String)],
    vars: &[(&str, String)],
) -> (
    String,
    Vec<String>,
    std::collections::BTreeMap<&'static str, usize>,
) {
    let mut table = String::new();
    let mut failures = Vec::new();
    let mut counts = std::collections::BTreeMap::<&str, usize>::new();
    for (title, expr) in queries {
        let promql = substitute(expr, vars);
        assert!(
            !promql.contains("$__") && !promql.contains("${"),
            "{promql}"
        );
        let (class, why) = classify(expr);
        let result = query(addr, &promql);
        let series = result.as_ref().map(Vec::len).unwrap_or(0);
        let label = match class {
            Class::Data => "data",
            Class::Kubernetes => "kubernetes-only",
            Class::Event => "needs-event",
            Class::Gap => "known-gap",
        };
        *counts.entry(label).or_default() += 1;
        let one_line: String = expr
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .chars()
            .take(110)
            .collect();
        table.push_str(&format!(
            "{series:>4}  {label:<16} {title:<34} {one_line}\n"
        ));
        match (&result, class) {
            (Err(e), _) => failures.push(format!("{title}: {promql}: {e}")),
            (Ok(r), Class::Data) if r.is_empty() => {
                failures.push(format!("{title}: no data: {promql}"))
            }
            (Ok(r), Class::Kubernetes | Class::Event) if !r.is_empty() => failures.push(format!(
                "{title}: listed as without data ({why}) but returns {} series: {promql}",
                r.len()
            )),
            _ => {}
        }
    }
    (table, failures, counts)
}

const POOLER: &str = "cluster-example-pooler-rw";

#[test]
fn cloudnative_pg_dashboard_and_alerts_on_a_local_cluster() {
    let started = Instant::now();
    let local = Local::new(Path::new(env!("CARGO_BIN_EXE_pgherd")));
    let files = tempfile::tempdir().unwrap();
    let manifest = format!(
        "{}---\napiVersion: postgresql.cnpg.io/v1\nkind: Pooler\nmetadata:\n  name: {POOLER}\nspec:\n  cluster:\n    name: {CLUSTER}\n  instances: 1\n  type: rw\n  pgbouncer:\n    poolMode: session\n",
        cluster_manifest(CLUSTER, 3, "")
    );
    let (_, status) = local.up(files.path(), CLUSTER, &manifest, 3);

    // Some traffic, so that the rates and the replication lag panels have something to show.
    let rt = pgherd_testkit::runtime();
    rt.block_on(async {
        let c = connect(&local.app_config(CLUSTER, &status.endpoints["rw"]))
            .await
            .unwrap();
        c.batch_execute(
            "CREATE TABLE probe (i int); INSERT INTO probe SELECT generate_series(1, 1000)",
        )
        .await
        .unwrap();
    });

    // The targets, labelled as CloudNativePG's PodMonitors label them.
    let job = format!("{NAMESPACE}/{CLUSTER}");
    let mut targets: Vec<Target> = status
        .instances_status
        .iter()
        .map(|i| Target {
            job: job.clone(),
            addr: i.metrics.clone(),
            labels: vec![("namespace", NAMESPACE.into()), ("pod", i.name.clone())],
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    let pooler = loop {
        let out = local.run(&["get", "pooler", POOLER, "-o", "json"]);
        let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        let ready = v["status"]["instancesStatus"]
            .as_array()
            .filter(|a| !a.is_empty() && a.iter().all(|i| i["ready"] == true))
            .cloned();
        if let Some(instances) = ready {
            break instances;
        }
        assert!(Instant::now() < deadline, "pooler not ready: {v}");
        std::thread::sleep(Duration::from_millis(300));
    };
    for i in &pooler {
        targets.push(Target {
            job: format!("{NAMESPACE}/{POOLER}"),
            addr: i["metrics"].as_str().unwrap().to_string(),
            labels: vec![
                ("namespace", NAMESPACE.into()),
                ("pod", i["name"].as_str().unwrap().to_string()),
            ],
        });
    }
    let plane: Value =
        serde_json::from_slice(&std::fs::read(local.state.join("control-plane.json")).unwrap())
            .unwrap();
    targets.push(Target {
        job: "cnpg-system/cnpg-controller-manager".into(),
        addr: plane["metrics"].as_str().unwrap().to_string(),
        labels: vec![
            ("namespace", OPERATOR_NAMESPACE.into()),
            ("pod", "cnpg-controller-manager".into()),
        ],
    });

    let root = repo_root();
    let prometheus = pgherd_testkit::prometheus::start(
        &targets,
        &[
            root.join("deploy/monitoring/cloudnative-pg/alerts.yaml"),
            root.join("deploy/monitoring/alerts.yaml"),
        ],
    );
    let addr = prometheus.addr.clone();

    // Every target up, the replicas streaming, a few scrapes in and every rule evaluated.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let up = query(&addr, "up == 1").unwrap().len();
        let streaming = query(
            &addr,
            &format!(
                "cnpg_pg_replication_streaming_replicas{{pod=\"{}\"}} == 2",
                status.current_primary.clone().unwrap()
            ),
        )
        .unwrap()
        .len();
        let samples = query(&addr, "count_over_time(cnpg_collector_up[1m]) >= 4")
            .unwrap()
            .len();
        let rules = api(&addr, "/api/v1/rules");
        let unevaluated: Vec<String> = rules["data"]["groups"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
            .filter(|r| r["health"] != "ok")
            .map(|r| format!("{} ({}: {})", r["name"], r["health"], r["lastError"]))
            .collect();
        if up == targets.len() && streaming == 1 && samples == 3 && unevaluated.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus not ready: {up}/{} targets up ({}), streaming {streaming}, samples {samples}, \
             rules not evaluated: {unevaluated:?}",
            targets.len(),
            api(&addr, "/api/v1/targets")["data"]["activeTargets"]
        );
        std::thread::sleep(Duration::from_secs(1));
    }
    // The PgBouncer exporter and the control plane are scraped under their names.
    for (what, promql) in [
        ("the pooler's exporter", format!("cnpg_pgbouncer_up{{job=\"{NAMESPACE}/{POOLER}\"}} == 1")),
        ("the control plane", format!("controller_runtime_reconcile_total{{namespace=\"{OPERATOR_NAMESPACE}\",controller=\"cluster\",result=\"success\"}} > 0")),
    ] {
        assert_eq!(query(&addr, &promql).unwrap().len(), 1, "{what}: {promql}");
    }
    // Every controller's reconcile counters, from the start (CloudNativePG's operator exports
    // one controller per kind under these names).
    for controller in [
        "cluster",
        "backup",
        "pooler",
        "scheduled-backup",
        "database-role",
    ] {
        for result in ["success", "error"] {
            let promql = format!(
                "controller_runtime_reconcile_total{{namespace=\"{OPERATOR_NAMESPACE}\",controller=\"{controller}\",result=\"{result}\"}}"
            );
            assert_eq!(query(&addr, &promql).unwrap().len(), 1, "{promql}");
        }
    }
    // A few more rule evaluations (every second) over the complete data.
    std::thread::sleep(Duration::from_secs(3));

    // The template variables, resolved by their own queries as Grafana does.
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(
            root.join("deploy/monitoring/cloudnative-pg/grafana-dashboard.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let namespaces = label_values(&addr, "cnpg_collector_up", "namespace");
    assert_eq!(namespaces, [NAMESPACE], "$namespace");
    let clusters = label_values(
        &addr,
        &format!("cnpg_collector_up{{namespace=~\"{NAMESPACE}\"}}"),
        "cluster",
    );
    assert_eq!(clusters, [CLUSTER], "$cluster");
    let pods = label_values(
        &addr,
        &format!(
            "cnpg_collector_up{{namespace=~\"{NAMESPACE}\",pod=~\"{CLUSTER}-([1-9][0-9]*)$\"}}"
        ),
        "pod",
    );
    let mut names: Vec<String> = status
        .instances_status
        .iter()
        .map(|i| i.name.clone())
        .collect();
    names.sort();
    assert_eq!(pods, names, "$instances");
    let operator = label_values(
        &addr,
        "controller_runtime_webhook_requests_total{webhook=\"/mutate-postgresql-cnpg-io-v1-cluster\"}",
        "namespace",
    );
    if operator.is_empty() {
        assert!(VARIABLE_GAPS.iter().any(|(v, _)| *v == "operatorNamespace"));
    } else {
        assert_eq!(operator, [OPERATOR_NAMESPACE], "$operatorNamespace");
    }
    let vars: Vec<(&str, String)> = vec![
        ("operatorNamespace", OPERATOR_NAMESPACE.to_string()),
        ("namespace", NAMESPACE.to_string()),
        ("cluster", CLUSTER.to_string()),
        ("instances", format!("({})", pods.join("|"))),
        ("__rate_interval", RATE_INTERVAL.to_string()),
        ("__interval", "2s".to_string()),
        ("__range", "1m".to_string()),
    ];

    // Every panel query, CloudNativePG's dashboard's and pgherd's own.
    let queries = panel_queries(&dashboard);
    let (table, mut failures, counts) = evaluate(&addr, &queries, &vars);
    println!("series class            panel                              query\n{table}");
    println!(
        "{} panel queries: {counts:?}; $operatorNamespace resolved by its own query: {}",
        queries.len(),
        !operator.is_empty()
    );
    for (var, why) in VARIABLE_GAPS {
        println!("known gap: ${var}: {why}");
    }
    let own: Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("deploy/monitoring/grafana-dashboard.json")).unwrap(),
    )
    .unwrap();
    let own_queries = panel_queries(&own);
    let own_vars: Vec<(&str, String)> = vec![
        ("cluster", CLUSTER.to_string()),
        ("instance", ".*".to_string()), // "All"
        ("__rate_interval", RATE_INTERVAL.to_string()),
    ];
    let (own_table, own_failures, own_counts) = evaluate(&addr, &own_queries, &own_vars);
    println!("pgherd's dashboard:\n{own_table}");
    println!("{} panel queries: {own_counts:?}", own_queries.len());
    failures.extend(
        own_failures
            .into_iter()
            .map(|f| format!("pgherd's dashboard: {f}")),
    );
    for (list, what) in [
        (KUBERNETES_ONLY, "Kubernetes-only"),
        (NEEDS_EVENT, "needs an event"),
        (KNOWN_GAPS, "known gap"),
    ] {
        for (fragment, why) in list {
            println!("{what}: {fragment}: {why}");
        }
    }

    // Alerts: none firing, none pending but for a reason outside the cluster.
    let disk = host_disk_used(&local.state);
    let mut expected_pending: Vec<(&str, String)> = Vec::new();
    if disk > 0.8 {
        expected_pending.push((
            "PgherdDiskAlmostFull",
            format!(
                "this machine's file system is {:.0} % used (the volumes of a local cluster \
                 are the host's file system): a true alert about the host",
                disk * 100.0
            ),
        ));
    }
    // CloudNativePG's lag (`cnpg_pg_replication_lag`, the same query in pgherd) is the time
    // since the last replayed commit whenever a standby's received and replayed positions
    // differ: on an idle cluster a WAL record without a commit (the running-transactions
    // snapshot every 15 s, a checkpoint) reads as seconds of lag for one collection, cached for
    // metricsQueriesTTL (30 s); CloudNativePG has the same (cloudnative-pg/cloudnative-pg#2003).
    // Their `for: 5m` absorbs it; accepted as pending only while every standby has replayed all
    // it received (pgherd's own view, not the exporter's).
    // (A standby replaying the last WAL at the moment of asking is given a few seconds: on a
    // loaded 2-core machine replay trails by a moment.)
    let caught_up = {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let now_caught_up = local
                .status(CLUSTER)
                .instances_status
                .iter()
                .filter(|i| i.role != "primary")
                .all(|i| i.lag_bytes == Some(0));
            if now_caught_up || std::time::Instant::now() >= deadline {
                break now_caught_up;
            }
            std::thread::sleep(std::time::Duration::from_millis(250));
        }
    };
    if caught_up {
        for name in TRANSIENT_LAG_ALERTS {
            expected_pending.push((
                name,
                "a transient lag reading on an idle cluster whose standbys are caught up \
                 (CloudNativePG's lag query)"
                    .to_string(),
            ));
        }
    }
    let rules = api(&addr, "/api/v1/rules?type=alert");
    let mut active = Vec::new();
    let mut alerts = 0;
    for rule in rules["data"]["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
    {
        alerts += 1;
        let name = rule["name"].as_str().unwrap_or_default().to_string();
        assert_eq!(rule["health"], "ok", "{rule}");
        if rule["state"] != "inactive" {
            println!("alert {name}: {} {}", rule["state"], rule["alerts"]);
            match expected_pending.iter().find(|(n, _)| *n == name) {
                Some((_, why)) if rule["state"] == "pending" => println!("  expected: {why}"),
                _ => active.push(format!("{name} ({})", rule["state"])),
            }
        }
    }
    let firing = query(&addr, "ALERTS{alertstate=\"firing\"}").unwrap();
    let pending = query(&addr, "ALERTS{alertstate=\"pending\"}").unwrap();
    println!("pending alerts (ALERTS): {}", pending.len());
    println!(
        "{alerts} alert rules evaluated; firing: {}; took {:?}",
        firing.len(),
        started.elapsed()
    );
    assert!(
        failures.is_empty() && active.is_empty() && firing.is_empty(),
        "panel queries failing:\n{}\nalerts active: {active:?}",
        failures.join("\n")
    );
}
