//! What the manager publishes (its last report, when PostgreSQL last answered, the lease) and
//! the liveness watch refreshing it between the loop's full observations.

use crate::observe::{connect, observe};
use crate::supervisor::{load_spec, postgres_for};
use pgherd_instance_protocol::{InstanceStatus, Role};
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

/// What the HTTP server shows.
#[derive(Debug, Default)]
pub struct Published {
    pub status: Option<InstanceStatus>,
    /// When PostgreSQL was last seen answering: a full observation, or a liveness ping
    /// between them (see [`watch_liveness`]).
    pub observed_at: Option<Instant>,
    /// When the controller last renewed the lease (fetched the status with `?lease=1`).
    pub lease_renewed_at: Option<tokio::time::Instant>,
    /// The primary stopped itself: its lease ran out. Cleared on renewal.
    pub self_fenced: bool,
    /// The token a lease renewal must carry (from the spec).
    pub lease_token: Option<pgherd_instance_protocol::LeaseToken>,
    /// Replica: when its primary's manager last answered as primary (`upstream::watch`).
    pub upstream_seen_at: Option<Instant>,
    /// Wakes [`watch_liveness`] to sample PostgreSQL now (a `?fresh=1` status request).
    pub sample_now: Arc<tokio::sync::Notify>,
}

/// How often PostgreSQL's liveness and WAL positions are refreshed between full observations.
const LIVENESS_EVERY: Duration = Duration::from_millis(200);

/// Between the loop's full observations (which may take a while), look at PostgreSQL every
/// [`LIVENESS_EVERY`] over a kept connection: when it answers, refresh the report's WAL
/// positions and `observed_at`. The report's age then measures how long PostgreSQL has been
/// unresponsive (a frozen instance), and failover and switchover compare current positions.
/// Only positions (and whether the WAL receiver streams) are refreshed: the role is the loop's
/// to report. A `?fresh=1` status request wakes it at once ([`Published::sample_now`]).
pub async fn watch_liveness(
    spec_path: PathBuf,
    shared: Shared,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let sample_now = match shared.read() {
        Ok(guard) => guard.sample_now.clone(),
        Err(_) => return,
    };
    let mut client: Option<tokio_postgres::Client> = None;
    while !*stop.borrow() {
        let running = shared
            .read()
            .map(|g| g.status.as_ref().is_some_and(|s| s.role != Role::Down))
            .unwrap_or(false);
        if !running {
            client = None;
        } else if let Some(pg) = load_spec(&spec_path)
            .ok()
            .and_then(|s| postgres_for(&s).ok())
        {
            if client.as_ref().is_none_or(|c| c.is_closed()) {
                client = connect(&pg, "postgres").await.ok();
            }
            if let Some(c) = &client {
                match observe(c, "", None).await {
                    Ok(fresh) => {
                        if let Ok(mut guard) = shared.write() {
                            if let Some(status) = guard.status.as_mut() {
                                if status.is_primary == fresh.is_primary {
                                    status.current_lsn = fresh.current_lsn;
                                    status.received_lsn = fresh.received_lsn;
                                    status.replay_lsn = fresh.replay_lsn;
                                    status.is_wal_receiver_active = fresh.is_wal_receiver_active;
                                }
                            }
                            guard.observed_at = Some(Instant::now());
                        }
                    }
                    Err(_) => client = None,
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(LIVENESS_EVERY) => {}
            _ = sample_now.notified() => {}
            _ = stop.changed() => {}
        }
    }
}

/// Shared between the loop and the HTTP server.
pub type Shared = Arc<RwLock<Published>>;
