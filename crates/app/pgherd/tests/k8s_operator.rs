//! `pgherd operator` against kube-sim's API server, driven with the installed `kubectl` as a
//! user would: the CRDs applied server-side, a Cluster applied, and the objects the operator
//! makes read back (CloudNativePG's Secrets and keys, Services and selectors, PVC, the instance
//! Pod taking its spec over the protocol), its status written through the status subresource,
//! and a Cluster asking for what the Kubernetes platform does not run refused with the field.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

mod common;
mod k8s;

use k8s::{base64_decode, kubectl_available, str_at, Operator, Sim};
use std::time::Duration;

#[test]
fn the_operator_makes_a_clusters_objects_and_status() {
    if !kubectl_available() {
        return;
    }
    let sim = Sim::start();
    sim.install_crds();
    let operator = Operator::start(&sim, "operator", &["--no-webhooks"]);

    let manifest = sim.dir.path().join("cluster.yaml");
    std::fs::write(
        &manifest,
        "apiVersion: postgresql.cnpg.io/v1\nkind: Cluster\nmetadata:\n  name: pg\nspec:\n  instances: 3\n  imageName: ghcr.io/cloudnative-pg/postgresql:15\n  storage:\n    size: 1Gi\n  bootstrap:\n    initdb:\n      database: shop\n      owner: shopper\n",
    )
    .unwrap();
    sim.kubectl(&["apply", "-f", manifest.to_str().unwrap()]);

    // The status, through the status subresource, in CloudNativePG's shape.
    let status = sim.eventually("the Cluster's status", 60, || {
        let c = sim.json(&["get", "cluster", "pg"])?;
        (str_at(&c, "/status/phase") == Some("Setting up primary")).then_some(c)
    });
    assert_eq!(str_at(&status, "/status/targetPrimary"), Some("pg-1"));
    assert_eq!(
        status.pointer("/status/latestGeneratedNode"),
        Some(&1.into())
    );
    assert_eq!(str_at(&status, "/status/writeService"), Some("pg-rw"));

    // Secrets with CloudNativePG's names and keys; the application owner is the bootstrap's.
    let app = sim.eventually("pg-app", 30, || sim.json(&["get", "secret", "pg-app"]));
    for key in [
        "username", "password", "dbname", "host", "port", "uri", "jdbc-uri",
    ] {
        assert!(
            app.pointer(&format!("/data/{key}")).is_some(),
            "pg-app has no {key}"
        );
    }
    let username = str_at(&app, "/data/username").unwrap();
    assert_eq!(
        base64_decode(username),
        "shopper",
        "the owner named in bootstrap.initdb"
    );
    let ca = sim.json(&["get", "secret", "pg-ca"]).unwrap();
    assert!(ca.pointer("/data/ca.crt").is_some() && ca.pointer("/data/ca.key").is_some());
    for (name, kind) in [
        ("pg-server", "kubernetes.io/tls"),
        ("pg-replication", "kubernetes.io/tls"),
    ] {
        let s = sim.json(&["get", "secret", name]).unwrap();
        assert_eq!(str_at(&s, "/type"), Some(kind), "{name}");
    }

    // Services selecting by the role labels the operator moves.
    let rw = sim.json(&["get", "service", "pg-rw"]).unwrap();
    assert_eq!(
        str_at(&rw, "/spec/selector/cnpg.io~1instanceRole"),
        Some("primary")
    );
    let ro = sim.json(&["get", "service", "pg-ro"]).unwrap();
    assert_eq!(
        str_at(&ro, "/spec/selector/cnpg.io~1instanceRole"),
        Some("replica")
    );
    assert!(sim.json(&["get", "service", "pg-r"]).is_some());

    // The first instance: its PVC, and a pod that takes its spec over the protocol.
    sim.eventually("PVC pg-1", 30, || sim.json(&["get", "pvc", "pg-1"]));
    let pod = sim.eventually("pod pg-1", 30, || sim.json(&["get", "pod", "pg-1"]));
    let command = pod
        .pointer("/spec/containers/0/command")
        .unwrap()
        .to_string();
    assert!(command.contains("--pushed-with-certificates"), "{command}");
    let env = pod.pointer("/spec/containers/0/env").unwrap().to_string();
    assert!(env.contains("status.podIP"), "{env}");
    assert_eq!(
        str_at(&pod, "/metadata/ownerReferences/0/kind"),
        Some("Cluster")
    );
    // No replica is made before the primary runs (nothing runs pods on this API server).
    std::thread::sleep(Duration::from_secs(2));
    assert!(sim.json(&["get", "pod", "pg-2"]).is_none());

    // `kubectl get cluster` shows CloudNativePG's columns.
    let table = sim.kubectl(&["get", "cluster", "pg"]);
    assert!(table.contains("Setting up primary"), "{table}");

    // What the Kubernetes platform does not run yet is refused, with the field, not ignored.
    let refused = sim.dir.path().join("refused.yaml");
    std::fs::write(
        &refused,
        "apiVersion: postgresql.cnpg.io/v1\nkind: Cluster\nmetadata:\n  name: archived\nspec:\n  instances: 1\n  storage:\n    size: 1Gi\n  certificates:\n    serverTLSSecret: mine\n    serverCASecret: mine-ca\n",
    )
    .unwrap();
    sim.kubectl(&["apply", "-f", refused.to_str().unwrap()]);
    let reason = sim.eventually("the refusal", 30, || {
        let c = sim.json(&["get", "cluster", "archived"])?;
        str_at(&c, "/status/phaseReason").map(str::to_string)
    });
    assert!(reason.contains("spec.certificates"), "{reason}");
    assert!(sim.json(&["get", "pod", "archived-1"]).is_none());

    // Kinds the operator does not run yet say so in their status.
    let publication = sim.dir.path().join("publication.yaml");
    std::fs::write(
        &publication,
        "apiVersion: postgresql.cnpg.io/v1\nkind: Publication\nmetadata:\n  name: orders\nspec:\n  name: orders\n  dbname: shop\n  cluster:\n    name: pg\n  target:\n    allTables: true\n",
    )
    .unwrap();
    sim.kubectl(&["apply", "-f", publication.to_str().unwrap()]);
    let said = sim.eventually("the Publication's status", 30, || {
        let d = sim.json(&["get", "publication", "orders"])?;
        str_at(&d, "/status/message").map(str::to_string)
    });
    assert!(said.contains("not reconciled"), "{said}");
    let logged = operator.logged();
    assert!(logged.contains("Setting up primary"), "{logged}");
    let password = sim.secret_value("pg-app", "password");
    assert!(
        !logged.contains(&password),
        "a credential reached the operator's log"
    );
}

