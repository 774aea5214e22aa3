//! The local platform end to end, through the CLI, on real PostgreSQL 15: a 3-instance cluster
//! becomes healthy; a row written through `-rw` is read through `-ro` and on every replica;
//! rolling restarts under a concurrent writer lose no acknowledged commit; scaling 3 → 5 → 2
//! (never removing the primary); an invalid manifest changes nothing;
//! `down` + `up` and a killed control plane keep the data; PostgreSQL keeps serving while the
//! control plane is down.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

use pgherd_local::status::LocalClusterStatus;
use pgherd_testkit::writer::Writer;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The local platform for cluster `pg`.
struct Local(pgherd_testkit::local::Local);

impl std::ops::Deref for Local {
    type Target = pgherd_testkit::local::Local;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl Local {
    fn new() -> Self {
        Local(pgherd_testkit::local::Local::new(Path::new(env!(
            "CARGO_BIN_EXE_pgherd"
        ))))
    }

    fn status(&self) -> LocalClusterStatus {
        self.0.status("pg")
    }

    fn wait(&self, what: &str, check: impl Fn(&LocalClusterStatus) -> bool) -> LocalClusterStatus {
        self.0.wait_for("pg", what, Duration::from_secs(120), check)
    }
}

fn manifest(dir: &Path, instances: u32) -> PathBuf {
    manifest_with(dir, instances, "")
}

/// The test cluster; `postgresql` is inserted under `spec.postgresql.parameters` when not empty.
fn manifest_with(dir: &Path, instances: u32, parameters: &str) -> PathBuf {
    let path = dir.join(format!("pg-{instances}-{}.yaml", parameters.len()));
    std::fs::write(
        &path,
        format!(
            "apiVersion: postgresql.cnpg.io/v1\nkind: Cluster\nmetadata:\n  name: pg\nspec:\n  instances: {instances}\n  imageName: ghcr.io/cloudnative-pg/postgresql:15.14\n  storage:\n    size: 1Gi\n{parameters}  managed:\n    roles:\n    - name: reader\n      login: true\n      passwordSecret:\n        name: reader-secret\n    - name: \"Odd \\\"Name\"\n      ensure: present\n---\napiVersion: v1\nkind: Secret\nmetadata:\n  name: reader-secret\nstringData:\n  username: reader\n  password: reader-pass\n---\napiVersion: postgresql.cnpg.io/v1\nkind: Database\nmetadata:\n  name: pg-inventory\nspec:\n  cluster:\n    name: pg\n  name: inventory\n  owner: reader\n  databaseReclaimPolicy: delete\n  schemas:\n  - name: stock\n"
        ),
    )
    .unwrap();
    path
}

async fn client(addr: &str, local: &Local) -> tokio_postgres::Client {
    try_client(addr, local)
        .await
        .unwrap_or_else(|e| panic!("{addr}: {e}"))
}

async fn try_client(
    addr: &str,
    local: &Local,
) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    pgherd_testkit::local::connect(&local.app_config("pg", addr)).await
}

/// Rows in `t`; -1 while the table has not reached this instance yet.
async fn count(addr: &str, local: &Local) -> i64 {
    client(addr, local)
        .await
        .query_one("SELECT count(*) FROM t", &[])
        .await
        .map_or(-1, |r| r.get(0))
}

