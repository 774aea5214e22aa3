//! The operator's admission webhooks, end to end on kube-sim with `kubectl`: `pgherd operator
//! --webhook-url` makes its certificate Secret and the Mutating/ValidatingWebhookConfigurations
//! (CA patched in), an invalid Cluster is refused with `pgherd validate`'s messages and field
//! paths, a valid minimal Cluster is stored with its defaults, a replica that does not lead
//! serves the webhooks with the same certificate, and with no operator left a Cluster cannot
//! be created (failurePolicy Fail).
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

mod common;
mod k8s;

use k8s::{str_at, Operator, Sim};
use std::path::Path;
use std::process::Command;

/// A port nobody listens on now.
const INVALID: &str = "apiVersion: postgresql.cnpg.io/v1
kind: Cluster
metadata:
  name: bad
spec:
  instances: 3
  minSyncReplicas: 2
  maxSyncReplicas: 1
  storage:
    size: 1Gi
  postgresql:
    parameters:
      wal_level: minimal
";

fn minimal(name: &str) -> String {
    format!(
        "apiVersion: postgresql.cnpg.io/v1\nkind: Cluster\nmetadata:\n  name: {name}\nspec:\n  instances: 1\n  storage:\n    size: 1Gi\n"
    )
}

/// What `pgherd validate` says about `manifest`: each error as `path: message (hint: …)`.
fn validate_errors(dir: &Path, manifest: &str) -> Vec<String> {
    let file = dir.join("invalid.yaml");
    std::fs::write(&file, manifest).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_pgherd"))
        .args(["validate", file.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once(": Cluster/bad: ").map(|(_, e)| e.to_string()))
        .collect()
}

#[test]
fn the_operators_webhooks_default_and_validate_clusters() {
    if Command::new("kubectl")
        .args(["version", "--client"])
        .output()
        .is_err()
    {
        eprintln!("SKIPPED: kubectl is not installed (scripts/install.sh installs it)");
        return;
    }
    let sim = Sim::start();
    sim.install_crds();

    let port_a = pgherd_testkit::free_port();
    let url = format!("https://127.0.0.1:{port_a}");
    let port_a = port_a.to_string();
    let operator_a = Operator::start(
        &sim,
        "op-a",
        &[
            "--webhook-url",
            &url,
            "--webhook-address",
            "127.0.0.1",
            "--webhook-port",
            &port_a,
        ],
    );

    // The certificate Secret and both configurations, with the CA patched in.
    let secret = sim.eventually("Secret cnpg-webhook-cert", 60, || {
        sim.json(&["get", "secret", "cnpg-webhook-cert"])
    });
    assert_eq!(str_at(&secret, "/type"), Some("kubernetes.io/tls"));
    let ca = str_at(&secret, "/data/ca.crt").unwrap().to_string();
    for kind in [
        "mutatingwebhookconfiguration/cnpg-mutating-webhook-configuration",
        "validatingwebhookconfiguration/cnpg-validating-webhook-configuration",
    ] {
        let config = sim.eventually(kind, 60, || {
            let c = sim.json(&["get", kind])?;
            (str_at(&c, "/webhooks/0/clientConfig/caBundle") == Some(ca.as_str())).then_some(c)
        });
        let hooks = config["webhooks"].as_array().unwrap();
        assert!(hooks.iter().all(|h| {
            str_at(h, "/clientConfig/caBundle") == Some(ca.as_str())
                && str_at(h, "/failurePolicy") == Some("Fail")
                && str_at(h, "/clientConfig/url").is_some_and(|u| u.starts_with(&url))
        }));
    }

    // An invalid Cluster: refused with every error `pgherd validate` reports, paths shown.
    let expected = validate_errors(sim.dir.path(), INVALID);
    assert!(expected.len() >= 2, "{expected:?}");
    let refused = sim.eventually("the invalid Cluster refused by the webhook", 60, || {
        match sim.apply(INVALID) {
            Err(e) if e.contains("is invalid") => Some(e),
            Err(e) if e.contains("failed calling webhook") => None, // not serving yet
            Err(e) => panic!("refused for another reason: {e}"),
            Ok(out) => panic!("an invalid Cluster was accepted: {out}"),
        }
    });
    for error in &expected {
        assert!(
            refused.contains(error.as_str()),
            "kubectl said:\n{refused}\nmissing: {error}"
        );
    }
    assert!(refused.contains("spec.minSyncReplicas"), "{refused}");
    assert!(sim.json(&["get", "cluster", "bad"]).is_none());

    // A valid minimal Cluster is stored with its defaults filled in.
    sim.apply(&minimal("pg")).unwrap();
    let stored = sim.json(&["get", "cluster", "pg"]).unwrap();
    assert_eq!(
        str_at(&stored, "/spec/imageName"),
        Some("ghcr.io/cloudnative-pg/postgresql:18.6-system-trixie"),
        "{stored}"
    );
    assert_eq!(stored.pointer("/spec/postgresUID"), Some(&26.into()));
    assert_eq!(
        str_at(&stored, "/spec/bootstrap/initdb/database"),
        Some("app")
    );
    assert_eq!(stored.pointer("/spec/instances"), Some(&1.into()));

    // pgherd validate's warnings reach kubectl as warnings; the Cluster is stored.
    let warned = sim
        .apply(&minimal("pg-async").replace("instances: 1", "instances: 2"))
        .unwrap();
    assert!(
        warned.contains("Warning: ") && warned.contains("no synchronous replication"),
        "{warned}"
    );
    assert!(sim.json(&["get", "cluster", "pg-async"]).is_some());

    // A second replica, not leading, serves the same certificate: the configurations are
    // pointed at it and the first replica stopped.
    let port_b = pgherd_testkit::free_port().to_string();
    let operator_b = Operator::start(
        &sim,
        "op-b",
        &["--webhook-address", "127.0.0.1", "--webhook-port", &port_b],
    );
    sim.eventually("op-b serving webhooks", 60, || {
        std::fs::read_to_string(&operator_b.log)
            .unwrap_or_default()
            .contains("serving admission webhooks")
            .then_some(())
    });
    let lease = sim.json(&["get", "lease", "pgherd-operator"]).unwrap();
    assert_eq!(
        str_at(&lease, "/spec/holderIdentity"),
        Some("op-a"),
        "op-b does not lead"
    );
    for (kind, n) in [
        (
            "mutatingwebhookconfiguration/cnpg-mutating-webhook-configuration",
            4,
        ),
        (
            "validatingwebhookconfiguration/cnpg-validating-webhook-configuration",
            10,
        ),
    ] {
        let config = sim.json(&["get", kind]).unwrap();
        assert_eq!(config["webhooks"].as_array().unwrap().len(), n, "{kind}");
        let ops: Vec<serde_json::Value> = (0..n)
            .map(|i| {
                let path = str_at(&config, &format!("/webhooks/{i}/clientConfig/url"))
                    .unwrap()
                    .strip_prefix(&url)
                    .unwrap()
                    .to_string();
                serde_json::json!({"op": "replace", "path": format!("/webhooks/{i}/clientConfig/url"),
                    "value": format!("https://127.0.0.1:{port_b}{path}")})
            })
            .collect();
        sim.kubectl(&[
            "patch",
            kind,
            "--type=json",
            "-p",
            &serde_json::Value::Array(ops).to_string(),
        ]);
    }
    drop(operator_a);
    sim.apply(&minimal("pg2")).unwrap();
    let stored = sim.json(&["get", "cluster", "pg2"]).unwrap();
    assert_eq!(
        stored.pointer("/spec/postgresUID"),
        Some(&26.into()),
        "{stored}"
    );
    let refused = sim.apply(INVALID).unwrap_err();
    assert!(refused.contains(expected[0].as_str()), "{refused}");

    // No operator left: failurePolicy Fail refuses Cluster writes.
    drop(operator_b);
    let refused = sim.eventually("a Cluster refused with no webhook server", 30, || {
        sim.apply(&minimal("pg3")).err()
    });
    assert!(refused.contains("failed calling webhook"), "{refused}");
    assert!(sim.json(&["get", "cluster", "pg3"]).is_none());
}
