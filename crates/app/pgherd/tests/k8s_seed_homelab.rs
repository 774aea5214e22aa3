//! Two seeds' runbooks on kube-sim, their commands and manifests unchanged but for the object
//! store's endpoint and credentials and the image (PostgreSQL 15, whose complete tool set this
//! machine has). Seed 003 (a homelab archiving WAL through the barman-cloud plugin): its own
//! `ObjectStore` and Cluster manifest from `tests/fixtures/seeds`, WAL archived with its
//! encryption settings, a plugin backup (`kubectl cnpg backup --method plugin`), and the
//! runbook's "Increase Storage" (PVCs grown in place).
//!
//! Seed 004 (a homelab's "PostgreSQL High Availability for Homepage") walked on kube-sim as its
//! README runs it against CloudNativePG, its commands unchanged: `kubectl wait
//! --for=condition=Ready cluster/homepage-postgres -n postgres-ha`, `kubectl get cluster`, the
//! replication check with `kubectl exec … psql -U postgres`, the manual Backup applied from its
//! heredoc, `kubectl get backups`, the point-in-time recovery Cluster from its heredoc, and
//! `kubectl cnpg promote homepage-postgres homepage-postgres-2 -n postgres-ha`.
//!
//! Changed, and only these: the object store's endpoint and credentials (moto in place of the
//! MinIO Service), the recovery target (a time this run has, not 2024-12-05), and the image
//! (PostgreSQL 15, whose complete tool set this machine has). The seed's own cluster manifest
//! is not in its README (it is applied with `kubectl apply -k` from its repository); the one
//! here is written from what the README says of it: two instances, WAL archiving and backups to
//! `s3://postgres-backups/homepage` with the `minio-backup-credentials` Secret's keys, a backup
//! every 6 hours, the `postgres` user's password in `homepage-postgres-credentials`.
//!
//! A writer commits through `-rw` throughout and a checker asks every instance whether it is
//! writable: nothing acknowledged is lost, never two writable at once; the recovered cluster
//! holds exactly the rows committed before the target time.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

mod common;
mod k8s;

use k8s::load::HaLoad;
use k8s::{connect_soon, kubelet_available, str_at, Operator, Sim};
use pgherd_testkit::moto::{Moto, ACCESS_KEY, SECRET_KEY};
use std::time::Duration;

const NS: &str = "postgres-ha";
const SUPERUSER_PASSWORD: &str = "homelab-postgres-pw";

/// The seed's Backup heredoc, its `$(date …)` name expanded as the shell would.
const MANUAL_BACKUP: &str = "apiVersion: postgresql.cnpg.io/v1
kind: Backup
metadata:
  name: homepage-postgres-manual-20261206-101500
  namespace: postgres-ha
spec:
  cluster:
    name: homepage-postgres
  method: barmanObjectStore
";

fn cluster_manifest(endpoint: &str) -> String {
    format!(
        "apiVersion: v1
kind: Secret
metadata:
  name: minio-backup-credentials
  namespace: postgres-ha
stringData:
  ACCESS_KEY_ID: {ACCESS_KEY}
  SECRET_ACCESS_KEY: {SECRET_KEY}
---
apiVersion: v1
kind: Secret
type: kubernetes.io/basic-auth
metadata:
  name: homepage-postgres-credentials
  namespace: postgres-ha
stringData:
  username: postgres
  password: {SUPERUSER_PASSWORD}
---
apiVersion: postgresql.cnpg.io/v1
kind: Cluster
metadata:
  name: homepage-postgres
  namespace: postgres-ha
spec:
  instances: 2
  imageName: ghcr.io/cloudnative-pg/postgresql:15
  enableSuperuserAccess: true
  superuserSecret:
    name: homepage-postgres-credentials
  storage:
    size: 5Gi
  monitoring:
    enablePodMonitor: true
  backup:
    retentionPolicy: 7d
    barmanObjectStore:
      destinationPath: s3://postgres-backups/homepage
      endpointURL: {endpoint}
      s3Credentials:
        accessKeyId:
          name: minio-backup-credentials
          key: ACCESS_KEY_ID
        secretAccessKey:
          name: minio-backup-credentials
          key: SECRET_ACCESS_KEY
---
apiVersion: postgresql.cnpg.io/v1
kind: ScheduledBackup
metadata:
  name: homepage-postgres-backup
  namespace: postgres-ha
spec:
  schedule: \"0 0 */6 * * *\"
  backupOwnerReference: self
  cluster:
    name: homepage-postgres
"
    )
}

/// The seed's point-in-time recovery heredoc, with this run's store and target time.
fn recovery_manifest(endpoint: &str, target_time: &str) -> String {
    format!(
        "apiVersion: postgresql.cnpg.io/v1
kind: Cluster
metadata:
  name: homepage-postgres-recovery
  namespace: postgres-ha
spec:
  instances: 1
  imageName: ghcr.io/cloudnative-pg/postgresql:15
  storage:
    size: 10Gi
  bootstrap:
    recovery:
      source: homepage-postgres
      recoveryTarget:
        targetTime: \"{target_time}\"  # Recover to this point
  externalClusters:
    - name: homepage-postgres
      barmanObjectStore:
        destinationPath: s3://postgres-backups/homepage
        endpointURL: {endpoint}
        s3Credentials:
          accessKeyId:
            name: minio-backup-credentials
            key: ACCESS_KEY_ID
          secretAccessKey:
            name: minio-backup-credentials
            key: SECRET_ACCESS_KEY
"
    )
}

