//! The primary's lease: a primary may accept writes only while it hears, within `lease_ms`,
//! from the controller (each status fetch renews it) or from a majority of the cluster (itself
//! plus peers whose replicas stream from it). An isolated primary — cut off from both — stops
//! PostgreSQL by itself, and stays stopped until it hears from either again, so a new primary
//! promoted elsewhere never has a writable twin. A single instance has no one to be promoted in
//! its place and is never self-fenced.
//!
//! The loop ([`guard`]) is generic over what it watches ([`Guarded`]) and runs on tokio's
//! clock, so its timing is tested with paused time: it stops PostgreSQL at the expiry itself
//! (it sleeps until then, and asking the peers never runs past it), so the controller's
//! evidence margin only has to cover the kill ([`MAX_FENCE_LAG`]).

use crate::status_client::{fetch, ClientTls};
use crate::supervisor::{load_spec, Shared};
use pgherd_instance_protocol::{DesiredRole, InstanceSpec};
use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;
use tokio::time::Instant;

/// How often the lease is checked (and the peers asked) while it runs.
const CHECK_EVERY: Duration = Duration::from_millis(200);
/// How long a peer may take to answer.
const PEER_TIMEOUT: Duration = Duration::from_millis(300);
/// A peer's report older than this does not count.
const PEER_REPORT_MAX_AGE_MS: u64 = 1000;

/// The longest a guarded primary's PostgreSQL may run past its lease's expiry, by this loop's
/// clock: the kill is sent at the expiry (tested with paused time); this bounds the scheduling
/// delay and the kill itself. A controller that counts a silent primary as stopped must wait
/// the lease plus more than this.
pub const MAX_FENCE_LAG: Duration = Duration::from_millis(100);

/// When the lease runs out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    length: Duration,
    heard: Instant,
}

impl Lease {
    /// A lease of `length` that starts now (becoming a guarded primary counts as hearing).
    pub fn new(length: Duration) -> Self {
        Lease {
            length,
            heard: Instant::now(),
        }
    }

    /// The controller or a majority was heard at `at`.
    pub fn heard(&mut self, at: Instant) {
        self.heard = self.heard.max(at);
    }

    pub fn expires_at(&self) -> Instant {
        self.heard + self.length
    }

    pub fn expired(&self, now: Instant) -> bool {
        now >= self.expires_at()
    }
}

/// What the lease loop watches: the manager's spec, its renewals, its peers and its
/// PostgreSQL.
pub trait Guarded {
    /// The lease's length while this instance is a primary with peers and a lease, else
    /// `None` (nothing to guard).
    fn lease_length(&mut self) -> Option<Duration>;
    /// When the controller last renewed the lease.
    fn renewed_at(&self) -> Option<Instant>;
    /// Whether this primary and the peers streaming from it are a majority, asked now.
    fn majority_follows(&mut self) -> impl Future<Output = bool>;
    /// The lease ran out (`true`: stop PostgreSQL and keep it stopped) or was renewed after
    /// that (`false`: it may run again).
    fn set_fenced(&mut self, fenced: bool);
}

