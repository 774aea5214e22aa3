//! Runs queries against PostgreSQL: one connection per target database (opened through a
//! caller-supplied [`Connector`]), search_path pinned, each query alone in a read-only
//! transaction with a statement_timeout, and a client-side timeout on top so an unresponsive
//! server cannot hold the scrape. A query is prepared first, so a "query" holding several
//! statements (which could leave the read-only transaction) is refused.

use crate::conversion::ResultSet;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;
use tokio::time::Instant;
use tokio_postgres::{Client, NoTls, SimpleQueryMessage};

/// The future a [`Connector`] returns.
pub type ConnectFuture<'a> = Pin<Box<dyn Future<Output = Result<Client, String>> + Send + 'a>>;

/// Opens a connection to one database as the exporter's role (least privilege: `pg_monitor`).
/// The connection task must be spawned by the connector; the client is dropped when done.
pub trait Connector: Send + Sync {
    fn connect<'a>(&'a self, database: &'a str) -> ConnectFuture<'a>;
}

/// Any `Fn(database) -> ConnectFuture` is a connector.
impl<F> Connector for F
where
    F: for<'a> Fn(&'a str) -> ConnectFuture<'a> + Send + Sync,
{
    fn connect<'a>(&'a self, database: &'a str) -> ConnectFuture<'a> {
        self(database)
    }
}

/// The ordinary connector: TCP (`host` a name or address) or a Unix socket (`host` an absolute
/// directory path), without TLS (the exporter connects locally).
#[derive(Clone)]
pub struct PgConnector {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: Option<String>,
    pub connect_timeout: Duration,
}

impl std::fmt::Debug for PgConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgConnector")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl Connector for PgConnector {
    fn connect<'a>(&'a self, database: &'a str) -> ConnectFuture<'a> {
        Box::pin(async move {
            let mut config = tokio_postgres::Config::new();
            config
                .host(&self.host)
                .port(self.port)
                .user(&self.user)
                .dbname(database)
                .application_name("pgherd-metrics")
                .connect_timeout(self.connect_timeout);
            if let Some(password) = &self.password {
                config.password(password);
            }
            let (client, connection) = config.connect(NoTls).await.map_err(|e| e.to_string())?;
            tokio::spawn(async move {
                // Ends when the client is dropped; errors show up on the client's next call.
                let _ = connection.await;
            });
            Ok(client)
        })
    }
}

/// The search_path every exporter session runs with, as CloudNativePG pins it.
pub const SEARCH_PATH: &str = "pg_catalog, public, pg_temp";

/// Why one query (or connection) failed; the category is a stable label value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("query {query:?} in database {database:?}: {category}: {message}")]
pub struct QueryError {
    pub query: String,
    pub database: String,
    pub category: ErrorCategory,
    pub message: String,
}

/// Kinds of query failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ErrorCategory {
    /// Could not connect to the database.
    Connect,
    /// The statement_timeout or the client-side timeout fired.
    Timeout,
    /// PostgreSQL refused or failed the query.
    Sql,
    /// The result did not fit the metrics mapping.
    Conversion,
    /// Skipped: the scrape's time budget was spent.
    Deadline,
    /// A metric clashes with one of another kind.
    Conflict,
}

impl ErrorCategory {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCategory::Connect => "connect",
            ErrorCategory::Timeout => "timeout",
            ErrorCategory::Sql => "sql",
            ErrorCategory::Conversion => "conversion",
            ErrorCategory::Deadline => "deadline",
            ErrorCategory::Conflict => "conflict",
        }
    }
}

impl std::fmt::Display for ErrorCategory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Connections of one scrape, by database; all closed when dropped.
pub struct Sessions<'c> {
    connector: &'c dyn Connector,
    clients: HashMap<String, Client>,
    /// Stops every call at this instant.
    pub deadline: Instant,
    pub statement_timeout: Duration,
}

impl std::fmt::Debug for Sessions<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sessions")
            .field("databases", &self.clients.keys().collect::<Vec<_>>())
            .field("deadline", &self.deadline)
            .finish()
    }
}

/// A failure without the query name (filled in by the caller).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunError {
    pub category: ErrorCategory,
    pub message: String,
}

fn run_error(category: ErrorCategory, message: impl Into<String>) -> RunError {
    RunError {
        category,
        message: message.into(),
    }
}

fn sql_error(e: tokio_postgres::Error) -> RunError {
    if let Some(db) = e.as_db_error() {
        // 57014: query_canceled, what statement_timeout raises.
        let category = if db.code().code() == "57014" {
            ErrorCategory::Timeout
        } else {
            ErrorCategory::Sql
        };
        return run_error(category, format!("{}: {}", db.code().code(), db.message()));
    }
    run_error(ErrorCategory::Sql, e.to_string())
}

impl<'c> Sessions<'c> {
    /// No connection yet.
    pub fn new(
        connector: &'c dyn Connector,
        deadline: Instant,
        statement_timeout: Duration,
    ) -> Self {
        Sessions {
            connector,
            clients: HashMap::new(),
            deadline,
            statement_timeout,
        }
    }

