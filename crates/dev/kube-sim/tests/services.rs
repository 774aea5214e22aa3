//! Services and names: a real PostgreSQL 15 from a CloudNativePG image name, reached through a
//! Service by name from another pod, through the ClusterIP from the test, and by `kubectl exec`. Each test cites
//! the Kubernetes documentation section it follows.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

mod common;
use common::{cluster, kubectl_available, kubelet_available, wait_for};
use std::path::Path;
use std::time::Duration;
use tokio::io::AsyncReadExt;

const MANIFEST: &str = r#"
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: pgdata}
spec: {accessModes: [ReadWriteOnce], resources: {requests: {storage: 1Gi}}}
---
apiVersion: v1
kind: Service
metadata: {name: pg}
spec:
  selector: {app: pg}
  ports: [{name: postgres, port: 5432, targetPort: postgresql}]
---
apiVersion: v1
kind: Pod
metadata: {name: pg-1, labels: {app: pg}}
spec:
  securityContext: {runAsUser: 26, runAsGroup: 26, fsGroup: 26}
  initContainers:
  - name: initdb
    image: ghcr.io/cloudnative-pg/postgresql:15
    command: [sh, -c, 'test -f "$PGDATA/PG_VERSION" || initdb -D "$PGDATA" -U postgres --auth=trust']
    env: [{name: PGDATA, value: /var/lib/postgresql/data/pgdata}]
    volumeMounts: [{name: pgdata, mountPath: /var/lib/postgresql/data}]
  containers:
  - name: postgres
    image: ghcr.io/cloudnative-pg/postgresql:15
    command: [postgres, -D, /var/lib/postgresql/data/pgdata, -c, 'listen_addresses=$(POD_IP)', -k, /tmp]
    env: [{name: POD_IP, valueFrom: {fieldRef: {fieldPath: status.podIP}}}]
    ports: [{name: postgresql, containerPort: 5432}]
    readinessProbe: {tcpSocket: {port: postgresql}, periodSeconds: 1}
    volumeMounts: [{name: pgdata, mountPath: /var/lib/postgresql/data}]
  volumes:
  - {name: pgdata, persistentVolumeClaim: {claimName: pgdata}}
"#;

const CLIENT: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: client}
spec:
  restartPolicy: Never
  securityContext: {runAsUser: 26}
  containers:
  - name: psql
    image: ghcr.io/cloudnative-pg/postgresql:15
    command:
    - sh
    - -c
    - |
      for i in $(seq 1 100); do psql -h pg -U postgres -tAc 'select 1' >/dev/null 2>&1 && break; sleep 0.2; done
      psql -h pg -U postgres -tAc 'select 40 + 2' &&
      psql -h pg.default.svc.cluster.local -U postgres -tAc 'select host(inet_server_addr())' &&
      psql -h pg.default -U postgres -tAc 'select current_user'
"#;

