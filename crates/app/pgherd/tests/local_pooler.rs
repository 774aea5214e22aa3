//! Poolers end to end through `pgherd local`, on real PgBouncer and PostgreSQL 15: a
//! 2-instance cluster with an `rw` Pooler (transaction mode) and an `ro` Pooler; the
//! application user connects through both (`ro` lands on the replica); the admin console
//! answers `SHOW POOLS`; `cnpg_pgbouncer_*` metrics move; a parameter change is reloaded under
//! an open client connection; a switchover under concurrent writers through the pooler fails
//! no transaction while the pooler is paused for it (and, with the pause turned off by
//! annotation, the failures are reported); a failover (kill -9 of the primary) is followed by
//! the pooler; no acknowledged write is ever lost; a deleted Pooler's processes stop.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

mod chaos;

use pgherd_local::pooler::LocalPoolerStatus;
use pgherd_local::status::LocalClusterStatus;
use pgherd_pooler::admin::{AdminClient, AdminTarget};
use pgherd_testkit::local::{connect, Local};
use pgherd_testkit::metrics::scrape;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const HEALTHY: &str = "Cluster in healthy state";

/// What the test changes in the rw Pooler.
#[derive(Clone, Copy)]
struct Rw {
    pool_size: u32,
    pause_on_switchover: bool,
    paused: bool,
    instances: u32,
}

const RW: Rw = Rw {
    pool_size: 10,
    pause_on_switchover: true,
    paused: false,
    instances: 2,
};

fn manifest(dir: &Path, rw: Rw) -> std::path::PathBuf {
    let Rw {
        pool_size,
        pause_on_switchover,
        paused,
        instances,
    } = rw;
    let path = dir.join(format!(
        "pp-{pool_size}-{pause_on_switchover}-{paused}-{instances}.yaml"
    ));
    let annotation = if pause_on_switchover {
        String::new()
    } else {
        "  annotations:\n    pgherd.io/pause-on-switchover: \"false\"\n".to_string()
    };
    std::fs::write(
        &path,
        format!(
            "apiVersion: postgresql.cnpg.io/v1
kind: Cluster
metadata:
  name: pp
spec:
  instances: 2
  imageName: ghcr.io/cloudnative-pg/postgresql:15.14
  storage:
    size: 1Gi
  postgresql:
    synchronous:
      method: any
      number: 1
      dataDurability: preferred
---
apiVersion: postgresql.cnpg.io/v1
kind: Pooler
metadata:
  name: pp-pooler-rw
{annotation}spec:
  cluster:
    name: pp
  instances: {instances}
  type: rw
  pgbouncer:
    poolMode: transaction
    paused: {paused}
    parameters:
      default_pool_size: \"{pool_size}\"
      max_client_conn: \"200\"
---
apiVersion: postgresql.cnpg.io/v1
kind: Pooler
metadata:
  name: pp-pooler-ro
spec:
  cluster:
    name: pp
  instances: 1
  type: ro
  pgbouncer:
    poolMode: session
"
        ),
    )
    .unwrap();
    path
}

