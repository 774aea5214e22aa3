//! Shared by the conformance tests: a kube-sim server started in-process on a free port with
//! its kubeconfig in a temporary directory, the installed `kubectl` pointed at it, and a
//! kube-rs client for it.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)] // tests may panic

use pgherd_kube_sim::{start, Config, Running};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

pub struct Sim {
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
    Sim { running, dir }
}

impl Sim {
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
