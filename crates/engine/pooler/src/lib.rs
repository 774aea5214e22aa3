//! PgBouncer in front of a cluster, as CloudNativePG's `Pooler` runs it: the `pgbouncer.ini`
//! and HBA file rendered from a Pooler's spec ([`config`]), the SQL of the built-in
//! authentication role `cnpg_pooler_pgbouncer` and its `public.user_search(text)` lookup
//! function ([`sql`]), an async client of PgBouncer's admin console ([`admin`]) and the
//! `cnpg_pgbouncer_*` Prometheus exporter ([`metrics`]).
//!
//! Depends on the model crates and the metrics engine (for the text exposition) only. It does
//! no platform I/O: callers write the rendered files and start the processes.
//!
//! Imports: pgherd-api, pgherd-metrics, pgherd-postgres.

pub mod admin;
pub mod config;
pub mod metrics;
pub mod sql;

pub use admin::{AdminClient, AdminError};
pub use config::{render, ConfigError, ConfigPaths, Rendered, Upstream};

/// The role PgBouncer authenticates to PostgreSQL with (TLS client certificate).
pub const AUTH_USER: &str = pgherd_postgres::conf::POOLER_USER;
/// The admin console's user (`admin_users`).
pub const ADMIN_USER: &str = "pgbouncer";
/// CloudNativePG's default `auth_query`.
pub const DEFAULT_AUTH_QUERY: &str = "SELECT usename, passwd FROM public.user_search($1)";
/// Annotation on a Pooler: `"false"` turns off pausing it during a switchover.
pub const PAUSE_ON_SWITCHOVER_ANNOTATION: &str = "pgherd.io/pause-on-switchover";

/// Whether `pooler` (of type `rw`) pauses around its cluster's switchovers, on every platform:
/// not when its annotation says `false`, nor in session mode (a client's session keeps its
/// server connection, so `PAUSE` would wait for the clients to leave: new clients would wait
/// for nothing, and the switchover with them).
pub fn pause_on_switchover(pooler: &pgherd_api::Pooler) -> bool {
    let session = pooler.spec.pgbouncer.pool_mode.unwrap_or_default()
        == pgherd_api::kinds::pooler::PgBouncerPoolMode::Session;
    !session
        && pooler
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(PAUSE_ON_SWITCHOVER_ANNOTATION))
            .is_none_or(|v| !v.eq_ignore_ascii_case("false"))
}
