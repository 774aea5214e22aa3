//! The instance's Prometheus exporter, compatible with CloudNativePG's: query files in its YAML
//! format (custom queries from the Cluster's ConfigMaps/Secrets), an embedded default query set
//! with its metric names (`cnpg_<query>_<column>`), the built-in `cnpg_collector_*` metrics, a
//! runner that executes queries read-only with timeouts as a least-privilege role and keeps
//! results for `metricsQueriesTTL`, and the text exposition served on `/metrics`.
//!
//! Integration: `Exporter::new(ExporterConfig::from_monitoring(..)?, PgConnector { .. })`, then
//! serve [`router`] (or call [`Exporter::render`]) and feed [`ClusterFacts`] as they change.
//!
//! Depends on the API model only: the instance manager wires it; it must not reach into
//! PGDATA beyond measuring the volumes it is given.
//!
//! Imports: pgherd-api.

mod cache;
pub mod collector;
pub mod controller_metrics;
pub mod conversion;
pub mod duration;
mod exporter;
pub mod exposition;
pub mod query_config;
pub mod runner;
mod timestamp;
pub mod version;

pub use collector::{ClusterFacts, Volumes};
pub use exporter::{Collection, Exporter, ExporterConfig};
pub use exposition::{Exposition, CONTENT_TYPE};
pub use query_config::{QueryConfigError, QuerySet, UserQuery};
pub use runner::{ConnectFuture, Connector, ErrorCategory, PgConnector, QueryError};

use std::collections::BTreeSet;
use std::sync::Arc;

/// The default query set (CloudNativePG's metric names), in CloudNativePG's query-file format.
pub const DEFAULT_QUERIES: &str = include_str!("default_queries.yaml");

/// The SQL-based collector metrics, always run.
pub const COLLECTOR_QUERIES: &str = include_str!("collector_queries.yaml");

/// The role CloudNativePG's exporter runs as; it needs only `pg_monitor`.
pub const EXPORTER_ROLE: &str = "cnpg_metrics_exporter";

/// Idempotent SQL creating [`EXPORTER_ROLE`] (login, member of `pg_monitor`, nothing else);
/// run by the instance manager on the primary. Authentication is the caller's (peer/local).
pub const EXPORTER_ROLE_SQL: &str = "DO $$ BEGIN \
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'cnpg_metrics_exporter') THEN \
      CREATE ROLE cnpg_metrics_exporter LOGIN; \
    END IF; END $$; \
    GRANT pg_monitor TO cnpg_metrics_exporter; \
    ALTER ROLE cnpg_metrics_exporter SET search_path TO pg_catalog, public, pg_temp";

/// Errors building an exporter's configuration.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MetricsError {
    /// A query file is invalid.
    #[error(transparent)]
    QueryConfig(#[from] QueryConfigError),
    /// `metricsQueriesTTL` is not a duration.
    #[error("spec.monitoring.metricsQueriesTTL: {value:?} is not a duration; write e.g. \"30s\", \"1m\" or \"0\" to disable caching")]
    InvalidTtl { value: String },
}

impl MetricsError {
    /// A stable category (for events and metrics labels).
    pub fn category(&self) -> &'static str {
        match self {
            MetricsError::QueryConfig(_) => "query_config",
            MetricsError::InvalidTtl { .. } => "ttl",
        }
    }
}

/// The built-in collector queries. Their text is embedded and tested to parse, so the empty
/// fallback is unreachable in practice.
pub fn builtin_queries() -> QuerySet {
    QuerySet::from_yaml("collector queries", COLLECTOR_QUERIES).unwrap_or_default()
}

/// The default query set.
pub fn default_queries() -> Result<QuerySet, QueryConfigError> {
    QuerySet::from_yaml("default queries", DEFAULT_QUERIES)
}

/// The queries of a Cluster: the default set unless `disableDefaultQueries`, then each custom
/// file (`(source name, YAML text)`, ConfigMaps then Secrets as listed; later definitions
/// replace earlier ones). For [`ExporterConfig::from_monitoring`] and [`Exporter::set_queries`].
pub fn query_set(
    disable_default_queries: bool,
    custom_queries: &[(String, String)],
) -> Result<QuerySet, QueryConfigError> {
    let mut queries = QuerySet::default();
    if !disable_default_queries {
        queries.add_yaml("default queries", DEFAULT_QUERIES)?;
    }
    for (source, text) in custom_queries {
        queries.add_yaml(source, text)?;
    }
    Ok(queries)
}

/// Every metric name exported with `queries` configured: the collector's and the queries'
/// (histograms with their `_bucket`, `_sum` and `_count` series).
pub fn exported_metric_names(queries: &QuerySet) -> BTreeSet<String> {
    let mut names: BTreeSet<String> = collector::COLLECTOR_METRICS
        .iter()
        .map(|(n, _)| n.to_string())
        .collect();
    names.insert("cnpg_collector_sync_replicas".into());
    names.insert("cnpg_collector_pg_wal".into());
    for query in builtin_queries().queries().iter().chain(queries.queries()) {
        for column in &query.metrics {
            if let Some(name) = column.metric_name(&query.prefix) {
                if column.usage == query_config::ColumnUsage::Histogram {
                    for suffix in ["_bucket", "_sum", "_count"] {
                        names.insert(format!("{name}{suffix}"));
                    }
                }
                names.insert(name);
            }
        }
    }
    names
}

/// Every metric name exported with the default queries.
pub fn default_metric_names() -> BTreeSet<String> {
    exported_metric_names(&default_queries().unwrap_or_default())
}

/// An axum router serving `GET /metrics`.
pub fn router(exporter: Arc<Exporter>) -> axum::Router {
    use axum::http::header::CONTENT_TYPE as HEADER;
    axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let exporter = exporter.clone();
            async move { ([(HEADER, CONTENT_TYPE)], exporter.render().await) }
        }),
    )
}
