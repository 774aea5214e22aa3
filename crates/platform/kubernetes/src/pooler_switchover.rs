//! The switchover pause on Kubernetes, as the local platform does it: a `rw` Pooler's
//! PgBouncer is paused before the old primary is demoted and resumed once the new one is
//! primary, so transactions wait instead of failing.
//!
//! - The pooler pod watches its Cluster ([`follow`]: one watch on that object, no polling):
//!   while its status
//!   says "Switchover in progress" to a target that is not the current primary, PgBouncer is
//!   paused (at most [`PAUSE_LIMIT`]); the pod answers `GET` [`PATH`] on its metrics port with
//!   the target it is paused for (empty when not paused).
//! - Before it demotes the old primary, the operator ([`wait_paused`]) asks every ready pod of
//!   the cluster's `rw` Poolers until each answers with the switchover's target, for at most
//!   [`PAUSE_WAIT`] (a pod that does not answer in time does not hold the switchover up).

use kube::api::ListParams;
use kube::{Api, Client};
use pgherd_api::kinds::pooler::PoolerType;
use pgherd_api::{Cluster, Pooler};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// The longest a switchover keeps PgBouncer paused.
pub const PAUSE_LIMIT: Duration = Duration::from_secs(30);
/// The longest the operator waits for the pooler pods to pause.
pub const PAUSE_WAIT: Duration = Duration::from_secs(5);
/// The pooler pod's answer: the switchover it is paused for.
pub const PATH: &str = "/switchover";

/// The target of the switchover `cluster`'s status says is under way.
pub fn switching_to(cluster: &Cluster) -> Option<String> {
    let status = cluster.status.as_ref()?;
    let target = status.target_primary.as_ref()?;
    let under_way = status.phase.as_deref() == Some(pgherd_controller::phase::SWITCHOVER)
        && status.current_primary.as_ref() != Some(target);
    under_way.then(|| target.clone())
}

/// Follow Cluster `namespace/cluster` until the receiver is dropped: the switchover's target.
/// One watch on that object (`fieldSelector=metadata.name=…`, which RBAC lets a Role limited
/// to that name list and watch), re-established with backoff when it breaks.
pub fn follow(client: Client, namespace: &str, cluster: &str) -> watch::Receiver<Option<String>> {
    use futures_util::StreamExt as _;
    use kube::runtime::{watcher, WatchStreamExt as _};
    let (tx, rx) = watch::channel(None);
    let api: Api<Cluster> = Api::namespaced(client, namespace);
    let config = watcher::Config::default().fields(&format!("metadata.name={cluster}"));
    tokio::spawn(async move {
        let mut changes = std::pin::pin!(watcher(api, config).default_backoff().applied_objects());
        loop {
            let next = tokio::select! {
                () = tx.closed() => break,
                next = changes.next() => next,
            };
            match next {
                Some(Ok(c)) => {
                    let target = switching_to(&c);
                    tx.send_if_modified(|v| {
                        let changed = *v != target;
                        *v = target;
                        changed
                    });
                }
                // Logged; the watcher retries with backoff.
                Some(Err(e)) => tracing::debug!("watching the cluster: {e}"),
                None => break,
            }
        }
    });
    rx
}

/// What a pooler pod is paused for (shared with its HTTP answer).
#[derive(Debug, Clone, Default)]
pub struct PausedFor(Arc<Mutex<Option<String>>>);

impl PausedFor {
    pub fn set(&self, target: Option<String>) {
        if let Ok(mut v) = self.0.lock() {
            *v = target;
        }
    }

    /// The answer on [`PATH`].
    pub fn answer(&self) -> String {
        self.0
            .lock()
            .ok()
            .and_then(|v| v.clone())
            .unwrap_or_default()
    }
}

/// Whether the switchover to `target` (first seen at `since`) still pauses PgBouncer.
pub fn pauses(target: Option<&str>, since: Option<Instant>) -> bool {
    target.is_some() && since.is_some_and(|t| t.elapsed() < PAUSE_LIMIT)
}