/// Docs "Service" (selector, named targetPort, ClusterIP), "EndpointSlices", "DNS for
/// Services and Pods" (`NAME`, `NAME.NS`, `NAME.NS.svc.cluster.local`), "Persistent Volumes"
/// (a claim bound with its requested capacity), "Virtual IPs and Service Proxies"
/// (connections to an address that stops being an endpoint are closed) and "Get a Shell to a
/// Running Container" (`kubectl exec`, exit codes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_is_reached_through_a_service_by_name_and_cluster_ip() {
    if !kubectl_available() || !kubelet_available() {
        return;
    }
    if !Path::new("/usr/lib/postgresql/15/bin/postgres").exists() {
        eprintln!("SKIPPED: PostgreSQL 15 is not installed (scripts/install.sh installs it)");
        return;
    }
    let sim = cluster(2).await;
    sim.kubectl_in(&["apply", "-f", "-"], MANIFEST);
    let pvc = wait_for("the claim to be bound", 10, || {
        let pvc = sim.object("persistentvolumeclaims", "default", "pgdata")?;
        (pvc["status"]["phase"] == "Bound").then_some(pvc)
    })
    .await;
    assert_eq!(pvc["status"]["capacity"]["storage"], "1Gi");
    sim.kubectl(&["wait", "--for=condition=Ready", "pod/pg-1", "--timeout=60s"]);
    // Expansion: a larger request is reflected in the capacity.
    sim.kubectl(&[
        "patch",
        "pvc",
        "pgdata",
        "-p",
        r#"{"spec":{"resources":{"requests":{"storage":"2Gi"}}}}"#,
    ]);
    wait_for("the claim to grow", 10, || {
        let pvc = sim.object("persistentvolumeclaims", "default", "pgdata")?;
        (pvc["status"]["capacity"]["storage"] == "2Gi").then_some(())
    })
    .await;
    let pod = sim.object("pods", "default", "pg-1").unwrap();
    let pod_ip = pod["status"]["podIP"].as_str().unwrap().to_string();
    assert_eq!(
        pod["status"]["initContainerStatuses"][0]["state"]["terminated"]["reason"],
        "Completed"
    );

    // The EndpointSlice lists the ready pod on the named port's number.
    // (The EndpointSlice controller follows the pod's readiness asynchronously.)
    let want = format!("{pod_ip} 5432 true");
    wait_for("the EndpointSlice to list the ready pod", 15, || {
        let out = sim.kubectl_as(
            &sim.kubeconfig(),
            &[
                "get",
                "endpointslices",
                "-l",
                "kubernetes.io/service-name=pg",
                "-o",
                "jsonpath={.items[0].endpoints[0].addresses[0]} {.items[0].ports[0].port} {.items[0].endpoints[0].conditions.ready}",
            ],
            None,
        );
        (String::from_utf8_lossy(&out.stdout) == want).then_some(())
    })
    .await;

    // From another pod, by name.
    sim.kubectl_in(&["apply", "-f", "-"], CLIENT);
    wait_for("the client pod to finish", 60, || {
        let phase = sim.object("pods", "default", "client")?["status"]["phase"].clone();
        (phase == "Succeeded" || phase == "Failed").then_some(())
    })
    .await;
    let logs = sim.kubectl(&["logs", "client"]);
    assert_eq!(logs, format!("42\n{pod_ip}\npostgres\n"));

    // From the test, through the ClusterIP.
    let cluster_ip = sim.object("services", "default", "pg").unwrap()["spec"]["clusterIP"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(cluster_ip.starts_with("127."), "{cluster_ip}");
    let out = std::process::Command::new("psql")
        .args([
            "-h",
            &cluster_ip,
            "-U",
            "postgres",
            "-d",
            "postgres",
            "-tAc",
            "select 7 * 6",
        ])
        .env("PGCONNECT_TIMEOUT", "5")
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "42\n",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // `kubectl exec` (WebSocket, v5.channel.k8s.io): psql inside the PostgreSQL container.
    let out = sim.kubectl(&[
        "exec", "pg-1", "--", "psql", "-h", "/tmp", "-U", "postgres", "-tAc", "select 1",
    ]);
    assert_eq!(out, "1\n");
    let fails = sim.kubectl_fails(
        &["exec", "pg-1", "--", "sh", "-c", "echo oops >&2; exit 4"],
        None,
    );
    assert!(
        fails.contains("oops") && fails.contains("exit code 4"),
        "{fails}"
    );

    // A connection through the Service is closed when the pod stops being an endpoint,
    // while PostgreSQL itself keeps running.
    let mut conn = tokio::net::TcpStream::connect((cluster_ip.as_str(), 5432))
        .await
        .unwrap();
    sim.kubectl(&["label", "pod", "pg-1", "app-"]);
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(Duration::from_secs(10), conn.read(&mut buf)).await;
    assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "{read:?}");
    assert!(tokio::net::TcpStream::connect((pod_ip.as_str(), 5432))
        .await
        .is_ok());
}
