//! The exporter: at each scrape, the collector queries and the configured queries run (or come
//! from the cache) in their databases, bounded by the scrape's time budget; a failing or slow
//! query is counted and reported, the rest is served.

use crate::cache::ResultCache;
use crate::collector::{self, ClusterFacts, Volumes};
use crate::conversion;
use crate::exposition::{Exposition, Family, MetricKind};
use crate::query_config::{QuerySet, UserQuery, DEFAULT_DATABASE};
use crate::runner::{matches_pattern, Connector, ErrorCategory, QueryError, RunError, Sessions};
use crate::version::ServerVersion;
use crate::{builtin_queries, MetricsError};
use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::time::Instant;

/// What the exporter runs and how.
#[derive(Debug, Clone)]
pub struct ExporterConfig {
    /// The `cluster` label of `cnpg_collector_up` and `cnpg_collector_postgres_version`.
    pub cluster_name: String,
    /// The default queries (unless disabled) and the custom ones, in override order.
    pub queries: QuerySet,
    /// How long query results are reused (`metricsQueriesTTL`, default 30 s; zero: never).
    pub cache_ttl: Duration,
    /// Each query's statement_timeout.
    pub statement_timeout: Duration,
    /// The whole scrape's budget; queries not reached in it are skipped and reported.
    pub scrape_timeout: Duration,
    /// Where queries without `target_databases` run.
    pub default_database: String,
    /// File systems to measure (`volume` label, path).
    pub volumes: Volumes,
}

impl ExporterConfig {
    /// The default queries, 30 s cache, 5 s per query, 9 s per scrape (under Prometheus's
    /// default 10 s scrape timeout, so a slow query costs its own series, not the whole scrape).
    pub fn new(cluster_name: &str) -> Result<Self, MetricsError> {
        Self::from_monitoring(cluster_name, false, None, &[])
    }

    /// From the Cluster's `spec.monitoring`: `disableDefaultQueries`, `metricsQueriesTTL` (a
    /// duration such as `30s`) and the custom query files' texts, each with a name for errors
    /// (`(source name, YAML text)`, in the order ConfigMaps then Secrets, as listed).
    pub fn from_monitoring(
        cluster_name: &str,
        disable_default_queries: bool,
        metrics_queries_ttl: Option<&str>,
        custom_queries: &[(String, String)],
    ) -> Result<Self, MetricsError> {
        let queries = crate::query_set(disable_default_queries, custom_queries)?;
        let cache_ttl = match metrics_queries_ttl {
            None => Duration::from_secs(30),
            Some(text) => {
                crate::duration::parse_duration(text).ok_or_else(|| MetricsError::InvalidTtl {
                    value: text.to_string(),
                })?
            }
        };
        Ok(ExporterConfig {
            cluster_name: cluster_name.to_string(),
            queries,
            cache_ttl,
            statement_timeout: Duration::from_secs(5),
            scrape_timeout: Duration::from_secs(9),
            default_database: DEFAULT_DATABASE.to_string(),
            volumes: Vec::new(),
        })
    }
}

#[derive(Debug, Default)]
struct State {
    cache: ResultCache,
    collections: u64,
    collections_with_errors: u64,
    query_errors: BTreeMap<(String, String, ErrorCategory), u64>,
    errors_by_query: BTreeMap<String, u64>,
    last_update: Option<f64>,
    /// The query set generation the cache was filled with.
    generation: u64,
}

/// The exporter of one instance.
pub struct Exporter {
    config: ExporterConfig,
    builtin: QuerySet,
    /// The queries in use and their generation (bumped by [`Exporter::set_queries`]).
    queries: RwLock<(u64, Arc<QuerySet>)>,
    connector: Arc<dyn Connector>,
    facts: RwLock<ClusterFacts>,
    state: tokio::sync::Mutex<State>,
}

impl std::fmt::Debug for Exporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Exporter")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// What one scrape produced, for callers that want more than the text.
#[derive(Debug, Clone, Default)]
pub struct Collection {
    pub exposition: Exposition,
    /// Every query that failed or was skipped in this scrape.
    pub errors: Vec<QueryError>,
}

