//! A CloudNativePG `Pooler` on Kubernetes (kube-sim with its process kubelet, two nodes):
//! `pgherd operator` runs a 2-instance Cluster and a `rw` Pooler with 2 PgBouncer pods in
//! transaction mode (Deployment and Service named after it, CloudNativePG's labels, the pods
//! running the PgBouncer image with pgherd's `pooler run` as first process). A client reaches
//! the Pooler's ClusterIP with the `-app` Secret's password, writes and reads; `kubectl cnpg
//! promote` switches over while a writer commits through the pooler: each pooler pod pauses
//! PgBouncer before the old primary is demoted and resumes after, no acknowledged commit is
//! lost and the pooler follows the new primary. `paused` pauses PgBouncer, `instances` scales
//! the Deployment, a Pooler with an unsupported field is refused in its status with the field
//! named (a PodMonitor without its CRD too), and deleting a Pooler removes its objects.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

mod common;
mod k8s;

use k8s::{connect_soon, kubelet_available, str_at, Operator, Sim};
use std::io::{Read as _, Write as _};
use std::time::Duration;

const CLUSTER: &str = "apiVersion: postgresql.cnpg.io/v1\nkind: Cluster\nmetadata:\n  name: pg\nspec:\n  instances: 2\n  imageName: ghcr.io/cloudnative-pg/postgresql:15\n  storage:\n    size: 1Gi\n";

const POOLER: &str = "apiVersion: postgresql.cnpg.io/v1\nkind: Pooler\nmetadata:\n  name: pg-pooler-rw\nspec:\n  cluster:\n    name: pg\n  instances: 2\n  type: rw\n  pgbouncer:\n    poolMode: transaction\n    parameters:\n      max_client_conn: \"200\"\n      default_pool_size: \"10\"\n";

const REFUSED: &str = "apiVersion: postgresql.cnpg.io/v1\nkind: Pooler\nmetadata:\n  name: pg-pooler-custom\nspec:\n  cluster:\n    name: pg\n  pgbouncer:\n    poolMode: session\n    authQuerySecret:\n      name: my-auth\n    authQuery: SELECT usename, passwd FROM my_search($1)\n";

const MONITORED: &str = "apiVersion: postgresql.cnpg.io/v1\nkind: Pooler\nmetadata:\n  name: pg-pooler-monitored\nspec:\n  cluster:\n    name: pg\n  monitoring:\n    enablePodMonitor: true\n  pgbouncer:\n    poolMode: session\n";

/// The first row's first column of `sql` (simple query protocol).
async fn one(client: &tokio_postgres::Client, sql: &str) -> String {
    let rows = client.simple_query(sql).await.unwrap();
    rows.iter()
        .find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
            _ => None,
        })
        .unwrap()
}

/// `GET /metrics` of `ip:9127`.
fn metrics(ip: &str) -> Option<String> {
    let mut s = std::net::TcpStream::connect_timeout(
        &format!("{ip}:9127").parse().ok()?,
        Duration::from_secs(2),
    )
    .ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    s.write_all(format!("GET /metrics HTTP/1.0\r\nHost: {ip}\r\n\r\n").as_bytes())
        .ok()?;
    let mut body = String::new();
    s.read_to_string(&mut body).ok()?;
    Some(body)
}

