//! A Pooler's pod, `pgherd pooler run` (the PgBouncer container's first process), as
//! CloudNativePG's pooler instance manager: with the pod's ServiceAccount (its Role lets it
//! read its own Pooler and the Secrets [`crate::pooler::pooler_secret_names`] lists) it reads the
//! Pooler, its Cluster's server and client CAs and server certificate (`CLUSTER-ca` and
//! `CLUSTER-server` unless the Cluster's `spec.certificates` names others; the server certificate
//! is what PgBouncer shows its clients) and `cnpg_pooler_pgbouncer`'s client certificate
//! (`CLUSTER-pooler`), renders
//! `pgbouncer.ini`, the HBA file and the auth file with the engine ([`pgherd_pooler::config`])
//! into the pod's scratch volume (0600), runs PgBouncer as a child and serves the
//! `cnpg_pgbouncer_*` metrics on port 9127.
//!
//! Every [`EVERY`] it reads them again: changed files are `RELOAD`ed, `paused` becomes
//! `PAUSE`/`RESUME`. A configuration that cannot be rendered (a parameter outside the allow-list)
//! is logged and the running one kept. SIGTERM: PgBouncer's safe shutdown (SIGINT: `PAUSE` then
//! exit), then SIGTERM if it is still running after [`SHUTDOWN_WAIT`].
//!
//! No secret reaches the pod spec, the logs or an error: the admin console's password is made
//! at start and kept in the auth file only; key material is only written to 0600 files.

use crate::secret::CertificateSecrets;
use crate::{names, pooler_switchover};
use k8s_openapi::api::core::v1::Secret;
use kube::{Api, Client};
use pgherd_api::kinds::pooler::PoolerType;
use pgherd_api::{Cluster, Pooler};
use pgherd_pooler::admin::{AdminClient, AdminTarget};
use pgherd_pooler::{ConfigPaths, Upstream};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// How often the Pooler and its Secrets are read again.
pub const EVERY: Duration = Duration::from_secs(2);
/// How long PgBouncer's safe shutdown may take before it is told to stop at once.
pub const SHUTDOWN_WAIT: Duration = Duration::from_secs(20);
/// The port PgBouncer listens on (CloudNativePG's).
pub const PORT: u16 = 5432;
/// The upstream port (the cluster's Services).
const UPSTREAM_PORT: u16 = 5432;

/// Where the pod keeps things and who it is (from its environment).
#[derive(Debug, Clone)]
pub struct PodSettings {
    pub namespace: String,
    pub pooler: String,
    /// The pod's address (`POD_IP`); PgBouncer and the exporter listen on it.
    pub pod_ip: Option<String>,
    /// Rendered files and certificates.
    pub config_dir: PathBuf,
    /// PgBouncer's unix socket directory (`PGHOST`).
    pub socket_dir: PathBuf,
}

impl PodSettings {
    /// From the environment the Deployment gives (`NAMESPACE`, `POOLER_NAME`, `POD_IP`,
    /// `PGHOST`).
    pub fn from_env() -> Result<PodSettings, String> {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let need = |k: &str| var(k).ok_or_else(|| format!("environment variable {k} is not set"));
        Ok(PodSettings {
            namespace: need("NAMESPACE")?,
            pooler: need("POOLER_NAME")?,
            pod_ip: var("POD_IP"),
            config_dir: PathBuf::from(crate::pod::CONTROLLER_MOUNT).join("pooler"),
            socket_dir: PathBuf::from(var("PGHOST").unwrap_or_else(|| "/controller/run".into())),
        })
    }

    /// The pod's address and its loopback (`kubectl port-forward` connects there); without
    /// `POD_IP`, every address. PgBouncer listens on the addresses it can bind and warns about
    /// the others (where pods share the host's network, as on kube-sim, only one pod has the
    /// loopback).
    fn listen_addr(&self) -> String {
        match &self.pod_ip {
            Some(ip) => format!("{ip},127.0.0.1"),
            None => "*".into(),
        }
    }
}

