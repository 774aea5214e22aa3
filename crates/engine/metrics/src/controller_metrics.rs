//! A controller's own metrics — the local control plane's and the Kubernetes operator's —
//! served on `/metrics`: reconciles and their errors under controller-runtime's names (what
//! CloudNativePG's operator exports), and pgherd's per-cluster counters of reconciles,
//! failovers, switchovers and backups.

use crate::exposition::{Exposition, Family, MetricKind};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

type ClusterKey = (String, String);

#[derive(Debug, Default)]
struct Counters {
    reconciles: BTreeMap<(String, String, &'static str), u64>,
    reconcile_seconds: f64,
    failovers: BTreeMap<ClusterKey, u64>,
    switchovers: BTreeMap<ClusterKey, u64>,
    backups: BTreeMap<(String, String, String), u64>,
    /// Passes of the controllers other than the cluster's, by result.
    controllers: BTreeMap<(&'static str, &'static str), u64>,
    /// Admission requests by webhook path and HTTP status code.
    webhook_requests: BTreeMap<(String, u16), u64>,
    /// Admission requests being served, by webhook path.
    webhook_in_flight: BTreeMap<String, i64>,
}

/// The controllers besides `cluster` whose passes are counted, under the names CloudNativePG
/// 1.30's operator gives its controllers (`scheduled-backup`, `database-role`; its dashboard
/// also matches the older `scheduledbackup`).
pub const CONTROLLERS: &[&str] = &["backup", "pooler", "scheduled-backup", "database-role"];

/// Counters shared by the reconcile loop and the metrics endpoint.
#[derive(Debug, Default, Clone)]
pub struct ControllerMetrics {
    inner: Arc<Mutex<Counters>>,
}

impl ControllerMetrics {
    fn with(&self, f: impl FnOnce(&mut Counters)) {
        if let Ok(mut c) = self.inner.lock() {
            f(&mut c);
        }
    }

    /// One pass over a cluster ended (`ok`: without error) after `seconds`.
    pub fn reconciled(&self, namespace: &str, cluster: &str, ok: bool, seconds: f64) {
        let result = if ok { "success" } else { "error" };
        self.with(|c| {
            *c.reconciles
                .entry((namespace.into(), cluster.into(), result))
                .or_default() += 1;
            c.reconcile_seconds += seconds;
            // Every counter of a known cluster exists from its first pass, at 0: `increase()`
            // over a series that appears with its first event misses that event.
            let key: ClusterKey = (namespace.into(), cluster.into());
            c.failovers.entry(key.clone()).or_default();
            c.switchovers.entry(key).or_default();
            for phase in ["completed", "failed"] {
                c.backups
                    .entry((namespace.into(), cluster.into(), phase.into()))
                    .or_default();
            }
            for result in ["success", "error"] {
                c.reconciles
                    .entry((namespace.into(), cluster.into(), result))
                    .or_default();
            }
        });
    }

    /// One pass of `controller` (one of [`CONTROLLERS`]) ended, `ok` or with an error.
    pub fn controller_pass(&self, controller: &'static str, ok: bool) {
        let result = if ok { "success" } else { "error" };
        self.with(|c| *c.controllers.entry((controller, result)).or_default() += 1);
    }

    /// The cluster's primary changed: by a switchover (requested) or a failover.
    pub fn primary_changed(&self, namespace: &str, cluster: &str, switchover: bool) {
        self.with(|c| {
            let map = if switchover {
                &mut c.switchovers
            } else {
                &mut c.failovers
            };
            *map.entry((namespace.into(), cluster.into())).or_default() += 1;
        });
    }

    /// A backup of the cluster finished with `phase` (`completed`, `failed`).
    pub fn backup_finished(&self, namespace: &str, cluster: &str, phase: &str) {
        self.with(|c| {
            *c.backups
                .entry((namespace.into(), cluster.into(), phase.into()))
                .or_default() += 1;
        });
    }

