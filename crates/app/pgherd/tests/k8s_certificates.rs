//! User-provided certificates on Kubernetes (`spec.certificates`), as cert-manager users set
//! them, on kube-sim with its process kubelet (two nodes): the user's server CA (its
//! certificate only) and the server certificate it issued, and a client CA with its key. The
//! operator makes no server certificate, issues `streaming_replica`'s (`pg-replication`) and the
//! pooler's client certificates from the user's client CA, and the pods serve the user's
//! server certificate: a client verifying against the user's CA connects, one verifying against
//! the operator's CA is refused. The replica streams with its client certificate checked
//! against the user's client CA, a Pooler verifies the server against the user's CA, and a
//! switchover goes through with a writer committing through the pooler: nothing acknowledged
//! lost, never two writable primaries. A Cluster whose client CA has no key (and no
//! `replicationTLSSecret`) is told so in its status, with the field, and gets no pod.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

mod common;
mod k8s;

use base64::Engine as _;
use k8s::load::HaLoad;
use k8s::{kubelet_available, str_at, Operator, Sim};
use pgherd_controller::pki;
use std::process::Command;

fn secret(name: &str, type_: &str, data: &[(&str, &str)]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut out =
        format!("apiVersion: v1\nkind: Secret\nmetadata:\n  name: {name}\ntype: {type_}\ndata:\n");
    for (k, v) in data {
        out.push_str(&format!("  {k}: {}\n", b64.encode(v)));
    }
    out
}

const CLUSTER: &str = "apiVersion: postgresql.cnpg.io/v1\nkind: Cluster\nmetadata:\n  name: pg\nspec:\n  instances: 2\n  imageName: ghcr.io/cloudnative-pg/postgresql:15\n  storage:\n    size: 1Gi\n  certificates:\n    serverCASecret: my-server-ca\n    serverTLSSecret: my-server-tls\n    clientCASecret: my-client-ca\n";

const POOLER: &str = "apiVersion: postgresql.cnpg.io/v1\nkind: Pooler\nmetadata:\n  name: pg-pooler-rw\nspec:\n  cluster:\n    name: pg\n  instances: 1\n  type: rw\n  pgbouncer:\n    poolMode: session\n";

const KEYLESS: &str = "apiVersion: postgresql.cnpg.io/v1\nkind: Cluster\nmetadata:\n  name: keyless\nspec:\n  instances: 1\n  imageName: ghcr.io/cloudnative-pg/postgresql:15\n  storage:\n    size: 1Gi\n  certificates:\n    clientCASecret: ca-without-key\n";