fn now_epoch() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

struct ServerInfo {
    version: ServerVersion,
    in_recovery: bool,
}

async fn server_info(sessions: &mut Sessions<'_>, db: &str) -> Result<ServerInfo, RunError> {
    let result = sessions
        .run(
            db,
            "SELECT pg_catalog.current_setting('server_version_num'), pg_catalog.pg_is_in_recovery()",
        )
        .await?;
    let row = result.rows.first().ok_or_else(|| RunError {
        category: ErrorCategory::Sql,
        message: "no server version".into(),
    })?;
    let cell = |i: usize| row.get(i).cloned().flatten().unwrap_or_default();
    Ok(ServerInfo {
        version: ServerVersion::from_version_num(cell(0).parse().unwrap_or(0)),
        in_recovery: cell(1) == "t",
    })
}

impl Exporter {
    /// An exporter connecting through `connector`.
    pub fn new(config: ExporterConfig, connector: impl Connector + 'static) -> Self {
        Exporter {
            queries: RwLock::new((0, Arc::new(config.queries.clone()))),
            config,
            builtin: builtin_queries(),
            connector: Arc::new(connector),
            facts: RwLock::new(ClusterFacts::default()),
            state: tokio::sync::Mutex::new(State::default()),
        }
    }

    /// The configuration it was created with (see [`Exporter::queries`] for the queries in use).
    pub fn config(&self) -> &ExporterConfig {
        &self.config
    }

    /// The queries in use.
    pub fn queries(&self) -> Arc<QuerySet> {
        self.snapshot().1
    }

