//! The instance manager's status endpoints, served over TLS with the instance's server
//! certificate: `/pg/status` (JSON [`InstanceStatus`]), `/healthz` (the manager is alive) and
//! `/readyz` (PostgreSQL is ready). Anyone may read them; a lease renewal
//! (`/pg/status?lease=1`) is accepted only from a client presenting the controller's
//! certificate (signed by the cluster CA) and the spec's lease token.

use crate::supervisor::Shared;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::routing::{get, put};
use axum::{Json, Router};
use pgherd_instance_protocol::{
    InstanceSpec, InstanceStatus, CONTROLLER_COMMON_NAME, SPEC_PATH, STATUS_PATH,
};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Who is on the other end of a connection: the common name of its verified client
/// certificate, if it presented one.
#[derive(Debug, Clone, Default)]
pub struct PeerIdentity(pub Option<String>);

/// Where a manager that takes its spec over the protocol keeps it (on Kubernetes: the pod's
/// own scratch volume), and the instance it runs (a spec for another is refused).
#[derive(Debug, Clone)]
pub struct SpecSink {
    pub path: PathBuf,
    pub instance: String,
}

/// `PUT /pg/spec`: only the controller (its certificate) may set the spec, only for this
/// instance; written whole (a temporary file renamed over the old), mode 0600.
async fn accept_spec(
    sink: Option<axum::Extension<SpecSink>>,
    identity: Option<axum::Extension<PeerIdentity>>,
    body: axum::body::Bytes,
) -> (StatusCode, String) {
    let Some(axum::Extension(sink)) = sink else {
        return (
            StatusCode::NOT_FOUND,
            "this instance manager reads its spec from a file".into(),
        );
    };
    if identity.as_ref().and_then(|i| i.0 .0.as_deref()) != Some(CONTROLLER_COMMON_NAME) {
        return (
            StatusCode::UNAUTHORIZED,
            "only the controller may set the spec".into(),
        );
    }
    let spec: InstanceSpec = match serde_json::from_slice(&body) {
        Ok(spec) => spec,
        Err(e) => {
            return (
                StatusCode::BAD_REQUEST,
                format!("not an instance spec: {e}"),
            )
        }
    };
    if spec.name != sink.instance {
        return (
            StatusCode::CONFLICT,
            format!(
                "this is the manager of {}, not of {}",
                sink.instance, spec.name
            ),
        );
    }
    match write_private(&sink.path, &body) {
        Ok(()) => (StatusCode::NO_CONTENT, String::new()),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot write {}: {e}", sink.path.display()),
        ),
    }
}

/// Replace `path` with `bytes` (mode 0600) in one rename.
fn write_private(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// `?lease=1`: the controller's fetch also renews a primary's lease.
#[derive(Debug, serde::Deserialize)]
struct StatusQuery {
    lease: Option<u8>,
}

async fn status(
    State(shared): State<Shared>,
    Query(query): Query<StatusQuery>,
    identity: Option<axum::Extension<PeerIdentity>>,
    headers: axum::http::HeaderMap,
) -> Result<Json<InstanceStatus>, StatusCode> {
    if query.lease.is_some() {
        // Only the controller may renew: it proves it with its certificate and the spec's
        // lease token.
        let controller =
            identity.as_ref().and_then(|i| i.0 .0.as_deref()) == Some(CONTROLLER_COMMON_NAME);
        if !controller {
            return Err(StatusCode::UNAUTHORIZED);
        }
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
    // A replica that never reached its primary says so with the largest age.
    status.upstream_seen_ms_ago = status.following.as_ref().map(|_| {
        guard.upstream_seen_at.map_or(u64::MAX, |t| {
            u64::try_from(t.elapsed().as_millis()).unwrap_or(u64::MAX)
        })
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
        .route(SPEC_PATH, put(accept_spec))
        .route("/healthz", get(|| async { StatusCode::OK }))
        .route("/readyz", get(ready))
        // The kubelet's startup probe: started once PostgreSQL is ready the first time (until
        // then the liveness probe waits).
        .route("/startupz", get(ready))
        .with_state(shared)
}

/// How long a client may take to finish its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// Serve on `listener` over TLS (`tls`) until `stop` turns true.
pub async fn serve(
    listener: tokio::net::TcpListener,
    shared: Shared,
    tls: Arc<rustls::ServerConfig>,
    spec_sink: Option<SpecSink>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> std::io::Result<()> {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let mut app = router(shared);
    if let Some(sink) = spec_sink {
        app = app.layer(axum::Extension(sink));
    }
    loop {
        let (tcp, _) = tokio::select! {
            accepted = listener.accept() => accepted?,
            _ = stop.changed() => {
                if *stop.borrow() { return Ok(()); }
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let (acceptor, app) = (acceptor.clone(), app.clone());
        tokio::spawn(async move {
            let Ok(Ok(stream)) =
                tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await
            else {
                return; // not TLS, or too slow
            };
            let identity = PeerIdentity(crate::tls::peer_common_name(
                stream.get_ref().1.peer_certificates(),
            ));
            let service =
                hyper_util::service::TowerToHyperService::new(app.layer(axum::Extension(identity)));
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
        });
    }
}
