//! The instance manager's status endpoints, served over TLS with the instance's server
//! certificate: `/pg/status` (JSON [`InstanceStatus`]), `/healthz` (the manager is alive) and
//! `/readyz` (PostgreSQL is ready). Anyone may read them; a lease renewal
//! (`/pg/status?lease=1`) is accepted only from a client presenting the controller's
//! certificate (signed by the cluster CA) and the spec's lease token.

use crate::supervisor::Shared;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post, put};
use axum::{Json, Router};
use pgherd_instance_protocol::{
    InstanceSpec, InstanceStatus, Role, BACKUP_PATH, CONTROLLER_COMMON_NAME, SPEC_PATH,
    STATUS_PATH, SWITCH_WAL_PATH,
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
    /// The base backups the controller started here.
    pub backups: Arc<crate::backup_runs::BackupRuns>,
    /// The spec may be pushed (`PUT /pg/spec`); else the platform writes its file.
    pub accepts_pushes: bool,
}

impl SpecSink {
    /// A manager that takes its spec over the protocol.
    pub fn new(path: PathBuf, instance: String) -> Self {
        SpecSink {
            backups: Arc::new(crate::backup_runs::BackupRuns::new(&path)),
            path,
            instance,
            accepts_pushes: true,
        }
    }

    /// A manager whose spec the platform writes to `path`: the controller's other calls
    /// (backups, WAL switch) are served, pushes are not.
    pub fn reading(path: PathBuf, instance: String) -> Self {
        SpecSink {
            accepts_pushes: false,
            ..SpecSink::new(path, instance)
        }
    }
}

#[derive(Debug, serde::Deserialize)]
struct BackupQuery {
    name: String,
}

/// The controller's side of [`SpecSink`]: `None` (with the answer to give) unless this
/// manager takes its spec over the protocol and the caller is the controller.
fn controller_sink(
    sink: Option<axum::Extension<SpecSink>>,
    identity: Option<axum::Extension<PeerIdentity>>,
) -> Result<SpecSink, (StatusCode, String)> {
    let Some(axum::Extension(sink)) = sink else {
        return Err((
            StatusCode::NOT_FOUND,
            "this instance manager serves no controller calls".into(),
        ));
    };
    if identity.as_ref().and_then(|i| i.0 .0.as_deref()) != Some(CONTROLLER_COMMON_NAME) {
        return Err((
            StatusCode::UNAUTHORIZED,
            "only the controller may do this".into(),
        ));
    }
    Ok(sink)
}

