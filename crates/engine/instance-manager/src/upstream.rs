//! A replica's view of its primary: every [`PROBE_EVERY`] the manager asks the primary's
//! manager for its report (over TLS, as any peer). The report this replica publishes then says
//! how long ago it last reached its primary (`upstreamSeenMsAgo`), so the controller and the
//! primary itself can tell a primary cut off from its replicas (a partition: fail over as soon
//! as the failure grace allows) from a controller cut off from a primary that its replicas
//! still reach (do not fail over) — without waiting for the WAL receivers' own timeouts.

use crate::status_client::{fetch, ClientTls};
use crate::supervisor::{load_spec, Shared};
use pgherd_instance_protocol::DesiredRole;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// How often the primary is asked.
const PROBE_EVERY: Duration = Duration::from_millis(200);
/// How long the primary may take to answer.
const PROBE_TIMEOUT: Duration = Duration::from_millis(300);

/// Probe the spec's primary until `stop`.
pub async fn watch(
    spec_path: PathBuf,
    shared: Shared,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut tls: Option<ClientTls> = None;
    while !*stop.borrow() {
        if let Ok(spec) = load_spec(&spec_path) {
            let peers_tls = crate::tls::peer_client(&mut tls, &spec);
            let upstream = spec
                .primary
                .as_ref()
                .filter(|_| spec.role == DesiredRole::Replica)
                .and_then(|p| spec.peers.iter().find(|peer| peer.name == p.name));
            match (upstream, &peers_tls) {
                (Some(peer), Some(tls)) => {
                    let answered = fetch(
                        &peer.host,
                        peer.status_port,
                        tls,
                        None,
                        false,
                        PROBE_TIMEOUT,
                    )
                    .await;
                    // Reaching it counts only while it still runs as primary.
                    if answered.is_some_and(|s| s.is_primary) {
                        if let Ok(mut g) = shared.write() {
                            g.upstream_seen_at = Some(Instant::now());
                        }
                    }
                }
                _ => {
                    if let Ok(mut g) = shared.write() {
                        g.upstream_seen_at = None;
                    }
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(PROBE_EVERY) => {}
            _ = stop.changed() => {}
        }
    }
}
