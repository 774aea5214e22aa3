//! The `cnpg_pgbouncer_*` exporter, with CloudNativePG's metric names: `SHOW LISTS` as
//! `cnpg_pgbouncer_lists_<item>`, `SHOW POOLS` as `cnpg_pgbouncer_pools_<column>{database,user}`,
//! `SHOW STATS` as `cnpg_pgbouncer_stats_<column>{database}`, plus `cnpg_pgbouncer_up`,
//! `_last_collection_error`, `_collections_total`, `_collection_errors_total{collector}` and
//! `_collection_duration_seconds{collector}`. Every scrape asks PgBouncer afresh.

use crate::admin::{AdminClient, AdminTarget, Row};
use pgherd_metrics::exposition::{Exposition, Family, MetricKind};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Counters kept between scrapes.
#[derive(Debug, Default)]
struct Counters {
    collections: u64,
    errors: BTreeMap<String, u64>,
}

/// The exporter of one PgBouncer.
#[derive(Debug)]
pub struct PoolerExporter {
    target: AdminTarget,
    counters: Mutex<Counters>,
}

const PREFIX: &str = "cnpg_pgbouncer";

fn add(exposition: &mut Exposition, family: Family) {
    // Families are built here with distinct names and fixed kinds: no conflict is possible,
    // and a sample lost to one would only be a missing metric.
    let _ = exposition.add(family);
}

/// Families of a `SHOW` result: every numeric column but the label columns.
fn show_families(section: &str, rows: &[Row], labels: &[&str]) -> Vec<Family> {
    let mut families: BTreeMap<String, Family> = BTreeMap::new();
    for row in rows {
        let label_values: Vec<(String, String)> = labels
            .iter()
            .map(|l| (l.to_string(), row.get(*l).cloned().unwrap_or_default()))
            .collect();
        for (column, value) in row {
            if labels.contains(&column.as_str()) {
                continue;
            }
            let number = match (column.as_str(), value.parse::<f64>()) {
                (_, Ok(n)) => n,
                // CloudNativePG's encoding of the pool mode.
                ("pool_mode", Err(_)) => match value.as_str() {
                    "session" => 1.0,
                    "transaction" => 2.0,
                    "statement" => 3.0,
                    _ => -1.0,
                },
                _ => continue, // other text columns
            };
            // CloudNativePG's name for this column.
            let metric = match column.as_str() {
                "sv_being_canceled" => "sv_wait_cancels",
                other => other,
            };
            let name = format!("{PREFIX}_{section}_{metric}");
            // Gauges throughout, as CloudNativePG exports them (totals included).
            let kind = MetricKind::Gauge;
            families
                .entry(name.clone())
                .or_insert_with(|| {
                    Family::new(
                        name,
                        format!("{column} from PgBouncer's SHOW {}", section.to_uppercase()),
                        kind,
                    )
                })
                .push(label_values.clone(), number);
        }
    }
    families.into_values().collect()
}

/// `SHOW LISTS` (rows of `list`, `items`) as one gauge per list.
fn list_families(rows: &[Row]) -> Vec<Family> {
    rows.iter()
        .filter_map(|r| {
            let list = r.get("list")?;
            let items: f64 = r.get("items")?.parse().ok()?;
            Some(
                Family::new(
                    format!("{PREFIX}_lists_{list}"),
                    format!("Count of {}.", list.replace('_', " ")),
                    MetricKind::Gauge,
                )
                .with(Vec::new(), items),
            )
        })
        .collect()
}

impl PoolerExporter {
    pub fn new(target: AdminTarget) -> Self {
        PoolerExporter {
            target,
            counters: Mutex::default(),
        }
    }

