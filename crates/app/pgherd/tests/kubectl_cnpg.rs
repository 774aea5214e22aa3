//! `kubectl cnpg` end to end: the real kubectl finds pgherd on the PATH as `kubectl-cnpg`
//! and runs it against kube-sim, with the CRDs applied, a Cluster, and its Pods, PVCs and
//! status written by the test as the operator would. Each verb's API write is checked by
//! reading the objects back; the seeds' runbook lines run unchanged.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

mod common;
use common::repo_root;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

struct Env {
    _sim: pgherd_kube_sim::Running,
    dir: tempfile::TempDir,
    bin: PathBuf,
}

impl Env {
    async fn start() -> Option<Env> {
        let ok = Command::new("kubectl")
            .args(["version", "--client"])
            .output()
            .is_ok_and(|o| o.status.success());
        if !ok {
            eprintln!("SKIPPED: kubectl is not installed (scripts/install.sh installs it)");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let running = pgherd_kube_sim::start(pgherd_kube_sim::Config {
            state_dir: Some(dir.path().to_path_buf()),
            ..Default::default()
        })
        .await
        .unwrap();
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_pgherd"), bin.join("kubectl-cnpg")).unwrap();
        // kubectl's completion of the plugin's arguments runs this one.
        std::os::unix::fs::symlink(
            env!("CARGO_BIN_EXE_pgherd"),
            bin.join("kubectl_complete-cnpg"),
        )
        .unwrap();
        Some(Env {
            _sim: running,
            dir,
            bin,
        })
    }

    fn run(&self, args: &[&str], stdin: Option<&str>) -> Output {
        use std::io::Write;
        let path = format!(
            "{}:{}",
            self.bin.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let mut child = Command::new("kubectl")
            .args(args)
            .env("PATH", path)
            .env("KUBECONFIG", self.dir.path().join("kubeconfig"))
            .env("KUBECACHEDIR", self.dir.path().join("cache"))
            .env("HOME", self.dir.path())
            .current_dir(repo_root())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
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

    fn ok(&self, args: &[&str]) -> String {
        self.ok_in(args, None)
    }

    fn ok_in(&self, args: &[&str], stdin: Option<&str>) -> String {
        let out = self.run(args, stdin);
        assert!(
            out.status.success(),
            "kubectl {args:?} failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Fails with exit code 1; returns stderr.
    fn user_error(&self, args: &[&str]) -> String {
        let out = self.run(args, None);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(
            out.status.code(),
            Some(1),
            "kubectl {args:?}: {stderr}{}",
            String::from_utf8_lossy(&out.stdout)
        );
        assert!(!stderr.contains("panicked"), "{stderr}");
        stderr
    }

    fn get(&self, args: &[&str]) -> Value {
        let mut all = vec!["get"];
        all.extend_from_slice(args);
        all.extend(["-o", "json"]);
        serde_json::from_str(&self.ok(&all)).unwrap()
    }

    /// Whether a Pod is gone or going (kube-sim keeps a deleted Pod with a grace period
    /// until a kubelet confirms; there is none here).
    fn pod_deleted(&self, ns: &str, name: &str) -> bool {
        let out = self.run(&["get", "pod", name, "-n", ns, "-o", "json"], None);
        !out.status.success()
            || serde_json::from_slice::<Value>(&out.stdout).unwrap()["metadata"]
                ["deletionTimestamp"]
                .is_string()
    }

    fn apply(&self, object: &Value) {
        self.ok_in(&["apply", "-f", "-"], Some(&object.to_string()));
    }

    /// Poll `f` (up to 30 s on a busy machine).
    fn eventually(&self, what: &str, mut f: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if f() {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!("timed out waiting for {what}");
    }
}

/// A cluster `name` in `ns` with 3 instances, its Pods, PVCs and status as the operator
/// would write them.
fn make_cluster(env: &Env, ns: &str, name: &str) {
    env.ok_in(&["create", "namespace", ns], None);
    env.apply(&json!({
        "apiVersion": "postgresql.cnpg.io/v1", "kind": "Cluster",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"instances": 3, "storage": {"size": "1Gi"}}
    }));
    for serial in 1..=3 {
        let instance = format!("{name}-{serial}");
        let role = if serial == 1 { "primary" } else { "replica" };
        let labels = json!({"cnpg.io/cluster": name, "cnpg.io/instanceName": instance,
                            "cnpg.io/podRole": "instance", "cnpg.io/instanceRole": role, "role": role});
        env.apply(&json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": instance, "namespace": ns, "labels": labels},
            "spec": {"nodeName": format!("node-{serial}"),
                     "containers": [{"name": "postgres", "image": "ghcr.io/cloudnative-pg/postgresql:18.6-system-trixie"}]}
        }));
        env.ok(&["patch", "pod", &instance, "-n", ns, "--subresource=status", "--type=merge", "-p",
            &json!({"status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}}).to_string()]);
        for (pvc, pvc_role) in [
            (instance.clone(), "PG_DATA"),
            (format!("{instance}-wal"), "PG_WAL"),
        ] {
            env.apply(&json!({
                "apiVersion": "v1", "kind": "PersistentVolumeClaim",
                "metadata": {"name": pvc, "namespace": ns,
                             "labels": {"cnpg.io/cluster": name, "cnpg.io/instanceName": instance, "cnpg.io/pvcRole": pvc_role}},
                "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}
            }));
        }
    }
    let instances: Vec<String> = (1..=3).map(|s| format!("{name}-{s}")).collect();
    env.ok(&[
        "patch",
        "cluster",
        name,
        "-n",
        ns,
        "--subresource=status",
        "--type=merge",
        "-p",
        &json!({"status": {
            "phase": "Cluster in healthy state", "instances": 3, "readyInstances": 3,
            "currentPrimary": format!("{name}-1"), "targetPrimary": format!("{name}-1"),
            "currentPrimaryTimestamp": "2026-01-01T00:00:00Z", "timelineID": 1,
            "instanceNames": instances,
            "certificates": {"expirations": {format!("{name}-ca"): "2030-01-01T00:00:00Z"}}
        }})
        .to_string(),
    ]);
}

fn apply_crds(env: &Env) {
    env.ok(&["apply", "--server-side", "-f", "deploy/crds/"]);
    env.eventually("the Cluster CRD to be served", || {
        env.run(&["get", "clusters", "-A"], None).status.success()
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verbs_make_cloudnativepg_writes() {
    let Some(env) = Env::start().await else {
        return;
    };
    apply_crds(&env);
    make_cluster(&env, "saasodoo", "postgres-cluster");
    let ns = ["-n", "saasodoo"];

    // Completion through kubectl itself (`kubectl cnpg <TAB>`): verbs, flags, and the
    // namespace's cluster names from the API server.
    let verbs = env.ok(&["__complete", "cnpg", "pro"]);
    assert!(verbs.lines().any(|l| l.starts_with("promote")), "{verbs}");
    let clusters = env.ok(&["__complete", "cnpg", "promote", "-n", "saasodoo", ""]);
    assert!(
        clusters.lines().any(|l| l == "postgres-cluster"),
        "{clusters}"
    );
    let flags = env.ok(&["__complete", "cnpg", "restart", "postgres-cluster", "--pri"]);
    assert!(flags.lines().any(|l| l.starts_with("--primary")), "{flags}");

    // status: the sections in order (certificates with -v -v, as CloudNativePG's plugin), -o
    // json parses, the missing pods/proxy is said.
    let text = env.ok(&[
        "cnpg",
        "status",
        "postgres-cluster",
        "-n",
        "saasodoo",
        "-v",
        "-v",
    ]);
    eprintln!("{text}");
    let mut at = 0;
    for section in [
        "Cluster Summary",
        "Certificates Status",
        "Continuous Backup status",
        "Streaming Replication status",
        "Instances status",
    ] {
        let found = text[at..].find(section).map(|p| p + at);
        assert!(
            found.is_some(),
            "{section} missing or out of order:\n{text}"
        );
        at = found.unwrap();
    }
    assert!(
        text.contains("postgres-cluster-2") && text.contains("node-2") && text.contains("Primary"),
        "{text}"
    );
    assert!(
        text.contains("pods/proxy"),
        "the unreadable instance status is said:\n{text}"
    );
    let view: Value = serde_json::from_str(&env.ok(&[
        "cnpg",
        "status",
        "postgres-cluster",
        "-n",
        "saasodoo",
        "-o",
        "json",
    ]))
    .unwrap();
    assert_eq!(view["summary"]["primary"], "postgres-cluster-1");
    assert_eq!(view["instances"].as_array().unwrap().len(), 3);

    // The seeds' runbook lines, unchanged (seed 002).
    env.ok(&[
        "cnpg",
        "promote",
        "postgres-cluster",
        "postgres-cluster-2",
        "-n",
        "saasodoo",
    ]);
    let c = env.get(&["cluster", "postgres-cluster", "-n", "saasodoo"]);
    assert_eq!(c["status"]["targetPrimary"], "postgres-cluster-2");
    assert_eq!(c["status"]["phase"], "Switchover in progress");
    assert!(c["status"]["targetPrimaryTimestamp"].is_string());

    env.ok(&["cnpg", "restart", "postgres-cluster", "-n", "saasodoo"]);
    let c = env.get(&["cluster", "postgres-cluster", "-n", "saasodoo"]);
    assert!(
        c["metadata"]["annotations"]["kubectl.kubernetes.io/restartedAt"].is_string(),
        "{c}"
    );

    env.ok(&[
        "cnpg",
        "restart",
        "postgres-cluster",
        "--primary",
        "-n",
        "saasodoo",
    ]);
    let c = env.get(&["cluster", "postgres-cluster", "-n", "saasodoo"]);
    assert_eq!(
        c["status"]["phase"],
        "Primary instance is being restarted in-place"
    );

    // A replica restart deletes its Pod.
    env.ok(&["cnpg", "restart", "postgres-cluster", "3", "-n", "saasodoo"]);
    assert!(env.pod_deleted("saasodoo", "postgres-cluster-3"));

    // fencing: the JSON list annotation.
    env.ok(&[
        "cnpg",
        "fencing",
        "on",
        "postgres-cluster",
        "postgres-cluster-1",
        "-n",
        "saasodoo",
    ]);
    env.ok(&[
        "cnpg",
        "fencing",
        "on",
        "postgres-cluster",
        "2",
        "-n",
        "saasodoo",
    ]);
    let c = env.get(&["cluster", "postgres-cluster", "-n", "saasodoo"]);
    let fenced: Vec<String> = serde_json::from_str(
        c["metadata"]["annotations"]["cnpg.io/fencedInstances"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(fenced, ["postgres-cluster-1", "postgres-cluster-2"]);
    assert!(env
        .ok(&["cnpg", "status", "postgres-cluster", "-n", "saasodoo"])
        .contains("Fenced"));
    env.ok(&[
        "cnpg",
        "fencing",
        "off",
        "postgres-cluster",
        "*",
        "-n",
        "saasodoo",
    ]);
    let c = env.get(&["cluster", "postgres-cluster", "-n", "saasodoo"]);
    assert!(
        c["metadata"]["annotations"]
            .get("cnpg.io/fencedInstances")
            .is_none(),
        "{c}"
    );

    // hibernate, reload, maintenance.
    env.ok(&[
        "cnpg",
        "hibernate",
        "on",
        "postgres-cluster",
        "-n",
        "saasodoo",
    ]);
    env.ok(&["cnpg", "reload", "postgres-cluster", "-n", "saasodoo"]);
    env.ok(&[
        "cnpg",
        "maintenance",
        "set",
        "postgres-cluster",
        "--reusePVC",
        "-n",
        "saasodoo",
    ]);
    let c = env.get(&["cluster", "postgres-cluster", "-n", "saasodoo"]);
    assert_eq!(c["metadata"]["annotations"]["cnpg.io/hibernation"], "on");
    assert!(c["metadata"]["annotations"]["cnpg.io/reloadedAt"].is_string());
    assert_eq!(
        c["spec"]["nodeMaintenanceWindow"],
        json!({"inProgress": true, "reusePVC": true})
    );
    env.ok(&["cnpg", "maintenance", "unset", "-n", "saasodoo"]);
    let c = env.get(&["cluster", "postgres-cluster", "-n", "saasodoo"]);
    assert_eq!(c["spec"]["nodeMaintenanceWindow"]["inProgress"], false);

    // backup: a Backup with the asked fields; the plugin method.
    env.ok(&[
        "cnpg",
        "backup",
        "postgres-cluster",
        "--backup-name",
        "manual-1",
        "--backup-target",
        "prefer-standby",
        "-n",
        "saasodoo",
    ]);
    let b = env.get(&["backup", "manual-1", "-n", "saasodoo"]);
    assert_eq!(b["spec"]["cluster"]["name"], "postgres-cluster");
    assert_eq!(b["spec"]["target"], "prefer-standby");
    env.ok(&[
        "cnpg",
        "backup",
        "postgres-cluster",
        "--backup-name",
        "plug-1",
        "-m",
        "plugin",
        "--plugin-name",
        "barman-cloud.cloudnative-pg.io",
        "-n",
        "saasodoo",
    ]);
    let b = env.get(&["backup", "plug-1", "-n", "saasodoo"]);
    assert_eq!(b["spec"]["method"], "plugin");
    assert_eq!(
        b["spec"]["pluginConfiguration"]["name"],
        "barman-cloud.cloudnative-pg.io"
    );

    // destroy: the Pod and its PVCs go.
    let out = env.ok(&[
        "cnpg",
        "destroy",
        "postgres-cluster",
        "postgres-cluster-2",
        "-n",
        "saasodoo",
    ]);
    assert!(out.contains("PVC postgres-cluster-2-wal deleted"), "{out}");
    assert!(env.pod_deleted("saasodoo", "postgres-cluster-2"));
    let pvcs = env.get(&[
        "pvc",
        "-n",
        "saasodoo",
        "-l",
        "cnpg.io/instanceName=postgres-cluster-2",
    ]);
    env.eventually("the destroyed instance's PVCs to go", || {
        env.get(&[
            "pvc",
            "-n",
            "saasodoo",
            "-l",
            "cnpg.io/instanceName=postgres-cluster-2",
        ])["items"]
            .as_array()
            .is_some_and(Vec::is_empty)
    });
    let _ = pvcs;
    assert_eq!(
        env.get(&[
            "pvc",
            "-n",
            "saasodoo",
            "-l",
            "cnpg.io/instanceName=postgres-cluster-1"
        ])["items"]
            .as_array()
            .unwrap()
            .len(),
        2
    );

    // psql and publication: the kubectl exec line on the primary.
    let line = env.ok(&[
        "cnpg",
        "psql",
        "postgres-cluster",
        "--dry-run",
        "-n",
        "saasodoo",
        "--",
        "-c",
        "select 1",
    ]);
    assert!(
        line.contains("exec")
            && line.contains("-c postgres postgres-cluster-1 -- psql -c 'select 1'"),
        "{line}"
    );
    let line = env.ok(&[
        "cnpg",
        "publication",
        "create",
        "postgres-cluster",
        "--publication",
        "pub",
        "--all-tables",
        "--dry-run",
        "-n",
        "saasodoo",
    ]);
    assert!(
        line.contains("postgres-cluster-1 -- psql")
            && line.contains("CREATE PUBLICATION \"pub\" FOR ALL TABLES"),
        "{line}"
    );

    // pgbench: a Job on the -rw Service with the app credentials.
    env.ok(&[
        "cnpg",
        "pgbench",
        "postgres-cluster",
        "--job-name",
        "bench",
        "-n",
        "saasodoo",
        "--",
        "-i",
    ]);
    let job = env.get(&["job", "bench", "-n", "saasodoo"]);
    let container = &job["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["args"], json!(["-i"]));
    assert!(container["env"].to_string().contains("postgres-cluster-rw"));

    // report: a zip with the objects; Secrets redacted.
    env.apply(&json!({"apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "postgres-cluster-app", "namespace": "saasodoo", "labels": {"cnpg.io/cluster": "postgres-cluster"}},
        "stringData": {"password": "hunter2-secret"}}));
    let zip_path = env.dir.path().join("report.zip");
    env.ok(&[
        "cnpg",
        "report",
        "cluster",
        "postgres-cluster",
        "-f",
        zip_path.to_str().unwrap(),
        "-n",
        "saasodoo",
    ]);
    let listing = Command::new("unzip").arg("-l").arg(&zip_path).output();
    if let Ok(listing) = listing {
        let listing = String::from_utf8_lossy(&listing.stdout);
        assert!(
            listing.contains("cluster.yaml")
                && listing.contains("pods.yaml")
                && listing.contains("secrets.yaml"),
            "{listing}"
        );
    }
    let bytes = std::fs::read(&zip_path).unwrap();
    assert!(bytes.starts_with(b"PK"));
    let _ = ns;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runbook_mistakes_get_clear_errors() {
    let Some(env) = Env::start().await else {
        return;
    };
    apply_crds(&env);
    make_cluster(&env, "postgres-ha", "homepage-postgres");

    // Seed 004's line works unchanged.
    env.ok(&[
        "cnpg",
        "promote",
        "homepage-postgres",
        "homepage-postgres-2",
        "-n",
        "postgres-ha",
    ]);
    assert_eq!(
        env.get(&["cluster", "homepage-postgres", "-n", "postgres-ha"])["status"]["targetPrimary"],
        "homepage-postgres-2"
    );

    // Seed 001: the instance is missing.
    let e = env.user_error(&["cnpg", "promote", "postgres-cluster-2", "-n", "postgres"]);
    assert!(
        e.contains("kubectl cnpg promote CLUSTER INSTANCE")
            && e.contains("kubectl cnpg promote postgres-cluster postgres-cluster-2 -n postgres"),
        "{e}"
    );

    // An instance that is not the cluster's.
    let e = env.user_error(&[
        "cnpg",
        "promote",
        "homepage-postgres",
        "other-2",
        "-n",
        "postgres-ha",
    ]);
    assert!(
        e.contains("\"other-2\"") && e.contains("homepage-postgres-1"),
        "{e}"
    );
    let e = env.user_error(&[
        "cnpg",
        "fencing",
        "on",
        "homepage-postgres",
        "9",
        "-n",
        "postgres-ha",
    ]);
    assert!(e.contains("\"9\""), "{e}");

    // A cluster not in the namespace.
    let e = env.user_error(&["cnpg", "status", "homepage-postgres", "-n", "postgres"]);
    assert!(
        e.contains("\"homepage-postgres\" not found in namespace \"postgres\""),
        "{e}"
    );

    // Bad flags.
    let e = env.user_error(&[
        "cnpg",
        "backup",
        "homepage-postgres",
        "-m",
        "plugin",
        "-n",
        "postgres-ha",
    ]);
    assert!(e.contains("--plugin-name"), "{e}");

    // certificate: a TLS Secret signed by the cluster CA (the test plays the operator's CA).
    let ca = pgherd_controller::pki::generate("homepage-postgres", &["x".to_string()], &[], 90)
        .unwrap()
        .ca;
    env.apply(&json!({"apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "homepage-postgres-ca", "namespace": "postgres-ha"},
        "stringData": {"ca.crt": ca.cert, "ca.key": ca.key}}));
    let out = env.ok(&[
        "cnpg",
        "certificate",
        "app-cert",
        "--cnpg-cluster",
        "homepage-postgres",
        "--cnpg-user",
        "app",
        "-n",
        "postgres-ha",
    ]);
    assert!(!out.contains("PRIVATE KEY"), "{out}");
    let secret = env.get(&["secret", "app-cert", "-n", "postgres-ha"]);
    assert_eq!(secret["type"], "kubernetes.io/tls");
    assert!(secret["data"]["tls.crt"].is_string() && secret["data"]["tls.key"].is_string());
    let _ = Path::new("");
}