/// The files PgBouncer reads, in `dir`.
pub fn config_paths(dir: &Path, socket_dir: &Path, listen_addr: &str) -> ConfigPaths {
    ConfigPaths {
        listen_addr: listen_addr.to_string(),
        listen_port: PORT,
        unix_socket_dir: socket_dir.to_path_buf(),
        hba_file: dir.join("pg_hba.conf"),
        auth_file: dir.join("userlist.txt"),
        server_ca: dir.join("server-ca.crt"),
        server_cert: dir.join("pooler.crt"),
        server_key: dir.join("pooler.key"),
        client_cert: dir.join("server.crt"),
        client_key: dir.join("server.key"),
        client_ca: dir.join("client-ca.crt"),
    }
}

/// The cluster Service a pooler of `pooler_type` forwards to.
pub fn upstream_service(cluster: &str, pooler_type: PoolerType) -> String {
    match pooler_type {
        PoolerType::Rw => names::rw_service(cluster),
        PoolerType::Ro => names::ro_service(cluster),
        PoolerType::R => names::r_service(cluster),
    }
}

/// The upstream of `pooler`: its cluster's Service for its type (resolved by PgBouncer).
pub fn upstream(pooler: &Pooler) -> Upstream {
    Upstream {
        host: upstream_service(
            &pooler.spec.cluster.name,
            pooler.spec.pooler_type.unwrap_or_default(),
        ),
        port: UPSTREAM_PORT,
    }
}

/// One read of the API: the Pooler and the files it needs.
struct Inputs {
    pooler: Pooler,
    /// (file name, content) of the certificates and keys.
    files: Vec<(&'static str, String)>,
}

fn key_of(secret: &Secret, name: &str, key: &str) -> Result<String, String> {
    secret
        .data
        .as_ref()
        .and_then(|d| d.get(key))
        .and_then(|v| String::from_utf8(v.0.clone()).ok())
        .ok_or_else(|| format!("Secret {name} has no {key}"))
}

async fn read(client: &Client, settings: &PodSettings) -> Result<Inputs, String> {
    let poolers: Api<Pooler> = Api::namespaced(client.clone(), &settings.namespace);
    let pooler = poolers
        .get(&settings.pooler)
        .await
        .map_err(|e| format!("Pooler {}: {e}", settings.pooler))?;
    let cluster = pooler.spec.cluster.name.clone();
    let clusters: Api<Cluster> = Api::namespaced(client.clone(), &settings.namespace);
    let certificates = clusters
        .get(&cluster)
        .await
        .map(|c| CertificateSecrets::of(&c))
        .map_err(|e| format!("Cluster {cluster}: {e}"))?;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &settings.namespace);
    let mut files = Vec::new();
    for (secret, pairs) in [
        (certificates.server_ca, &[("server-ca.crt", "ca.crt")][..]),
        (certificates.client_ca, &[("client-ca.crt", "ca.crt")][..]),
        (
            certificates.server_tls,
            &[("server.crt", "tls.crt"), ("server.key", "tls.key")][..],
        ),
        (
            names::pooler_secret(&cluster),
            &[("pooler.crt", "tls.crt"), ("pooler.key", "tls.key")][..],
        ),
    ] {
        let s = secrets
            .get(&secret)
            .await
            .map_err(|e| format!("Secret {secret}: {e}"))?;
        for (file, key) in pairs {
            files.push((*file, key_of(&s, &secret, key)?));
        }
    }
    Ok(Inputs { pooler, files })
}

/// Write `path` (0600) when its content differs; whether it changed.
fn write_if_changed(path: &Path, text: &str) -> Result<bool, String> {
    if std::fs::read_to_string(path).is_ok_and(|old| old == text) {
        return Ok(false);
    }
    let err = |e: std::io::Error| format!("{}: {e}", path.display());
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(err)?;
    std::io::Write::write_all(&mut file, text.as_bytes()).map_err(err)?;
    file.sync_all().map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)?;
    Ok(true)
}

