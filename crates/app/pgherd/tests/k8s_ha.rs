//! pgherd on Kubernetes, end to end on kube-sim with its process kubelet (three nodes, real
//! PostgreSQL 15 from CloudNativePG's image name, pgherd's manager copied into each pod by its
//! init container): `pgherd operator` brings a three-instance Cluster with quorum synchronous
//! replication to healthy; a writer commits through the `-rw` Service's ClusterIP while the
//! primary's node is killed; the operator fails over (lease-expiry evidence), the Service
//! follows the new primary; the old primary's instance rejoins on another node; a switchover
//! through `status.targetPrimary` (what `kubectl cnpg promote` writes) moves the primary again;
//! every acknowledged commit is found on the last primary. A checker asks every
//! instance's PostgreSQL whether it is writable throughout: never two at once.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

mod common;

use common::repo_root;
use pgherd_kube_sim::kubelet::{Kubelet, KubeletConfig};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

struct Sim {
    runtime: tokio::runtime::Runtime,
    kubelet: Option<Kubelet>,
    _running: pgherd_kube_sim::Running,
    dir: tempfile::TempDir,
}

impl Drop for Sim {
    fn drop(&mut self) {
        // Every process the kubelet started goes with it.
        drop(self.kubelet.take());
    }
}

impl Sim {
    fn start(nodes: usize) -> Sim {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let config = pgherd_kube_sim::Config {
            state_dir: Some(dir.path().to_path_buf()),
            ..Default::default()
        };
        let running = runtime.block_on(pgherd_kube_sim::start(config)).unwrap();
        let mut kubelet = KubeletConfig::new(nodes, PathBuf::from(env!("CARGO_BIN_EXE_pgherd")));
        kubelet.max_grace = Some(Duration::from_secs(5));
        kubelet.node_grace = Duration::from_secs(3);
        kubelet.backoff = (Duration::from_millis(500), Duration::from_secs(5));
        let kubelet = {
            let _guard = runtime.enter();
            Kubelet::start(running.server.clone(), dir.path(), kubelet).unwrap()
        };
        Sim {
            runtime,
            kubelet: Some(kubelet),
            _running: running,
            dir,
        }
    }

    fn kubeconfig(&self) -> PathBuf {
        self.dir.path().join("kubeconfig")
    }

    fn kubectl_output(&self, args: &[&str]) -> Output {
        Command::new("kubectl")
            .args(args)
            .env("KUBECONFIG", self.kubeconfig())
            .env("KUBECACHEDIR", self.dir.path().join("cache"))
            .env("HOME", self.dir.path())
            .output()
            .expect("kubectl runs (scripts/install.sh installs it)")
    }

    fn kubectl(&self, args: &[&str]) -> String {
        let out = self.kubectl_output(args);
        assert!(
            out.status.success(),
            "kubectl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn json(&self, args: &[&str]) -> Option<serde_json::Value> {
        let mut all = args.to_vec();
        all.extend(["-o", "json"]);
        let out = self.kubectl_output(&all);
        out.status
            .success()
            .then(|| serde_json::from_slice(&out.stdout).ok())
            .flatten()
    }

    fn eventually<T>(&self, what: &str, seconds: u64, mut f: impl FnMut() -> Option<T>) -> T {
        let deadline = Instant::now() + Duration::from_secs(seconds);
        loop {
            if let Some(v) = f() {
                return v;
            }
            if Instant::now() >= deadline {
                panic!("timed out waiting for {what}\n{}", self.diagnostics());
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// What a failure report needs: the cluster, the pods and the operator's log.
    fn diagnostics(&self) -> String {
        let mut out = String::new();
        for args in [
            &["get", "cluster", "-o", "yaml"][..],
            &["get", "pods", "-o", "wide"][..],
            &["get", "events"][..],
        ] {
            let o = self.kubectl_output(args);
            out.push_str(&format!(
                "--- kubectl {args:?}\n{}{}\n",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            ));
        }
        for pod in ["pg-1", "pg-2", "pg-3", "pg-4"] {
            let o = self.kubectl_output(&["logs", pod, "-c", "postgres", "--tail", "40"]);
            out.push_str(&format!(
                "--- logs {pod}\n{}\n",
                String::from_utf8_lossy(&o.stdout)
            ));
        }
        let log = std::fs::read_to_string(self.dir.path().join("operator.log")).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(60).collect();
        out.push_str("--- operator\n");
        for line in tail.into_iter().rev() {
            out.push_str(line);
            out.push('\n');
        }
        out
    }
}

struct Operator(Child);

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn str_at<'a>(v: &'a serde_json::Value, pointer: &str) -> Option<&'a str> {
    v.pointer(pointer).and_then(serde_json::Value::as_str)
}

fn secret_value(sim: &Sim, secret: &str, key: &str) -> String {
    use base64::Engine as _;
    let s = sim.json(&["get", "secret", secret]).unwrap();
    let text = str_at(&s, &format!("/data/{key}")).unwrap();
    String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(text)
            .unwrap(),
    )
    .unwrap()
}

/// A connection to `host:5432` as the application owner.
async fn connect(host: &str, password: &str) -> Option<tokio_postgres::Client> {
    let mut config = tokio_postgres::Config::new();
    config
        .host(host)
        .port(5432)
        .user("app")
        .password(password)
        .dbname("app")
        .connect_timeout(Duration::from_secs(2));
    let (client, connection) = config.connect(tokio_postgres::NoTls).await.ok()?;
    tokio::spawn(connection);
    Some(client)
}

/// `connect`, retried for up to 30 s (a Service follows its pods' labels a moment later).
async fn connect_soon(host: &str, password: &str) -> Option<tokio_postgres::Client> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(c) = connect(host, password).await {
            return Some(c);
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Commits through `host` (the `-rw` ClusterIP) until stopped, reconnecting on failure.
struct Writer {
    acked: Arc<Mutex<Vec<i64>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Writer {
    fn start(host: String, password: String) -> Writer {
        let acked = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (a, s) = (acked.clone(), stop.clone());
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
                        client = connect(&host, &password).await;
                        if client.is_none() {
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            continue;
                        }
                    }
                    let c = client.as_ref().unwrap();
                    next += 1;
                    let id = next;
                    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&id];
                    let insert = c.execute("INSERT INTO ledger (id) VALUES ($1)", &params);
                    match tokio::time::timeout(Duration::from_secs(5), insert).await {
                        Ok(Ok(_)) => a.lock().unwrap().push(next),
                        _ => client = None,
                    }
                }
            });
        });
        Writer {
            acked,
            stop,
            thread: Some(thread),
        }
    }

    fn count(&self) -> usize {
        self.acked.lock().unwrap().len()
    }

    fn wait_for_more(&self, more: usize, seconds: u64) -> bool {
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

    fn stop(mut self) -> Vec<i64> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
        self.acked.lock().unwrap().clone()
    }
}

