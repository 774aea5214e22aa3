//! User-provided certificates on the local platform (`spec.certificates`), as on Kubernetes:
//! the user's server CA (certificate only) and the server certificate it issued, and a client
//! CA with its key, as Secrets in the manifest. PostgreSQL presents the user's certificate (a
//! client verifying against the user's CA connects, one verifying against the platform's CA is
//! refused), the replica streams with `streaming_replica`'s certificate issued by the user's
//! client CA, a Pooler verifies the server against the user's CA and authenticates with a
//! certificate from the user's client CA, and a switchover goes through with a writer
//! committing: nothing acknowledged lost.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

use pgherd_controller::pki;
use pgherd_testkit::local::{cluster_manifest, connect, Local};
use pgherd_testkit::writer::Writer;
use std::path::Path;
use std::time::Duration;

fn secret(name: &str, data: &[(&str, &str)]) -> String {
    let mut out =
        format!("---\napiVersion: v1\nkind: Secret\nmetadata:\n  name: {name}\nstringData:\n");
    for (k, v) in data {
        out.push_str(&format!("  {k}: |\n"));
        for line in v.lines() {
            out.push_str(&format!("    {line}\n"));
        }
    }
    out
}

#[test]
fn a_local_cluster_serves_and_replicates_with_the_users_certificates() {
    let local = Local::new(Path::new(env!("CARGO_BIN_EXE_pgherd")));
    let dir = tempfile::tempdir().unwrap();
    let server_ca = pki::certificate_authority("users-server-ca", 30).unwrap();
    let server = pki::server_certificate(
        &server_ca,
        "tls-rw",
        &pki::server_names("tls", "default", &["localhost".into()]),
        30,
    )
    .unwrap();
    let client_ca = pki::certificate_authority("users-client-ca", 30).unwrap();
    let manifest = format!(
        "{}{}{}{}---\napiVersion: postgresql.cnpg.io/v1\nkind: Pooler\nmetadata:\n  name: tls-pooler-rw\nspec:\n  cluster:\n    name: tls\n  instances: 1\n  type: rw\n  pgbouncer:\n    poolMode: session\n",
        cluster_manifest(
            "tls",
            2,
            "  enableSuperuserAccess: true\n  certificates:\n    serverCASecret: my-server-ca\n    serverTLSSecret: my-server-tls\n    clientCASecret: my-client-ca\n",
        ),
        secret("my-server-ca", &[("ca.crt", &server_ca.cert)]),
        secret("my-server-tls", &[("tls.crt", &server.cert), ("tls.key", &server.key)]),
        secret(
            "my-client-ca",
            &[("ca.crt", &client_ca.cert), ("ca.key", &client_ca.key)]
        ),
    );
    let (_, status) = local.up(dir.path(), "tls", &manifest, 2);
    std::fs::write(dir.path().join("server-ca.pem"), &server_ca.cert).unwrap();
    let password = local.app_secret("tls", "password");
    let rw = status.endpoints["rw"].clone();
    let (host, port) = rw.rsplit_once(':').unwrap();

    // PostgreSQL presents the user's server certificate.
    assert_eq!(
        pgherd_testkit::psql_verifying(host, port, &password, &dir.path().join("server-ca.pem"))
            .unwrap(),
        "t"
    );
    let platform_ca = local.state.join("clusters/default/tls/certs/ca.crt");
    let refused = pgherd_testkit::psql_verifying(host, port, &password, &platform_ca).unwrap_err();
    assert!(refused.contains("certificate verify failed"), "{refused}");

    // The replica streams as streaming_replica, its certificate checked against the user's
    // client CA.
    let rt = pgherd_testkit::runtime();
    let config = local.app_config("tls", &rw);
    let superuser_dn = local.eventually("the replica streaming over TLS", 60, || {
        let out = local.run(&[
            "psql",
            "tls",
            "--superuser",
            "--",
            "-XAtc",
            "SELECT s.client_dn FROM pg_stat_replication r JOIN pg_stat_ssl s USING (pid) WHERE r.state = 'streaming'",
        ]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.contains("CN=streaming_replica").then_some(text)
    });
    assert!(superuser_dn.contains("streaming_replica"));

    // Through the pooler (server verified against the user's CA, client certificate from
    // the user's client CA), a writer commits across a switchover.
    let pooler = local
        .wait_for(
            "tls",
            "the pooler's endpoint",
            Duration::from_secs(120),
            |s| {
                s.endpoints.contains_key("tls-pooler-rw")
                    && s.poolers.iter().any(|p| p.ready_instances == 1)
            },
        )
        .endpoints["tls-pooler-rw"]
        .clone();
    rt.block_on(pgherd_testkit::writer::prepare(&config))
        .unwrap();
    let writer = Writer::start(
        "tls",
        local.app_config("tls", &pooler),
        Duration::from_millis(5),
    );
    writer.wait_for_progress(30, Duration::from_secs(30));
    local.run_ok(&["promote", "tls", "tls-2"]);
    local.wait_for("tls", "tls-2 primary", Duration::from_secs(90), |s| {
        s.current_primary.as_deref() == Some("tls-2") && s.ready_instances == 2
    });
    writer.wait_for_progress(writer.acknowledged() + 30, Duration::from_secs(60));
    let report = writer.stop();
    let missing = rt.block_on(async {
        let c = connect(&config).await.unwrap();
        pgherd_testkit::writer::missing(&c, &report).await.unwrap()
    });
    assert!(missing.is_empty(), "acknowledged commits lost: {missing:?}");
}
