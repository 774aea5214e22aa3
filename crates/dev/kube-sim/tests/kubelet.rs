//! The process kubelet: pods run as local processes, scheduling, restarts, logs, graceful
//! deletion and node faults. Each test cites the Kubernetes documentation section it follows.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

mod common;
use common::{cluster, kubectl_available, kubelet_available, wait_for, Sim};
use std::time::{Duration, Instant};

fn pod_ip(sim: &Sim, name: &str) -> Option<String> {
    sim.object("pods", "default", name)?["status"]["podIP"]
        .as_str()
        .map(String::from)
}

fn main_pid(sim: &Sim, ns: &str, name: &str) -> Option<u32> {
    let uid = sim.object("pods", ns, name)?["metadata"]["uid"]
        .as_str()?
        .to_string();
    let shared = sim.kubelet.as_ref()?.shared.lock().ok()?;
    let pid = shared
        .pods
        .get(&uid)?
        .state
        .lock()
        .ok()?
        .pids
        .values()
        .next()
        .copied();
    pid
}

/// Docs "Pod Lifecycle" (phase, conditions), "Expose Pod Information to Containers Through
/// Environment Variables", "Secrets" (as files, defaultMode), "Configure a Security Context"
/// (runAsUser, fsGroup), "kubectl logs", and "Termination of Pods" (SIGTERM, then SIGKILL
/// after the grace period, then the object is removed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_runs_with_env_secret_files_logs_and_graceful_deletion() {
    if !kubectl_available() || !kubelet_available() {
        return;
    }
    let sim = cluster(1).await;
    sim.kubectl_in(
        &["apply", "-f", "-"],
        r#"
apiVersion: v1
kind: Secret
metadata: {name: creds}
stringData: {password: hunter2}
---
apiVersion: v1
kind: Pod
metadata: {name: shell}
spec:
  terminationGracePeriodSeconds: 30
  securityContext: {runAsUser: 26, fsGroup: 26}
  containers:
  - name: main
    image: busybox:1.36
    command: ["/bin/sh", "-c"]
    args:
    - |
      echo "name=$POD_NAME ns=$POD_NS ip=$POD_IP node=$NODE uid=$(id -u) groups=$(id -G) pw=$PW"
      echo "file=$(cat /etc/creds/password) mode=$(stat -c %a:%G /etc/creds/password)"
      trap 'echo ignoring TERM' TERM
      while true; do sleep 0.1; done
    env:
    - {name: POD_NAME, valueFrom: {fieldRef: {fieldPath: metadata.name}}}
    - {name: POD_NS, valueFrom: {fieldRef: {fieldPath: metadata.namespace}}}
    - {name: POD_IP, valueFrom: {fieldRef: {fieldPath: status.podIP}}}
    - {name: NODE, valueFrom: {fieldRef: {fieldPath: spec.nodeName}}}
    - {name: PW, valueFrom: {secretKeyRef: {name: creds, key: password}}}
    volumeMounts:
    - {name: creds, mountPath: /etc/creds, readOnly: true}
    - {name: api, mountPath: /var/run/secrets/tokens}
  volumes:
  - {name: creds, secret: {secretName: creds, defaultMode: 0440}}
  - name: api
    projected:
      sources:
      - serviceAccountToken: {path: token, expirationSeconds: 3607}
      - configMap: {name: kube-root-ca.crt, items: [{key: ca.crt, path: ca.crt}]}
      - downwardAPI: {items: [{path: namespace, fieldRef: {fieldPath: metadata.namespace}}]}
"#,
    );
    sim.kubectl(&[
        "wait",
        "--for=condition=Ready",
        "pod/shell",
        "--timeout=30s",
    ]);
    let pod = sim.object("pods", "default", "shell").unwrap();
    assert_eq!(pod["status"]["phase"], "Running");
    assert_eq!(pod["spec"]["nodeName"], "node-1");
    let ip = pod_ip(&sim, "shell").unwrap();
    assert!(ip.starts_with("127."), "{ip}");
    let logs = wait_for("the container's output", 15, || {
        let out = sim.kubectl(&["logs", "shell"]);
        out.contains("mode=").then_some(out)
    })
    .await;
    assert!(
        logs.contains(&format!(
            "name=shell ns=default ip={ip} node=node-1 uid=26 groups=26 pw=hunter2"
        )),
        "{logs}"
    );
    assert!(logs.contains("file=hunter2 mode=440:postgres"), "{logs}");

    // Docs "Projected Volumes" and "Configure Service Accounts for Pods": a token the API
    // server accepts, its CA from `kube-root-ca.crt`, the namespace.
    let server = &sim.running.server;
    let token = sim.kubectl(&[
        "exec",
        "shell",
        "--",
        "cat",
        "/var/run/secrets/tokens/token",
    ]);
    assert_eq!(
        token,
        server.auth.service_account_token("default", "default")
    );
    let ca = sim.kubectl(&[
        "exec",
        "shell",
        "--",
        "cat",
        "/var/run/secrets/tokens/ca.crt",
    ]);
    assert_eq!(ca, server.ca_pem);
    let ns = sim.kubectl(&[
        "exec",
        "shell",
        "--",
        "cat",
        "/var/run/secrets/tokens/namespace",
    ]);
    assert_eq!(ns, "default");

    // Docs "DNS for Services and Pods": a Service created later is resolvable in the running
    // container (its hosts file is rewritten in place).
    sim.kubectl_in(
        &["apply", "-f", "-"],
        "apiVersion: v1\nkind: Service\nmetadata: {name: late}\nspec: {ports: [{port: 80}], selector: {app: none}}\n",
    );
    let ip = sim.object("services", "default", "late").unwrap()["spec"]["clusterIP"]
        .as_str()
        .unwrap()
        .to_string();
    wait_for("the new Service in the pod's hosts file", 15, || {
        let hosts = sim.kubectl(&["exec", "shell", "--", "cat", "/etc/hosts"]);
        hosts
            .contains(&format!(
                "{ip}\tlate late.default late.default.svc late.default.svc.cluster.local"
            ))
            .then_some(())
    })
    .await;

    // The container ignores SIGTERM: it is killed after the grace period (capped at 3 s
    // for tests), then the kubelet removes the object.
    let pid = main_pid(&sim, "default", "shell").unwrap();
    let started = Instant::now();
    sim.kubectl(&["delete", "pod", "shell", "--wait=false"]);
    let marked = sim.object("pods", "default", "shell").unwrap();
    assert!(!marked["metadata"]["deletionTimestamp"].is_null());
    wait_for("the pod to be removed", 20, || {
        sim.object("pods", "default", "shell")
            .is_none()
            .then_some(())
    })
    .await;
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(2),
        "removed after {took:?}, before the grace period"
    );
    assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());
}