    fn snapshot(&self) -> (u64, Arc<QuerySet>) {
        match self.queries.read() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Use these queries from the next scrape on (custom queries changed: CloudNativePG's
    /// `cnpg.io/reload`); cached results of the old ones are dropped.
    pub fn set_queries(&self, queries: QuerySet) {
        let mut guard = match self.queries.write() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        let generation = guard.0 + 1;
        *guard = (generation, Arc::new(queries));
    }

    /// Replace the facts other subsystems report (backups, fencing, replica mode...).
    pub fn set_facts(&self, facts: ClusterFacts) {
        match self.facts.write() {
            Ok(mut guard) => *guard = facts,
            Err(poisoned) => *poisoned.into_inner() = facts,
        }
    }

    fn facts(&self) -> ClusterFacts {
        match self.facts.read() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Every metric name this exporter can emit.
    pub fn metric_names(&self) -> std::collections::BTreeSet<String> {
        crate::exported_metric_names(&self.queries())
    }

    /// The Prometheus text of one scrape.
    pub async fn render(&self) -> String {
        self.collect().await.exposition.render()
    }

    /// One scrape. Concurrent scrapes run one after the other (sharing the cache).
    pub async fn collect(&self) -> Collection {
        let mut state = self.state.lock().await;
        let (generation, queries) = self.snapshot();
        if state.generation != generation {
            state.cache = ResultCache::default();
            state.generation = generation;
        }
        let started = Instant::now();
        let deadline = started + self.config.scrape_timeout;
        let mut sessions = Sessions::new(
            self.connector.as_ref(),
            deadline,
            self.config.statement_timeout,
        );
        let mut exposition = Exposition::default();
        let mut errors = Vec::new();
        let mut cache_hits = 0u64;
        let mut ran_any = false;
        let default_db = self.config.default_database.clone();
        let info = server_info(&mut sessions, &default_db).await;
        let up = info.is_ok();
        let mut queries_elapsed = Duration::ZERO;
        match info {
            Err(e) => errors.push(QueryError {
                query: "(server version)".into(),
                database: default_db.clone(),
                category: e.category,
                message: e.message,
            }),
            Ok(info) => {
                // CloudNativePG's label and value: "major.minor" (15.4), without a packager's
                // suffix such as Debian's " (Debian 15.4-1.pgdg120+1)".
                let major_minor = format!("{}.{}", info.version.major, info.version.minor);
                let _ = exposition.add(
                    collector::family("cnpg_collector_postgres_version", MetricKind::Gauge).with(
                        vec![
                            ("full".into(), major_minor.clone()),
                            ("cluster".into(), self.config.cluster_name.clone()),
                        ],
                        major_minor.parse().unwrap_or(info.version.major as f64),
                    ),
                );
                let queries_started = Instant::now();
                let mut databases: Option<Vec<String>> = None;
                let all = self.builtin.queries().iter().chain(queries.queries());
                for query in all {
                    if (query.primary && info.in_recovery)
                        || query
                            .runonserver
                            .as_ref()
                            .is_some_and(|r| !r.contains(info.version))
                    {
                        continue;
                    }
                    let targets = match self
                        .targets(query, &mut sessions, &mut databases, &mut errors)
                        .await
                    {
                        Some(t) => t,
                        None => continue,
                    };
                    for db in targets {
                        let now = std::time::Instant::now();
                        if let Some(cached) = state.cache.get(&query.key, &db, now) {
                            cache_hits += 1;
                            for family in cached.iter().cloned() {
                                merge(&mut exposition, family, query, &db, &mut errors);
                            }
                            continue;
                        }
                        ran_any = true;
                        match self
                            .run_query(&mut sessions, query, &db, info.version)
                            .await
                        {
                            Ok((families, problems)) => {
                                let failed = !problems.is_empty();
                                for message in problems {
                                    errors.push(QueryError {
                                        query: query.key.clone(),
                                        database: db.clone(),
                                        category: ErrorCategory::Conversion,
                                        message,
                                    });
                                }
                                if !failed {
                                    let ttl = query
                                        .cache_seconds
                                        .map(Duration::from_secs)
                                        .unwrap_or(self.config.cache_ttl);
                                    state.cache.put(&query.key, &db, families.clone(), ttl, now);
                                }
                                for family in families {
                                    merge(&mut exposition, family, query, &db, &mut errors);
                                }
                            }
                            Err(e) => errors.push(QueryError {
                                query: query.key.clone(),
                                database: db.clone(),
                                category: e.category,
                                message: e.message,
                            }),
                        }
                    }
                }
                queries_elapsed = queries_started.elapsed();
                state.cache.prune(std::time::Instant::now());
            }
        }
        drop(sessions);
        if ran_any && errors.is_empty() {
            state.last_update = Some(now_epoch());
        }
        self.bookkeeping(&mut state, &mut exposition, &errors, up);
        let (volumes, problems) = collector::volume_families(&self.config.volumes);
        for family in volumes
            .into_iter()
            .chain(collector::fact_families(&self.facts()))
        {
            let _ = exposition.add(family);
        }
        for message in problems {
            errors.push(QueryError {
                query: "(volumes)".into(),
                database: String::new(),
                category: ErrorCategory::Sql,
                message,
            });
        }
        let cache_families = [
            collector::family("cnpg_cache_hits", MetricKind::Gauge).with(vec![], cache_hits as f64),
            collector::family("cnpg_cache_miss", MetricKind::Gauge)
                .with(vec![], if ran_any { 1.0 } else { 0.0 }),
        ];
        let mut duration = collector::family(
            "cnpg_collector_collection_duration_seconds",
            MetricKind::Gauge,
        );
        duration.push(
            vec![("collector".into(), "queries".into())],
            queries_elapsed.as_secs_f64(),
        );
        duration.push(
            vec![("collector".into(), "total".into())],
            started.elapsed().as_secs_f64(),
        );
        for family in cache_families.into_iter().chain([duration]) {
            let _ = exposition.add(family);
        }
        Collection { exposition, errors }
    }

    async fn targets(
        &self,
        query: &UserQuery,
        sessions: &mut Sessions<'_>,
        databases: &mut Option<Vec<String>>,
        errors: &mut Vec<QueryError>,
    ) -> Option<Vec<String>> {
        if query.target_databases.is_empty() {
            return Some(vec![self.config.default_database.clone()]);
        }
        if databases.is_none() {
            let listed = sessions
                .run(
                    &self.config.default_database,
                    "SELECT d.datname FROM pg_catalog.pg_database d WHERE d.datallowconn AND NOT d.datistemplate ORDER BY 1",
                )
                .await;
            match listed {
                Ok(rs) => {
                    *databases = Some(
                        rs.rows
                            .into_iter()
                            .filter_map(|r| r.into_iter().next().flatten())
                            .collect(),
                    )
                }
                Err(e) => {
                    errors.push(QueryError {
                        query: query.key.clone(),
                        database: "(listing databases)".into(),
                        category: e.category,
                        message: e.message,
                    });
                    return None;
                }
            }
        }
        let all = databases.as_deref().unwrap_or_default();
        Some(
            all.iter()
                .filter(|db| {
                    query
                        .target_databases
                        .iter()
                        .any(|p| matches_pattern(p, db))
                })
                .cloned()
                .collect(),
        )
    }

    async fn run_query(
        &self,
        sessions: &mut Sessions<'_>,
        query: &UserQuery,
        db: &str,
        version: ServerVersion,
    ) -> Result<(Vec<Family>, Vec<String>), RunError> {
        if let Some(predicate) = &query.predicate_query {
            let result = sessions.run(db, predicate).await?;
            let first = result
                .rows
                .first()
                .and_then(|r| r.first().cloned().flatten());
            if first.as_deref() != Some("t") {
                return Ok((Vec::new(), Vec::new()));
            }
        }
        let result = sessions.run(db, &query.query).await?;
        Ok(conversion::families(query, &result, version))
    }

    fn bookkeeping(
        &self,
        state: &mut State,
        exposition: &mut Exposition,
        errors: &[QueryError],
        up: bool,
    ) {
        state.collections += 1;
        if !errors.is_empty() {
            state.collections_with_errors += 1;
        }
        for e in errors {
            *state
                .query_errors
                .entry((e.query.clone(), e.database.clone(), e.category))
                .or_default() += 1;
            *state.errors_by_query.entry(e.query.clone()).or_default() += 1;
        }
        let cluster = vec![("cluster".to_string(), self.config.cluster_name.clone())];
        let failed = if errors.is_empty() { 0.0 } else { 1.0 };
        let mut families = vec![
            collector::family("cnpg_collector_up", MetricKind::Gauge)
                .with(cluster, if up { 1.0 } else { 0.0 }),
            collector::family("cnpg_collector_collections_total", MetricKind::Counter)
                .with(vec![], state.collections as f64),
            collector::family(
                "cnpg_collector_collection_errors_total",
                MetricKind::Counter,
            )
            .with(vec![], state.collections_with_errors as f64),
            collector::family("cnpg_collector_last_collection_error", MetricKind::Gauge)
                .with(vec![], failed),
            collector::family("cnpg_last_error", MetricKind::Gauge).with(vec![], failed),
        ];
        let mut per_query =
            collector::family("cnpg_collector_query_errors_total", MetricKind::Counter);
        for ((query, db, category), count) in &state.query_errors {
            per_query.push(
                vec![
                    ("query".into(), query.clone()),
                    ("datname".into(), db.clone()),
                    ("category".into(), category.as_str().into()),
                ],
                *count as f64,
            );
        }
        let mut by_query = collector::family("cnpg_errors_total", MetricKind::Counter);
        for (query, count) in &state.errors_by_query {
            by_query.push(
                vec![("errorUserQueries".into(), query.clone())],
                *count as f64,
            );
        }
        families.push(per_query);
        families.push(by_query);
        if let Some(at) = state.last_update {
            families.push(
                collector::family("cnpg_last_update_timestamp", MetricKind::Gauge).with(vec![], at),
            );
        }
        for family in families {
            let _ = exposition.add(family);
        }
    }
}

fn merge(
    exposition: &mut Exposition,
    family: Family,
    query: &UserQuery,
    db: &str,
    errors: &mut Vec<QueryError>,
) {
    if let Err(conflict) = exposition.add(family) {
        errors.push(QueryError {
            query: query.key.clone(),
            database: db.to_string(),
            category: ErrorCategory::Conflict,
            message: conflict.to_string(),
        });
    }
}
