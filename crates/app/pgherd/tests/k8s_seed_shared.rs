//! Seed 000 (shared staging/production PostgreSQL) on Kubernetes: kube-sim with its process
//! kubelet, `pgherd operator`, the real `kubectl`. The seed's stage stack
//! (`tests/seed_stacks/shared.rs`: PostgreSQL 17.2, one instance, S3 backups with 30-day
//! retention and gzip, a PodMonitor, a daily ScheduledBackup with `immediate`, the overlay's
//! credentials Secret; moto instead of S3) applied with `kubectl apply`, then its runbook: the
//! status, the scheduled backup completed, the app credentials from `postgres-shared-app`,
//! the seed's Database (`tests/fixtures/seeds`, as stored), and its point-in-time recovery
//! manifest (as stored, with its credentials filled in and a real target time): refused first
//! with the image to use (it names none, and the default is another major than the backup's),
//! then with that image holding exactly the rows committed before the target. Scaling to three
//! instances is walked locally (`tests/seed_runbooks/seed_000.rs`): on this machine a
//! PostgreSQL 17 replica cannot clone over TLS (its only `pg_basebackup` is built without SSL).
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

mod common;
mod k8s;
mod seed_stacks;

use k8s::{connect_soon, kubelet_available, str_at, Operator, Sim};
use pgherd_testkit::moto::Moto;
use seed_stacks::shared::{self as stack, BUCKET, CLUSTER, NAMESPACE as NS};

#[test]
fn seed_000_stage_cluster_on_kubernetes() {
    if !kubelet_available() {
        return;
    }
    let moto = Moto::start();
    moto.create_bucket(BUCKET);
    let endpoint = moto.endpoint();
    let sim = Sim::with_nodes(1);
    sim.install_crds();
    let operator = Operator::start(&sim, "operator", &["--no-webhooks", "--no-leader-election"]);
    sim.kubectl(&["create", "namespace", NS]);
    sim.apply(&format!(
        "{}{}",
        stack::credentials(NS),
        stack::cluster(1, &endpoint)
    ))
    .unwrap();

    // "Check Cluster Status".
    sim.kubectl(&[
        "wait",
        "--for=condition=Ready",
        "--timeout=300s",
        "cluster/postgres-shared",
        "-n",
        "postgres-stage",
    ]);
    let status = sim.kubectl(&["cnpg", "status", "postgres-shared", "-n", "postgres-stage"]);
    assert!(status.contains("Cluster in healthy state"), "{status}");
    // "Check Backup Status": the schedule's immediate backup completed, the schedule's next run.
    sim.eventually("the scheduled backup completed", 240, || {
        let list = sim.json(&["get", "backups", "-n", NS])?;
        list["items"]
            .as_array()?
            .iter()
            .any(|b| {
                str_at(b, "/metadata/name").is_some_and(|n| n.starts_with("postgres-shared-daily-"))
                    && str_at(b, "/status/phase") == Some("completed")
            })
            .then_some(())
    });
    let schedule = sim
        .json(&["get", "scheduledbackup", "-n", NS, "postgres-shared-daily"])
        .unwrap();
    assert!(
        str_at(&schedule, "/status/nextScheduleTime").is_some(),
        "{schedule:#}"
    );

    // "Database Connection": the app credentials the operator made.
    let rw = sim.service_ip(NS, "postgres-shared-rw");
    let password = sim.app_password(NS, CLUSTER);
    // "Database Management": the seed's Database, as stored.
    sim.apply(&common::seed_fixture(
        "000-database-product-a-api-stage.yaml",
    ))
    .unwrap();
    sim.eventually("the Database applied", 120, || {
        let d = sim.json(&["get", "database", "-n", NS, "product-a-api-stage"])?;
        (d.pointer("/status/applied") == Some(&true.into())).then_some(())
    });

    // "Point-in-Time Recovery (PITR)": rows on either side of an instant, WAL archived past it.
    let target = sim.runtime.block_on(async {
        let c = connect_soon(&rw, &password).await.expect("-rw answers");
        let owner: String = c
            .query_one(
                "SELECT pg_get_userbyid(datdba)::text FROM pg_database WHERE datname = 'api_db'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(owner, "app");
        pgherd_testkit::pitr::rows_around_an_instant(&c)
            .await
            .unwrap()
    });
    // The WAL past the target reaches the store (a switch, then the archiver's report).
    let primary = format!("{CLUSTER}-1");
    let superuser_sql = |sql: &str| {
        let out = sim.kubectl(&[
            "exec", "-n", NS, &primary, "--", "psql", "-U", "postgres", "-Atc", sql,
        ]);
        out.trim().to_string()
    };
    let segment = superuser_sql("SELECT pg_walfile_name(pg_switch_wal())");
    sim.eventually("the WAL past the target archived", 120, || {
        let archived =
            superuser_sql("SELECT COALESCE(last_archived_wal, '') FROM pg_stat_archiver");
        (archived >= segment).then_some(())
    });
    // Recovered into the default namespace, as the seed's manifest names none. As written it
    // names no image either: the default runs another major than the backup's, and the
    // cluster says which image to use before anything starts.
    let as_written = stack::pitr(
        &common::seed_fixture("000-cluster-postgres-restored-pitr.yaml"),
        &endpoint,
        &target,
        None,
    );
    sim.apply(&format!("{}{as_written}", stack::credentials("default")))
        .unwrap();
    let reason = sim.eventually("the recovery refused with the image to use", 180, || {
        let c = sim.json(&["get", "cluster", "postgres-restored"])?;
        str_at(&c, "/status/phaseReason")
            .filter(|r| r.contains("holds PostgreSQL 17 data"))
            .map(str::to_string)
    });
    assert!(
        reason.contains("ghcr.io/cloudnative-pg/postgresql:17"),
        "{reason}"
    );
    sim.kubectl(&["delete", "cluster", "postgres-restored"]);
    sim.eventually("the refused cluster's pods and claims gone", 120, || {
        let selector = "cnpg.io/cluster=postgres-restored";
        let pods = sim.json(&["get", "pods", "-l", selector])?;
        let claims = sim.json(&["get", "pvc", "-l", selector])?;
        (pods["items"].as_array()?.is_empty() && claims["items"].as_array()?.is_empty())
            .then_some(())
    });
    // With the image it names.
    sim.apply(&format!(
        "{}{}",
        stack::credentials("default"),
        stack::pitr(
            &common::seed_fixture("000-cluster-postgres-restored-pitr.yaml"),
            &endpoint,
            &target,
            Some("ghcr.io/cloudnative-pg/postgresql:17.2"),
        )
    ))
    .unwrap();
    sim.kubectl(&[
        "wait",
        "--for=condition=Ready",
        "--timeout=300s",
        "cluster/postgres-restored",
    ]);
    let restored_rw = sim.service_ip("default", "postgres-restored-rw");
    let restored_password = sim.app_password("default", "postgres-restored");
    let rows: Vec<i32> = sim.runtime.block_on(async {
        let c = connect_soon(&restored_rw, &restored_password)
            .await
            .expect("the restored -rw answers");
        c.query("SELECT i FROM pitr ORDER BY i", &[])
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect()
    });
    assert_eq!(
        rows,
        pgherd_testkit::pitr::rows_before(),
        "exactly the rows before {target}"
    );
    let logged = operator.logged();
    assert!(
        !logged.contains(pgherd_testkit::moto::SECRET_KEY),
        "a credential reached the operator's log"
    );
}