/// Two operators, one leading: the other takes the Lease over once the leader is gone, and
/// reconciles from then on.
#[test]
fn a_second_operator_takes_over_when_the_leader_dies() {
    if !kubectl_available() {
        return;
    }
    let sim = Sim::start();
    sim.install_crds();
    let start = |name: &str| Operator::start(&sim, name, &["--no-webhooks"]);
    let mut a = Some(start("op-a"));
    let mut b = Some(start("op-b"));
    let holder = |sim: &Sim| {
        sim.json(&["get", "lease", "pgherd-operator"])
            .and_then(|l| str_at(&l, "/spec/holderIdentity").map(str::to_string))
    };
    let leader = sim.eventually("a leader", 30, || holder(&sim));
    // Only the leader reconciles: one Cluster made now gets its status from it.
    let manifest = sim.dir.path().join("one.yaml");
    std::fs::write(
        &manifest,
        "apiVersion: postgresql.cnpg.io/v1\nkind: Cluster\nmetadata:\n  name: one\nspec:\n  instances: 1\n  storage:\n    size: 1Gi\n",
    )
    .unwrap();
    sim.kubectl(&["apply", "-f", manifest.to_str().unwrap()]);
    sim.eventually("one's status", 30, || {
        sim.json(&["get", "cluster", "one"])
            .and_then(|c| str_at(&c, "/status/phase").map(str::to_string))
    });
    let follower_log = if leader == "op-a" {
        "op-b.log"
    } else {
        "op-a.log"
    };
    let leader_log = std::fs::read_to_string(sim.dir.path().join(format!("{leader}.log"))).unwrap();
    assert!(leader_log.contains("reconciling"), "{leader_log}");
    let follower_log = std::fs::read_to_string(sim.dir.path().join(follower_log)).unwrap();
    assert!(
        !follower_log.contains("reconciling"),
        "the follower reconciled:\n{follower_log}"
    );

    // The leader dies: the other takes over within a lease duration or two.
    if leader == "op-a" {
        drop(a.take());
    } else {
        drop(b.take());
    }
    let new_leader = sim.eventually("a new leader", 40, || holder(&sim).filter(|h| *h != leader));
    assert_ne!(new_leader, leader);
    let manifest = sim.dir.path().join("two.yaml");
    std::fs::write(
        &manifest,
        "apiVersion: postgresql.cnpg.io/v1\nkind: Cluster\nmetadata:\n  name: two\nspec:\n  instances: 1\n  storage:\n    size: 1Gi\n",
    )
    .unwrap();
    sim.kubectl(&["apply", "-f", manifest.to_str().unwrap()]);
    sim.eventually("two's status from the new leader", 30, || {
        sim.json(&["get", "cluster", "two"])
            .and_then(|c| str_at(&c, "/status/phase").map(str::to_string))
    });
}

