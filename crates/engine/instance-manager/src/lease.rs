//! The primary's lease: a primary may accept writes only while it hears, within `lease_ms`,
//! from the controller (each status fetch renews it) or from a majority of the cluster (itself
//! plus peers whose replicas stream from it). An isolated primary — cut off from both — stops
//! PostgreSQL by itself, and stays stopped until it hears from either again, so a new primary
//! promoted elsewhere never has a writable twin. A single instance has no one to be promoted in
//! its place and is never self-fenced.

use crate::status_client::{fetch, ClientTls};
use crate::supervisor::{load_spec, Shared};
use pgherd_instance_protocol::{DesiredRole, InstanceSpec};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// How often the lease is checked.
const CHECK_EVERY: Duration = Duration::from_millis(200);
/// How long a peer may take to answer.
const PEER_TIMEOUT: Duration = Duration::from_millis(300);
/// A peer's report older than this does not count.
const PEER_REPORT_MAX_AGE_MS: u64 = 1000;

/// Whether this primary plus the peers streaming from it are a majority of the cluster.
async fn majority_follows(spec: &InstanceSpec, tls: &ClientTls) -> bool {
    let mut asks = tokio::task::JoinSet::new();
    for peer in &spec.peers {
        let (host, port, tls) = (peer.host.clone(), peer.status_port, tls.clone());
        asks.spawn(async move { fetch(&host, port, &tls, None, PEER_TIMEOUT).await });
    }
    let mut following = 0;
    while let Some(answer) = asks.join_next().await {
        if let Ok(Some(s)) = answer {
            if s.follows(&spec.name) && s.observed_ms_ago <= PEER_REPORT_MAX_AGE_MS {
                following += 1;
            }
        }
    }
    (following + 1) * 2 > spec.peers.len() + 1
}

/// Watch the lease until `stop`; fence PostgreSQL when it runs out.
pub async fn watch(
    spec_path: PathBuf,
    shared: Shared,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let started = Instant::now();
    let mut majority_at: Option<Instant> = None;
    // The peers' reports are read over TLS, trusting the cluster CA.
    let mut tls: Option<ClientTls> = None;
    while !*stop.borrow() {
        if let Ok(spec) = load_spec(&spec_path) {
            let peers_tls = crate::tls::peer_client(&mut tls, &spec);
            if let Ok(mut g) = shared.write() {
                if g.lease_token != spec.lease_token {
                    g.lease_token.clone_from(&spec.lease_token);
                }
            }
            let guarded =
                spec.role == DesiredRole::Primary && spec.lease_ms > 0 && !spec.peers.is_empty();
            if guarded {
                if let Some(tls) = &peers_tls {
                    if majority_follows(&spec, tls).await {
                        majority_at = Some(Instant::now());
                    }
                }
                let (renewed_at, self_fenced) = shared
                    .read()
                    .map(|g| (g.lease_renewed_at, g.self_fenced))
                    .unwrap_or((None, false));
                let heard = renewed_at
                    .unwrap_or(started)
                    .max(majority_at.unwrap_or(started));
                let expired = heard.elapsed() > Duration::from_millis(spec.lease_ms);
                if expired && !self_fenced {
                    if let Ok(mut g) = shared.write() {
                        g.self_fenced = true;
                    }
                    tracing::warn!(
                        "lease expired (no controller, no majority): stopping PostgreSQL"
                    );
                    if let Ok(pg) = crate::supervisor::postgres_for(&spec) {
                        pg.kill_all();
                    }
                } else if !expired && self_fenced {
                    if let Ok(mut g) = shared.write() {
                        g.self_fenced = false;
                    }
                    tracing::info!("lease renewed: PostgreSQL may run again");
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(CHECK_EVERY) => {}
            _ = stop.changed() => {}
        }
    }
}
