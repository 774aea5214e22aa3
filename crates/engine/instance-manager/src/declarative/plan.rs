//! The shape every in-database reconciler shares: read the catalog, diff it against the spec
//! in a pure function that returns typed changes, render each change as one [`Statement`], and
//! run only those through an [`Executor`].
//!
//! The executor never lets a write stall the manager's converge loop: before the first write
//! of a pass it asks whether a commit would wait for synchronous standbys that are not there
//! (`dataDurability: required` with its standbys gone) and, if so, runs nothing and reports
//! the object as pending. Every write runs under a statement and a lock timeout, and one that
//! runs out is pending too, tried again on the next pass. PostgreSQL's statement timeout ends
//! before the commit, so a commit that waits for standbys lost after the check is bounded by
//! the client's own timeout, which then cancels it (the commit completes locally).

use pgherd_instance_protocol::ApplyResult;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio_postgres::Client;

/// How long an ordinary catalog write may take.
pub(crate) const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a write that copies files (`CREATE DATABASE`, `SET TABLESPACE`) may take.
pub(crate) const COPY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a write waits for a lock another session holds.
const LOCK_TIMEOUT: Duration = Duration::from_secs(2);
/// A write slower than this makes the executor check the synchronous standbys again.
const SLOW: Duration = Duration::from_secs(1);
/// Beyond the server's own timeout, how long the client waits for its answer.
const CLIENT_MARGIN: Duration = Duration::from_secs(2);

/// One statement of a plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Statement {
    pub sql: String,
    /// It carries a password: kept out of the server log, never repeated in a message.
    pub secret: bool,
    pub timeout: Duration,
}

impl Statement {
    pub fn new(sql: String) -> Self {
        Statement {
            sql,
            secret: false,
            timeout: WRITE_TIMEOUT,
        }
    }

    pub fn copying(sql: String) -> Self {
        Statement {
            timeout: COPY_TIMEOUT,
            ..Statement::new(sql)
        }
    }

    pub fn secret(sql: String) -> Self {
        Statement {
            secret: true,
            ..Statement::new(sql)
        }
    }
}

/// Why one object is not in its declared state after this pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Failure {
    /// Not done yet for a reason that passes (no synchronous standby, a lock, a timeout):
    /// tried again on the next pass.
    Pending(String),
    /// Refused or broken (a reserved name, an unknown owner, an unreadable Secret).
    Failed(String),
}

impl From<String> for Failure {
    fn from(message: String) -> Self {
        Failure::Failed(message)
    }
}

/// The result the callers have always seen: `applied`, or a message; a pending object's
/// message starts with `pending:`.
pub(crate) fn apply_result(name: &str, outcome: Result<(), Failure>) -> ApplyResult {
    let message = match outcome {
        Ok(()) => None,
        Err(Failure::Pending(m)) => Some(format!("pending: {m}")),
        Err(Failure::Failed(m)) => Some(m),
    };
    ApplyResult {
        name: name.to_string(),
        applied: message.is_none(),
        message,
    }
}

static EXECUTED: AtomicU64 = AtomicU64::new(0);

/// How many plan statements this process has executed: an idle pass adds none.
pub fn executed_statements() -> u64 {
    EXECUTED.load(Ordering::Relaxed)
}

/// How many synchronous standbys `synchronous_standby_names` asks for: `FIRST n (…)`,
/// `ANY n (…)`, `n (…)`, or a plain list (one). `None` when it names none.
pub(crate) fn required_sync_standbys(names: &str) -> Option<u32> {
    let text = names.trim();
    if text.is_empty() {
        return None;
    }
    let mut words = text.splitn(2, char::is_whitespace);
    let first = words.next().unwrap_or_default();
    let rest = if first.eq_ignore_ascii_case("any") || first.eq_ignore_ascii_case("first") {
        words.next().unwrap_or_default().trim_start()
    } else {
        text
    };
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    let after = rest[digits.len()..].trim_start();
    if !digits.is_empty() && after.starts_with('(') {
        return digits.parse().ok().filter(|n| *n > 0);
    }
    Some(1)
}