/// Docs "Pod Lifecycle: Container restart policy" (Always, exponential back-off,
/// restartCount), "kubectl logs --previous", "Images" (a pull that cannot succeed) and
/// "Events" (`kubectl describe`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crashing_containers_restart_with_back_off_and_keep_previous_logs() {
    if !kubectl_available() || !kubelet_available() {
        return;
    }
    let sim = cluster(1).await;
    sim.kubectl_in(
        &["apply", "-f", "-"],
        r#"
apiVersion: v1
kind: Pod
metadata: {name: crash}
spec:
  containers:
  - name: main
    image: busybox
    command: ["/bin/sh", "-c", "echo run; exit 3"]
"#,
    );
    wait_for("two restarts", 30, || {
        let pod = sim.object("pods", "default", "crash")?;
        let s = &pod["status"]["containerStatuses"][0];
        (s["restartCount"].as_i64()? >= 2).then_some(())
    })
    .await;
    let pod = sim.object("pods", "default", "crash").unwrap();
    let s = &pod["status"]["containerStatuses"][0];
    assert_eq!(s["lastState"]["terminated"]["exitCode"], 3, "{s}");
    assert_eq!(s["ready"], false);
    let previous = sim.kubectl(&["logs", "crash", "--previous"]);
    assert_eq!(previous, "run\n");
    let table = sim.kubectl(&["get", "pod", "crash", "-o", "wide", "--no-headers"]);
    assert!(table.contains("node-1"), "{table}");
    // The scheduler's and the kubelet's events, as `kubectl describe` shows them.
    let described = sim.kubectl(&["describe", "pod", "crash"]);
    for reason in ["Scheduled", "Started", "BackOff"] {
        assert!(
            described.contains(reason),
            "no {reason} event:\n{described}"
        );
    }

    // An image kube-sim does not map cannot be "pulled" (docs "Images": ImagePullBackOff).
    sim.kubectl_in(
        &["apply", "-f", "-"],
        "apiVersion: v1\nkind: Pod\nmetadata: {name: unmapped}\nspec: {containers: [{name: main, image: quay.io/nobody/nothing:1}]}\n",
    );
    wait_for("an image pull back-off", 15, || {
        let out = sim.kubectl(&["get", "pod", "unmapped", "--no-headers"]);
        out.contains("ImagePullBackOff").then_some(())
    })
    .await;
}