#[test]
fn local_cluster_lifecycle() {
    let local = Local::new();
    let files = tempfile::tempdir().unwrap();
    let three = manifest(files.path(), 3);
    let out = local.run(&[
        "up",
        "-f",
        three.to_str().unwrap(),
        "--timeout-seconds",
        "180",
    ]);
    assert!(
        out.status.success(),
        "{}\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        local.logs()
    );
    let s = local.status();
    assert_eq!(s.phase, "Cluster in healthy state");
    assert_eq!((s.instances, s.ready_instances), (3, 3));
    assert_eq!(s.current_primary.as_deref(), Some("pg-1"));
    assert_eq!(s.timeline, Some(1));
    let rt = pgherd_testkit::runtime();
    let rw = s.endpoints["rw"].clone();
    let ro = s.endpoints["ro"].clone();

    rt.block_on(async {
        let c = client(&rw, &local).await;
        c.batch_execute(
            "CREATE TABLE t (id serial primary key, v text); INSERT INTO t (v) VALUES ('one')",
        )
        .await
        .unwrap();
        let in_recovery: bool = client(&ro, &local)
            .await
            .query_one("SELECT pg_is_in_recovery()", &[])
            .await
            .unwrap()
            .get(0);
        assert!(in_recovery, "-ro must reach a replica");
        for i in s.instances_status.iter().filter(|i| i.role == "replica") {
            let addr = format!("127.0.0.1:{}", i.port);
            let deadline = Instant::now() + Duration::from_secs(30);
            while count(&addr, &local).await != 1 {
                assert!(Instant::now() < deadline, "row not on {}", i.name);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        // Writes through -ro are refused by the replica.
        assert!(client(&ro, &local)
            .await
            .batch_execute("INSERT INTO t (v) VALUES ('x')")
            .await
            .is_err());
    });
    // Managed roles and the Database object are reconciled on the primary.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let db_status = std::fs::read_to_string(
            local
                .state
                .join("status/Database/default/pg-inventory.json"),
        )
        .unwrap_or_default();
        if db_status.contains("\"applied\": true") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Database not applied: {db_status}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let s2 = local.wait("managed roles", |s| {
        s.managed_roles_status.reconciled.len() == 2
    });
    assert!(s2.managed_roles_status.cannot_reconcile.is_empty());
    rt.block_on(async {
        let mut config = tokio_postgres::Config::new();
        let (host, port) = rw.rsplit_once(':').unwrap();
        config
            .host(host)
            .port(port.parse().unwrap())
            .user("reader")
            .password("reader-pass")
            .dbname("inventory");
        let (c, conn) = config
            .connect(tokio_postgres::NoTls)
            .await
            .expect("the managed role logs in with its Secret's password");
        tokio::spawn(conn);
        let owner: String = c
            .query_one(
                "SELECT nspowner::regrole::text FROM pg_namespace WHERE nspname = 'stock'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(owner, "reader");
        let odd: i64 = c
            .query_one(
                "SELECT count(*) FROM pg_roles WHERE rolname = 'Odd \"Name'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(odd, 1);
    });

    // Objects as stored, Kubernetes-shaped.
    let out = local.run(&["get", "cluster", "pg", "-o", "json"]);
    assert!(out.status.success());
    let got: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(got["kind"], "Cluster");
    assert_eq!(got["spec"]["instances"], 3);
    assert_eq!(got["status"]["phase"], "Cluster in healthy state");
    // CloudNativePG's status, as `kubectl get cluster -o json` would show it.
    let status = &got["status"];
    assert_eq!(status["instances"], 3);
    assert_eq!(status["readyInstances"], 3);
    assert_eq!(status["currentPrimary"], status["targetPrimary"]);
    assert_eq!(
        status["instancesStatus"]["healthy"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
    assert_eq!(status["writeService"], "pg-rw");
    assert_eq!(status["timelineID"], 1);
    assert_eq!(status["conditions"][0]["type"], "Ready");
    assert_eq!(status["conditions"][0]["status"], "True");
    assert!(status["conditions"][0]["lastTransitionTime"].is_string());
    assert!(status["currentPrimaryTimestamp"].is_string());
    let out = local.run(&["get", "secrets", "pg-app", "-o", "json"]);
    let secret: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(secret["type"], "kubernetes.io/basic-auth");
    for key in [
        "username", "password", "dbname", "host", "port", "uri", "jdbc-uri", "pgpass",
    ] {
        assert!(secret["data"][key].is_string(), "{key}");
    }
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(local.state.join("secrets/default/pg-app.json"))
            .unwrap()
            .permissions(),
    ) & 0o777;
    assert_eq!(mode, 0o600);
    assert_eq!(
        local.run(&["get", "clusters", "nope"]).status.code(),
        Some(1)
    );
    assert_eq!(local.run(&["restart", "nope"]).status.code(), Some(1));

    // Rolling restart: every postmaster is replaced, replicas first, while a writer commits
    // through -rw; no acknowledged commit is lost.
    let writer_config = local.app_config("pg", &rw);
    rt.block_on(pgherd_testkit::writer::prepare(&writer_config))
        .unwrap();
    let writer = Writer::start("rolling", writer_config, Duration::from_millis(10));
    writer.wait_for_progress(5, Duration::from_secs(10));
    let before: Vec<Option<u32>> = local
        .status()
        .instances_status
        .iter()
        .map(|i| i.pid)
        .collect();
    let out = local.run(&["restart", "pg"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s3 = local.wait("every instance restarted", |s| {
        s.phase == "Cluster in healthy state"
            && s.instances_status
                .iter()
                .zip(&before)
                .all(|(i, b)| i.pid.is_some() && i.pid != *b)
    });
    rt.block_on(async { assert_eq!(count(&s3.endpoints["rw"], &local).await, 1) });

    // A parameter that needs a restart rolls the cluster; the committed row survives.
    let tuned = manifest_with(
        files.path(),
        3,
        "  postgresql:\n    parameters:\n      max_connections: \"120\"\n",
    );
    let out = local.run(&["apply", "-f", tuned.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let s = local.status();
        let all = rt.block_on(async {
            let mut values = Vec::new();
            for i in &s.instances_status {
                let v: String = match try_client(&format!("127.0.0.1:{}", i.port), &local).await {
                    Ok(c) => c
                        .query_one("SHOW max_connections", &[])
                        .await
                        .map(|r| r.get(0))
                        .unwrap_or_default(),
                    Err(_) => String::new(), // restarting
                };
                values.push(v);
            }
            values
        });
        if s.phase == "Cluster in healthy state" && all.iter().all(|v| v == "120") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "max_connections not applied everywhere: {all:?} {}",
            s.phase
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    rt.block_on(async { assert_eq!(count(&local.status().endpoints["rw"], &local).await, 1) });
    writer.wait_for_progress(5, Duration::from_secs(30));
    let report = writer.stop();
    rt.block_on(async {
        let c = client(&local.status().endpoints["rw"], &local).await;
        let lost = pgherd_testkit::writer::missing(&c, &report).await.unwrap();
        assert!(lost.is_empty(), "acknowledged commits lost: {lost:?}");
    });
    eprintln!(
        "rolling restarts: {} commits acknowledged, {} in doubt, longest write gap {:?}",
        report.acknowledged.len(),
        report.failed,
        report.longest_gap()
    );

    // An invalid manifest changes nothing.
    let bad = files.path().join("bad.yaml");
    std::fs::write(&bad, "apiVersion: postgresql.cnpg.io/v1\nkind: Cluster\nmetadata:\n  name: pg\nspec:\n  instances: 0\n  storage:\n    size: 1Gi\n").unwrap();
    let out = local.run(&["apply", "-f", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("spec.instances"));
    assert_eq!(local.status().instances, 3);
    // Scale up to 5, then down to 2: the newest replicas go, never the primary.
    let five = manifest(files.path(), 5);
    local.run_ok(&["apply", "-f", five.to_str().unwrap()]);
    let s = local.wait("5 ready instances", |s| {
        s.ready_instances == 5 && s.phase == "Cluster in healthy state"
    });
    assert!(s.instances_status.iter().any(|i| i.name == "pg-5"));
    let two = manifest(files.path(), 2);
    assert!(local
        .run(&["apply", "-f", two.to_str().unwrap()])
        .status
        .success());
    let s = local.wait("2 instances", |s| {
        s.instances == 2 && s.phase == "Cluster in healthy state"
    });
    let names: Vec<&str> = s.instances_status.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(names, ["pg-1", "pg-2"]);
    assert!(!local
        .state
        .join("clusters/default/pg/instances/pg-5")
        .exists());
    // Killing the control plane: PostgreSQL keeps serving; a new control plane picks up.
    let pid: i32 = std::fs::read_to_string(local.state.join("control-plane.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let primary_port = s.instances_status[0].port;
    rt.block_on(async { assert_eq!(count(&format!("127.0.0.1:{primary_port}"), &local).await, 1) });
    let out = local.run(&[
        "up",
        "-f",
        two.to_str().unwrap(),
        "--timeout-seconds",
        "120",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // down + up: same cluster, same data, same endpoints.
    assert!(local.run(&["down"]).status.success());
    // A stopped cluster says so (it used to show the last status written before the stop).
    let stopped = local.status();
    assert_eq!(stopped.phase, "Stopped", "{stopped:?}");
    assert_eq!(stopped.ready_instances, 0);
    assert!(stopped
        .instances_status
        .iter()
        .all(|i| !i.ready && i.pid.is_none()));
    // `up --detach`, then a script's wait for healthy: the stale status is never reported
    // as current, so the first connection after the wait succeeds.
    local.run_ok(&["up", "--detach", "-f", two.to_str().unwrap()]);
    let s = local.wait("healthy after up --detach", |s| {
        s.phase == "Cluster in healthy state"
    });
    rt.block_on(async { assert_eq!(count(&s.endpoints["rw"], &local).await, 1) });
    let s = local.status();
    assert_eq!(s.endpoints["rw"], rw, "endpoint ports are kept");
    rt.block_on(async { assert_eq!(count(&s.endpoints["rw"], &local).await, 1) });

    // Deleting a Database whose reclaim policy is `delete` drops it, then the object goes.
    local.run_ok(&["delete", "database", "pg-inventory"]);
    let object = local
        .state
        .join("objects/Database/default/pg-inventory.json");
    let deadline = Instant::now() + Duration::from_secs(60);
    while object.exists() {
        assert!(Instant::now() < deadline, "the Database object stayed");
        std::thread::sleep(Duration::from_millis(200));
    }
    let left: i64 = rt.block_on(async {
        client(&s.endpoints["rw"], &local)
            .await
            .query_one(
                "SELECT count(*) FROM pg_database WHERE datname = 'inventory'",
                &[],
            )
            .await
            .unwrap()
            .get(0)
    });
    assert_eq!(left, 0, "the database was dropped");
}