/// A catalog read of `what` with `names` as `$1` (a `text[]`), within the write timeout.
pub(crate) async fn timed_query(
    client: &Client,
    what: &str,
    sql: &str,
    names: &[&str],
) -> Result<Vec<tokio_postgres::Row>, Failure> {
    tokio::time::timeout(WRITE_TIMEOUT, client.query(sql, &[&names]))
        .await
        .map_err(|_| Failure::Pending(format!("reading {what} timed out")))?
        .map_err(|e| Failure::Failed(message(&e)))
}

/// Apply each of `objects` on one executor, given what the catalog read for all of them
/// (`observed`; its failure is each object's): one result per object, named by `name`.
pub(crate) async fn apply_each<T, O>(
    client: &Client,
    objects: &[T],
    observed: Result<O, Failure>,
    name: impl Fn(&T) -> &str,
    mut apply: impl AsyncFnMut(&mut Executor<'_>, &T, &O) -> Result<(), Failure>,
) -> Vec<ApplyResult> {
    let mut executor = Executor::new(client);
    let mut results = Vec::new();
    for object in objects {
        let outcome = match &observed {
            Ok(observed) => apply(&mut executor, object, observed).await,
            Err(e) => Err(e.clone()),
        };
        results.push(apply_result(name(object), outcome));
    }
    executor.finish().await;
    results
}

/// Runs a plan's statements on one connection, counting them.
pub(crate) struct Executor<'a> {
    client: &'a Client,
    /// Whether writes may run (`None`: not asked yet this pass).
    gate: Option<Result<(), String>>,
    /// The statement timeout set on the session, to reset when done.
    timeout: Option<Duration>,
}

impl<'a> Executor<'a> {
    pub fn new(client: &'a Client) -> Self {
        Executor {
            client,
            gate: None,
            timeout: None,
        }
    }

    /// Whether a commit would wait for synchronous standbys that are not connected.
    async fn sync_blocked(&self) -> Result<Option<String>, Failure> {
        let row = tokio::time::timeout(
            WRITE_TIMEOUT,
            self.client.query_one(
                "SELECT current_setting('synchronous_standby_names'), \
                        current_setting('synchronous_commit'), \
                        (SELECT count(*) FROM pg_catalog.pg_stat_replication \
                          WHERE sync_state IN ('sync', 'quorum'))",
                &[],
            ),
        )
        .await
        .map_err(|_| Failure::Pending("the synchronous standby check timed out".into()))?
        .map_err(|e| Failure::Failed(message(&e)))?;
        let names: String = row.get(0);
        let commit: String = row.get(1);
        let connected: i64 = row.get(2);
        let waits = matches!(commit.as_str(), "on" | "remote_write" | "remote_apply");
        Ok(match required_sync_standbys(&names) {
            Some(required) if waits && connected < i64::from(required) => Some(format!(
                "waiting for a synchronous standby (synchronous replication requires {required}, \
                 {connected} connected; dataDurability: required): not run, so the instance \
                 manager does not wait on it; tried again on the next pass"
            )),
            _ => None,
        })
    }

    /// Run `statements` in order; the first one that fails ends the object's pass.
    pub async fn run_all(&mut self, statements: &[Statement]) -> Result<(), Failure> {
        for statement in statements {
            self.run(statement).await?;
        }
        Ok(())
    }