fn pooler_status(local: &Local, name: &str) -> Option<LocalPoolerStatus> {
    let out = local.run(&["get", "pooler", name, "-o", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    serde_json::from_value(v.get("status")?.clone()).ok()
}

fn wait_pooler(
    local: &Local,
    name: &str,
    what: &str,
    check: impl Fn(&LocalPoolerStatus) -> bool,
) -> LocalPoolerStatus {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let s = pooler_status(local, name);
        if let Some(s) = s.as_ref().filter(|s| check(s)) {
            return s.clone();
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {name}: {what}: {s:#?}\n{}",
            local.logs()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn admin_target(local: &Local, pooler: &str, s: &LocalPoolerStatus, i: usize) -> AdminTarget {
    AdminTarget {
        socket_dir: s.instances_status[i].socket_dir.clone().into(),
        port: s.instances_status[i].port,
        password: std::fs::read_to_string(local.state.join(format!(
            "clusters/default/pp/poolers/{pooler}/admin-password"
        )))
        .unwrap()
        .trim()
        .to_string(),
    }
}

/// The sum of every sample of `name` whose labels contain `labels`.
fn value(body: &str, name: &str, labels: &str) -> Option<f64> {
    let values = pgherd_testkit::metrics::values(body, name, labels);
    (!values.is_empty()).then(|| values.iter().sum())
}

/// One simple-query statement (PgBouncer in transaction mode keeps no prepared statements).
async fn one(c: &tokio_postgres::Client, sql: &str) -> Result<String, tokio_postgres::Error> {
    for m in c.simple_query(sql).await? {
        if let tokio_postgres::SimpleQueryMessage::Row(r) = m {
            return Ok(r.get(0).unwrap_or_default().to_string());
        }
    }
    Ok(String::new())
}

/// Writers committing short transactions through an endpoint, like `pgbench -M simple`.
struct Load {
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<Vec<(String, i64, Instant)>>>,
    failed: Arc<AtomicU64>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Load {
    fn start(local: &Local, addr: &str, round: &str, writers: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(Mutex::new(Vec::new()));
        let failed = Arc::new(AtomicU64::new(0));
        let mut threads = Vec::new();
        for w in 0..writers {
            let config = local.app_config("pp", addr);
            let (stop, acked, failed) = (stop.clone(), acked.clone(), failed.clone());
            let source = format!("{round}-{w}");
            threads.push(std::thread::spawn(move || {
                let rt = pgherd_testkit::runtime();
                rt.block_on(async move {
                    let mut client: Option<tokio_postgres::Client> = None;
                    let mut seq = 0i64;
                    while !stop.load(Ordering::Relaxed) {
                        let c = match client.take() {
                            Some(c) => c,
                            None => match tokio::time::timeout(Duration::from_secs(5), connect(&config)).await {
                                Ok(Ok(c)) => c,
                                _ => {
                                    failed.fetch_add(1, Ordering::Relaxed);
                                    tokio::time::sleep(Duration::from_millis(50)).await;
                                    continue;
                                }
                            },
                        };
                        seq += 1;
                        let sql = format!("BEGIN; INSERT INTO pooled (source, seq) VALUES ('{source}', {seq}); UPDATE counter SET n = n + 1; COMMIT");
                        match tokio::time::timeout(Duration::from_secs(60), c.batch_execute(&sql)).await {
                            Ok(Ok(())) => {
                                acked.lock().unwrap().push((source.clone(), seq, Instant::now()));
                                client = Some(c);
                            }
                            _ => {
                                failed.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                });
            }));
        }
        Load {
            stop,
            acked,
            failed,
            threads,
        }
    }

    fn acked(&self) -> usize {
        self.acked.lock().unwrap().len()
    }

    fn wait_progress(&self, n: usize, local: &Local) {
        let target = self.acked() + n;
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.acked() < target {
            assert!(
                Instant::now() < deadline,
                "no progress through the pooler: {} acknowledged, {} failed\n{}",
                self.acked(),
                self.failed.load(Ordering::Relaxed),
                local.logs()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Acknowledged writes, failed attempts, and the longest time no writer got an
    /// acknowledgement (how long clients waited).
    fn stop(self) -> (Vec<(String, i64)>, u64, Duration) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            t.join().unwrap();
        }
        let mut acked = self.acked.lock().unwrap().clone();
        acked.sort_by_key(|a| a.2);
        let gap = acked
            .windows(2)
            .map(|w| w[1].2.duration_since(w[0].2))
            .max()
            .unwrap_or_default();
        let acked = acked.into_iter().map(|(s, n, _)| (s, n)).collect();
        (acked, self.failed.load(Ordering::Relaxed), gap)
    }
}

/// Every acknowledged write is on the primary (read directly, not through the pooler).
async fn assert_none_lost(local: &Local, status: &LocalClusterStatus, acked: &[(String, i64)]) {
    let c = connect(&local.app_config("pp", &status.endpoints["rw"]))
        .await
        .unwrap_or_else(|e| panic!("cannot reach the primary to count rows: {e}"));
    let rows = c
        .query("SELECT source, seq FROM pooled", &[])
        .await
        .unwrap();
    let present: std::collections::HashSet<(String, i64)> =
        rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    let lost: Vec<_> = acked.iter().filter(|a| !present.contains(a)).collect();
    assert!(lost.is_empty(), "acknowledged writes lost: {lost:?}");
}

fn healthy_with_primary(local: &Local, primary: &str) -> LocalClusterStatus {
    local.wait_for(
        "pp",
        &format!("{primary} primary and healthy"),
        Duration::from_secs(120),
        |s| {
            s.phase == HEALTHY
                && s.ready_instances == 2
                && s.current_primary.as_deref() == Some(primary)
                && s.target_primary.as_deref() == Some(primary)
        },
    )
}

#[test]
fn poolers_serve_reload_and_ride_switchovers_and_failovers() {
    let local = Local::new(Path::new(env!("CARGO_BIN_EXE_pgherd")));
    let files = tempfile::tempdir().unwrap();
    let m = manifest(files.path(), RW);
    local.run_ok(&["up", "-f", m.to_str().unwrap(), "--timeout-seconds", "180"]);
    healthy_with_primary(&local, "pp-1");
    let rw_status = wait_pooler(&local, "pp-pooler-rw", "2 ready instances", |p| {
        p.phase == "active" && p.ready_instances == 2
    });
    let ro_status = wait_pooler(&local, "pp-pooler-ro", "1 ready instance", |p| {
        p.phase == "active" && p.ready_instances == 1
    });
    assert_eq!(rw_status.pooler_type, "rw");
    // The cluster's status lists the poolers and their endpoints.
    let s = local.wait_for(
        "pp",
        "poolers in the cluster status",
        Duration::from_secs(30),
        |s| s.poolers.len() == 2,
    );
    let rw = s.endpoints["pp-pooler-rw"].clone();
    let ro = s.endpoints["pp-pooler-ro"].clone();
    assert_eq!(rw_status.endpoint.as_deref(), Some(rw.as_str()));
    let text = String::from_utf8_lossy(&local.run_ok(&["status", "pp"]).stdout).into_owned();
    assert!(
        text.contains("Poolers status")
            && text
                .lines()
                .any(|l| l.starts_with("pp-pooler-rw ") && l.contains(" rw ")),
        "{text}"
    );

    // Secrets: the pooler's client certificate is a 0600 secret; no password in any status.
    use std::os::unix::fs::PermissionsExt;
    let secret = local.state.join("secrets/default/pp-pooler.json");
    assert_eq!(
        std::fs::metadata(&secret).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let ini = local
        .state
        .join("clusters/default/pp/poolers/pp-pooler-rw/pp-pooler-rw-1/pgbouncer.ini");
    assert_eq!(
        std::fs::metadata(&ini).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let password = local.app_secret("pp", "password");
    let get = String::from_utf8_lossy(&local.run_ok(&["get", "pooler", "-o", "json"]).stdout)
        .into_owned();
    assert!(!get.contains(&password), "{get}");

    let rt = pgherd_testkit::runtime();
    rt.block_on(async {
        // Through the rw pooler, as the application user (password checked via user_search).
        let c = connect(&local.app_config("pp", &rw)).await.unwrap();
        c.batch_execute("CREATE TABLE pooled (source text, seq bigint, PRIMARY KEY (source, seq)); CREATE TABLE counter (n bigint); INSERT INTO counter VALUES (0)").await.unwrap();
        assert_eq!(one(&c, "SELECT pg_is_in_recovery()").await.unwrap(), "f");
        // Through the ro pooler: a replica.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let r = connect(&local.app_config("pp", &ro)).await.unwrap();
            assert_eq!(one(&r, "SELECT pg_is_in_recovery()").await.unwrap(), "t");
            if one(&r, "SELECT count(*) FROM counter").await.is_ok() {
                break;
            }
            assert!(Instant::now() < deadline, "the table never reached the replica");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }

        // The primary keeps the authentication role, and user_search in every database
        // (template1 too, for databases created later).
        for db in ["app", "postgres", "template1"] {
            assert_eq!(
                auth_objects(&local, &s.endpoints["rw"], db).await,
                (true, true),
                "{db}"
            );
        }

        // Seed 002's `psql -h <pooler> -U postgres pgbouncer -c 'SHOW POOLS'`: the admin
        // console over TCP admits nobody (as CloudNativePG's), and says so at once instead of
        // leaving the client waiting until it times out.
        let mut tcp_admin = local.app_config("pp", &rw);
        tcp_admin
            .user("postgres")
            .dbname("pgbouncer")
            .connect_timeout(Duration::from_secs(60));
        let refused = tokio::time::timeout(Duration::from_secs(90), connect(&tcp_admin))
            .await
            .expect("an answer, not a wait");
        let Err(error) = refused else {
            panic!("the admin console over TCP let postgres in")
        };
        let message = error.as_db_error().map(|d| d.message().to_string());
        assert_eq!(message.as_deref(), Some("login rejected"), "{error:?}");
        // The admin console.
        let admin = AdminClient::connect(&admin_target(&local, "pp-pooler-rw", &rw_status, 0)).await.unwrap();
        let pools = admin.show("POOLS").await.unwrap();
        assert!(pools.iter().any(|p| p.get("database").map(String::as_str) == Some("app")), "{pools:?}");
    });

    // Metrics move with the traffic.
    let metrics: Vec<String> = rw_status
        .instances_status
        .iter()
        .map(|i| i.metrics.clone())
        .collect();
    let xacts = |all: &[String]| -> f64 {
        all.iter()
            .map(|m| {
                value(
                    &scrape(m),
                    "cnpg_pgbouncer_stats_total_xact_count",
                    "database=\"app\"",
                )
                .unwrap_or(0.0)
            })
            .sum()
    };
    let body = scrape(&metrics[0]);
    for name in [
        "cnpg_pgbouncer_up",
        "cnpg_pgbouncer_lists_used_clients",
        "cnpg_pgbouncer_pools_cl_active",
        "cnpg_pgbouncer_collection_duration_seconds",
        "cnpg_pgbouncer_last_collection_error",
    ] {
        assert!(value(&body, name, "").is_some(), "{name} missing:\n{body}");
    }
    assert_eq!(value(&body, "cnpg_pgbouncer_up", ""), Some(1.0));
    assert_eq!(
        value(&body, "cnpg_pgbouncer_last_collection_error", ""),
        Some(0.0)
    );
    let before = xacts(&metrics);
    rt.block_on(async {
        let c = connect(&local.app_config("pp", &rw)).await.unwrap();
        for _ in 0..20 {
            c.batch_execute("UPDATE counter SET n = n + 1")
                .await
                .unwrap();
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    while xacts(&metrics) < before + 20.0 {
        assert!(
            Instant::now() < deadline,
            "total_xact_count did not move from {before}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }

    // A parameter change is reloaded; an open client connection survives it.
    rt.block_on(async {
        let c = connect(&local.app_config("pp", &rw)).await.unwrap();
        one(&c, "SELECT 1").await.unwrap();
        let m = manifest(
            files.path(),
            Rw {
                pool_size: 12,
                ..RW
            },
        );
        local.run_ok(&["apply", "-f", m.to_str().unwrap()]);
        let target = admin_target(&local, "pp-pooler-rw", &rw_status, 1);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let admin = AdminClient::connect(&target).await.unwrap();
            let config = admin.show("CONFIG").await.unwrap();
            if config.iter().any(|r| {
                r.get("key").map(String::as_str) == Some("default_pool_size")
                    && r.get("value").map(String::as_str) == Some("12")
            }) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "default_pool_size was not reloaded"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        assert_eq!(one(&c, "SELECT 41 + 1").await.unwrap(), "42");

        // paused: true holds queries (the client stays connected); paused: false lets them run.
        let paused = manifest(
            files.path(),
            Rw {
                pool_size: 12,
                paused: true,
                ..RW
            },
        );
        local.run_ok(&["apply", "-f", paused.to_str().unwrap()]);
        let held = loop {
            let s = pooler_status(&local, "pp-pooler-rw").unwrap();
            if s.phase == "paused" {
                break s;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        assert!(held.paused);
        let waiting = tokio::time::timeout(Duration::from_secs(2), one(&c, "SELECT 7")).await;
        assert!(
            waiting.is_err(),
            "a query ran through a paused pooler: {waiting:?}"
        );
        local.run_ok(&["apply", "-f", m.to_str().unwrap()]);
        let answered = tokio::time::timeout(Duration::from_secs(20), one(&c, "SELECT 8")).await;
        assert_eq!(answered.unwrap().unwrap(), "8");
    });

    // Switchover under load, paused: no failed transaction.
    let load = Load::start(&local, &rw, "paused", 4);
    load.wait_progress(50, &local);
    local.run_ok(&["promote", "pp", "pp-2"]);
    let s = healthy_with_primary(&local, "pp-2");
    load.wait_progress(50, &local);
    let (acked, failed, gap) = load.stop();
    println!(
        "switchover with the pause: {} acknowledged, {failed} failed, longest wait {gap:?}",
        acked.len()
    );
    rt.block_on(assert_none_lost(&local, &s, &acked));
    assert_eq!(
        failed,
        0,
        "transactions failed through a paused pooler during the switchover\n{}",
        local.logs()
    );
    assert!(
        local.logs().contains("pausing for the switchover"),
        "{}",
        local.logs()
    );

    // Switchover under load with the pause turned off: failures are reported, not asserted.
    let m = manifest(
        files.path(),
        Rw {
            pool_size: 12,
            pause_on_switchover: false,
            ..RW
        },
    );
    local.run_ok(&["apply", "-f", m.to_str().unwrap()]);
    std::thread::sleep(Duration::from_secs(1));
    let load = Load::start(&local, &rw, "unpaused", 4);
    load.wait_progress(50, &local);
    local.run_ok(&["promote", "pp", "pp-1"]);
    let s = healthy_with_primary(&local, "pp-1");
    load.wait_progress(50, &local);
    let (acked, failed, gap) = load.stop();
    println!(
        "switchover without the pause: {} acknowledged, {failed} failed, longest wait {gap:?}",
        acked.len()
    );
    rt.block_on(assert_none_lost(&local, &s, &acked));

    // Failover: the primary's node dies; the pooler reaches the new primary.
    let load = Load::start(&local, &rw, "failover", 4);
    load.wait_progress(50, &local);
    let dir = local.state.join("clusters/default/pp/instances/pp-1");
    let control_plane = chaos::pid_in(&local.state.join("control-plane.pid"));
    chaos::signal(control_plane, false, nix::sys::signal::Signal::SIGSTOP);
    pgherd_instance_manager::process::kill_tree(
        u32::try_from(chaos::pid_in(&dir.join("pgdata/postmaster.pid"))).unwrap(),
    );
    chaos::signal(
        chaos::pid_in(&dir.join("manager.pid")),
        false,
        nix::sys::signal::Signal::SIGKILL,
    );
    chaos::signal(control_plane, false, nix::sys::signal::Signal::SIGCONT);
    let s = local.wait_for("pp", "failover to pp-2", Duration::from_secs(120), |s| {
        s.current_primary.as_deref() == Some("pp-2")
            && s.instances_status
                .iter()
                .any(|i| i.name == "pp-2" && i.ready && i.role == "primary")
    });
    load.wait_progress(50, &local);
    let (acked, failed, gap) = load.stop();
    println!(
        "failover: {} acknowledged, {failed} failed, longest wait {gap:?}",
        acked.len()
    );
    rt.block_on(assert_none_lost(&local, &s, &acked));

    // Scaling the rw pooler down stops its second PgBouncer.
    let second = rw_status.instances_status[1].pid.unwrap();
    let one_instance = manifest(
        files.path(),
        Rw {
            pool_size: 12,
            pause_on_switchover: false,
            instances: 1,
            ..RW
        },
    );
    local.run_ok(&["apply", "-f", one_instance.to_str().unwrap()]);
    wait_pooler(&local, "pp-pooler-rw", "1 instance", |p| {
        p.instances_status.len() == 1 && p.ready_instances == 1
    });
    assert!(!pgherd_instance_manager::process::is_alive(second));
    rt.block_on(async {
        let c = connect(&local.app_config("pp", &rw)).await.unwrap();
        assert_eq!(one(&c, "SELECT pg_is_in_recovery()").await.unwrap(), "f");
    });

    // `local down` stops PgBouncer too; `local up` brings the pooler back on the same endpoint.
    let before = pooler_status(&local, "pp-pooler-rw").unwrap();
    let pid = before.instances_status[0].pid.unwrap();
    local.run_ok(&["down"]);
    assert!(!pgherd_instance_manager::process::is_alive(pid));
    local.run_ok(&[
        "up",
        "-f",
        one_instance.to_str().unwrap(),
        "--timeout-seconds",
        "180",
    ]);
    let after = wait_pooler(&local, "pp-pooler-rw", "back after up", |p| {
        p.phase == "active" && p.instances_status.iter().all(|i| i.pid != Some(pid))
    });
    assert_eq!(after.endpoint, before.endpoint);
    rt.block_on(async {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let answer = match connect(&local.app_config("pp", &rw)).await {
                Ok(c) => one(&c, "SELECT count(*) > 0 FROM pooled").await.ok(),
                Err(_) => None,
            };
            if answer.as_deref() == Some("t") {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the pooler does not serve after up: {answer:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });

    // A Pooler of a cluster that does not exist says so; a deleted Pooler stops.
    let ghost = files.path().join("ghost.yaml");
    std::fs::write(&ghost, "apiVersion: postgresql.cnpg.io/v1\nkind: Pooler\nmetadata:\n  name: ghost-pooler\nspec:\n  cluster:\n    name: nope\n  pgbouncer:\n    poolMode: session\n").unwrap();
    local.run_ok(&["apply", "-f", ghost.to_str().unwrap()]);
    wait_pooler(&local, "ghost-pooler", "waiting for its cluster", |p| {
        p.phase_reason
            .as_deref()
            .is_some_and(|r| r.contains("nope"))
    });
    // A value PgBouncer's file cannot hold is reported in that Pooler's status; the others
    // go on serving.
    let bad = files.path().join("bad.yaml");
    std::fs::write(&bad, "apiVersion: postgresql.cnpg.io/v1\nkind: Pooler\nmetadata:\n  name: bad-pooler\nspec:\n  cluster:\n    name: pp\n  pgbouncer:\n    parameters:\n      server_check_query: \"SELECT 1\\nlisten_port = 1\"\n").unwrap();
    local.run_ok(&["apply", "-f", bad.to_str().unwrap()]);
    let failed = wait_pooler(&local, "bad-pooler", "failed", |p| p.phase == "failed");
    let error = failed.error.unwrap_or_default();
    assert!(
        error.contains("bad-pooler")
            && error.contains("spec.pgbouncer.parameters.server_check_query"),
        "{error}"
    );
    rt.block_on(async {
        let c = connect(&local.app_config("pp", &rw)).await.unwrap();
        assert_eq!(one(&c, "SELECT 1").await.unwrap(), "1");
    });
    local.run_ok(&["delete", "pooler", "bad-pooler"]);

    let pid = ro_status.instances_status[0].pid.unwrap();
    local.run_ok(&["delete", "pooler", "pp-pooler-ro"]);
    let dir = local.state.join("clusters/default/pp/poolers/pp-pooler-ro");
    let deadline = Instant::now() + Duration::from_secs(30);
    while dir.exists() || pgherd_instance_manager::process::is_alive(pid) {
        assert!(Instant::now() < deadline, "the deleted pooler still runs");
        std::thread::sleep(Duration::from_millis(200));
    }

    // No Pooler uses the cluster any more: the role and user_search are dropped.
    local.run_ok(&["delete", "pooler", "pp-pooler-rw"]);
    let rw_endpoint = local.status("pp").endpoints["rw"].clone();
    rt.block_on(async {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (role, function) = auth_objects(&local, &rw_endpoint, "template1").await;
            if !role && !function {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "cnpg_pooler_pgbouncer (role {role}, function {function}) outlived the last Pooler"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
}

/// Whether the role `cnpg_pooler_pgbouncer` exists and `public.user_search` exists in `db`.
async fn auth_objects(local: &Local, rw: &str, db: &str) -> (bool, bool) {
    let mut config = local.app_config("pp", rw);
    config.dbname(db);
    let c = connect(&config).await.unwrap();
    let role = one(
        &c,
        "SELECT count(*) FROM pg_roles WHERE rolname = 'cnpg_pooler_pgbouncer'",
    )
    .await
    .unwrap();
    let function = one(
        &c,
        "SELECT count(*) FROM pg_proc WHERE proname = 'user_search' AND pronamespace = 'public'::regnamespace",
    )
    .await
    .unwrap();
    (role == "1", function == "1")
}

/// A transaction left open through the `rw` pooler holds its switchover `PAUSE` past its
/// 10 s wait: the switchover goes on, and the pooler is resumed afterwards all the same
/// (issue 21: a timed-out PAUSE was not recorded, so no RESUME was ever sent and every new
/// client waited for good).
#[test]
fn a_pause_that_times_out_is_resumed_after_the_switchover() {
    let local = Local::new(Path::new(env!("CARGO_BIN_EXE_pgherd")));
    let files = tempfile::tempdir().unwrap();
    let m = manifest(files.path(), Rw { instances: 1, ..RW });
    local.run_ok(&["up", "-f", m.to_str().unwrap(), "--timeout-seconds", "180"]);
    healthy_with_primary(&local, "pp-1");
    wait_pooler(&local, "pp-pooler-rw", "1 ready instance", |p| {
        p.phase == "active" && p.ready_instances == 1
    });
    let s = local.wait_for(
        "pp",
        "the pooler's endpoint",
        Duration::from_secs(30),
        |s| s.endpoints.contains_key("pp-pooler-rw"),
    );
    let through = local.app_config("pp", &s.endpoints["pp-pooler-rw"]);
    let rt = pgherd_testkit::runtime();
    let holder = rt.block_on(async {
        let c = connect(&through).await.unwrap();
        c.batch_execute("BEGIN; SELECT 1").await.unwrap();
        c
    });
    local.run_ok(&["promote", "pp", "pp-2"]);
    healthy_with_primary(&local, "pp-2");
    drop(holder);
    let answer = rt.block_on(async {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let attempt = tokio::time::timeout(Duration::from_secs(5), async {
                let c = connect(&through).await?;
                c.query_one("SELECT pg_is_in_recovery()", &[]).await
            })
            .await;
            if let Ok(Ok(row)) = attempt {
                return row.get::<_, bool>(0);
            }
            assert!(
                Instant::now() < deadline,
                "the pooler still holds new clients after the switchover\n{}",
                local.logs()
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    });
    assert!(!answer, "through the pooler to the new primary");
}