/// `POST /pg/backup?name=NAME`: start a base backup (or return the one started before).
async fn start_backup(
    sink: Option<axum::Extension<SpecSink>>,
    identity: Option<axum::Extension<PeerIdentity>>,
    axum::extract::Query(query): axum::extract::Query<BackupQuery>,
) -> (StatusCode, String) {
    let sink = match controller_sink(sink, identity) {
        Ok(s) => s,
        Err(answer) => return answer,
    };
    let backups = sink.backups.clone();
    match tokio::task::spawn_blocking(move || backups.start(&query.name)).await {
        Ok(Ok(report)) => (
            StatusCode::ACCEPTED,
            serde_json::to_string(&report).unwrap_or_default(),
        ),
        Ok(Err(e)) => (StatusCode::CONFLICT, e),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// `POST /pg/switch-wal`: close the current WAL segment, if this is the primary.
async fn switch_wal(
    sink: Option<axum::Extension<SpecSink>>,
    identity: Option<axum::Extension<PeerIdentity>>,
) -> (StatusCode, String) {
    let sink = match controller_sink(sink, identity) {
        Ok(s) => s,
        Err(answer) => return answer,
    };
    match crate::backup_runs::switch_wal(&sink.path).await {
        Ok(Some(lsn)) => (StatusCode::OK, lsn),
        Ok(None) => (StatusCode::CONFLICT, "not a primary".into()),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, e),
    }
}

/// `GET /pg/backup?name=NAME`: how the backup goes.
async fn backup_report(
    sink: Option<axum::Extension<SpecSink>>,
    identity: Option<axum::Extension<PeerIdentity>>,
    axum::extract::Query(query): axum::extract::Query<BackupQuery>,
) -> (StatusCode, String) {
    let sink = match controller_sink(sink, identity) {
        Ok(s) => s,
        Err(answer) => return answer,
    };
    match sink.backups.report(&query.name) {
        Some(report) => (
            StatusCode::OK,
            serde_json::to_string(&report).unwrap_or_default(),
        ),
        None => (StatusCode::NOT_FOUND, format!("no backup {:?}", query.name)),
    }
}

/// `PUT /pg/spec`: only the controller (its certificate) may set the spec, only for this
/// instance; written whole (a temporary file renamed over the old), mode 0600.
async fn accept_spec(
    sink: Option<axum::Extension<SpecSink>>,
    identity: Option<axum::Extension<PeerIdentity>>,
    body: axum::body::Bytes,
) -> (StatusCode, String) {
    let sink = match controller_sink(sink, identity) {
        Ok(s) if s.accepts_pushes => s,
        Ok(_) => {
            return (
                StatusCode::NOT_FOUND,
                "this instance manager reads its spec from a file".into(),
            )
        }
        Err(answer) => return answer,
    };
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
    let mut spec = spec;
    if let Err(e) = crate::pushed_files::store(&sink.path, &spec.files) {
        return (StatusCode::INTERNAL_SERVER_ERROR, e);
    }
    spec.files = Default::default();
    let stored = match serde_json::to_vec(&spec) {
        Ok(bytes) => bytes,
        Err(e) => return (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    match crate::pushed_files::write_private(&sink.path, &stored) {
        Ok(()) => (StatusCode::NO_CONTENT, String::new()),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot write {}: {e}", sink.path.display()),
        ),
    }
}

/// `?lease=1`: the controller's fetch also renews a primary's lease; `?fresh=1`: WAL positions
/// sampled for this request.
#[derive(Debug, serde::Deserialize)]
struct StatusQuery {
    lease: Option<u8>,
    fresh: Option<u8>,
}

/// How long a `?fresh=1` status request waits for PostgreSQL to be sampled anew; past it, the
/// last sample is answered (its age says so: a frozen PostgreSQL does not hold the caller).
const FRESH_SAMPLE_WAIT: Duration = Duration::from_millis(100);

/// Wake the liveness watcher and wait (at most [`FRESH_SAMPLE_WAIT`]) for a sample taken after
/// this call began. Nothing to wait for when PostgreSQL is not running.
async fn sample_now(shared: &Shared) {
    let asked = std::time::Instant::now();
    let Some(notify) = shared
        .read()
        .ok()
        .filter(|g| g.status.as_ref().is_some_and(|s| s.role != Role::Down))
        .map(|g| g.sample_now.clone())
    else {
        return;
    };
    notify.notify_one();
    let sampled = || {
        shared
            .read()
            .ok()
            .and_then(|g| g.observed_at)
            .is_some_and(|t| t >= asked)
    };
    let _ = tokio::time::timeout(FRESH_SAMPLE_WAIT, async {
        while !sampled() {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
    .await;
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
        guard.lease_renewed_at = Some(tokio::time::Instant::now());
    }
    if query.fresh.is_some() {
        sample_now(&shared).await;
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
        .route(BACKUP_PATH, get(backup_report).post(start_backup))
        .route(SWITCH_WAL_PATH, post(switch_wal))
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::supervisor::Published;
    use std::sync::RwLock;

    fn shared(role: Role) -> Shared {
        Arc::new(RwLock::new(Published {
            status: Some(pgherd_instance_protocol::InstanceStatus::nothing_observed(
                "pg-2", role, "test",
            )),
            ..Published::default()
        }))
    }

    #[tokio::test(start_paused = true)]
    async fn a_fresh_request_waits_for_a_sample_taken_after_it() {
        let shared = shared(Role::Replica);
        let notify = shared.read().unwrap().sample_now.clone();
        let watcher = {
            let shared = shared.clone();
            tokio::spawn(async move {
                notify.notified().await;
                shared.write().unwrap().observed_at = Some(std::time::Instant::now());
            })
        };
        let asked = std::time::Instant::now();
        sample_now(&shared).await;
        watcher.abort();
        let sampled = shared.read().unwrap().observed_at;
        assert!(
            sampled.is_some_and(|t| t >= asked),
            "answered before a new sample"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_fresh_request_answers_anyway_when_nothing_samples() {
        // A frozen PostgreSQL: the watcher never samples; the answer comes after the bounded
        // wait, with the old sample (its age tells the controller).
        let shared = shared(Role::Replica);
        sample_now(&shared).await;
        assert!(shared.read().unwrap().observed_at.is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn nothing_is_sampled_for_a_stopped_postgresql() {
        let shared = shared(Role::Down);
        sample_now(&shared).await;
        let notify = shared.read().unwrap().sample_now.clone();
        assert!(
            tokio::time::timeout(Duration::ZERO, notify.notified())
                .await
                .is_err(),
            "the watcher is not woken for a PostgreSQL that is not running"
        );
    }
}