/// `GET` [`PATH`] at `ip`'s metrics port: the body, or `None` without an answer in 1 s.
async fn ask(ip: &str) -> Option<String> {
    use http_body_util::{BodyExt as _, Empty};
    let attempt = async {
        let port = u16::try_from(crate::pooler::POOLER_METRICS_PORT).ok()?;
        let tcp = tokio::net::TcpStream::connect((ip, port)).await.ok()?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
                .await
                .ok()?;
        let driver = tokio::spawn(connection);
        let request = hyper::Request::builder()
            .uri(PATH)
            .header(hyper::header::HOST, ip)
            .body(Empty::<bytes::Bytes>::new())
            .ok()?;
        let response = sender.send_request(request).await.ok()?;
        let body = response.into_body().collect().await.ok()?.to_bytes();
        driver.abort();
        Some(String::from_utf8_lossy(&body).trim().to_string())
    };
    tokio::time::timeout(Duration::from_secs(1), attempt)
        .await
        .ok()
        .flatten()
}

/// The addresses of the ready pods of `cluster`'s `rw` Poolers that are not paused by spec.
async fn rw_pooler_pods(client: &Client, namespace: &str, cluster: &str) -> Vec<String> {
    use k8s_openapi::api::core::v1::Pod;
    let poolers: Api<Pooler> = Api::namespaced(client.clone(), namespace);
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let Ok(list) = poolers.list(&ListParams::default()).await else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for p in list {
        let rw = p.spec.pooler_type.unwrap_or_default() == PoolerType::Rw;
        let pauses = rw && pgherd_pooler::pause_on_switchover(&p);
        if p.spec.cluster.name != cluster || !pauses || p.spec.pgbouncer.paused == Some(true) {
            continue;
        }
        let name = p.metadata.name.clone().unwrap_or_default();
        let selector = format!("{}={name}", crate::labels::POOLER_NAME);
        let Ok(found) = pods.list(&ListParams::default().labels(&selector)).await else {
            continue;
        };
        for pod in found {
            let status = pod.status.unwrap_or_default();
            let ready = status
                .conditions
                .unwrap_or_default()
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True");
            if let (true, Some(ip)) = (ready, status.pod_ip) {
                out.push(ip);
            }
        }
    }
    out
}

/// Wait until every ready pod of `cluster`'s `rw` Poolers says it is paused for `target`, at
/// most [`PAUSE_WAIT`]; the pods that did not, by address.
pub async fn wait_paused(
    client: &Client,
    namespace: &str,
    cluster: &str,
    target: &str,
) -> Vec<String> {
    let deadline = Instant::now() + PAUSE_WAIT;
    let mut waiting = rw_pooler_pods(client, namespace, cluster).await;
    while !waiting.is_empty() && Instant::now() < deadline {
        let mut still = Vec::new();
        for ip in waiting {
            if ask(&ip).await.as_deref() != Some(target) {
                still.push(ip);
            }
        }
        waiting = still;
        if !waiting.is_empty() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    waiting
}

#[cfg(test)]
mod tests {
    use super::*;
    use pgherd_api::cluster::ClusterStatus;

    fn cluster(phase: &str, current: &str, target: &str) -> Cluster {
        let mut c = Cluster::new("pg", Default::default());
        c.status = Some(ClusterStatus {
            phase: Some(phase.into()),
            current_primary: Some(current.into()),
            target_primary: Some(target.into()),
            ..Default::default()
        });
        c
    }

    #[test]
    fn a_switchover_under_way_pauses_until_the_target_is_primary_or_the_limit() {
        let phase = pgherd_controller::phase::SWITCHOVER;
        assert_eq!(
            switching_to(&cluster(phase, "pg-1", "pg-2")).as_deref(),
            Some("pg-2")
        );
        assert_eq!(switching_to(&cluster(phase, "pg-2", "pg-2")), None);
        assert_eq!(
            switching_to(&cluster("Cluster in healthy state", "pg-1", "pg-2")),
            None
        );
        assert!(pauses(Some("pg-2"), Some(Instant::now())));
        assert!(!pauses(None, Some(Instant::now())));
        let long_ago = Instant::now().checked_sub(PAUSE_LIMIT + Duration::from_secs(1));
        assert!(!pauses(Some("pg-2"), long_ago));
    }
}
