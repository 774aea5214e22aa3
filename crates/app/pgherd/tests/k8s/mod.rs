//! Shared by the Kubernetes tests: kube-sim started in-process (with its process kubelet when
//! nodes are asked for), the installed `kubectl` pointed at it, `pgherd operator` as a process,
//! and clients for the Cluster's Services.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)] // each test uses a part

pub mod load;

use pgherd_kube_sim::kubelet::{Kubelet, KubeletConfig};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// kube-sim for the test's lifetime: its API server, and with nodes its kubelet (every process
/// it started goes with it).
pub struct Sim {
    pub runtime: tokio::runtime::Runtime,
    pub kubelet: Option<Kubelet>,
    _running: pgherd_kube_sim::Running,
    pub dir: tempfile::TempDir,
}

impl Drop for Sim {
    fn drop(&mut self) {
        drop(self.kubelet.take());
    }
}

/// Whether this machine has `kubectl` (scripts/install.sh installs it); says so when not.
pub fn kubectl_available() -> bool {
    let ok = Command::new("kubectl")
        .arg("version")
        .arg("--client")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!("SKIPPED: kubectl is not installed (scripts/install.sh installs it)");
    }
    ok
}

/// Whether this machine can run kube-sim's kubelet (root, util-linux, kubectl).
pub fn kubelet_available() -> bool {
    let ok = ["/usr/bin/unshare", "/usr/bin/setpriv", "/usr/bin/nsenter"]
        .iter()
        .all(|p| Path::new(p).exists())
        && nix::unistd::Uid::effective().is_root();
    if !ok {
        eprintln!("SKIPPED: the kubelet needs root and util-linux (scripts/install.sh)");
    }
    ok && kubectl_available()
}

impl Sim {
    /// The API server alone.
    pub fn start() -> Sim {
        Self::with_nodes(0)
    }

    /// The API server and `nodes` nodes whose pods run as local processes (pgherd's image is
    /// this build's binary).
    pub fn with_nodes(nodes: usize) -> Sim {
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
        // kubectl finds pgherd as its `cnpg` plugin, as a user installs it.
        let bin = dir.path().join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_pgherd"), bin.join("kubectl-cnpg")).unwrap();
        let kubelet = (nodes > 0).then(|| {
            let mut config = KubeletConfig::new(nodes, PathBuf::from(env!("CARGO_BIN_EXE_pgherd")));
            config.max_grace = Some(Duration::from_secs(5));
            config.node_grace = Duration::from_secs(3);
            config.backoff = (Duration::from_millis(500), Duration::from_secs(5));
            let _guard = runtime.enter();
            Kubelet::start(running.server.clone(), dir.path(), config).unwrap()
        });
        Sim {
            runtime,
            kubelet,
            _running: running,
            dir,
        }
    }

    pub fn kubeconfig(&self) -> PathBuf {
        self.dir.path().join("kubeconfig")
    }