/// `spec.imageCatalogRef`: the operator resolves the catalog's image for the Cluster's major
/// into `status.image` and builds the instance pod from it; a changed entry changes the pod
/// template (the instances then roll, as `k8s_rollout` shows for `imageName`); a catalog
/// without the major is said in the status with the field.
#[test]
fn an_image_catalog_gives_the_clusters_image() {
    if !kubectl_available() {
        return;
    }
    let sim = Sim::start();
    sim.install_crds();
    let _operator = Operator::start(&sim, "operator", &["--no-webhooks", "--no-leader-election"]);
    sim.apply("apiVersion: postgresql.cnpg.io/v1\nkind: ImageCatalog\nmetadata:\n  name: postgresql\nspec:\n  images:\n    - major: 15\n      image: ghcr.io/cloudnative-pg/postgresql:15.13\n    - major: 16\n      image: ghcr.io/cloudnative-pg/postgresql:16.9\n---\napiVersion: postgresql.cnpg.io/v1\nkind: Cluster\nmetadata:\n  name: cat\nspec:\n  instances: 1\n  imageCatalogRef:\n    apiGroup: postgresql.cnpg.io\n    kind: ImageCatalog\n    name: postgresql\n    major: 15\n  storage:\n    size: 1Gi\n")
        .unwrap();
    let postgres_image = |sim: &Sim| {
        let pod = sim.json(&["get", "pod", "cat-1"])?;
        pod.pointer("/spec/containers")?
            .as_array()?
            .iter()
            .find(|c| c["name"] == "postgres")
            .and_then(|c| c["image"].as_str().map(str::to_string))
    };
    let image = sim.eventually("the pod from the catalog's image", 60, || {
        postgres_image(&sim)
    });
    assert_eq!(image, "ghcr.io/cloudnative-pg/postgresql:15.13");
    let c = sim.json(&["get", "cluster", "cat"]).unwrap();
    assert_eq!(
        str_at(&c, "/status/image"),
        Some("ghcr.io/cloudnative-pg/postgresql:15.13")
    );
    // A new entry for the major: the pod template changes (the roll is the usual one).
    sim.kubectl(&[
        "patch",
        "imagecatalog",
        "postgresql",
        "--type=merge",
        "-p",
        r#"{"spec":{"images":[{"major":15,"image":"ghcr.io/cloudnative-pg/postgresql:15.14"}]}}"#,
    ]);
    sim.eventually("status.image from the new entry", 60, || {
        let c = sim.json(&["get", "cluster", "cat"])?;
        (str_at(&c, "/status/image") == Some("ghcr.io/cloudnative-pg/postgresql:15.14"))
            .then_some(())
    });
    // The catalog has no image for the major asked for: said, with the field.
    sim.kubectl(&[
        "patch",
        "cluster",
        "cat",
        "--type=merge",
        "-p",
        r#"{"spec":{"imageCatalogRef":{"major":16}}}"#,
    ]);
    let reason = sim.eventually("the missing major said", 60, || {
        let c = sim.json(&["get", "cluster", "cat"])?;
        str_at(&c, "/status/phaseReason")
            .filter(|r| r.contains("imageCatalogRef.major"))
            .map(str::to_string)
    });
    assert!(reason.contains("no image for major version 16"), "{reason}");
}