/// Asks every pod's PostgreSQL every 200 ms whether it accepts writes; records the most seen
/// at once.
struct WritableChecker {
    most: Arc<Mutex<usize>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl WritableChecker {
    fn start(pod_ips: Arc<Mutex<BTreeSet<String>>>, password: String) -> WritableChecker {
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
                                let c = connect(&ip, &password).await?;
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

    fn stop(mut self) -> usize {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
        *self.most.lock().unwrap()
    }
}

fn kubelet_available() -> bool {
    let ok = ["/usr/bin/unshare", "/usr/bin/setpriv", "/usr/bin/nsenter"]
        .iter()
        .all(|p| Path::new(p).exists())
        && Command::new("kubectl")
            .arg("version")
            .arg("--client")
            .output()
            .is_ok()
        && nix::unistd::Uid::effective().is_root();
    if !ok {
        eprintln!("SKIPPED: needs root, util-linux and kubectl (scripts/install.sh)");
    }
    ok
}

#[test]
fn a_cluster_on_kubernetes_fails_over_from_a_lost_node_without_losing_a_commit() {
    if !kubelet_available() {
        return;
    }
    let sim = Sim::start(3);
    let crds = repo_root().join("deploy/crds");
    sim.kubectl(&["apply", "--server-side", "-f", crds.to_str().unwrap()]);
    let log = sim.dir.path().join("operator.log");
    let _operator = Operator(
        Command::new(env!("CARGO_BIN_EXE_pgherd"))
            .args(["operator", "--no-webhooks", "--no-leader-election"])
            .env("KUBECONFIG", sim.kubeconfig())
            .env("PGHERD_LOG", "info")
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    let manifest = sim.dir.path().join("pg.yaml");
    std::fs::write(
        &manifest,
        "apiVersion: postgresql.cnpg.io/v1\nkind: Cluster\nmetadata:\n  name: pg\nspec:\n  instances: 3\n  imageName: ghcr.io/cloudnative-pg/postgresql:15\n  storage:\n    size: 1Gi\n  postgresql:\n    synchronous:\n      method: any\n      number: 1\n",
    )
    .unwrap();
    sim.kubectl(&["apply", "-f", manifest.to_str().unwrap()]);
    let healthy = |sim: &Sim, seconds: u64| {
        sim.eventually("a healthy cluster", seconds, || {
            let c = sim.json(&["get", "cluster", "pg"])?;
            let ready = c.pointer("/status/readyInstances")?.as_i64()?;
            (str_at(&c, "/status/phase") == Some("Cluster in healthy state") && ready == 3)
                .then_some(c)
        })
    };
    let status = healthy(&sim, 300);
    let primary = str_at(&status, "/status/currentPrimary")
        .unwrap()
        .to_string();
    // `kubectl get cluster` shows it the way CloudNativePG does.
    let table = sim.kubectl(&["get", "cluster", "pg"]);
    assert!(table.contains("Cluster in healthy state"), "{table}");

    let password = secret_value(&sim, "pg-app", "password");
    let service_ip = |name: &str| {
        let s = sim.json(&["get", "service", name]).unwrap();
        str_at(&s, "/spec/clusterIP").unwrap().to_string()
    };
    let (rw, ro) = (service_ip("pg-rw"), service_ip("pg-ro"));
    let pod_ips = Arc::new(Mutex::new(BTreeSet::new()));
    let refresh_ips = |sim: &Sim| {
        let pods = sim
            .json(&["get", "pods", "-l", "cnpg.io/cluster=pg"])
            .unwrap();
        let mut ips = pod_ips.lock().unwrap();
        for pod in pods["items"].as_array().unwrap() {
            if let Some(ip) = str_at(pod, "/status/podIP") {
                ips.insert(ip.to_string());
            }
        }
    };
    refresh_ips(&sim);
    sim.runtime.block_on(async {
        let c = connect_soon(&rw, &password).await.expect("-rw answers");
        c.batch_execute("CREATE TABLE ledger (id bigint PRIMARY KEY)")
            .await
            .unwrap();
        // -ro reaches a replica.
        let r = connect_soon(&ro, &password).await.expect("-ro answers");
        let row = r
            .query_one("SELECT pg_is_in_recovery()", &[])
            .await
            .unwrap();
        assert!(row.get::<_, bool>(0), "-ro reached the primary");
    });
    let checker = WritableChecker::start(pod_ips.clone(), password.clone());
    let writer = Writer::start(rw.clone(), password.clone());
    assert!(
        writer.wait_for_more(50, 60),
        "no commits through -rw\n{}",
        sim.diagnostics()
    );

    // The primary's node dies.
    let pod = sim.json(&["get", "pod", &primary]).unwrap();
    let node = str_at(&pod, "/spec/nodeName").unwrap().to_string();
    let killed = Instant::now();
    sim.kubelet.as_ref().unwrap().fault(&node, "kill").unwrap();
    let new_primary = sim.eventually("a new primary", 120, || {
        let c = sim.json(&["get", "cluster", "pg"])?;
        str_at(&c, "/status/currentPrimary")
            .filter(|p| *p != primary)
            .map(str::to_string)
    });
    let before = writer.count();
    assert!(
        writer.wait_for_more(20, 60),
        "no commits through -rw after the failover to {new_primary}\n{}",
        sim.diagnostics()
    );
    println!(
        "failover: node {node} killed, {new_primary} primary and writes flowing after {:?} ({before} commits before)",
        killed.elapsed()
    );
    // The old primary's instance comes back on another node (its PVC outlives the pod) and
    // rejoins as a replica: three ready again.
    let status = healthy(&sim, 180);
    refresh_ips(&sim);

    // A switchover as `kubectl cnpg promote` asks for it: status.targetPrimary.
    let target = ["pg-1", "pg-2", "pg-3"]
        .into_iter()
        .find(|i| Some(*i) != str_at(&status, "/status/currentPrimary"))
        .unwrap();
    sim.kubectl(&[
        "patch",
        "cluster",
        "pg",
        "--subresource=status",
        "--type=merge",
        "-p",
        &format!("{{\"status\":{{\"targetPrimary\":\"{target}\"}}}}"),
    ]);
    let switched = Instant::now();
    sim.eventually("the switchover", 120, || {
        let c = sim.json(&["get", "cluster", "pg"])?;
        (str_at(&c, "/status/currentPrimary") == Some(target)).then_some(())
    });
    assert!(
        writer.wait_for_more(20, 60),
        "no commits through -rw after the switchover to {target}\n{}",
        sim.diagnostics()
    );
    println!(
        "switchover: {target} primary and writes flowing after {:?}",
        switched.elapsed()
    );
    refresh_ips(&sim);
    let acked = writer.stop();
    let most_writable = checker.stop();
    assert!(
        most_writable <= 1,
        "{most_writable} writable primaries at once"
    );

    // Every acknowledged commit is on the new primary.
    let found: BTreeSet<i64> = sim.runtime.block_on(async {
        let c = connect_soon(&rw, &password).await.expect("-rw answers");
        c.query("SELECT id FROM ledger", &[])
            .await
            .unwrap()
            .iter()
            .map(|r| r.get::<_, i64>(0))
            .collect()
    });
    let lost: Vec<&i64> = acked.iter().filter(|id| !found.contains(id)).collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged commits lost: {:?}",
        lost.len(),
        &lost[..lost.len().min(10)]
    );
}
