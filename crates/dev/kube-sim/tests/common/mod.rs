//! Shared by the conformance tests: a kube-sim server started in-process on a free port with
//! its kubeconfig in a temporary directory, the installed `kubectl` pointed at it, and a
//! kube-rs client for it.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)] // tests may panic

use pgherd_kube_sim::kubelet::{Kubelet, KubeletConfig};
use pgherd_kube_sim::{start, Config, Running};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

pub struct Sim {
    /// First, so it is dropped (killing every process it started) before the directory goes.
    pub kubelet: Option<Kubelet>,
    pub running: Running,
    pub dir: tempfile::TempDir,
}

/// `None` (with a message) when kubectl is not installed: the test is skipped.
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

pub async fn sim() -> Sim {
    sim_with(Config::default()).await
}

pub async fn sim_with(mut config: Config) -> Sim {
    let dir = tempfile::tempdir().unwrap();
    config.state_dir = Some(dir.path().to_path_buf());
    let running = start(config).await.unwrap();
    Sim {
        kubelet: None,
        running,
        dir,
    }
}

/// A server with `nodes` nodes whose kubelet runs pods as local processes; short grace
/// periods and back-offs for tests. Dropping it kills every process it started.
pub async fn cluster(nodes: usize) -> Sim {
    cluster_with(nodes, |_| {}).await
}

/// [`cluster`] with the kubelet's configuration changed by `adjust`.
pub async fn cluster_with(nodes: usize, adjust: impl FnOnce(&mut KubeletConfig)) -> Sim {
    let mut sim = sim().await;
    let mut config = KubeletConfig::new(nodes, PathBuf::from(env!("CARGO_BIN_EXE_kube-sim")));
    config.max_grace = Some(Duration::from_secs(3));
    config.node_grace = Duration::from_secs(2);
    config.backoff = (Duration::from_millis(200), Duration::from_secs(2));
    adjust(&mut config);
    let kubelet = Kubelet::start(sim.running.server.clone(), sim.dir.path(), config).unwrap();
    sim.kubelet = Some(kubelet);
    sim
}

/// Whether this machine can run the kubelet (root, util-linux's unshare/setpriv/nsenter).
pub fn kubelet_available() -> bool {
    let ok = [
        "/usr/bin/unshare",
        "/usr/bin/setpriv",
        "/usr/bin/nsenter",
        "/usr/bin/mount",
    ]
    .iter()
    .all(|p| Path::new(p).exists())
        && Command::new("/usr/bin/unshare")
            .args(["--mount", "--uts", "true"])
            .status()
            .is_ok_and(|s| s.success());
    if !ok {
        eprintln!(
            "SKIPPED: the kubelet needs root and util-linux (scripts/install.sh installs it)"
        );
    }
    ok
}

impl Sim {
    /// An object from the store, as the API has it (`pods`, `nodes`, …).
    pub fn object(&self, resource: &str, ns: &str, name: &str) -> Option<serde_json::Value> {
        let key = match resource.rsplit_once('/') {
            Some((g, p)) => format!("{g}/{p}"),
            None => format!("/{resource}"),
        };
        let state = self.running.server.state.lock().unwrap();
        state.store.get(&key, ns, name).cloned()
    }

    /// Whether a pod's (or node's) condition `type_` has `status`.
    pub fn condition_is(
        &self,
        resource: &str,
        ns: &str,
        name: &str,
        type_: &str,
        status: &str,
    ) -> bool {
        self.object(resource, ns, name).is_some_and(|o| {
            o["status"]["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| c["type"] == type_ && c["status"] == status)
        })
    }

    pub fn kubeconfig(&self) -> PathBuf {
        self.dir.path().join("kubeconfig")
    }

    /// Run kubectl against the server (blocking; the server runs on the runtime's workers).
    pub fn kubectl_as(&self, kubeconfig: &Path, args: &[&str], stdin: Option<&str>) -> Output {
        use std::io::Write;
        let mut cmd = Command::new("kubectl");
        cmd.args(args)
            .env("KUBECONFIG", kubeconfig)
            .env("KUBECACHEDIR", self.dir.path().join("cache"))
            .env("HOME", self.dir.path())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = cmd.spawn().expect("kubectl runs");
        if let Some(input) = stdin {
            child
                .stdin
                .take()
                .unwrap()
                .write_all(input.as_bytes())
                .unwrap();
        }
        drop(child.stdin.take());
        child.wait_with_output().unwrap()
    }

    /// kubectl that must succeed; returns stdout.
    pub fn kubectl(&self, args: &[&str]) -> String {
        let out = self.kubectl_as(&self.kubeconfig(), args, None);
        assert!(
            out.status.success(),
            "kubectl {args:?} failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// kubectl with `stdin` as the manifest (`-f -`), must succeed.
    pub fn kubectl_in(&self, args: &[&str], stdin: &str) -> String {
        let out = self.kubectl_as(&self.kubeconfig(), args, Some(stdin));
        assert!(
            out.status.success(),
            "kubectl {args:?} failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// kubectl that must fail; returns stderr.
    pub fn kubectl_fails(&self, args: &[&str], stdin: Option<&str>) -> String {
        let out = self.kubectl_as(&self.kubeconfig(), args, stdin);
        assert!(
            !out.status.success(),
            "kubectl {args:?} should have failed:\n{}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    pub async fn client(&self) -> kube_client::Client {
        client_for(&self.running.kubeconfig).await
    }

    pub fn repo_root(&self) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../..")
    }
}

/// A kube-rs client that returns `429`s instead of retrying them (kube-client retries 429,
/// 503 and 504 with back-off by default).
pub async fn client_without_retry(kubeconfig: &str) -> kube_client::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let kc = kube_client::config::Kubeconfig::from_yaml(kubeconfig).unwrap();
    let mut config = kube_client::Config::from_custom_kubeconfig(
        kc,
        &kube_client::config::KubeConfigOptions::default(),
    )
    .await
    .unwrap();
    config.default_retry = false;
    kube_client::Client::try_from(config).unwrap()
}

pub async fn client_for(kubeconfig: &str) -> kube_client::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let kc = kube_client::config::Kubeconfig::from_yaml(kubeconfig).unwrap();
    let config = kube_client::Config::from_custom_kubeconfig(
        kc,
        &kube_client::config::KubeConfigOptions::default(),
    )
    .await
    .unwrap();
    kube_client::Client::try_from(config).unwrap()
}

/// Poll `f` until it returns `Some` (or fail after `secs` seconds).
pub async fn wait_for<T>(what: &str, secs: u64, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        if std::time::Instant::now() > deadline {
            panic!("timed out after {secs} s waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Poll `f` until it returns true (or fail after 10 s).
pub async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    for _ in 0..100 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for {what}");
}

/// A ConfigMap `name` labelled `app=name` with one key.
pub fn cm(name: &str) -> k8s_openapi::api::core::v1::ConfigMap {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "labels": {"app": name}},
        "data": {"k": "v"}
    }))
    .unwrap()
}

/// The API's `Status` from an error that must be one.
pub fn api_error(e: kube_client::Error) -> kube_client::core::Status {
    match e {
        kube_client::Error::Api(ae) => *ae,
        other => panic!("expected an API error, got {other:?}"),
    }
}