/// `bootstrap.initdb.postInit*SQLRefs` on Kubernetes: the first instance waits, saying which
/// object is missing or which value is not text, until every referenced Secret and ConfigMap exists, then runs their SQL
/// after the inline statements, Secrets before ConfigMaps, in list order.
#[test]
fn post_init_sql_refs_run_at_bootstrap() {
    if !k8s::kubelet_available() {
        return;
    }
    let sim = Sim::with_nodes(1);
    sim.install_crds();
    let _operator = Operator::start(&sim, "operator", &["--no-webhooks", "--no-leader-election"]);
    // The Secret's value is first not text (0xFF): said, not read as something else.
    sim.apply("apiVersion: v1\nkind: Secret\nmetadata:\n  name: init-secret\ndata:\n  first.sql: /w==\n---\napiVersion: postgresql.cnpg.io/v1\nkind: Cluster\nmetadata:\n  name: init\nspec:\n  instances: 1\n  imageName: ghcr.io/cloudnative-pg/postgresql:15\n  storage:\n    size: 1Gi\n  bootstrap:\n    initdb:\n      postInitApplicationSQL:\n        - CREATE TABLE steps (n int PRIMARY KEY, source text)\n        - INSERT INTO steps VALUES (1, 'inline')\n        - GRANT SELECT ON steps TO app\n      postInitApplicationSQLRefs:\n        secretRefs:\n          - name: init-secret\n            key: first.sql\n        configMapRefs:\n          - name: init-sql\n            key: a.sql\n          - name: init-sql\n            key: b.sql\n")
        .unwrap();
    let reason = sim.eventually("the Secret's bytes said", 60, || {
        let c = sim.json(&["get", "cluster", "init"])?;
        str_at(&c, "/status/phaseReason")
            .filter(|r| r.contains("init-secret"))
            .map(str::to_string)
    });
    assert!(
        reason.contains(r#"key "first.sql" of Secret "init-secret" is not UTF-8 text"#),
        "{reason}"
    );
    sim.apply("apiVersion: v1\nkind: Secret\nmetadata:\n  name: init-secret\ndata:\n  first.sql: SU5TRVJUIElOVE8gc3RlcHMgVkFMVUVTICgyLCAnc2VjcmV0Jyk=\n")
        .unwrap();
    let reason = sim.eventually("the missing ConfigMap said", 60, || {
        let c = sim.json(&["get", "cluster", "init"])?;
        str_at(&c, "/status/phaseReason")
            .filter(|r| r.contains("init-sql"))
            .map(str::to_string)
    });
    assert!(
        reason.contains("spec.bootstrap.initdb.postInitApplicationSQLRefs")
            && reason.contains("not found"),
        "{reason}"
    );
    sim.apply("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: init-sql\ndata:\n  a.sql: INSERT INTO steps VALUES (3, 'config map a')\n  b.sql: INSERT INTO steps VALUES (4, 'config map b')\n")
        .unwrap();
    sim.eventually("a healthy cluster", 180, || {
        let c = sim.json(&["get", "cluster", "init"])?;
        (str_at(&c, "/status/phase") == Some("Cluster in healthy state")).then_some(())
    });
    let (rw, password) = (
        sim.service_ip("default", "init-rw"),
        sim.app_password("default", "init"),
    );
    let rows = sim.runtime.block_on(async {
        let c = k8s::connect_soon(&rw, &password)
            .await
            .expect("-rw answers");
        let rows = c
            .query("SELECT n, source FROM steps ORDER BY n", &[])
            .await
            .unwrap();
        rows.iter()
            .map(|r| (r.get::<_, i32>(0), r.get::<_, String>(1)))
            .collect::<Vec<_>>()
    });
    assert_eq!(
        rows,
        [
            (1, "inline".to_string()),
            (2, "secret".to_string()),
            (3, "config map a".to_string()),
            (4, "config map b".to_string())
        ]
    );
}
