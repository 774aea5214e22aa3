//! On the primary: PgBouncer's built-in authentication. While a Pooler with built-in
//! authentication uses the cluster, the role `cnpg_pooler_pgbouncer` exists and every database
//! that accepts connections (`template1` included, so new databases inherit it) has
//! `public.user_search(text)`; once none does, both are dropped.
//!
//! The databases already seen with the function are remembered for the life of the process
//! (forgotten when the role goes), so a steady primary does not reconnect to every database on
//! every pass; a function dropped by hand comes back when the manager restarts.

use crate::observe::connect;
use crate::postgres::Postgres;
use crate::sql::{execute, timed};
use crate::InstanceError;
use pgherd_pooler::sql;
use std::collections::BTreeSet;
use std::sync::Mutex;
use tokio_postgres::Client;

/// Databases (name, oid) known to have the function.
static DONE: Mutex<BTreeSet<(String, String)>> = Mutex::new(BTreeSet::new());

fn done() -> std::sync::MutexGuard<'static, BTreeSet<(String, String)>> {
    DONE.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn unquotable(e: pgherd_postgres::quote::QuoteError) -> InstanceError {
    InstanceError::Unquotable(format!("pooler SQL: {e}"))
}

async fn databases(client: &Client) -> Result<Vec<(String, String)>, InstanceError> {
    let rows = timed("list databases", client.query(sql::DATABASES, &[])).await?;
    Ok(rows
        .iter()
        .map(|r| (r.get::<_, String>(0), r.get::<_, String>(1)))
        .collect())
}

async fn role_exists(client: &Client) -> Result<bool, InstanceError> {
    let check = sql::role_exists().map_err(unquotable)?;
    Ok(
        timed("check the pooler role", client.query_one(&check, &[]))
            .await?
            .get(0),
    )
}

/// Converge the pooler's role and function to `wanted`.
pub async fn reconcile(pg: &Postgres, client: &Client, wanted: bool) -> Result<(), InstanceError> {
    if !wanted {
        if !role_exists(client).await? {
            return Ok(());
        }
        for (db, _) in databases(client).await? {
            let c = connect(pg, &db).await?;
            execute(&c, "drop public.user_search", sql::DROP_FUNCTION).await?;
        }
        let drop = sql::drop_role().map_err(unquotable)?;
        execute(client, "drop the pooler role", &drop).await?;
        done().clear();
        tracing::info!(
            "dropped the PgBouncer role cnpg_pooler_pgbouncer (no Pooler uses the cluster)"
        );
        return Ok(());
    }
    if !role_exists(client).await? {
        // Dropped behind our back (or never made): everything is done again.
        done().clear();
    }
    let all = databases(client).await?;
    let missing: Vec<(String, String)> = {
        let done = done();
        all.iter().filter(|d| !done.contains(*d)).cloned().collect()
    };
    if missing.is_empty() {
        return Ok(());
    }
    let create = sql::create_role().map_err(unquotable)?;
    execute(client, "create the pooler role", &create).await?;
    let check = sql::function_exists().map_err(unquotable)?;
    for (db, oid) in missing {
        let c = connect(pg, &db).await?;
        let present: bool = timed("check public.user_search", c.query_one(&check, &[]))
            .await?
            .get(0);
        if !present {
            let statement = sql::create_function(&db).map_err(unquotable)?;
            execute(&c, "create public.user_search", &statement).await?;
        }
        drop(c); // template1 must not stay connected: CREATE DATABASE copies it
        done().insert((db, oid));
    }
    Ok(())
}