    fn remaining(&self) -> Result<Duration, RunError> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left < Duration::from_millis(20) {
            return Err(run_error(
                ErrorCategory::Deadline,
                "the scrape's time budget is spent; skipped",
            ));
        }
        Ok(left)
    }

    async fn client(&mut self, database: &str) -> Result<&Client, RunError> {
        if self.clients.get(database).is_some_and(|c| c.is_closed()) {
            self.clients.remove(database);
        }
        if !self.clients.contains_key(database) {
            let left = self.remaining()?;
            let budget = left.min(Duration::from_secs(10));
            let client = tokio::time::timeout(budget, self.connector.connect(database))
                .await
                .map_err(|_| {
                    run_error(
                        ErrorCategory::Connect,
                        format!("connecting timed out after {budget:?}"),
                    )
                })?
                .map_err(|e| run_error(ErrorCategory::Connect, e))?;
            // ISO dates in UTC: timestamp columns are read back as seconds since the epoch,
            // and a `timestamp` without a zone means UTC, as in CloudNativePG's pods.
            let setup = format!(
                "SET search_path TO {SEARCH_PATH}; SET TimeZone TO 'UTC'; SET DateStyle TO 'ISO, YMD'"
            );
            tokio::time::timeout(budget, client.batch_execute(&setup))
                .await
                .map_err(|_| run_error(ErrorCategory::Connect, "session setup timed out"))?
                .map_err(|e| run_error(ErrorCategory::Connect, e.to_string()))?;
            self.clients.insert(database.to_string(), client);
        }
        self.clients
            .get(database)
            .ok_or_else(|| run_error(ErrorCategory::Connect, "no connection"))
    }

    /// Run one single-statement query in `database`, read-only, within the timeouts.
    pub async fn run(&mut self, database: &str, sql: &str) -> Result<ResultSet, RunError> {
        let left = self.remaining()?;
        let statement_timeout = self.statement_timeout.min(left);
        let client_timeout = (statement_timeout + Duration::from_millis(500)).min(left);
        let client = self.client(database).await?;
        let work = run_in_transaction(client, sql, statement_timeout);
        match tokio::time::timeout(client_timeout, work).await {
            Ok(result) => result,
            Err(_) => {
                // The connection is mid-query: drop it, the next query reconnects.
                self.clients.remove(database);
                Err(run_error(
                    ErrorCategory::Timeout,
                    format!("no answer within {client_timeout:?}"),
                ))
            }
        }
    }
}

async fn run_in_transaction(
    client: &Client,
    sql: &str,
    statement_timeout: Duration,
) -> Result<ResultSet, RunError> {
    let millis = statement_timeout.as_millis().max(1);
    client
        .batch_execute(&format!(
            "BEGIN TRANSACTION READ ONLY; SET LOCAL statement_timeout = {millis}"
        ))
        .await
        .map_err(sql_error)?;
    let result = query_text(client, sql).await;
    let end = if result.is_ok() { "COMMIT" } else { "ROLLBACK" };
    let ended = client.batch_execute(end).await.map_err(sql_error);
    let result = result?;
    ended?;
    Ok(result)
}

async fn query_text(client: &Client, sql: &str) -> Result<ResultSet, RunError> {
    // Preparing refuses several statements, which could end the read-only transaction.
    let statement = client.prepare(sql).await.map_err(sql_error)?;
    let mut result = ResultSet {
        columns: statement
            .columns()
            .iter()
            .map(|c| c.name().to_string())
            .collect(),
        rows: Vec::new(),
    };
    drop(statement);
    for message in client.simple_query(sql).await.map_err(sql_error)? {
        if let SimpleQueryMessage::Row(row) = message {
            result.rows.push(
                (0..row.len())
                    .map(|i| row.get(i).map(str::to_string))
                    .collect(),
            );
        }
    }
    Ok(result)
}

/// Whether `name` matches a `target_databases` pattern (`*` any run, `?` one character).
pub fn matches_pattern(pattern: &str, name: &str) -> bool {
    fn go(p: &[char], n: &[char]) -> bool {
        match (p.first(), n.first()) {
            (None, None) => true,
            (Some('*'), _) => go(&p[1..], n) || (!n.is_empty() && go(p, &n[1..])),
            (Some('?'), Some(_)) => go(&p[1..], &n[1..]),
            (Some(a), Some(b)) if a == b => go(&p[1..], &n[1..]),
            _ => false,
        }
    }
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    go(&p, &n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns() {
        assert!(matches_pattern("*", "app"));
        assert!(matches_pattern("app*", "app_2"));
        assert!(matches_pattern("a?p", "app"));
        assert!(!matches_pattern("app", "apps"));
        assert!(!matches_pattern("b*", "app"));
    }

    #[tokio::test]
    async fn unreachable_postgres_is_reported_as_down() {
        fn refuse(database: &str) -> ConnectFuture<'_> {
            Box::pin(async move { Err(format!("no server for {database}")) })
        }
        let config = crate::ExporterConfig::new("c").unwrap();
        let exporter = crate::Exporter::new(config, refuse);
        let collection = exporter.collect().await;
        assert_eq!(collection.errors.len(), 1, "{:?}", collection.errors);
        assert_eq!(collection.errors[0].category, ErrorCategory::Connect);
        assert!(collection.errors[0]
            .message
            .contains("no server for postgres"));
        let text = collection.exposition.render();
        assert!(
            text.contains("cnpg_collector_up{cluster=\"c\"} 0\n"),
            "{text}"
        );
        assert!(
            text.contains("cnpg_collector_last_collection_error 1\n"),
            "{text}"
        );
        assert!(!text.contains("cnpg_pg_"), "{text}");
        let again = exporter.render().await;
        assert!(
            again.contains("cnpg_collector_collections_total 2\n"),
            "{again}"
        );
        assert!(again.contains(
            "cnpg_collector_query_errors_total{query=\"(server version)\",datname=\"postgres\",category=\"connect\"} 2\n"
        ), "{again}");
    }

    #[test]
    fn debug_hides_the_password() {
        let c = PgConnector {
            host: "/run".into(),
            port: 5432,
            user: "u".into(),
            password: Some("secret".into()),
            connect_timeout: Duration::from_secs(1),
        };
        assert!(!format!("{c:?}").contains("secret"));
    }
}
