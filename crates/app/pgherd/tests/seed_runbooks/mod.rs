//! The seeds' runbooks walked on the local platform (issue 21): each seed's own manifests,
//! changed only in object-store endpoints and credentials (moto instead of MinIO/S3/B2), with
//! what the seed describes but does not show written out as it describes it. Helpers shared by
//! the per-seed tests.

mod seed_000;
mod seed_001;
mod seed_002;
mod seed_003;
mod seed_004;

use pgherd_testkit::local::Local;
use serde_json::Value;
use std::path::Path;
use std::time::{Duration, Instant};

/// A seed fixture (`tests/fixtures/seeds/NAME`) as text.
pub fn fixture(name: &str) -> String {
    crate::common::seed_fixture(name)
}

/// `local ARGS… -n NAMESPACE`, asserting success; stdout.
pub fn run_ns(local: &Local, namespace: &str, args: &[&str]) -> String {
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["-n", namespace]);
    String::from_utf8_lossy(&local.run_ok(&all).stdout).into_owned()
}

/// `local status CLUSTER -n NAMESPACE -o json`.
pub fn status(local: &Local, namespace: &str, cluster: &str) -> Value {
    serde_json::from_str(&run_ns(
        local,
        namespace,
        &["status", cluster, "-o", "json"],
    ))
    .expect("status JSON")
}

/// Poll `status` until `check` holds.
pub fn wait_status(
    local: &Local,
    namespace: &str,
    cluster: &str,
    what: &str,
    timeout: Duration,
    check: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + timeout;
    loop {
        let out = local.run(&["status", cluster, "-n", namespace, "-o", "json"]);
        if out.status.success() {
            let s: Value = serde_json::from_slice(&out.stdout).expect("status JSON");
            if check(&s) {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}: {s:#}\n{}",
                local.logs()
            );
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// `local get KIND NAME -n NAMESPACE -o json`.
pub fn get(local: &Local, namespace: &str, kind: &str, name: &str) -> Value {
    serde_json::from_str(&run_ns(
        local,
        namespace,
        &["get", kind, name, "-o", "json"],
    ))
    .expect("object JSON")
}

/// A key of a Secret of `namespace`, decoded.
pub fn secret(local: &Local, namespace: &str, name: &str, key: &str) -> String {
    use base64::Engine as _;
    let path = local.state.join(format!("secrets/{namespace}/{name}.json"));
    let secret: Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("secret")).expect("JSON");
    String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(secret["data"][key].as_str().expect("secret key"))
            .expect("base64"),
    )
    .expect("UTF-8")
}

/// Connection settings for `addr` ("host:port").
pub fn config(addr: &str, user: &str, password: &str, db: &str) -> tokio_postgres::Config {
    let (host, port) = addr.rsplit_once(':').expect("host:port");
    let mut c = tokio_postgres::Config::new();
    c.host(host)
        .port(port.parse().expect("port"))
        .user(user)
        .password(password)
        .dbname(db)
        .connect_timeout(Duration::from_secs(10));
    c
}

/// Writes `text` to `dir/name` and returns the path as a string.
pub fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write a manifest");
    path.to_str().expect("UTF-8").to_string()
}

/// The server's clock now, as `recoveryTarget.targetTime` takes it.
pub async fn server_now(client: &tokio_postgres::Client) -> String {
    client
        .query_one(
            "SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')",
            &[],
        )
        .await
        .expect("clock")
        .get(0)
}

/// Waits until a Backup object reached `completed` (panics on `failed`).
pub fn wait_backup(local: &Local, namespace: &str, name: &str, timeout: Duration) -> Value {
    let deadline = Instant::now() + timeout;
    loop {
        let out = local.run(&["get", "backup", name, "-n", namespace, "-o", "json"]);
        if out.status.success() {
            let b: Value = serde_json::from_slice(&out.stdout).expect("JSON");
            match b["status"]["phase"].as_str() {
                Some("completed") => return b,
                Some("failed") => panic!("backup {name} failed: {b:#}"),
                _ => {}
            }
        }
        assert!(
            Instant::now() < deadline,
            "backup {name} not completed\n{}",
            local.logs()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// `sql` on the primary of `cluster` as `postgres` over its unix socket (as `kubectl exec …
/// psql -U postgres` does in the pod): `-Atc` output.
pub fn socket_query(local: &Local, namespace: &str, cluster: &str, db: &str, sql: &str) -> String {
    let s = status(local, namespace, cluster);
    let primary = s["instancesStatus"]
        .as_array()
        .and_then(|a| a.iter().find(|i| i["role"] == "primary"))
        .expect("a primary")
        .clone();
    let run_dir = pgherd_local::sockets::socket_dir(
        &local
            .state
            .join(format!("clusters/{namespace}/{cluster}/instances"))
            .join(primary["name"].as_str().expect("name")),
    );
    let psql = [
        "/opt/postgresql/tools-18/bin/psql",
        "/usr/lib/postgresql/15/bin/psql",
    ]
    .into_iter()
    .find(|p| Path::new(p).exists())
    .expect("psql");
    let out = std::process::Command::new("runuser")
        .args(["-u", "postgres", "--", psql])
        .args(["-h", run_dir.to_str().expect("UTF-8")])
        .args(["-p", &primary["port"].to_string()])
        .args(["-d", db, "-Atc", sql])
        .output()
        .expect("psql runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Waits until `writer` committed 5 more rows (after `what`), with the logs if it does not.
pub fn commits_again(local: &Local, writer: &pgherd_testkit::writer::Writer, what: &str) {
    let acked = writer.acknowledged();
    let deadline = Instant::now() + Duration::from_secs(90);
    while writer.acknowledged() < acked + 5 {
        assert!(
            Instant::now() < deadline,
            "no commit after {what} ({acked} before)\n{}",
            local.logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits until `cluster` is healthy with `ready` ready instances.
pub fn healthy(local: &Local, namespace: &str, cluster: &str, what: &str, ready: u64) -> Value {
    wait_status(
        local,
        namespace,
        cluster,
        what,
        Duration::from_secs(180),
        |s| s["phase"] == "Cluster in healthy state" && s["readyInstances"] == ready,
    )
}

/// `kubectl cnpg promote CLUSTER <another instance>` (`-2`, or `alternative` when `-2` is the
/// primary) while `writer` commits: the writer commits again, the cluster is healthy with
/// `ready` instances and the new primary. Returns the status.
pub fn switch_over(
    local: &Local,
    namespace: &str,
    cluster: &str,
    alternative: u32,
    ready: u64,
    writer: &pgherd_testkit::writer::Writer,
) -> Value {
    let current = status(local, namespace, cluster)["currentPrimary"].clone();
    let target = if current == format!("{cluster}-2").as_str() {
        format!("{cluster}-{alternative}")
    } else {
        format!("{cluster}-2")
    };
    run_ns(local, namespace, &["promote", cluster, &target]);
    commits_again(local, writer, "the switchover");
    let s = healthy(
        local,
        namespace,
        cluster,
        "healthy after the switchover",
        ready,
    );
    assert_eq!(s["currentPrimary"], target.as_str());
    s
}