#[test]
fn a_cluster_serves_and_replicates_with_the_users_certificates() {
    if !kubelet_available() {
        return;
    }
    let sim = Sim::with_nodes(2);
    sim.install_crds();
    let _operator = Operator::start(&sim, "operator", &["--no-webhooks", "--no-leader-election"]);

    // The user's PKI.
    let server_ca = pki::certificate_authority("users-server-ca", 30).unwrap();
    let server = pki::server_certificate(
        &server_ca,
        "pg-rw",
        &pki::server_names("pg", "default", &[]),
        30,
    )
    .unwrap();
    let client_ca = pki::certificate_authority("users-client-ca", 30).unwrap();
    let other_ca = pki::certificate_authority("someone-else", 30).unwrap();
    for manifest in [
        secret("my-server-ca", "Opaque", &[("ca.crt", &server_ca.cert)]),
        secret(
            "my-server-tls",
            "kubernetes.io/tls",
            &[("tls.crt", &server.cert), ("tls.key", &server.key)],
        ),
        secret(
            "my-client-ca",
            "Opaque",
            &[("ca.crt", &client_ca.cert), ("ca.key", &client_ca.key)],
        ),
        secret("ca-without-key", "Opaque", &[("ca.crt", &other_ca.cert)]),
    ] {
        sim.apply(&manifest).unwrap();
    }
    let files = sim.dir.path();
    std::fs::write(files.join("server-ca.pem"), &server_ca.cert).unwrap();
    std::fs::write(files.join("client-ca.pem"), &client_ca.cert).unwrap();

    sim.apply(CLUSTER).unwrap();
    sim.apply(POOLER).unwrap();
    sim.apply(KEYLESS).unwrap();
    let status = sim.eventually("a healthy cluster", 300, || {
        let c = sim.json(&["get", "cluster", "pg"])?;
        (str_at(&c, "/status/phase") == Some("Cluster in healthy state")
            && c.pointer("/status/readyInstances")?.as_i64()? == 2)
            .then_some(c)
    });

    // CloudNativePG's status: which Secret serves as what, and when each expires.
    for (pointer, expected) in [
        ("/status/certificates/serverCASecret", "my-server-ca"),
        ("/status/certificates/serverTLSSecret", "my-server-tls"),
        ("/status/certificates/clientCASecret", "my-client-ca"),
        (
            "/status/certificates/replicationTLSSecret",
            "pg-replication",
        ),
    ] {
        assert_eq!(
            str_at(&status, pointer),
            Some(expected),
            "{pointer}: {status}"
        );
    }
    for secret in [
        "my-server-ca",
        "my-server-tls",
        "my-client-ca",
        "pg-replication",
    ] {
        assert!(
            status
                .pointer(&format!("/status/certificates/expirations/{secret}"))
                .is_some(),
            "no expiration of {secret}: {status}"
        );
    }
    // No server certificate of the operator's; streaming_replica's from the user's client CA.
    assert!(sim.json(&["get", "secret", "pg-server"]).is_none());
    std::fs::write(
        files.join("replication.pem"),
        sim.secret_value("pg-replication", "tls.crt"),
    )
    .unwrap();
    let verified = Command::new("openssl")
        .args(["verify", "-CAfile"])
        .arg(files.join("client-ca.pem"))
        .arg(files.join("replication.pem"))
        .output()
        .unwrap();
    assert!(
        verified.status.success(),
        "pg-replication not issued by the user's client CA: {}",
        String::from_utf8_lossy(&verified.stderr)
    );

    // PostgreSQL presents the user's server certificate.
    let rw = sim.service_ip("default", "pg-rw");
    let password = sim.app_password("default", "pg");
    let served = sim.eventually(
        "a TLS connection verified against the user's CA",
        60,
        || {
            pgherd_testkit::psql_verifying(&rw, "5432", &password, &files.join("server-ca.pem"))
                .ok()
        },
    );
    assert_eq!(served, "t");
    std::fs::write(
        files.join("operator-ca.pem"),
        sim.secret_value("pg-ca", "ca.crt"),
    )
    .unwrap();
    let refused =
        pgherd_testkit::psql_verifying(&rw, "5432", &password, &files.join("operator-ca.pem"))
            .unwrap_err();
    assert!(refused.contains("certificate verify failed"), "{refused}");

    // The replica streams with streaming_replica's certificate, checked against the client CA.
    let primary = str_at(&status, "/status/currentPrimary")
        .unwrap()
        .to_string();
    let replication = sim.eventually("the replica streaming over TLS", 60, || {
        let out = sim.in_postgres(
            &primary,
            &[
                "psql",
                "-XAtc",
                "SELECT r.state || ' ' || s.client_dn FROM pg_stat_replication r JOIN pg_stat_ssl s USING (pid)",
            ],
        )?;
        out.contains("streaming").then_some(out)
    });
    assert!(
        replication.contains("CN=streaming_replica"),
        "{replication}"
    );

    // The pooler verifies the server against the user's CA and authenticates with a client
    // certificate from the user's client CA; a switchover while a writer commits through it.
    let pooler_ip = sim.eventually("the pooler's Service", 240, || {
        let p = sim.json(&["get", "pooler", "pg-pooler-rw"])?;
        (p.pointer("/status/instances")?.as_i64()? == 1
            && str_at(&p, "/status/phase") == Some("active"))
        .then(|| sim.service_ip("default", "pg-pooler-rw"))
    });
    let load = HaLoad::start_via(&sim, "default", "pg", &rw, &pooler_ip, &password);
    let replica = status
        .pointer("/status/instanceNames")
        .and_then(|v| v.as_array())
        .unwrap()
        .iter()
        .filter_map(|v| v.as_str())
        .find(|n| *n != primary)
        .unwrap()
        .to_string();
    sim.kubectl(&["cnpg", "promote", "pg", &replica]);
    sim.wait_healthy_primary("default", "pg", &replica, 180);
    load.flowing(&sim, "the switchover");
    // The former primary follows the new one with its client certificate.
    sim.eventually("the former primary streaming from the new one", 120, || {
        let out = sim.in_postgres(
            &replica,
            &[
                "psql",
                "-XAtc",
                "SELECT s.client_dn FROM pg_stat_replication r JOIN pg_stat_ssl s USING (pid) WHERE r.state = 'streaming'",
            ],
        )?;
        out.contains("CN=streaming_replica").then_some(())
    });
    load.finish(&sim);

    // A client CA without its key cannot issue streaming_replica's certificate: said, with the
    // field, and nothing is started.
    let keyless = sim.eventually("the keyless cluster's reason", 60, || {
        let c = sim.json(&["get", "cluster", "keyless"])?;
        str_at(&c, "/status/phaseReason")
            .filter(|r| r.contains("spec.certificates.clientCASecret"))
            .map(str::to_string)
    });
    assert!(keyless.contains("has no ca.key"), "{keyless}");
    assert!(keyless.contains("replicationTLSSecret"), "{keyless}");
    let pods = sim
        .json(&["get", "pods", "-l", "cnpg.io/cluster=keyless"])
        .unwrap();
    assert_eq!(pods["items"].as_array().map(Vec::len), Some(0), "{pods}");
}