    /// Run one statement of a plan.
    pub async fn run(&mut self, statement: &Statement) -> Result<(), Failure> {
        if self.gate.is_none() {
            self.gate = Some(match self.sync_blocked().await? {
                Some(reason) => Err(reason),
                None => Ok(()),
            });
        }
        if let Some(Err(reason)) = &self.gate {
            return Err(Failure::Pending(reason.clone()));
        }
        if self.timeout != Some(statement.timeout) {
            let ms = statement.timeout.as_millis();
            let lock = LOCK_TIMEOUT.as_millis();
            self.batch(
                &format!("SET statement_timeout = {ms}; SET lock_timeout = {lock}"),
                WRITE_TIMEOUT,
            )
            .await?;
            self.timeout = Some(statement.timeout);
        }
        let sql = if statement.secret {
            // Keep the password out of the server log.
            format!(
                "SET log_statement = 'none'; {}; RESET log_statement",
                statement.sql
            )
        } else {
            statement.sql.clone()
        };
        EXECUTED.fetch_add(1, Ordering::Relaxed);
        let started = std::time::Instant::now();
        let outcome = self.batch(&sql, statement.timeout).await;
        if started.elapsed() >= SLOW {
            // Perhaps a commit waited for standbys that went away since the check: check
            // again before the next write rather than wait on each.
            self.gate = None;
        }
        outcome
    }

    async fn batch(&self, sql: &str, timeout: Duration) -> Result<(), Failure> {
        match tokio::time::timeout(timeout + CLIENT_MARGIN, self.client.batch_execute(sql)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => {
                let code = e.code().map(|c| c.code().to_string());
                match code.as_deref() {
                    // query_canceled (the statement timeout), lock_not_available
                    Some("57014") => Err(Failure::Pending(format!(
                        "did not finish within {} s; tried again on the next pass",
                        timeout.as_secs()
                    ))),
                    Some("55P03") => Err(Failure::Pending(
                        "waiting for a lock another session holds; tried again on the next pass"
                            .into(),
                    )),
                    _ => Err(Failure::Failed(message(&e))),
                }
            }
            Err(_) => {
                // The statement timeout does not cover a commit's wait for synchronous
                // standbys: cancel it, so the session does not stay stuck holding its locks
                // (the commit then completes locally, with a warning).
                let token = self.client.cancel_token();
                let _ =
                    tokio::time::timeout(WRITE_TIMEOUT, token.cancel_query(tokio_postgres::NoTls))
                        .await;
                Err(Failure::Pending(format!(
                    "no answer within {} s (cancelled); tried again on the next pass",
                    (timeout + CLIENT_MARGIN).as_secs()
                )))
            }
        }
    }

    /// Put the session's timeouts back, if this executor changed them.
    pub async fn finish(self) {
        if self.timeout.is_some() {
            // Best effort: a session that cannot reset them is one whose next query fails
            // and is reconnected anyway.
            let _ = self
                .batch("RESET statement_timeout; RESET lock_timeout", WRITE_TIMEOUT)
                .await;
        }
    }
}

/// A server error's own message (never the statement, which may carry a password).
pub(crate) fn message(e: &tokio_postgres::Error) -> String {
    e.as_db_error()
        .map_or_else(|| e.to_string(), |d| d.message().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn synchronous_standby_names_counts() {
        assert_eq!(required_sync_standbys(""), None);
        assert_eq!(required_sync_standbys("  "), None);
        assert_eq!(required_sync_standbys("*"), Some(1));
        assert_eq!(required_sync_standbys("a, b"), Some(1));
        assert_eq!(required_sync_standbys("ANY 2 (a, b, c)"), Some(2));
        assert_eq!(required_sync_standbys("first 3 (\"a\",b,c)"), Some(3));
        assert_eq!(required_sync_standbys("2 (a, b)"), Some(2));
        assert_eq!(required_sync_standbys("2(a, b)"), Some(2));
        assert_eq!(required_sync_standbys("ANY 1 (\"pg-2\")"), Some(1));
    }

    #[test]
    fn pending_and_failed_results() {
        let ok = apply_result("a", Ok(()));
        assert!(ok.applied && ok.message.is_none());
        let pending = apply_result("a", Err(Failure::Pending("later".into())));
        assert!(!pending.applied);
        assert_eq!(pending.message.as_deref(), Some("pending: later"));
        let failed = apply_result("a", Err(Failure::Failed("no".into())));
        assert_eq!(failed.message.as_deref(), Some("no"));
    }
}