/// Docs "Assigning Pods to Nodes" (nodeSelector, preferred inter-pod anti-affinity on
/// `kubernetes.io/hostname`) and "Taints and Tolerations".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduling_spreads_replicas_and_honours_selectors_and_taints() {
    if !kubectl_available() || !kubelet_available() {
        return;
    }
    let sim = cluster(3).await;
    let nodes = sim.kubectl(&[
        "get",
        "nodes",
        "-o",
        "jsonpath={.items[*].metadata.labels.topology\\.kubernetes\\.io/zone}",
    ]);
    assert_eq!(nodes, "zone-a zone-b zone-c");
    sim.kubectl(&["taint", "nodes", "node-2", "dedicated=db:NoSchedule"]);
    let mut manifest = String::new();
    for i in 1..=3 {
        manifest.push_str(&format!(
            r#"---
apiVersion: v1
kind: Pod
metadata: {{name: db-{i}, labels: {{app: db}}}}
spec:
  tolerations: [{{key: dedicated, operator: Equal, value: db, effect: NoSchedule}}]
  affinity:
    podAntiAffinity:
      preferredDuringSchedulingIgnoredDuringExecution:
      - weight: 100
        podAffinityTerm:
          topologyKey: kubernetes.io/hostname
          labelSelector: {{matchLabels: {{app: db}}}}
  containers: [{{name: main, image: busybox, command: [sleep, "300"]}}]
"#
        ));
    }
    manifest.push_str(
        r#"---
apiVersion: v1
kind: Pod
metadata: {name: web}
spec:
  nodeSelector: {topology.kubernetes.io/zone: zone-b}
  containers: [{name: main, image: busybox, command: [sleep, "300"]}]
"#,
    );
    sim.kubectl_in(&["apply", "-f", "-"], &manifest);
    let placed = wait_for("the db pods to be bound", 15, || {
        let mut nodes: Vec<String> = (1..=3)
            .map(|i| {
                sim.object("pods", "default", &format!("db-{i}"))?["spec"]["nodeName"]
                    .as_str()
                    .map(String::from)
            })
            .collect::<Option<_>>()?;
        nodes.sort();
        Some(nodes)
    })
    .await;
    assert_eq!(placed, ["node-1", "node-2", "node-3"]);
    // node-2 (zone-b) is tainted and `web` does not tolerate it.
    wait_for("web to be unschedulable", 15, || {
        sim.condition_is("pods", "default", "web", "PodScheduled", "False")
            .then_some(())
    })
    .await;
    let web = sim.object("pods", "default", "web").unwrap();
    assert!(web["spec"]["nodeName"].is_null());
    let message = web["status"]["conditions"][0]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(message.contains("untolerated taint"), "{message}");
    sim.kubectl(&["taint", "nodes", "node-2", "dedicated-"]);
    wait_for("web to be bound to node-2", 15, || {
        (sim.object("pods", "default", "web")?["spec"]["nodeName"] == "node-2").then_some(())
    })
    .await;
}

fn process_state(pid: u32) -> char {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    stat.rsplit(')')
        .next()
        .and_then(|r| r.trim().chars().next())
        .unwrap_or('?')
}

/// Docs "Nodes: Node status, Heartbeats, Node controller" (a node not heard from becomes
/// Ready=Unknown and its pods not Ready) and "Taints and Tolerations"
/// (`node.kubernetes.io/unreachable`), through `kube-sim node freeze|kill|restore`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frozen_or_killed_node_goes_not_ready_and_recovers_on_restore() {
    if !kubectl_available() || !kubelet_available() {
        return;
    }
    let sim = cluster(2).await;
    sim.kubectl_in(
        &["apply", "-f", "-"],
        r#"
apiVersion: v1
kind: Pod
metadata: {name: frozen}
spec:
  nodeSelector: {kubernetes.io/hostname: node-2}
  containers:
  - name: main
    image: busybox
    command: [sleep, "300"]
    readinessProbe: {exec: {command: ["true"]}, periodSeconds: 1}
"#,
    );
    sim.kubectl(&[
        "wait",
        "--for=condition=Ready",
        "pod/frozen",
        "--timeout=30s",
    ]);
    let pid = main_pid(&sim, "default", "frozen").unwrap();
    let node = |action: &str| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_kube-sim"))
            .args(["node", action, "node-2", "--state-dir"])
            .arg(sim.dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    node("freeze");
    assert_eq!(process_state(pid), 'T');
    wait_for("node-2 to go NotReady", 20, || {
        sim.condition_is("nodes", "", "node-2", "Ready", "Unknown")
            .then_some(())
    })
    .await;
    wait_for("the pod to be not Ready", 10, || {
        sim.condition_is("pods", "default", "frozen", "Ready", "False")
            .then_some(())
    })
    .await;
    let taints = sim.object("nodes", "", "node-2").unwrap()["spec"]["taints"].clone();
    assert_eq!(taints[0]["key"], "node.kubernetes.io/unreachable");
    assert!(sim.condition_is("nodes", "", "node-1", "Ready", "True"));
    node("restore");
    wait_for("node-2 and the pod to be Ready again", 20, || {
        (sim.condition_is("nodes", "", "node-2", "Ready", "True")
            && sim.condition_is("pods", "default", "frozen", "Ready", "True"))
        .then_some(())
    })
    .await;
    assert_ne!(process_state(pid), 'T');
    assert_eq!(
        main_pid(&sim, "default", "frozen"),
        Some(pid),
        "the container was not restarted"
    );

    // `kill`: the node's processes die and nothing runs there until `restore`, which starts
    // the pod again as after a reboot.
    node("kill");
    assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists() || process_state(pid) == 'Z');
    wait_for("node-2 to go NotReady again", 20, || {
        sim.condition_is("nodes", "", "node-2", "Ready", "Unknown")
            .then_some(())
    })
    .await;
    assert_eq!(main_pid(&sim, "default", "frozen"), None);
    node("restore");
    wait_for("the pod to run again", 20, || {
        let p = sim.object("pods", "default", "frozen")?;
        let s = &p["status"]["containerStatuses"][0];
        (s["restartCount"] == 1 && sim.condition_is("pods", "default", "frozen", "Ready", "True"))
            .then_some(())
    })
    .await;
    assert_ne!(main_pid(&sim, "default", "frozen"), Some(pid));
}

