//! The one way the instance manager turns names and values into SQL text and runs statements:
//! quoting through `pgherd_postgres::quote` (errors name the identifier, never echo a value,
//! which may be a password) and execution with a timeout.

use crate::observe::QUERY_TIMEOUT;
use crate::InstanceError;
use pgherd_postgres::quote::{quote_identifier, quote_literal};
use tokio_postgres::Client;

/// A quoted identifier.
pub(crate) fn identifier(name: &str) -> Result<String, InstanceError> {
    quote_identifier(name).map_err(|e| InstanceError::Unquotable(format!("name {name:?} {e}")))
}

/// A quoted literal; the error does not repeat the value.
pub(crate) fn literal(value: &str) -> Result<String, InstanceError> {
    quote_literal(value).map_err(|e| InstanceError::Unquotable(format!("a value {e}")))
}

/// Run `future` (a query) with the query timeout.
pub(crate) async fn timed<T>(
    context: &'static str,
    future: impl std::future::Future<Output = Result<T, tokio_postgres::Error>>,
) -> Result<T, InstanceError> {
    match tokio::time::timeout(QUERY_TIMEOUT, future).await {
        Ok(result) => result.map_err(|e| InstanceError::Sql {
            context,
            message: e.to_string(),
        }),
        Err(_) => Err(InstanceError::Sql {
            context,
            message: format!("timed out after {}s", QUERY_TIMEOUT.as_secs()),
        }),
    }
}

/// Run statements with the query timeout.
pub(crate) async fn execute(
    client: &Client,
    context: &'static str,
    sql: &str,
) -> Result<(), InstanceError> {
    timed(context, client.batch_execute(sql)).await
}