/// Render and write everything; whether a file changed, and whether the Pooler is paused.
fn render(settings: &PodSettings, inputs: &Inputs) -> Result<(bool, bool), String> {
    let paths = config_paths(
        &settings.config_dir,
        &settings.socket_dir,
        &settings.listen_addr(),
    );
    let rendered = pgherd_pooler::render(&inputs.pooler, &upstream(&inputs.pooler), &paths)
        .map_err(|e| e.to_string())?;
    let mut changed = false;
    for (file, text) in &inputs.files {
        changed |= write_if_changed(&settings.config_dir.join(file), text)?;
    }
    changed |= write_if_changed(&paths.hba_file, &rendered.hba)?;
    // The ini last: PgBouncer reads it first.
    changed |= write_if_changed(&settings.config_dir.join("pgbouncer.ini"), &rendered.ini)?;
    Ok((changed, inputs.pooler.spec.pgbouncer.paused == Some(true)))
}

async fn admin(target: &AdminTarget) -> Result<AdminClient, String> {
    AdminClient::connect(target)
        .await
        .map_err(|e| e.to_string())
}

/// Run PgBouncer for the Pooler until SIGTERM (`Ok`) or until PgBouncer ends (`Err`: the
/// container restarts).
pub async fn run(settings: PodSettings) -> Result<(), String> {
    let client = crate::operator::connect()
        .await
        .map_err(|e| format!("Kubernetes API: {e}"))?;
    for dir in [&settings.config_dir, &settings.socket_dir] {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let password = pgherd_controller::pki::generate_password(32)
        .map_err(|e| format!("cannot make the admin console's password: {e}"))?;
    write_if_changed(
        &settings.config_dir.join("userlist.txt"),
        &pgherd_pooler::config::render_auth_file(&password),
    )?;
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| format!("cannot handle SIGTERM: {e}"))?;
    // The first configuration: wait for the operator's Secrets (and a valid Pooler).
    let (mut paused, cluster, rw) = loop {
        match read(&client, &settings).await.and_then(|i| {
            let (_, paused) = render(&settings, &i)?;
            let rw = i.pooler.spec.pooler_type.unwrap_or_default() == PoolerType::Rw
                && pgherd_pooler::pause_on_switchover(&i.pooler);
            Ok((paused, i.pooler.spec.cluster.name.clone(), rw))
        }) {
            Ok(first) => break first,
            Err(e) => tracing::warn!("{}: not starting PgBouncer yet: {e}", settings.pooler),
        }
        tokio::select! {
            _ = terminate.recv() => return Ok(()),
            () = tokio::time::sleep(EVERY) => {}
        }
    };
    let ini = settings.config_dir.join("pgbouncer.ini");
    let mut child = tokio::process::Command::new("pgbouncer")
        .arg(&ini)
        .stdin(std::process::Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start pgbouncer: {e}"))?;
    tracing::info!("{}: PgBouncer started", settings.pooler);
    let target = AdminTarget {
        socket_dir: settings.socket_dir.clone(),
        port: PORT,
        password,
    };
    let listen = format!(
        "{}:{}",
        settings.pod_ip.as_deref().unwrap_or("0.0.0.0"),
        crate::pooler::POOLER_METRICS_PORT
    );
    let listener = tokio::net::TcpListener::bind(&listen)
        .await
        .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    let exporter = Arc::new(pgherd_pooler::metrics::PoolerExporter::new(target.clone()));
    // The metrics, and what the pod is paused for ([`pooler_switchover::PATH`]).
    let paused_for = pooler_switchover::PausedFor::default();
    let answer = paused_for.clone();
    let routes = pgherd_pooler::metrics::router(exporter).route(
        pooler_switchover::PATH,
        axum::routing::get(move || std::future::ready(answer.answer())),
    );
    let metrics = tokio::spawn(async move { axum::serve(listener, routes).await });
    // A rw pooler pauses during its cluster's switchovers (not in session mode, nor with
    // `pgherd.io/pause-on-switchover: "false"`).
    let mut switching =
        rw.then(|| pooler_switchover::follow(client.clone(), &settings.namespace, &cluster));
    let mut switch_since: Option<std::time::Instant> = None;
    // PgBouncer starts unpaused.
    let mut applied_paused = false;
    let outcome = loop {
        let switch_to = switching.as_ref().and_then(|rx| rx.borrow().clone());
        switch_since = match (&switch_to, switch_since) {
            (Some(_), None) => Some(std::time::Instant::now()),
            (Some(_), since) => since,
            (None, _) => None,
        };
        let for_switchover = pooler_switchover::pauses(switch_to.as_deref(), switch_since);
        let want_paused = paused || for_switchover;
        if want_paused != applied_paused {
            let done = match admin(&target).await {
                // A PAUSE still waiting for transactions after its time stays in effect in
                // PgBouncer: paused all the same, so that it is resumed later (else it would
                // stay paused for good).
                Ok(a) if want_paused => match a.pause(Duration::from_secs(10)).await {
                    Err(e @ pgherd_pooler::AdminError::Timeout { .. }) => {
                        tracing::warn!("{}: {e}; PgBouncer stays paused", settings.pooler);
                        Ok(())
                    }
                    other => other,
                },
                // Server connections are renewed first: after a switchover, those left would
                // lead to the old primary.
                Ok(a) => {
                    let _ = a.reconnect().await;
                    a.resume().await
                }
                Err(e) => {
                    tracing::debug!("{e}");
                    Ok(()) // not up yet: next time
                }
            };
            match done {
                Ok(()) => {
                    applied_paused = want_paused;
                    let why = match (&switch_to, for_switchover) {
                        (Some(to), true) => format!(" for the switchover to {to}"),
                        _ => String::new(),
                    };
                    tracing::info!(
                        "{}: PgBouncer {}{why}",
                        settings.pooler,
                        if want_paused { "paused" } else { "resumed" }
                    );
                }
                Err(e) => tracing::warn!("{}: {e}", settings.pooler),
            }
        }
        paused_for.set(
            switch_to
                .clone()
                .filter(|_| applied_paused && for_switchover),
        );
        tokio::select! {
            _ = terminate.recv() => break Ok(()),
            status = child.wait() => break Err(format!("pgbouncer ended: {}", status.map_or_else(|e| e.to_string(), |s| s.to_string()))),
            () = tokio::time::sleep(EVERY) => {}
            () = switch_changed(&mut switching) => continue,
        }
        match read(&client, &settings)
            .await
            .and_then(|i| render(&settings, &i))
        {
            Ok((changed, now_paused)) => {
                paused = now_paused;
                if changed {
                    let reloaded = match admin(&target).await {
                        Ok(a) => a.reload().await.map_err(|e| e.to_string()),
                        Err(e) => Err(e),
                    };
                    match reloaded {
                        Ok(()) => tracing::info!("{}: configuration reloaded", settings.pooler),
                        Err(e) => tracing::warn!("{}: reload: {e}", settings.pooler),
                    }
                }
            }
            Err(e) => tracing::warn!(
                "{}: keeping the running configuration: {e}",
                settings.pooler
            ),
        }
    };
    metrics.abort();
    if outcome.is_ok() {
        shutdown(&mut child).await;
    }
    outcome
}

/// Returns when the followed switchover changes (never without one, or once it is gone).
async fn switch_changed(switching: &mut Option<tokio::sync::watch::Receiver<Option<String>>>) {
    let Some(rx) = switching else {
        return std::future::pending().await;
    };
    if rx.changed().await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// PgBouncer's safe shutdown (SIGINT), then SIGTERM after [`SHUTDOWN_WAIT`].
async fn shutdown(child: &mut tokio::process::Child) {
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;
    let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()) else {
        return;
    };
    let _ = kill(Pid::from_raw(pid), Signal::SIGINT);
    if tokio::time::timeout(SHUTDOWN_WAIT, child.wait())
        .await
        .is_err()
    {
        let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        let _ = child.wait().await;
    }
}