    /// An admission request to `webhook` (its path) started (`in_flight`), or ended with
    /// `code` (controller-runtime's `controller_runtime_webhook_requests_*`).
    pub fn webhook_started(&self, webhook: &str) {
        self.with(|c| *c.webhook_in_flight.entry(webhook.into()).or_default() += 1);
    }

    /// See [`Self::webhook_started`].
    pub fn webhook_finished(&self, webhook: &str, code: u16) {
        self.with(|c| {
            *c.webhook_in_flight.entry(webhook.into()).or_default() -= 1;
            *c.webhook_requests
                .entry((webhook.into(), code))
                .or_default() += 1;
        });
    }

    /// The Prometheus text format.
    pub fn render(&self) -> String {
        let Ok(c) = self.inner.lock() else {
            return String::new();
        };
        let mut families = Vec::new();
        let controller = || vec![("controller".to_string(), "cluster".to_string())];
        let mut total = Family::new(
            "controller_runtime_reconcile_total",
            "Total number of reconciliations per controller",
            MetricKind::Counter,
        );
        let mut errors = Family::new(
            "controller_runtime_reconcile_errors_total",
            "Total number of reconciliation errors per controller",
            MetricKind::Counter,
        );
        let mut per_cluster = Family::new(
            "pgherd_reconcile_total",
            "Reconcile passes per cluster and result",
            MetricKind::Counter,
        );
        let mut by_result: BTreeMap<&str, u64> = BTreeMap::from([("success", 0), ("error", 0)]);
        for ((ns, cluster, result), n) in &c.reconciles {
            *by_result.entry(result).or_default() += n;
            per_cluster.push(
                vec![
                    ("namespace".into(), ns.clone()),
                    ("cluster".into(), cluster.clone()),
                    ("result".into(), (*result).to_string()),
                ],
                *n as f64,
            );
        }
        for (result, n) in &by_result {
            let mut labels = controller();
            labels.push(("result".into(), (*result).to_string()));
            total.push(labels, *n as f64);
        }
        errors.push(controller(), by_result["error"] as f64);
        // The other controllers, every series from the start.
        for name in CONTROLLERS {
            for result in ["success", "error"] {
                let n = c.controllers.get(&(*name, result)).copied().unwrap_or(0);
                total.push(
                    vec![
                        ("controller".into(), (*name).to_string()),
                        ("result".into(), result.to_string()),
                    ],
                    n as f64,
                );
            }
            let failed = c.controllers.get(&(*name, "error")).copied().unwrap_or(0);
            errors.push(
                vec![("controller".into(), (*name).to_string())],
                failed as f64,
            );
        }
        families.extend([total, errors, per_cluster]);
        families.push(
            Family::new(
                "pgherd_reconcile_seconds_total",
                "Time spent in reconcile passes",
                MetricKind::Counter,
            )
            .with(Vec::new(), c.reconcile_seconds),
        );
        for (name, help, map) in [
            (
                "pgherd_failovers_total",
                "Failovers: a new primary promoted because the old one failed",
                &c.failovers,
            ),
            (
                "pgherd_switchovers_total",
                "Switchovers: a new primary promoted on request",
                &c.switchovers,
            ),
        ] {
            let mut family = Family::new(name, help, MetricKind::Counter);
            for ((ns, cluster), n) in map {
                family.push(
                    vec![
                        ("namespace".into(), ns.clone()),
                        ("cluster".into(), cluster.clone()),
                    ],
                    *n as f64,
                );
            }
            families.push(family);
        }
        let mut backups = Family::new(
            "pgherd_backups_total",
            "Backups finished, by phase",
            MetricKind::Counter,
        );
        for ((ns, cluster, phase), n) in &c.backups {
            backups.push(
                vec![
                    ("namespace".into(), ns.clone()),
                    ("cluster".into(), cluster.clone()),
                    ("phase".into(), phase.clone()),
                ],
                *n as f64,
            );
        }
        families.push(backups);
        let mut requests = Family::new(
            "controller_runtime_webhook_requests_total",
            "Total number of admission requests by HTTP status code.",
            MetricKind::Counter,
        );
        for ((webhook, code), n) in &c.webhook_requests {
            requests.push(
                vec![
                    ("code".into(), code.to_string()),
                    ("webhook".into(), webhook.clone()),
                ],
                *n as f64,
            );
        }
        let mut in_flight = Family::new(
            "controller_runtime_webhook_requests_in_flight",
            "Current number of admission requests being served.",
            MetricKind::Gauge,
        );
        for (webhook, n) in &c.webhook_in_flight {
            in_flight.push(vec![("webhook".into(), webhook.clone())], *n as f64);
        }
        families.extend([requests, in_flight]);
        let mut exposition = Exposition::default();
        for family in families {
            // Names are distinct constants: no kind conflict is possible.
            let _ = exposition.add(family);
        }
        exposition.render()
    }
}

/// Serves `/metrics` until the process ends.
pub async fn serve(listener: tokio::net::TcpListener, metrics: ControllerMetrics) {
    use axum::routing::get;
    let app = axum::Router::new().route(
        "/metrics",
        get(move || {
            let metrics = metrics.clone();
            async move {
                (
                    [(axum::http::header::CONTENT_TYPE, crate::CONTENT_TYPE)],
                    metrics.render(),
                )
            }
        }),
    );
    if let Err(e) = axum::serve(listener, app).await {
        tracing::warn!("controller metrics: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_are_rendered_with_their_labels() {
        let m = ControllerMetrics::default();
        m.reconciled("default", "pg", true, 0.01);
        m.reconciled("default", "pg", false, 0.02);
        m.primary_changed("default", "pg", false);
        m.primary_changed("default", "pg", true);
        m.primary_changed("default", "pg", true);
        m.backup_finished("default", "pg", "completed");
        let text = m.render();
        for line in [
            "controller_runtime_reconcile_total{controller=\"cluster\",result=\"success\"} 1",
            "controller_runtime_reconcile_errors_total{controller=\"cluster\"} 1",
            "pgherd_failovers_total{namespace=\"default\",cluster=\"pg\"} 1",
            "pgherd_switchovers_total{namespace=\"default\",cluster=\"pg\"} 2",
            "pgherd_backups_total{namespace=\"default\",cluster=\"pg\",phase=\"completed\"} 1",
        ] {
            assert!(text.contains(line), "{line} not in\n{text}");
        }
    }

    #[test]
    fn counters_exist_at_zero_from_a_clusters_first_pass() {
        let m = ControllerMetrics::default();
        m.reconciled("default", "pg", true, 0.01);
        let text = m.render();
        for line in [
            "pgherd_failovers_total{namespace=\"default\",cluster=\"pg\"} 0",
            "pgherd_switchovers_total{namespace=\"default\",cluster=\"pg\"} 0",
            "pgherd_backups_total{namespace=\"default\",cluster=\"pg\",phase=\"completed\"} 0",
            "pgherd_backups_total{namespace=\"default\",cluster=\"pg\",phase=\"failed\"} 0",
            "pgherd_reconcile_total{namespace=\"default\",cluster=\"pg\",result=\"error\"} 0",
            "controller_runtime_reconcile_errors_total{controller=\"cluster\"} 0",
            "controller_runtime_reconcile_total{controller=\"pooler\",result=\"success\"} 0",
            "controller_runtime_reconcile_errors_total{controller=\"scheduled-backup\"} 0",
        ] {
            assert!(text.contains(line), "{line} not in\n{text}");
        }
        m.controller_pass("pooler", true);
        m.controller_pass("backup", false);
        let text = m.render();
        for line in [
            "controller_runtime_reconcile_total{controller=\"pooler\",result=\"success\"} 1",
            "controller_runtime_reconcile_errors_total{controller=\"backup\"} 1",
        ] {
            assert!(text.contains(line), "{line} not in\n{text}");
        }
    }
}