/// Docs "Configure Liveness, Readiness and Startup Probes": an HTTPS readiness probe on a
/// named port (the certificate is not verified), a startup probe gating the others, and a
/// failing exec liveness probe restarting the container; the same server read through
/// `pods/proxy`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_drive_readiness_and_restarts() {
    if !kubectl_available() || !kubelet_available() {
        return;
    }
    if !std::path::Path::new("/usr/bin/python3").exists()
        || !std::path::Path::new("/usr/bin/openssl").exists()
    {
        eprintln!("SKIPPED: needs /usr/bin/python3 and /usr/bin/openssl");
        return;
    }
    let sim = cluster(1).await;
    sim.kubectl_in(
        &["apply", "-f", "-"],
        r#"
apiVersion: v1
kind: Pod
metadata: {name: https}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: debian:12
    command: [sh, -c]
    args:
    - |
      rm -f /tmp/die; cd /tmp
      openssl req -x509 -newkey rsa:2048 -nodes -subj /CN=self -days 1 -keyout k.pem -out c.pem 2>/dev/null
      exec python3 -c "
      import http.server, ssl
      s = http.server.HTTPServer(('$(POD_IP)', 8443), http.server.SimpleHTTPRequestHandler)
      c = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER); c.load_cert_chain('c.pem', 'k.pem')
      s.socket = c.wrap_socket(s.socket, server_side=True); s.serve_forever()"
    env: [{name: POD_IP, valueFrom: {fieldRef: {fieldPath: status.podIP}}}]
    ports: [{name: status, containerPort: 8443}]
    startupProbe: {tcpSocket: {port: status}, periodSeconds: 1, failureThreshold: 30}
    readinessProbe: {httpGet: {path: /, port: status, scheme: HTTPS}, periodSeconds: 1}
    livenessProbe: {exec: {command: [sh, -c, "test ! -f /tmp/die"]}, periodSeconds: 1, failureThreshold: 1}
"#,
    );
    sim.kubectl(&[
        "wait",
        "--for=condition=Ready",
        "pod/https",
        "--timeout=30s",
    ]);
    // API reference "Pod v1 core: proxy": the API server forwards to the pod's port over
    // HTTPS without verifying its certificate (`https:NAME:PORT`); the server lists /tmp.
    let listing = sim.kubectl(&[
        "get",
        "--raw",
        "/api/v1/namespaces/default/pods/https:https:8443/proxy/",
    ]);
    assert!(listing.contains("c.pem"), "{listing}");
    let pod = sim.object("pods", "default", "https").unwrap();
    let status = &pod["status"]["containerStatuses"][0];
    assert_eq!(status["started"], true);
    assert_eq!(status["restartCount"], 0);
    // The liveness probe fails: the container is restarted, then Ready again.
    let uid = pod["metadata"]["uid"].as_str().unwrap();
    let root = sim.kubelet.as_ref().unwrap().root.clone();
    std::fs::write(root.join("pods").join(uid).join("tmp/die"), "").unwrap();
    wait_for("a restart and readiness again", 30, || {
        let p = sim.object("pods", "default", "https")?;
        let s = &p["status"]["containerStatuses"][0];
        (s["restartCount"] == 1 && s["ready"] == true).then_some(())
    })
    .await;
}
