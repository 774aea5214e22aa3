//! The instance manager's HTTP endpoints on loopback: `/pg/status` (JSON [`InstanceStatus`]),
//! `/healthz` (the manager is alive) and `/readyz` (PostgreSQL is ready).

use crate::supervisor::Shared;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use pgherd_instance_protocol::{InstanceStatus, STATUS_PATH};

/// `?lease=1`: the controller's fetch also renews a primary's lease.
#[derive(Debug, serde::Deserialize)]
struct StatusQuery {
    lease: Option<u8>,
}

async fn status(
    State(shared): State<Shared>,
    Query(query): Query<StatusQuery>,
    headers: axum::http::HeaderMap,
) -> Result<Json<InstanceStatus>, StatusCode> {
    if query.lease.is_some() {
        // Only the controller may renew: it proves it with the spec's lease token.
        let offered = headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or_default();
        let mut guard = shared
            .write()
            .map_err(|_| StatusCode::INTERNAL_SERVER_ERROR)?;
        if !guard
            .lease_token
            .as_ref()
            .is_some_and(|t| t.accepts(offered))
        {
            return Err(StatusCode::UNAUTHORIZED);
        }
        guard.lease_renewed_at = Some(std::time::Instant::now());
    }
    let guard = shared
        .read()
        .map_err(|_| StatusCode::INTERNAL_SERVER_ERROR)?;
    let mut status = guard
        .status
        .clone()
        .ok_or(StatusCode::SERVICE_UNAVAILABLE)?;
    status.observed_ms_ago = guard.observed_at.map_or(0, |t| {
        u64::try_from(t.elapsed().as_millis()).unwrap_or(u64::MAX)
    });
    Ok(Json(status))
}

async fn ready(State(shared): State<Shared>) -> StatusCode {
    match shared.read() {
        Ok(guard) if guard.status.as_ref().is_some_and(|s| s.ready) => StatusCode::OK,
        _ => StatusCode::SERVICE_UNAVAILABLE,
    }
}

/// The router.
pub fn router(shared: Shared) -> Router {
    Router::new()
        .route(STATUS_PATH, get(status))
        .route("/healthz", get(|| async { StatusCode::OK }))
        .route("/readyz", get(ready))
        .with_state(shared)
}

/// Serve on `listener` until `stop` turns true.
pub async fn serve(
    listener: tokio::net::TcpListener,
    shared: Shared,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> std::io::Result<()> {
    axum::serve(listener, router(shared))
        .with_graceful_shutdown(async move {
            while !*stop.borrow() {
                if stop.changed().await.is_err() {
                    break;
                }
            }
        })
        .await
}
