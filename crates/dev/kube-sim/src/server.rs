//! The HTTPS listener: binds 127.0.0.1, terminates TLS (HTTP/1.1), writes the kubeconfig and
//! hands every request to `routes`. Subresources served by other parts of kube-sim (pods/log,
//! pods/exec, eviction, …) plug in through [`Subresource`].

use crate::admission::Admission;
use crate::error::ApiError;
use crate::rbac::{Authenticator, Decision};
use crate::routes;
use crate::tls;
use crate::verbs::{State, Target};
use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use hyper::{Request, Response};
use std::convert::Infallible;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

pub type Body = BoxBody<Bytes, Infallible>;
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// A subresource served outside the object store (e.g. `pods/log`): consulted for any
/// request naming a subresource other than `status` and `scale`.
pub trait Subresource: Send + Sync + std::fmt::Debug {
    /// Whether this handles `subresource` of resources stored under `storage` (`/pods`).
    fn handles(&self, storage: &str, subresource: &str) -> bool;
    /// Serve the request; the target object exists.
    fn call(
        &self,
        server: Arc<ApiServer>,
        target: Target,
        request: Request<Bytes>,
    ) -> BoxFuture<Result<Response<Body>, ApiError>>;
}

/// How to run the server.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where `kubeconfig` is written (none: only returned).
    pub state_dir: Option<PathBuf>,
    /// 0: any free port.
    pub port: u16,
    /// Changes retained for watches to resume from; older resourceVersions get 410.
    pub watch_window: usize,
    pub bookmark_interval: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            state_dir: None,
            port: 0,
            watch_window: 10_000,
            bookmark_interval: Duration::from_secs(5),
        }
    }
}

/// The API server's shared state.
#[derive(Debug)]
pub struct ApiServer {
    pub state: Arc<Mutex<State>>,
    pub auth: Authenticator,
    /// `127.0.0.1:PORT`.
    pub address: String,
    pub ca_pem: String,
    pub bookmark_interval: Duration,
    subresources: Mutex<Vec<Arc<dyn Subresource>>>,
    audit: Mutex<Vec<Decision>>,
    admissions: Mutex<Vec<Arc<dyn Admission>>>,
}

impl ApiServer {
    pub fn add_subresource(&self, handler: Arc<dyn Subresource>) {
        if let Ok(mut s) = self.subresources.lock() {
            s.push(handler);
        }
    }

    pub fn subresource(&self, storage: &str, sub: &str) -> Option<Arc<dyn Subresource>> {
        self.subresources
            .lock()
            .ok()?
            .iter()
            .find(|s| s.handles(storage, sub))
            .cloned()
    }

    /// Register an admission plugin (run in registration order on every write).
    pub fn add_admission(&self, plugin: Arc<dyn Admission>) {
        if let Ok(mut a) = self.admissions.lock() {
            a.push(plugin);
        }
    }

    pub(crate) fn has_admission(&self) -> bool {
        self.admissions
            .lock()
            .is_ok_and(|a| a.iter().any(|p| p.active()))
    }

    pub(crate) fn admissions(&self) -> Vec<Arc<dyn Admission>> {
        self.admissions
            .lock()
            .map(|a| a.clone())
            .unwrap_or_default()
    }

    /// Every authorization decision so far (oldest first, the last 100 000 kept).
    pub fn authorization_log(&self) -> Vec<Decision> {
        self.audit.lock().map(|a| a.clone()).unwrap_or_default()
    }

    pub(crate) fn record(&self, d: Decision) {
        if let Ok(mut a) = self.audit.lock() {
            if a.len() >= 100_000 {
                a.remove(0);
            }
            a.push(d);
        }
    }

    /// A kubeconfig for a bearer token.
    pub fn kubeconfig_for(&self, user: &str, token: &str, namespace: &str) -> String {
        tls::kubeconfig(
            &format!("https://{}", self.address),
            &self.ca_pem,
            user,
            token,
            namespace,
        )
    }

    /// Forget the change log and end every watch (as an etcd compaction plus an API server
    /// restart would): resuming watchers get `410 Gone` and must relist.
    pub fn compact(&self) {
        if let Ok(mut s) = self.state.lock() {
            s.store.compact();
        }
    }
}

/// A started server.
#[derive(Debug)]
pub struct Running {
    pub server: Arc<ApiServer>,
    pub url: String,
    /// The admin kubeconfig (also in `STATE_DIR/kubeconfig`).
    pub kubeconfig: String,
    task: JoinHandle<()>,
}

impl Running {
    /// Serve until the task ends (it does not, unless the listener fails).
    pub async fn wait(mut self) {
        let _ = (&mut self.task).await;
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Bind, write the kubeconfig and start serving in the background.
pub async fn start(config: Config) -> Result<Running, ApiError> {
    let io = |e: std::io::Error| ApiError::internal(e.to_string());
    let listener = TcpListener::bind(("127.0.0.1", config.port))
        .await
        .map_err(io)?;
    let address = listener.local_addr().map_err(io)?.to_string();
    let pki = tls::generate()?;
    let tls_config = tls::server_config(&pki)?;
    let auth = Authenticator::new(config.state_dir.as_deref()).map_err(io)?;
    let server = Arc::new(ApiServer {
        state: Arc::new(Mutex::new(State::new(config.watch_window))),
        auth,
        address: address.clone(),
        ca_pem: pki.ca_pem.clone(),
        bookmark_interval: config.bookmark_interval,
        subresources: Mutex::new(Vec::new()),
        audit: Mutex::new(Vec::new()),
        admissions: Mutex::new(Vec::new()),
    });
    server.add_subresource(Arc::new(crate::eviction::Eviction));
    server.add_admission(Arc::new(crate::webhook::Webhooks::new(
        server.state.clone(),
    )));
    let kubeconfig = server.kubeconfig_for("admin", &server.auth.admin_token(), "default");
    if let Some(dir) = &config.state_dir {
        std::fs::create_dir_all(dir).map_err(io)?;
        std::fs::write(dir.join("kubeconfig"), &kubeconfig).map_err(io)?;
        std::fs::write(dir.join("ca.crt"), &pki.ca_pem).map_err(io)?;
    }
    let acceptor = tokio_rustls::TlsAcceptor::from(tls_config);
    let srv = server.clone();
    let task = tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let acceptor = acceptor.clone();
            let srv = srv.clone();
            tokio::spawn(async move {
                let Ok(stream) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = hyper::service::service_fn(move |req| {
                    let srv = srv.clone();
                    async move { Ok::<_, Infallible>(routes::handle(srv, req).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .with_upgrades()
                    .await;
            });
        }
    });
    Ok(Running {
        server,
        url: format!("https://{address}"),
        kubeconfig,
        task,
    })
}
