//! The extensions CloudNativePG manages (`pg_stat_statements`, `pgaudit`): in every database
//! that accepts connections, created when wanted and dropped when not — as plan and execute,
//! so only a missing or unwanted extension costs a statement.

use super::ident;
use super::plan::{message, Executor, Failure, Statement};
use crate::observe::connect;
use crate::Postgres;
use std::collections::{BTreeMap, BTreeSet};
use tokio_postgres::Client;

/// One step in one database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ExtensionChange {
    Create(String),
    Drop(String),
}

/// What turns the `installed` extensions into the `wanted` ones. Pure.
pub(crate) fn diff_managed(
    wanted: &BTreeMap<String, bool>,
    installed: &BTreeSet<String>,
) -> Vec<ExtensionChange> {
    wanted
        .iter()
        .filter_map(|(name, on)| match (*on, installed.contains(name)) {
            (true, false) => Some(ExtensionChange::Create(name.clone())),
            (false, true) => Some(ExtensionChange::Drop(name.clone())),
            _ => None,
        })
        .collect()
}

async fn installed(client: &Client, names: &[&str]) -> Result<BTreeSet<String>, Failure> {
    let rows = tokio::time::timeout(
        super::plan::WRITE_TIMEOUT,
        client.query(
            "SELECT extname::text FROM pg_catalog.pg_extension WHERE extname = ANY($1::text[])",
            &[&names],
        ),
    )
    .await
    .map_err(|_| Failure::Pending("reading the extensions timed out".into()))?
    .map_err(|e| Failure::Failed(message(&e)))?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

async fn apply_in(
    pg: &Postgres,
    database: &str,
    wanted: &BTreeMap<String, bool>,
) -> Result<(), Failure> {
    let client = connect(pg, database)
        .await
        .map_err(|e| Failure::Failed(e.to_string()))?;
    let names: Vec<&str> = wanted.keys().map(String::as_str).collect();
    let mut statements = Vec::new();
    for change in diff_managed(wanted, &installed(&client, &names).await?) {
        statements.push(Statement::new(match change {
            ExtensionChange::Create(name) => {
                format!("CREATE EXTENSION IF NOT EXISTS {}", ident(&name)?)
            }
            ExtensionChange::Drop(name) => format!("DROP EXTENSION IF EXISTS {}", ident(&name)?),
        }));
    }
    let mut executor = Executor::new(&client);
    let outcome = executor.run_all(&statements).await;
    executor.finish().await;
    outcome
}

/// The managed extensions as `wanted` says in every database that accepts connections. Done
/// again only when the wish or the list of databases changed since `applied`.
pub async fn apply_managed_extensions(
    pg: &Postgres,
    client: &Client,
    wanted: &BTreeMap<String, bool>,
    applied: &mut Option<String>,
) -> Result<(), String> {
    if wanted.is_empty() {
        return Ok(());
    }
    let databases: Vec<String> = client
        .query(
            "SELECT datname FROM pg_catalog.pg_database WHERE datallowconn ORDER BY datname",
            &[],
        )
        .await
        .map_err(|e| e.to_string())?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let key = format!("{wanted:?} {databases:?}");
    if applied.as_deref() == Some(key.as_str()) {
        return Ok(());
    }
    let mut failures = Vec::new();
    for database in &databases {
        match apply_in(pg, database, wanted).await {
            Ok(()) => {}
            Err(Failure::Pending(m)) => failures.push(format!("{database}: pending: {m}")),
            Err(Failure::Failed(m)) => failures.push(format!("{database}: {m}")),
        }
    }
    if !failures.is_empty() {
        return Err(failures.join("; "));
    }
    *applied = Some(key);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_difference() {
        let wanted: BTreeMap<String, bool> = [
            ("pg_stat_statements".to_string(), true),
            ("pgaudit".to_string(), false),
        ]
        .into();
        let none = BTreeSet::new();
        assert_eq!(
            diff_managed(&wanted, &none),
            vec![ExtensionChange::Create("pg_stat_statements".into())]
        );
        let both: BTreeSet<String> =
            ["pg_stat_statements".to_string(), "pgaudit".to_string()].into();
        assert_eq!(
            diff_managed(&wanted, &both),
            vec![ExtensionChange::Drop("pgaudit".into())]
        );
        let settled: BTreeSet<String> = ["pg_stat_statements".to_string()].into();
        assert_eq!(diff_managed(&wanted, &settled), vec![]);
    }
}