    /// Collect and render the exposition.
    pub async fn render(&self) -> String {
        let started = Instant::now();
        let mut exposition = Exposition::default();
        let mut failed: Vec<&'static str> = Vec::new();
        let mut up = 0.0;
        match AdminClient::connect(&self.target).await {
            Ok(client) => {
                up = 1.0;
                match client.show("LISTS").await {
                    Ok(rows) => list_families(&rows)
                        .into_iter()
                        .for_each(|f| add(&mut exposition, f)),
                    Err(_) => failed.push("SHOW LISTS"),
                }
                match client.show("POOLS").await {
                    Ok(rows) => show_families("pools", &rows, &["database", "user"])
                        .into_iter()
                        .for_each(|f| add(&mut exposition, f)),
                    Err(_) => failed.push("SHOW POOLS"),
                }
                match client.show("STATS").await {
                    Ok(rows) => show_families("stats", &rows, &["database"])
                        .into_iter()
                        .for_each(|f| add(&mut exposition, f)),
                    Err(_) => failed.push("SHOW STATS"),
                }
            }
            Err(_) => failed.push("Collect.up"),
        }
        let (collections, errors) = {
            let mut c = self
                .counters
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            c.collections += 1;
            for f in &failed {
                *c.errors.entry(f.to_string()).or_default() += 1;
            }
            (c.collections, c.errors.clone())
        };
        add(
            &mut exposition,
            Family::new(
                format!("{PREFIX}_up"),
                "1 if pgbouncer is up, 0 otherwise.",
                MetricKind::Gauge,
            )
            .with(Vec::new(), up),
        );
        add(
            &mut exposition,
            Family::new(
                format!("{PREFIX}_last_collection_error"),
                "1 if the last collection ended with error, 0 otherwise.",
                MetricKind::Gauge,
            )
            .with(Vec::new(), if failed.is_empty() { 0.0 } else { 1.0 }),
        );
        add(
            &mut exposition,
            Family::new(
                format!("{PREFIX}_collections_total"),
                "Total number of times PgBouncer was asked for metrics.",
                MetricKind::Counter,
            )
            .with(Vec::new(), collections as f64),
        );
        let mut errors_family = Family::new(
            format!("{PREFIX}_collection_errors_total"),
            "Total errors asking PgBouncer for metrics.",
            MetricKind::Counter,
        );
        for (collector, count) in errors {
            errors_family.push(vec![("collector".into(), collector)], count as f64);
        }
        add(&mut exposition, errors_family);
        add(
            &mut exposition,
            Family::new(
                format!("{PREFIX}_collection_duration_seconds"),
                "Collection time duration in seconds",
                MetricKind::Gauge,
            )
            .with(
                vec![("collector".into(), "Collect.up".into())],
                started.elapsed().as_secs_f64(),
            ),
        );
        exposition.render()
    }
}

/// An axum router serving `GET /metrics`.
pub fn router(exporter: Arc<PoolerExporter>) -> axum::Router {
    use axum::http::header::CONTENT_TYPE;
    axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let exporter = exporter.clone();
            async move {
                (
                    [(CONTENT_TYPE, pgherd_metrics::CONTENT_TYPE)],
                    exporter.render().await,
                )
            }
        }),
    )
}

/// Serve `/metrics` on `listener` until the process ends.
pub async fn serve(
    listener: tokio::net::TcpListener,
    exporter: Arc<PoolerExporter>,
) -> std::io::Result<()> {
    axum::serve(listener, router(exporter)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(pairs: &[(&str, &str)]) -> Row {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn show_results_become_cnpg_families() {
        let pools = [row(&[
            ("database", "app"),
            ("user", "app"),
            ("cl_active", "3"),
            ("sv_idle", "1"),
            ("pool_mode", "transaction"),
        ])];
        let mut e = Exposition::default();
        for f in show_families("pools", &pools, &["database", "user"]) {
            add(&mut e, f);
        }
        for f in show_families(
            "stats",
            &[row(&[("database", "app"), ("total_xact_count", "42")])],
            &["database"],
        ) {
            add(&mut e, f);
        }
        for f in list_families(&[row(&[("list", "free_clients"), ("items", "49")])]) {
            add(&mut e, f);
        }
        let text = e.render();
        assert!(
            text.contains("cnpg_pgbouncer_pools_cl_active{database=\"app\",user=\"app\"} 3"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE cnpg_pgbouncer_stats_total_xact_count gauge"),
            "{text}"
        );
        assert!(
            text.contains("cnpg_pgbouncer_stats_total_xact_count{database=\"app\"} 42"),
            "{text}"
        );
        assert!(
            text.contains("cnpg_pgbouncer_lists_free_clients 49"),
            "{text}"
        );
        assert!(
            text.contains("cnpg_pgbouncer_pools_pool_mode{database=\"app\",user=\"app\"} 2"),
            "{text}"
        );
    }
}