/// A connection as `postgres` (the seed's superuser, through `-rw`).
async fn superuser(host: &str) -> tokio_postgres::Client {
    let mut config = tokio_postgres::Config::new();
    config
        .host(host)
        .port(5432)
        .user("postgres")
        .password(SUPERUSER_PASSWORD)
        .dbname("app")
        .connect_timeout(Duration::from_secs(2));
    for _ in 0..150 {
        if let Ok((client, connection)) = config.connect(tokio_postgres::NoTls).await {
            tokio::spawn(connection);
            return client;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("postgres cannot log in through {host} with homepage-postgres-credentials");
}

#[test]
fn seed_004_runbook_on_kubernetes() {
    if !kubelet_available() {
        return;
    }
    let moto = Moto::start();
    moto.create_bucket("postgres-backups");
    let sim = Sim::with_nodes(2);
    sim.install_crds();
    let operator = Operator::start(&sim, "operator", &["--no-webhooks", "--no-leader-election"]);
    sim.kubectl(&["create", "namespace", NS]);
    sim.apply(&cluster_manifest(&moto.endpoint())).unwrap();

    // "3. Wait for cluster to be ready" and "4. Check cluster status", as written.
    sim.kubectl(&[
        "wait",
        "--for=condition=Ready",
        "cluster/homepage-postgres",
        "-n",
        "postgres-ha",
        "--timeout=300s",
    ]);
    let table = sim.kubectl(&["get", "cluster", "-n", "postgres-ha"]);
    assert!(table.contains("Cluster in healthy state"), "{table}");
    // "Replication status", as written: the standby streams from homepage-postgres-1.
    let replication = sim.kubectl(&[
        "exec",
        "-n",
        "postgres-ha",
        "homepage-postgres-1",
        "--",
        "psql",
        "-U",
        "postgres",
        "-c",
        "SELECT * FROM pg_stat_replication;",
    ]);
    assert!(
        replication.contains("homepage-postgres-2") && replication.contains("streaming"),
        "{replication}"
    );

    let rw = sim.service_ip(NS, "homepage-postgres-rw");
    let password = sim.app_password(NS, "homepage-postgres");
    sim.runtime.block_on(async {
        let c = connect_soon(&rw, &password).await.expect("-rw answers");
        c.batch_execute("CREATE TABLE marks (id int PRIMARY KEY)")
            .await
            .unwrap();
    });
    let load = HaLoad::start(&sim, NS, "homepage-postgres", &rw, &password);

    // "Manual Backup", from its heredoc, then "List Backups".
    let applied = sim.kubectl_output(&["apply", "-f", "-"], Some(MANUAL_BACKUP));
    assert!(applied.status.success(), "{applied:?}");
    sim.eventually("the manual backup completed", 300, || {
        let b = sim.json(&[
            "get",
            "backup",
            "-n",
            NS,
            "homepage-postgres-manual-20261206-101500",
        ])?;
        match str_at(&b, "/status/phase") {
            Some("completed") => Some(()),
            Some("failed") => panic!("the manual backup failed: {b:#}"),
            _ => None,
        }
    });
    let listed = sim.kubectl(&["get", "backups", "-n", "postgres-ha"]);
    assert!(
        listed.contains("homepage-postgres-manual-20261206-101500") && listed.contains("completed"),
        "{listed}"
    );

    // Rows before and after a target time; the WAL holding them archived.
    let target_time: String = sim.runtime.block_on(async {
        let c = connect_soon(&rw, &password).await.unwrap();
        c.batch_execute("INSERT INTO marks VALUES (1), (2), (3)")
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let target: String = c
            .query_one(
                "SELECT to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        tokio::time::sleep(Duration::from_millis(1500)).await;
        c.batch_execute("INSERT INTO marks VALUES (4), (5), (6)")
            .await
            .unwrap();
        let su = superuser(&rw).await;
        let segment: String = su
            .query_one("SELECT pg_walfile_name(pg_switch_wal())", &[])
            .await
            .unwrap()
            .get(0);
        for _ in 0..300 {
            let archived: Option<String> = su
                .query_one("SELECT last_archived_wal FROM pg_stat_archiver", &[])
                .await
                .unwrap()
                .get(0);
            if archived.is_some_and(|a| a >= segment) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        target
    });

    // "Point-in-Time Recovery", from its heredoc.
    let applied = sim.kubectl_output(
        &["apply", "-f", "-"],
        Some(&recovery_manifest(&moto.endpoint(), &target_time)),
    );
    assert!(applied.status.success(), "{applied:?}");
    sim.kubectl(&[
        "wait",
        "--for=condition=Ready",
        "cluster/homepage-postgres-recovery",
        "-n",
        "postgres-ha",
        "--timeout=300s",
    ]);
    let recovered_rw = sim.service_ip(NS, "homepage-postgres-recovery-rw");
    let recovered_password = sim.app_password(NS, "homepage-postgres-recovery");
    let marks: Vec<i32> = sim.runtime.block_on(async {
        let c = connect_soon(&recovered_rw, &recovered_password)
            .await
            .expect("the recovered -rw answers");
        c.query("SELECT id FROM marks ORDER BY id", &[])
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect()
    });
    assert_eq!(
        marks,
        [1, 2, 3],
        "recovered to {target_time}: exactly the rows committed before it"
    );

    // "Manual Switchover", as written, under the writer.
    sim.kubectl(&[
        "cnpg",
        "promote",
        "homepage-postgres",
        "homepage-postgres-2",
        "-n",
        "postgres-ha",
    ]);
    sim.wait_healthy_primary(NS, "homepage-postgres", "homepage-postgres-2", 120);
    load.flowing(&sim, "the switchover");
    load.finish(&sim);
    let logged = operator.logged();
    for secret in [SUPERUSER_PASSWORD, SECRET_KEY] {
        assert!(
            !logged.contains(secret),
            "a credential reached the operator's log"
        );
    }
}

/// Seed 003's "WAL Archiving" manifest (the plugin and its ObjectStore), applied as stored in
/// `tests/fixtures/seeds` with the store's endpoint and the image changed.
#[test]
fn seed_003_plugin_archiving_on_kubernetes() {
    if !kubelet_available() {
        return;
    }
    let moto = Moto::start();
    moto.create_bucket("homelab-cnpg-b2");
    let sim = Sim::with_nodes(2);
    sim.install_crds();
    let operator = Operator::start(&sim, "operator", &["--no-webhooks", "--no-leader-election"]);
    sim.kubectl(&["create", "namespace", "immich"]);
    sim.apply(&format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: b2-cnpg-credentials\n  namespace: immich\nstringData:\n  AWS_ACCESS_KEY_ID: {ACCESS_KEY}\n  AWS_SECRET_ACCESS_KEY: {SECRET_KEY}\n"
    ))
    .unwrap();
    let fixture = std::fs::read_to_string(
        common::repo_root().join("tests/fixtures/seeds/003-cluster-wal-archiving-plugin.yaml"),
    )
    .unwrap();
    let manifest = fixture
        .replace("https://s3.us-west-000.backblazeb2.com", &moto.endpoint())
        .replace(
            "ghcr.io/cloudnative-pg/postgresql:17.2",
            "ghcr.io/cloudnative-pg/postgresql:15",
        );
    assert_ne!(manifest, fixture);
    sim.apply(&manifest).unwrap();
    sim.kubectl(&[
        "wait",
        "--for=condition=Ready",
        "cluster/immich-postgres",
        "-n",
        "immich",
        "--timeout=300s",
    ]);
    let rw = sim.service_ip("immich", "immich-postgres-rw");
    let password = sim.app_password("immich", "immich-postgres");
    let load = HaLoad::start(&sim, "immich", "immich-postgres", &rw, &password);

    // WAL archived through the plugin's ObjectStore (gzip, AES256 server-side encryption).
    sim.eventually("ContinuousArchiving", 120, || {
        let c = sim.json(&["get", "cluster", "-n", "immich", "immich-postgres"])?;
        c.pointer("/status/conditions")?
            .as_array()?
            .iter()
            .any(|c| c["type"] == "ContinuousArchiving" && c["status"] == "True")
            .then_some(())
    });
    // A backup through the plugin, as `kubectl cnpg backup` takes it.
    sim.kubectl(&[
        "cnpg",
        "backup",
        "immich-postgres",
        "-n",
        "immich",
        "--backup-name",
        "immich-now",
        "--method",
        "plugin",
        "--plugin-name",
        "barman-cloud.cloudnative-pg.io",
    ]);
    sim.eventually("the plugin backup completed", 300, || {
        let b = sim.json(&["get", "backup", "-n", "immich", "immich-now"])?;
        match str_at(&b, "/status/phase") {
            Some("completed") => Some(()),
            Some("failed") => panic!("the plugin backup failed: {b:#}"),
            _ => None,
        }
    });
    // "Increase Storage": the claims grow in place.
    sim.kubectl(&[
        "patch",
        "cluster",
        "immich-postgres",
        "-n",
        "immich",
        "--type=merge",
        "-p",
        r#"{"spec":{"storage":{"size":"25Gi"}}}"#,
    ]);
    sim.eventually("the PVCs grown to 25Gi", 60, || {
        let claims = sim.json(&["get", "pvc", "-n", "immich"])?;
        let items = claims["items"].as_array()?;
        (items.len() == 2
            && items
                .iter()
                .all(|c| str_at(c, "/spec/resources/requests/storage") == Some("25Gi")))
        .then_some(())
    });
    load.flowing(&sim, "the growth");
    load.finish(&sim);
    assert!(
        !operator.logged().contains(SECRET_KEY),
        "a credential reached the operator's log"
    );
}
