//! Rows on either side of an instant, for point-in-time recovery tests: a recovery to the
//! instant must hold exactly the rows before it.

use std::time::Duration;

/// Create table `pitr` with rows 1–10, wait past a second, take the instant (UTC, as a
/// `recoveryTarget.targetTime` reads it), wait again, add rows 11–20; the instant.
pub async fn rows_around_an_instant(
    client: &tokio_postgres::Client,
) -> Result<String, tokio_postgres::Error> {
    client
        .batch_execute("CREATE TABLE pitr (i int); INSERT INTO pitr SELECT generate_series(1, 10)")
        .await?;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let at: String = client
        .query_one(
            "SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US')",
            &[],
        )
        .await?
        .get(0);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    client
        .batch_execute("INSERT INTO pitr SELECT generate_series(11, 20)")
        .await?;
    Ok(at)
}

/// The rows a recovery to [`rows_around_an_instant`]'s instant must hold.
pub fn rows_before() -> Vec<i32> {
    (1..=10).collect()
}