#[test]
fn a_pooler_on_kubernetes_pools_writes_and_follows_a_switchover() {
    if !kubelet_available() {
        return;
    }
    let sim = Sim::with_nodes(2);
    sim.install_crds();
    let operator = Operator::start(&sim, "operator", &["--no-webhooks", "--no-leader-election"]);
    sim.apply(CLUSTER).unwrap();
    sim.apply(POOLER).unwrap();
    let status = sim.eventually("a healthy cluster", 300, || {
        let c = sim.json(&["get", "cluster", "pg"])?;
        (str_at(&c, "/status/phase") == Some("Cluster in healthy state")
            && c.pointer("/status/readyInstances")?.as_i64()? == 2)
            .then_some(c)
    });
    let primary = str_at(&status, "/status/currentPrimary")
        .unwrap()
        .to_string();
    let pooler = sim.eventually("the pooler's 2 instances active", 240, || {
        let p = sim.json(&["get", "pooler", "pg-pooler-rw"])?;
        (p.pointer("/status/instances")?.as_i64()? == 2
            && str_at(&p, "/status/phase") == Some("active"))
        .then_some(p)
    });
    // CloudNativePG's status: the Secrets the pods read, with their versions.
    for (pointer, secret) in [
        ("/status/secrets/serverCA/name", "pg-ca"),
        ("/status/secrets/serverTLS/name", "pg-server"),
        (
            "/status/secrets/pgBouncerSecrets/authQuery/name",
            "pg-pooler",
        ),
    ] {
        assert_eq!(str_at(&pooler, pointer), Some(secret), "{pooler}");
    }
    assert!(
        str_at(&pooler, "/status/secrets/serverCA/version").is_some_and(|v| !v.is_empty()),
        "{pooler}"
    );
    // The Deployment, Service and pods named and labelled as CloudNativePG's.
    let deployment = sim.json(&["get", "deployment", "pg-pooler-rw"]).unwrap();
    assert_eq!(
        deployment
            .pointer("/spec/replicas")
            .and_then(|v| v.as_i64()),
        Some(2)
    );
    assert_eq!(
        str_at(&deployment, "/metadata/ownerReferences/0/kind"),
        Some("Pooler")
    );
    let service = sim.json(&["get", "service", "pg-pooler-rw"]).unwrap();
    assert_eq!(
        str_at(&service, "/spec/selector/cnpg.io~1poolerName"),
        Some("pg-pooler-rw")
    );
    let pods = sim
        .json(&["get", "pods", "-l", "cnpg.io/poolerName=pg-pooler-rw"])
        .unwrap();
    let pods = pods["items"].as_array().unwrap().clone();
    assert_eq!(pods.len(), 2, "pooler pods");
    for pod in &pods {
        assert_eq!(str_at(pod, "/metadata/labels/cnpg.io~1cluster"), Some("pg"));
        assert_eq!(
            str_at(pod, "/metadata/labels/cnpg.io~1podRole"),
            Some("pooler")
        );
    }
    // Each pod serves the cnpg_pgbouncer_* metrics from its PgBouncer.
    let pod_ip = str_at(&pods[0], "/status/podIP").unwrap().to_string();
    sim.eventually("the pooler's metrics", 60, || {
        metrics(&pod_ip).filter(|b| b.contains("cnpg_pgbouncer_up 1"))
    });

    let password = sim.secret_value("pg-app", "password");
    let service_ip = |name: &str| {
        let s = sim.json(&["get", "service", name]).unwrap();
        str_at(&s, "/spec/clusterIP").unwrap().to_string()
    };
    let (pooler_ip, rw) = (service_ip("pg-pooler-rw"), service_ip("pg-rw"));
    let ip_of = |pod: &str| {
        let p = sim.json(&["get", "pod", pod]).unwrap();
        str_at(&p, "/status/podIP").unwrap().to_string()
    };
    let primary_ip = ip_of(&primary);
    sim.runtime.block_on(async {
        let c = connect_soon(&pooler_ip, &password)
            .await
            .unwrap_or_else(|| panic!("the pooler answers\n{}", sim.diagnostics()));
        c.batch_execute(
            "CREATE TABLE ledger (id bigint PRIMARY KEY); INSERT INTO ledger VALUES (0)",
        )
        .await
        .unwrap();
        assert_eq!(one(&c, "SELECT count(*) FROM ledger").await, "1");
        // Through the pooler to the primary.
        assert_eq!(one(&c, "SELECT pg_is_in_recovery()").await, "f");
        assert_eq!(one(&c, "SELECT host(inet_server_addr())").await, primary_ip);
    });
    let writer = k8s::load::Writer::start(pooler_ip.clone(), password.clone());
    assert!(
        writer.wait_for_more(50, 60),
        "no commits through the pooler\n{}",
        sim.diagnostics()
    );

    // A switchover while the writer commits through the pooler.
    let target = ["pg-1", "pg-2"]
        .into_iter()
        .find(|i| *i != primary)
        .unwrap();
    sim.kubectl(&["cnpg", "promote", "pg", target]);
    sim.eventually("the switchover", 120, || {
        let c = sim.json(&["get", "cluster", "pg"])?;
        (str_at(&c, "/status/currentPrimary") == Some(target)).then_some(())
    });
    assert!(
        writer.wait_for_more(50, 120),
        "no commits through the pooler after the switchover to {target}\n{}",
        sim.diagnostics()
    );
    let acked = writer.stop();
    println!(
        "switchover {primary} -> {target}: {} commits acknowledged through the pooler",
        acked.len()
    );
    let lost = sim
        .runtime
        .block_on(k8s::load::lost(&rw, &password, &acked));
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged commits lost: {:?}",
        lost.len(),
        acked.len(),
        &lost[..lost.len().min(10)]
    );
    // Each pooler pod paused PgBouncer for the switchover (the operator waited for it before
    // demoting the old primary) and resumed it.
    for pod in &pods {
        let name = str_at(pod, "/metadata/name").unwrap();
        let logs = sim.eventually("the pooler resumed", 60, || {
            let logs = sim.kubectl(&["logs", name, "-c", "pgbouncer"]);
            let paused = format!("PgBouncer paused for the switchover to {target}");
            let at = logs.find(&paused)?;
            logs[at..].contains("PgBouncer resumed").then_some(logs)
        });
        assert!(!logs.is_empty());
    }
    assert!(
        !operator.logged().contains("did not pause"),
        "{}",
        operator.logged()
    );
    // The pooler follows the new primary.
    let target_ip = ip_of(target);
    sim.runtime.block_on(async {
        let c = connect_soon(&pooler_ip, &password).await.unwrap();
        assert_eq!(one(&c, "SELECT pg_is_in_recovery()").await, "f");
        assert_eq!(one(&c, "SELECT host(inet_server_addr())").await, target_ip);
    });

    // `paused`: the pods PAUSE their PgBouncer; a parameter is reloaded; `instances`: the
    // Deployment scales.
    sim.kubectl(&[
        "patch",
        "pooler",
        "pg-pooler-rw",
        "--type=merge",
        "-p",
        r#"{"spec":{"pgbouncer":{"paused":true,"parameters":{"max_client_conn":"300"}},"instances":1}}"#,
    ]);
    sim.eventually("the pooler paused and scaled to 1", 120, || {
        let p = sim.json(&["get", "pooler", "pg-pooler-rw"])?;
        let d = sim.json(&["get", "deployment", "pg-pooler-rw"])?;
        (str_at(&p, "/status/phase") == Some("paused")
            && p.pointer("/status/instances")?.as_i64()? == 1
            && d.pointer("/spec/replicas")?.as_i64()? == 1)
            .then_some(())
    });
    sim.eventually("PgBouncer paused in the pod", 60, || {
        let pods = sim.json(&["get", "pods", "-l", "cnpg.io/poolerName=pg-pooler-rw"])?;
        let pod = pods["items"]
            .as_array()?
            .iter()
            .find(|p| p.pointer("/metadata/deletionTimestamp").is_none())?
            .clone();
        let name = str_at(&pod, "/metadata/name")?.to_string();
        let logs = sim.kubectl_output(&["logs", &name, "-c", "pgbouncer"], None);
        let logs = String::from_utf8_lossy(&logs.stdout).into_owned();
        assert!(!logs.contains(&password), "a pooler pod logged a password");
        (logs.contains("PgBouncer paused") && logs.contains("configuration reloaded")).then_some(())
    });

    // An unsupported field is refused in the Pooler's status, naming it; nothing runs for it.
    sim.apply(REFUSED).unwrap();
    let refused = sim.eventually("the refused pooler's status", 60, || {
        let p = sim.json(&["get", "pooler", "pg-pooler-custom"])?;
        str_at(&p, "/status/error").map(str::to_string)
    });
    println!("refused: {refused}");
    assert!(
        refused.contains("spec.pgbouncer.authQuerySecret") && refused.contains("not supported"),
        "{refused}"
    );
    assert!(
        sim.json(&["get", "deployment", "pg-pooler-custom"])
            .is_none(),
        "a refused Pooler got a Deployment"
    );
    // ... and said once as a Warning event on the Pooler (`kubectl describe pooler`).
    let events = sim.eventually("the refused pooler's event", 30, || {
        let events = sim.kubectl(&[
            "get",
            "events",
            "--field-selector",
            "involvedObject.name=pg-pooler-custom,reason=NotCarriedOut",
        ]);
        events
            .contains("spec.pgbouncer.authQuerySecret")
            .then_some(events)
    });
    assert!(events.contains("Warning"), "{events}");
    // A PodMonitor without the Prometheus Operator's CRD: said, nothing runs.
    sim.apply(MONITORED).unwrap();
    let said = sim.eventually("the monitored pooler's status", 60, || {
        let p = sim.json(&["get", "pooler", "pg-pooler-monitored"])?;
        str_at(&p, "/status/error").map(str::to_string)
    });
    assert!(
        said.contains("spec.monitoring.enablePodMonitor") && said.contains("CRD"),
        "{said}"
    );
    assert!(sim
        .json(&["get", "deployment", "pg-pooler-monitored"])
        .is_none());

    // Deleting the Pooler removes its objects.
    sim.kubectl(&["delete", "pooler", "pg-pooler-rw"]);
    sim.eventually("the pooler's objects gone", 120, || {
        (sim.json(&["get", "deployment", "pg-pooler-rw"]).is_none()
            && sim.json(&["get", "service", "pg-pooler-rw"]).is_none())
        .then_some(())
    });
    let logged = operator.logged();
    assert!(
        !logged.contains(&password),
        "the operator logged a password"
    );
}
