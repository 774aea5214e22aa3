//! Driving the local platform through the `pgherd` binary, as a user would: a private state
//! directory, `pgherd local …` commands, the JSON status, and connections through the endpoints
//! with the application secret's credentials.

use pgherd_local::status::LocalClusterStatus;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// A local platform in a temporary state directory; `destroy`ed on drop.
#[derive(Debug)]
pub struct Local {
    pub bin: PathBuf,
    pub state: PathBuf,
    _dir: tempfile::TempDir,
}

impl Local {
    /// A fresh state directory for the `pgherd` binary at `bin`.
    pub fn new(bin: &Path) -> Self {
        let dir = tempfile::tempdir().expect("temporary directory");
        Local {
            bin: bin.to_path_buf(),
            state: dir.path().join("state"),
            _dir: dir,
        }
    }

    /// `pgherd local --state-dir STATE ARGS…`.
    pub fn run(&self, args: &[&str]) -> Output {
        Command::new(&self.bin)
            .arg("local")
            .arg("--state-dir")
            .arg(&self.state)
            .args(args)
            .output()
            .expect("pgherd runs")
    }

    /// `run`, asserting success (stdout, stderr and the logs on failure).
    pub fn run_ok(&self, args: &[&str]) -> Output {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "pgherd local {args:?} failed\n{}\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.logs()
        );
        out
    }

    /// `local status CLUSTER -o json`.
    pub fn status(&self, cluster: &str) -> LocalClusterStatus {
        let out = self.run_ok(&["status", cluster, "-o", "json"]);
        serde_json::from_slice(&out.stdout).expect("status JSON")
    }

    /// Poll the status until `check` holds (at most `timeout`).
    pub fn wait_for(
        &self,
        cluster: &str,
        what: &str,
        timeout: Duration,
        check: impl Fn(&LocalClusterStatus) -> bool,
    ) -> LocalClusterStatus {
        let deadline = Instant::now() + timeout;
        loop {
            // A cluster just applied has no status until the control plane's next pass.
            let out = self.run(&["status", cluster, "-o", "json"]);
            if !out.status.success() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(200));
                continue;
            }
            let s = self.status(cluster);
            if check(&s) {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}: {s:#?}\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Poll `check` until it gives a value (at most `seconds`); on timeout the logs are shown.
    pub fn eventually<T>(
        &self,
        what: &str,
        seconds: u64,
        mut check: impl FnMut() -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + Duration::from_secs(seconds);
        loop {
            if let Some(v) = check() {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "timed out: {what}\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The control plane's `/metrics` (its address is in `control-plane.json`).
    pub fn control_plane_metrics(&self) -> String {
        let info: serde_json::Value = serde_json::from_slice(
            &std::fs::read(self.state.join("control-plane.json")).expect("control-plane.json"),
        )
        .expect("control-plane.json is JSON");
        crate::metrics::scrape(info["metrics"].as_str().expect("metrics address"))
    }

    /// Writes `manifest` to `dir/<cluster>.yaml`, `local up`s it and waits until `ready`
    /// instances of `cluster` are ready. Returns the file and the status.
    pub fn up(
        &self,
        dir: &Path,
        cluster: &str,
        manifest: &str,
        ready: usize,
    ) -> (PathBuf, LocalClusterStatus) {
        let file = dir.join(format!("{cluster}.yaml"));
        std::fs::write(&file, manifest).expect("write the manifest");
        let path = file.to_str().expect("UTF-8 path");
        self.run_ok(&["up", "-f", path, "--timeout-seconds", "180"]);
        let status = self.wait_for(
            cluster,
            &format!("{ready} ready instances"),
            Duration::from_secs(120),
            |s| s.ready_instances == ready,
        );
        (file, status)
    }

    /// What to show when something fails: the control plane's log and each manager's log tail.
    pub fn logs(&self) -> String {
        let mut out =
            std::fs::read_to_string(self.state.join("control-plane.log")).unwrap_or_default();
        // Every namespace's clusters.
        let namespaces = std::fs::read_dir(self.state.join("clusters"))
            .into_iter()
            .flatten()
            .flatten();
        let clusters =
            namespaces.flat_map(|ns| std::fs::read_dir(ns.path()).into_iter().flatten().flatten());
        for cluster in clusters {
            let instances = cluster.path().join("instances");
            for entry in std::fs::read_dir(instances).into_iter().flatten().flatten() {
                let log =
                    std::fs::read_to_string(entry.path().join("manager.log")).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(10).collect();
                out.push_str(&format!(
                    "\n--- {:?}\n{}",
                    entry.file_name(),
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                ));
                let pg_log = std::fs::read_to_string(entry.path().join("log/postgres.log"))
                    .unwrap_or_default();
                let tail: Vec<&str> = pg_log.lines().rev().take(8).collect();
                out.push_str(&format!(
                    "\n  postgres.log:\n{}",
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                ));
            }
        }
        out
    }

    /// A key of the `<cluster>-app` secret, decoded.
    pub fn app_secret(&self, cluster: &str, key: &str) -> String {
        use base64::Engine as _;
        let path = self
            .state
            .join(format!("secrets/default/{cluster}-app.json"));
        let secret: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(path).expect("app secret"))
                .expect("secret JSON");
        let encoded = secret["data"][key].as_str().expect("secret key");
        String::from_utf8(
            base64::engine::general_purpose::STANDARD
                .decode(encoded)
                .expect("base64"),
        )
        .expect("UTF-8")
    }

    /// Connection settings for `addr` ("host:port") as the application user of `cluster`.
    pub fn app_config(&self, cluster: &str, addr: &str) -> tokio_postgres::Config {
        let (host, port) = addr.rsplit_once(':').expect("host:port");
        let mut config = tokio_postgres::Config::new();
        config
            .host(host)
            .port(port.parse().expect("port"))
            .user(self.app_secret(cluster, "username"))
            .password(self.app_secret(cluster, "password"))
            .dbname(self.app_secret(cluster, "dbname"))
            .connect_timeout(Duration::from_secs(5));
        config
    }
}

impl Drop for Local {
    fn drop(&mut self) {
        let _ = self.run(&["destroy"]);
    }
}

/// A Cluster manifest as the tests write them: `name`, `instances`, Debian's PostgreSQL 15, 1Gi,
/// and `spec` (YAML lines indented by two spaces) added under `spec`.
pub fn cluster_manifest(name: &str, instances: u32, spec: &str) -> String {
    format!(
        "apiVersion: postgresql.cnpg.io/v1\nkind: Cluster\nmetadata:\n  name: {name}\nspec:\n  instances: {instances}\n  imageName: ghcr.io/cloudnative-pg/postgresql:15.14\n  storage:\n    size: 1Gi\n{spec}"
    )
}

/// `spec` lines (for [`cluster_manifest`]) making a cluster a source other clusters can clone
/// or follow as CloudNativePG's documentation sets one up: a managed role `migrator` that may
/// log in and replicate, its password in the Secret `secret` (also returned, as a second
/// document to append), and a `pg_hba` line letting it replicate over TCP.
pub fn replication_source(secret: &str, password: &str) -> (String, String) {
    (
        format!(
            "  managed:\n    roles:\n      - name: migrator\n        ensure: present\n        login: true\n        replication: true\n        passwordSecret:\n          name: {secret}\n  postgresql:\n    pg_hba:\n      - host replication migrator all scram-sha-256\n"
        ),
        format!(
            "---\napiVersion: v1\nkind: Secret\nmetadata:\n  name: {secret}\ntype: kubernetes.io/basic-auth\nstringData:\n  username: migrator\n  password: {password:?}\n"
        ),
    )
}

/// Connect with `config` (no TLS; the endpoints are loopback).
pub async fn connect(
    config: &tokio_postgres::Config,
) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let (client, connection) = config.connect(tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    Ok(client)
}