/// Guard the lease until `stop`.
pub async fn guard<G: Guarded>(guarded: &mut G, mut stop: tokio::sync::watch::Receiver<bool>) {
    let mut lease: Option<Lease> = None;
    let mut fenced = false;
    let enforce = |lease: &Lease, fenced: &mut bool, guarded: &mut G| {
        let expired = lease.expired(Instant::now());
        if expired != *fenced {
            *fenced = expired;
            guarded.set_fenced(expired);
        }
    };
    while !*stop.borrow() {
        let mut next = Instant::now() + CHECK_EVERY;
        match guarded.lease_length() {
            None => {
                lease = None;
                if fenced {
                    fenced = false;
                    guarded.set_fenced(false);
                }
            }
            Some(length) => {
                let l = lease.get_or_insert_with(|| Lease::new(length));
                l.length = length;
                if let Some(at) = guarded.renewed_at() {
                    l.heard(at);
                }
                enforce(l, &mut fenced, guarded);
                // Ask the peers, but never past the expiry: the verdict is due then. Once
                // stopped, a majority may still bring it back.
                let asked = Instant::now();
                let limit = if fenced {
                    PEER_TIMEOUT
                } else {
                    l.expires_at().saturating_duration_since(asked)
                };
                if let Ok(true) = tokio::time::timeout(limit, guarded.majority_follows()).await {
                    l.heard(asked);
                }
                if let Some(at) = guarded.renewed_at() {
                    l.heard(at);
                }
                enforce(l, &mut fenced, guarded);
                if !fenced {
                    next = next.min(l.expires_at());
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep_until(next) => {}
            _ = stop.changed() => {}
        }
    }
}

/// Whether this primary plus the peers streaming from it are a majority of the cluster.
async fn majority_follows(spec: &InstanceSpec, tls: &ClientTls) -> bool {
    let mut asks = tokio::task::JoinSet::new();
    for peer in &spec.peers {
        let (host, port, tls) = (peer.host.clone(), peer.status_port, tls.clone());
        asks.spawn(async move { fetch(&host, port, &tls, None, false, PEER_TIMEOUT).await });
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

/// The instance manager's lease: its spec file, its shared state, its peers over TLS.
struct Manager {
    spec_path: PathBuf,
    shared: Shared,
    spec: Option<InstanceSpec>,
    tls: Option<ClientTls>,
}

impl Guarded for Manager {
    fn lease_length(&mut self) -> Option<Duration> {
        if let Ok(spec) = load_spec(&self.spec_path) {
            if let Ok(mut g) = self.shared.write() {
                if g.lease_token != spec.lease_token {
                    g.lease_token.clone_from(&spec.lease_token);
                }
            }
            self.spec = Some(spec);
        }
        let spec = self.spec.as_ref()?;
        (spec.role == DesiredRole::Primary && spec.lease_ms > 0 && !spec.peers.is_empty())
            .then(|| Duration::from_millis(spec.lease_ms))
    }

    fn renewed_at(&self) -> Option<Instant> {
        self.shared.read().ok().and_then(|g| g.lease_renewed_at)
    }

    async fn majority_follows(&mut self) -> bool {
        let Some(spec) = self.spec.clone() else {
            return false;
        };
        match crate::tls::peer_client(&mut self.tls, &spec) {
            Some(tls) => majority_follows(&spec, &tls).await,
            None => false,
        }
    }

    fn set_fenced(&mut self, fenced: bool) {
        if let Ok(mut g) = self.shared.write() {
            g.self_fenced = fenced;
        }
        if !fenced {
            tracing::info!("lease renewed: PostgreSQL may run again");
            return;
        }
        tracing::warn!("lease expired (no controller, no majority): stopping PostgreSQL");
        if let Some(pg) = self
            .spec
            .as_ref()
            .and_then(|s| crate::supervisor::postgres_for(s).ok())
        {
            pg.kill_all();
        }
    }
}

/// Watch the lease of the manager whose spec is at `spec_path` until `stop`.
pub async fn watch(spec_path: PathBuf, shared: Shared, stop: tokio::sync::watch::Receiver<bool>) {
    let mut manager = Manager {
        spec_path,
        shared,
        spec: None,
        tls: None,
    };
    guard(&mut manager, stop).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// A scripted primary: renewals at the given offsets from the start, peers that answer
    /// after `peer_delay` with `majority`, and every fence change recorded with its time.
    #[derive(Clone)]
    struct Script {
        start: Instant,
        lease: Duration,
        renewals: Vec<Duration>,
        peer_delay: Duration,
        majority: bool,
        fences: Arc<Mutex<Vec<(Duration, bool)>>>,
    }

    impl Script {
        fn new(lease_ms: u64) -> Self {
            Script {
                start: Instant::now(),
                lease: Duration::from_millis(lease_ms),
                renewals: Vec::new(),
                peer_delay: Duration::ZERO,
                majority: false,
                fences: Arc::default(),
            }
        }

        fn fences(&self) -> Vec<(Duration, bool)> {
            self.fences.lock().unwrap().clone()
        }

        /// Run the guard for `seconds` of (paused) time.
        async fn run(&self, seconds: u64) {
            let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
            let mut guarded = self.clone();
            let task = tokio::spawn(async move { guard(&mut guarded, stop_rx).await });
            tokio::time::sleep(Duration::from_secs(seconds)).await;
            stop_tx.send(true).unwrap();
            task.await.unwrap();
        }
    }

    impl Guarded for Script {
        fn lease_length(&mut self) -> Option<Duration> {
            Some(self.lease)
        }

        fn renewed_at(&self) -> Option<Instant> {
            let now = Instant::now();
            self.renewals
                .iter()
                .map(|d| self.start + *d)
                .filter(|at| *at <= now)
                .max()
        }

        async fn majority_follows(&mut self) -> bool {
            tokio::time::sleep(self.peer_delay).await;
            self.majority
        }

        fn set_fenced(&mut self, fenced: bool) {
            let at = Instant::now() - self.start;
            self.fences.lock().unwrap().push((at, fenced));
        }
    }

    #[tokio::test(start_paused = true)]
    async fn an_unrenewed_lease_stops_postgres_at_its_expiry_even_while_peers_hang() {
        let mut s = Script::new(4000);
        s.renewals = vec![Duration::from_millis(1000), Duration::from_millis(1730)];
        // Each question to the peers takes their whole time limit and finds no majority.
        s.peer_delay = PEER_TIMEOUT;
        s.run(10).await;
        let fences = s.fences();
        assert_eq!(fences.len(), 1, "{fences:?}");
        let (at, fenced) = fences[0];
        assert!(fenced);
        let expiry = Duration::from_millis(1730 + 4000);
        assert!(
            at >= expiry && at - expiry <= Duration::from_millis(1),
            "stopped {at:?} after the start, the lease ran out at {expiry:?}"
        );
        assert!(MAX_FENCE_LAG > Duration::from_millis(1));
    }

    #[tokio::test(start_paused = true)]
    async fn renewals_within_the_lease_keep_postgres_running() {
        let mut s = Script::new(4000);
        s.renewals = (1..60).map(|i| Duration::from_millis(i * 900)).collect();
        s.run(50).await;
        assert!(s.fences().is_empty(), "{:?}", s.fences());
    }

    #[tokio::test(start_paused = true)]
    async fn a_following_majority_keeps_the_lease_without_the_controller() {
        let mut s = Script::new(2000);
        s.majority = true;
        s.peer_delay = Duration::from_millis(250);
        s.run(30).await;
        assert!(s.fences().is_empty(), "{:?}", s.fences());
    }

    #[tokio::test(start_paused = true)]
    async fn a_renewal_after_the_expiry_lets_postgres_run_again_until_it_runs_out_again() {
        let mut s = Script::new(2000);
        s.renewals = vec![Duration::from_millis(5000)];
        s.run(8).await;
        let fences = s.fences();
        assert_eq!(fences.len(), 3, "{fences:?}");
        assert_eq!(fences[0], (Duration::from_millis(2000), true));
        let (at, fenced) = fences[1];
        assert!(!fenced);
        assert!(
            at >= Duration::from_millis(5000) && at <= Duration::from_millis(5000) + CHECK_EVERY,
            "{at:?}"
        );
        // That renewal is a new lease: with no other, it runs out in its turn.
        assert_eq!(fences[2], (Duration::from_millis(7000), true));
    }
}