    /// `kubectl ARGS` with `stdin` as its input.
    pub fn kubectl_output(&self, args: &[&str], stdin: Option<&str>) -> Output {
        use std::io::Write as _;
        let path = format!(
            "{}:{}",
            self.dir.path().join("bin").display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let mut child = Command::new("kubectl")
            .args(args)
            .env("PATH", path)
            .env("KUBECONFIG", self.kubeconfig())
            .env("KUBECACHEDIR", self.dir.path().join("cache"))
            .env("HOME", self.dir.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("kubectl runs (scripts/install.sh installs it)");
        let mut input = child.stdin.take().unwrap();
        if let Some(text) = stdin {
            input.write_all(text.as_bytes()).unwrap();
        }
        drop(input);
        child.wait_with_output().unwrap()
    }

    /// `kubectl ARGS`, which must succeed (else the failure shows the cluster's state); its
    /// output.
    pub fn kubectl(&self, args: &[&str]) -> String {
        let out = self.kubectl_output(args, None);
        assert!(
            out.status.success(),
            "kubectl {args:?}: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.diagnostics()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `kubectl ARGS -o json`, if it succeeds.
    pub fn json(&self, args: &[&str]) -> Option<serde_json::Value> {
        let mut all = args.to_vec();
        all.extend(["-o", "json"]);
        let out = self.kubectl_output(&all, None);
        out.status
            .success()
            .then(|| serde_json::from_slice(&out.stdout).ok())
            .flatten()
    }

    /// The instance pods of the default namespace (`cnpg.io/podRole=instance`), as JSON.
    /// `kubectl exec POD -c postgres -- COMMAND…`: its output, or `None` when it failed.
    pub fn in_postgres(&self, pod: &str, command: &[&str]) -> Option<String> {
        let mut args = vec!["exec", pod, "-c", "postgres", "--"];
        args.extend_from_slice(command);
        let out = self.kubectl_output(&args, None);
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    pub fn instance_pods(&self) -> Vec<serde_json::Value> {
        self.json(&["get", "pods", "-l", "cnpg.io/podRole=instance"])
            .and_then(|list| list["items"].as_array().cloned())
            .unwrap_or_default()
    }

    /// `kubectl apply -f -` of `manifest`: Ok(stdout+stderr) or Err(stderr).
    pub fn apply(&self, manifest: &str) -> Result<String, String> {
        let out = self.kubectl_output(&["apply", "-f", "-"], Some(manifest));
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        if out.status.success() {
            Ok(format!("{}{stderr}", String::from_utf8_lossy(&out.stdout)))
        } else {
            Err(stderr)
        }
    }

    /// The repository's CRDs, applied server-side as a user installs them.
    pub fn install_crds(&self) {
        let crds = super::common::repo_root().join("deploy/crds");
        self.kubectl(&["apply", "--server-side", "-f", crds.to_str().unwrap()]);
    }

    /// Poll `f` until it returns `Some`; after `seconds`, fail with the cluster's state.
    pub fn eventually<T>(&self, what: &str, seconds: u64, mut f: impl FnMut() -> Option<T>) -> T {
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

    /// What a failure report needs: the Clusters, pods, events, the instances' and the
    /// operators' logs.
    pub fn diagnostics(&self) -> String {
        let mut out = String::new();
        for args in [
            &["get", "cluster", "-A", "-o", "yaml"][..],
            &["get", "pods", "-A", "-o", "wide"][..],
            &["get", "events", "-A"][..],
        ] {
            let o = self.kubectl_output(args, None);
            out.push_str(&format!(
                "--- kubectl {args:?}\n{}{}\n",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            ));
        }
        if self.kubelet.is_some() {
            let pods = self
                .json(&["get", "pods", "-A"])
                .and_then(|p| p["items"].as_array().cloned())
                .unwrap_or_default();
            for pod in pods {
                let name = str_at(&pod, "/metadata/name")
                    .unwrap_or_default()
                    .to_string();
                let namespace = str_at(&pod, "/metadata/namespace").unwrap_or("default");
                let args = ["logs", "-n", namespace, &name, "--tail", "30"];
                let o = self.kubectl_output(&args, None);
                out.push_str(&format!(
                    "--- logs {namespace}/{name}\n{}\n",
                    String::from_utf8_lossy(&o.stdout)
                ));
            }
        }
        // PostgreSQL's own logs, in the pods' log directories.
        let mut dirs = vec![self.dir.path().to_path_buf()];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                let path = entry.path();
                let is_link = entry.file_type().is_ok_and(|t| t.is_symlink());
                if path.is_dir() && !is_link {
                    dirs.push(path);
                } else if dir.file_name().is_some_and(|n| n == "log") && path.is_file() {
                    let text = std::fs::read_to_string(&path).unwrap_or_default();
                    let lines: Vec<&str> = text.lines().collect();
                    out.push_str(&format!(
                        "--- {}\n{}\n",
                        path.display(),
                        lines[lines.len().saturating_sub(20)..].join("\n")
                    ));
                }
            }
        }
        for entry in std::fs::read_dir(self.dir.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "log") {
                let text = std::fs::read_to_string(&path).unwrap_or_default();
                let lines: Vec<&str> = text.lines().collect();
                out.push_str(&format!(
                    "--- {}\n{}\n",
                    path.display(),
                    lines[lines.len().saturating_sub(40)..].join("\n")
                ));
            }
        }
        out
    }

    /// Wait until Cluster `namespace/cluster` is healthy with `primary` as its primary (after
    /// a switchover); its status.
    pub fn wait_healthy_primary(
        &self,
        namespace: &str,
        cluster: &str,
        primary: &str,
        seconds: u64,
    ) -> serde_json::Value {
        self.eventually(&format!("{primary} primary and healthy"), seconds, || {
            let c = self.json(&["get", "cluster", "-n", namespace, cluster])?;
            (str_at(&c, "/status/currentPrimary") == Some(primary)
                && str_at(&c, "/status/phase") == Some("Cluster in healthy state"))
            .then_some(c)
        })
    }

    /// The ClusterIP of Service `namespace/name`.
    pub fn service_ip(&self, namespace: &str, name: &str) -> String {
        let s = self
            .json(&["get", "service", "-n", namespace, name])
            .unwrap();
        str_at(&s, "/spec/clusterIP").unwrap().to_string()
    }

    /// The password of Cluster `namespace/cluster`'s application owner (its `-app` Secret).
    pub fn app_password(&self, namespace: &str, cluster: &str) -> String {
        let s = self
            .json(&["get", "secret", "-n", namespace, &format!("{cluster}-app")])
            .unwrap();
        base64_decode(str_at(&s, "/data/password").unwrap())
    }

    /// The decoded `key` of Secret `name`.
    pub fn secret_value(&self, name: &str, key: &str) -> String {
        let s = self.json(&["get", "secret", name]).unwrap();
        base64_decode(str_at(&s, &format!("/data/{key}")).unwrap())
    }
}

/// `pgherd operator ARGS` against the Sim, logging to `DIR/NAME.log`, killed when dropped.
pub struct Operator {
    child: Child,
    pub log: PathBuf,
}

impl Operator {
    pub fn start(sim: &Sim, name: &str, args: &[&str]) -> Operator {
        let log = sim.dir.path().join(format!("{name}.log"));
        let child = Command::new(env!("CARGO_BIN_EXE_pgherd"))
            .arg("operator")
            .args(args)
            .env("KUBECONFIG", sim.kubeconfig())
            .env("POD_NAME", name)
            .env("OPERATOR_NAMESPACE", "default")
            .env("PGHERD_LOG", "info")
            .stdout(std::fs::File::create(log.with_extension("out")).unwrap())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        Operator { child, log }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn logged(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn str_at<'a>(v: &'a serde_json::Value, pointer: &str) -> Option<&'a str> {
    v.pointer(pointer).and_then(serde_json::Value::as_str)
}

pub fn base64_decode(text: &str) -> String {
    use base64::Engine as _;
    String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(text)
            .unwrap(),
    )
    .unwrap()
}

/// A connection to `host:5432` as the application owner (plain TCP: `host all all all`).
pub async fn connect(host: &str, password: &str) -> Option<tokio_postgres::Client> {
    connect_or_error(host, password).await.ok()
}

/// [`connect`], saying why it failed.
pub async fn connect_or_error(
    host: &str,
    password: &str,
) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let mut config = tokio_postgres::Config::new();
    config
        .host(host)
        .port(5432)
        .user("app")
        .password(password)
        .dbname("app")
        .connect_timeout(Duration::from_secs(2));
    let (client, connection) = config.connect(tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    Ok(client)
}

/// [`connect`], retried for up to 30 s (a Service follows its pods' labels a moment later).
pub async fn connect_soon(host: &str, password: &str) -> Option<tokio_postgres::Client> {
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
