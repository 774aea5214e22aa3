//! Load for the HA tests: a writer committing through a Service and a checker asking every
//! instance whether it accepts writes.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)] // each test uses a part

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Commits through `host` (the `-rw` ClusterIP, or a pooler's) until stopped, reconnecting on
/// failure.
pub struct Writer {
    acked: Arc<Mutex<Vec<i64>>>,
    /// Every failed connection or commit, with when it ended (for reports).
    failures: Arc<Mutex<Vec<(Instant, String)>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Writer {
    pub fn start(host: String, password: String) -> Writer {
        let acked = Arc::new(Mutex::new(Vec::new()));
        let failures = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (a, f, s) = (acked.clone(), failures.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let mut next = 0_i64;
                let mut client = None;
                while !s.load(Ordering::Relaxed) {
                    if client.is_none() {
                        client = match super::connect_or_error(&host, &password).await {
                            Ok(c) => Some(c),
                            Err(e) => {
                                f.lock()
                                    .unwrap()
                                    .push((Instant::now(), format!("connect: {e}")));
                                tokio::time::sleep(Duration::from_millis(100)).await;
                                continue;
                            }
                        };
                    }
                    let c = client.as_ref().unwrap();
                    next += 1;
                    // The simple protocol: it also passes a transaction-mode PgBouncer.
                    let sql = format!("INSERT INTO ledger (id) VALUES ({next})");
                    let insert = c.batch_execute(&sql);
                    match tokio::time::timeout(Duration::from_secs(2), insert).await {
                        Ok(Ok(_)) => a.lock().unwrap().push(next),
                        Ok(Err(e)) => {
                            f.lock()
                                .unwrap()
                                .push((Instant::now(), format!("commit: {e}")));
                            client = None;
                        }
                        Err(_) => {
                            f.lock()
                                .unwrap()
                                .push((Instant::now(), "commit: no answer in 2 s".into()));
                            client = None;
                        }
                    }
                }
            });
        });
        Writer {
            acked,
            failures,
            stop,
            thread: Some(thread),
        }
    }

    /// The failures that ended after `since`, with their time from it.
    pub fn failures_since(&self, since: Instant) -> Vec<(Duration, String)> {
        self.failures
            .lock()
            .unwrap()
            .iter()
            .filter(|(at, _)| *at >= since)
            .map(|(at, what)| (*at - since, what.clone()))
            .collect()
    }

    pub fn count(&self) -> usize {
        self.acked.lock().unwrap().len()
    }

    pub fn wait_for_more(&self, more: usize, seconds: u64) -> bool {
        let target = self.count() + more;
        let deadline = Instant::now() + Duration::from_secs(seconds);
        while Instant::now() < deadline {
            if self.count() >= target {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    pub fn stop(mut self) -> Vec<i64> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
        self.acked.lock().unwrap().clone()
    }
}

/// The acknowledged ids not found in `ledger` on the primary behind `host`.
pub async fn lost(host: &str, password: &str, acked: &[i64]) -> Vec<i64> {
    let c = super::connect_soon(host, password)
        .await
        .expect("the primary answers");
    let found: BTreeSet<i64> = c
        .query("SELECT id FROM ledger", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get::<_, i64>(0))
        .collect();
    acked
        .iter()
        .filter(|id| !found.contains(id))
        .copied()
        .collect()
}

/// Asks every pod's PostgreSQL every 200 ms whether it accepts writes; records the most seen
/// at once.
pub struct WritableChecker {
    most: Arc<Mutex<usize>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl WritableChecker {
    pub fn start(pod_ips: Arc<Mutex<BTreeSet<String>>>, password: String) -> WritableChecker {
        let most = Arc::new(Mutex::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (m, s) = (most.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                while !s.load(Ordering::Relaxed) {
                    let ips: Vec<String> = pod_ips.lock().unwrap().iter().cloned().collect();
                    // Asked at once, so one sweep is one moment.
                    let asks = ips.into_iter().map(|ip| {
                        let password = password.clone();
                        async move {
                            let ask = async {
                                let c = super::connect(&ip, &password).await?;
                                let row =
                                    c.query_one("SELECT pg_is_in_recovery()", &[]).await.ok()?;
                                Some(!row.get::<_, bool>(0))
                            };
                            let writable = tokio::time::timeout(Duration::from_secs(1), ask).await
                                == Ok(Some(true));
                            (ip, writable)
                        }
                    });
                    let answers = futures_util::future::join_all(asks).await;
                    let writable: Vec<String> = answers
                        .into_iter()
                        .filter(|(_, w)| *w)
                        .map(|(ip, _)| ip)
                        .collect();
                    if writable.len() > 1 {
                        eprintln!("writable at once: {writable:?}");
                    }
                    {
                        let mut most = m.lock().unwrap();
                        *most = (*most).max(writable.len());
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            });
        });
        WritableChecker {
            most,
            stop,
            thread: Some(thread),
        }
    }

    pub fn stop(mut self) -> usize {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
        *self.most.lock().unwrap()
    }
}

/// What every HA test on kube-sim runs: a `ledger` table, a writer through the `-rw` Service
/// and a checker sweeping every instance pod of the cluster; [`HaLoad::finish`] checks that
/// nothing acknowledged was lost and never two instances were writable at once.
pub struct HaLoad {
    pub writer: Writer,
    checker: WritableChecker,
    pod_ips: Arc<Mutex<BTreeSet<String>>>,
    namespace: String,
    cluster: String,
    rw: String,
    password: String,
}

impl HaLoad {
    /// Start on `cluster` in `namespace`, whose `-rw` ClusterIP is `rw`, as the application
    /// owner with `password`; waits for the first commits.
    pub fn start(
        sim: &super::Sim,
        namespace: &str,
        cluster: &str,
        rw: &str,
        password: &str,
    ) -> HaLoad {
        Self::start_via(sim, namespace, cluster, rw, rw, password)
    }

    /// [`HaLoad::start`] with the writer committing through `via` (a pooler's ClusterIP);
    /// the check at the end still reads the primary through `rw`.
    pub fn start_via(
        sim: &super::Sim,
        namespace: &str,
        cluster: &str,
        rw: &str,
        via: &str,
        password: &str,
    ) -> HaLoad {
        sim.runtime.block_on(async {
            let c = super::connect_soon(rw, password)
                .await
                .expect("-rw answers");
            c.batch_execute("CREATE TABLE IF NOT EXISTS ledger (id bigint PRIMARY KEY)")
                .await
                .unwrap();
        });
        let pod_ips = Arc::new(Mutex::new(BTreeSet::new()));
        let load = HaLoad {
            checker: WritableChecker::start(pod_ips.clone(), password.to_string()),
            writer: Writer::start(via.to_string(), password.to_string()),
            pod_ips,
            namespace: namespace.to_string(),
            cluster: cluster.to_string(),
            rw: rw.to_string(),
            password: password.to_string(),
        };
        load.refresh_ips(sim);
        assert!(
            load.writer.wait_for_more(20, 60),
            "no commits through -rw\n{}",
            sim.diagnostics()
        );
        load
    }

    /// Add the cluster's current pod addresses to what the checker sweeps (pods come and go).
    pub fn refresh_ips(&self, sim: &super::Sim) {
        let selector = format!("cnpg.io/cluster={},cnpg.io/podRole=instance", self.cluster);
        let Some(pods) = sim.json(&["get", "pods", "-n", &self.namespace, "-l", &selector]) else {
            return;
        };
        let mut ips = self.pod_ips.lock().unwrap();
        for pod in pods["items"].as_array().into_iter().flatten() {
            if let Some(ip) = super::str_at(pod, "/status/podIP") {
                ips.insert(ip.to_string());
            }
        }
    }

    /// Commits flow through `-rw` again (after a failover, a roll, a wake-up…).
    pub fn flowing(&self, sim: &super::Sim, after: &str) {
        self.refresh_ips(sim);
        assert!(
            self.writer.wait_for_more(20, 60),
            "no commits through -rw after {after}\n{}",
            sim.diagnostics()
        );
    }

    /// Stop, and check: never two writable at once, every acknowledged commit on the primary.
    pub fn finish(self, sim: &super::Sim) {
        self.refresh_ips(sim);
        let acked = self.writer.stop();
        let most_writable = self.checker.stop();
        assert!(
            most_writable <= 1,
            "{most_writable} writable primaries at once"
        );
        let lost = sim.runtime.block_on(lost(&self.rw, &self.password, &acked));
        assert!(
            lost.is_empty(),
            "{} acknowledged commits lost: {:?}",
            lost.len(),
            &lost[..lost.len().min(10)]
        );
    }
}
