//! Declarative logical replication between two local clusters, as CloudNativePG's Publication
//! and Subscription objects do it: the publisher's `-rw` named as a Service in the subscriber's
//! `externalClusters`, rows carried, statuses reported, and a Subscription deleted with
//! `subscriptionReclaimPolicy: delete` dropped in PostgreSQL before the object goes.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

use pgherd_testkit::local::{cluster_manifest, connect, Local};
use pgherd_testkit::writer::Writer;
use std::path::Path;
use std::time::{Duration, Instant};

const PUBLISHER: &str = "  enableSuperuserAccess: true
  superuserSecret:
    name: shop-root
---
apiVersion: v1
kind: Secret
metadata:
  name: shop-root
type: kubernetes.io/basic-auth
stringData:
  username: postgres
  password: shop-Root-1
";

const SUBSCRIBER: &str = "  externalClusters:
    - name: shop
      connectionParameters:
        host: shop-rw.default.svc
        user: postgres
        dbname: app
      password:
        name: shop-root
        key: password
";

const OBJECTS: &str = "apiVersion: postgresql.cnpg.io/v1
kind: Publication
metadata:
  name: orders
spec:
  cluster:
    name: shop
  name: orders
  dbname: app
  target:
    allTables: true
---
apiVersion: postgresql.cnpg.io/v1
kind: Subscription
metadata:
  name: orders-sub
spec:
  cluster:
    name: reports
  name: orders_sub
  dbname: app
  publicationName: orders
  externalClusterName: shop
  subscriptionReclaimPolicy: delete
";

fn count(local: &Local, cluster: &str, sql: &str) -> i64 {
    let rw = local.status(cluster).endpoints["rw"].clone();
    pgherd_testkit::runtime().block_on(async {
        let c = connect(&local.app_config(cluster, &rw)).await.unwrap();
        c.query_one(sql, &[]).await.unwrap().get(0)
    })
}

fn execute(local: &Local, cluster: &str, sql: &str) {
    let rw = local.status(cluster).endpoints["rw"].clone();
    pgherd_testkit::runtime().block_on(async {
        let c = connect(&local.app_config(cluster, &rw)).await.unwrap();
        c.batch_execute(sql).await.unwrap();
    })
}

/// The server logs of both clusters' first instances (where replication errors show).
fn server_logs(local: &Local) -> String {
    let mut out = String::new();
    if let Some(rw) = local.status("reports").endpoints.get("rw") {
        out.push_str(&pgherd_testkit::runtime().block_on(async {
            let c = connect(&local.app_config("reports", rw)).await.unwrap();
            let mut text = String::new();
            for sql in [
                "SELECT coalesce(string_agg(srsubstate::text, ','), '-') FROM pg_subscription_rel",
                "SELECT coalesce(string_agg(coalesce(pid::text, 'no worker') || ' ' || coalesce(relid::text, 'apply'), ','), '-') FROM pg_stat_subscription",
                "SELECT coalesce(string_agg(subname || ' enabled=' || subenabled, ','), '-') FROM pg_subscription",
            ] {
                let v: String = c.query_one(sql, &[]).await.map(|r| r.get(0)).unwrap_or_else(|e| e.to_string());
                text.push_str(&format!("{sql}: {v}\n"));
            }
            text
        }));
    }
    for cluster in ["shop", "reports"] {
        let dir = local.state.join(format!(
            "clusters/default/{cluster}/instances/{cluster}-1/log"
        ));
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(15).collect();
            out.push_str(&format!("--- {}\n", entry.path().display()));
            for line in tail.into_iter().rev() {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    out
}

fn wait(what: &str, local: &Local, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !check() {
        assert!(
            Instant::now() < deadline,
            "timed out: {what}\n{}\n{}",
            local.logs(),
            server_logs(local)
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

fn get(local: &Local, kind: &str, name: &str) -> Option<serde_json::Value> {
    let out = local.run(&["get", kind, name, "-o", "json"]);
    out.status
        .success()
        .then(|| serde_json::from_slice(&out.stdout).unwrap())
}

#[test]
fn a_subscription_carries_a_publications_rows_between_local_clusters() {
    let local = Local::new(Path::new(env!("CARGO_BIN_EXE_pgherd")));
    let dir = tempfile::tempdir().unwrap();
    local.up(
        dir.path(),
        "shop",
        &cluster_manifest("shop", 1, PUBLISHER),
        1,
    );
    let subscriber = format!(
        "{}---\napiVersion: v1\nkind: Secret\nmetadata:\n  name: shop-root\ntype: kubernetes.io/basic-auth\nstringData:\n  username: postgres\n  password: shop-Root-1\n",
        cluster_manifest("reports", 1, SUBSCRIBER)
    );
    local.up(dir.path(), "reports", &subscriber, 1);
    let table = "CREATE TABLE items (id int PRIMARY KEY, note text)";
    execute(&local, "shop", table);
    execute(
        &local,
        "shop",
        "INSERT INTO items SELECT g, 'first' FROM generate_series(1, 10) g",
    );
    execute(&local, "reports", table);

    let objects = dir.path().join("objects.yaml");
    std::fs::write(&objects, OBJECTS).unwrap();
    local.run_ok(&["apply", "-f", objects.to_str().unwrap()]);
    let applied = |kind: &str, name: &str| {
        get(&local, kind, name).is_some_and(|v| v["status"]["applied"] == true)
    };
    wait("the publication applied", &local, || {
        applied("publication", "orders")
    });
    wait("the subscription applied", &local, || {
        applied("subscription", "orders-sub")
    });
    wait("the initial copy", &local, || {
        count(&local, "reports", "SELECT count(*) FROM items") == 10
    });
    execute(&local, "shop", "INSERT INTO items VALUES (11, 'streamed')");
    wait("a new row streamed", &local, || {
        count(
            &local,
            "reports",
            "SELECT count(*) FROM items WHERE note = 'streamed'",
        ) == 1
    });

    // Deleted with reclaim policy delete: dropped in PostgreSQL (with its slot on the
    // publisher), then the object goes.
    local.run_ok(&["delete", "subscription", "orders-sub"]);
    wait(
        "the subscription dropped and the object gone",
        &local,
        || get(&local, "subscription", "orders-sub").is_none(),
    );
    execute(&local, "shop", "INSERT INTO items VALUES (12, 'after')");
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(count(&local, "reports", "SELECT count(*) FROM items"), 11);
    assert_eq!(
        count(
            &local,
            "shop",
            "SELECT count(*) FROM pg_replication_slots WHERE slot_type = 'logical'"
        ),
        0,
        "the subscription's slot was dropped on the publisher"
    );
    // The publication (retained by default) stays after its object is deleted.
    local.run_ok(&["delete", "publication", "orders"]);
    assert!(get(&local, "publication", "orders").is_none());
    assert_eq!(
        count(&local, "shop", "SELECT count(*) FROM pg_publication"),
        1
    );
}

/// PostgreSQL 17+ with `replicationSlots.highAvailability.synchronizeLogicalDecoding`: the
/// standby keeps a copy of the subscription's failover slot, so the subscription goes on from
/// the new primary after a switchover of the publisher.
#[test]
fn a_subscription_survives_a_switchover_of_its_publisher() {
    if pgherd_instance_manager::PgBinaries::locate(18, None).is_err() {
        eprintln!("PostgreSQL 18 not installed (scripts/install.sh); skipped");
        return;
    }
    let local = Local::new(Path::new(env!("CARGO_BIN_EXE_pgherd")));
    let dir = tempfile::tempdir().unwrap();
    let on_18 = |m: String| m.replace("postgresql:15.14", "postgresql:18.1");
    let publisher = format!(
        "  replicationSlots:\n    highAvailability:\n      synchronizeLogicalDecoding: true\n  postgresql:\n    parameters:\n      hot_standby_feedback: \"on\"\n      sync_replication_slots: \"on\"\n{PUBLISHER}"
    );
    local.up(
        dir.path(),
        "shop",
        &on_18(cluster_manifest("shop", 2, &publisher)),
        2,
    );
    let subscriber = format!(
        "{}---\napiVersion: v1\nkind: Secret\nmetadata:\n  name: shop-root\ntype: kubernetes.io/basic-auth\nstringData:\n  username: postgres\n  password: shop-Root-1\n",
        on_18(cluster_manifest("reports", 1, SUBSCRIBER))
    );
    local.up(dir.path(), "reports", &subscriber, 1);
    let table = "CREATE TABLE items (id int PRIMARY KEY, note text)";
    execute(&local, "shop", table);
    execute(&local, "shop", "INSERT INTO items VALUES (1, 'first')");
    execute(&local, "reports", table);
    // The writer's table, on both sides before the subscription starts.
    let rw = local.status("shop").endpoints["rw"].clone();
    let writer_config = local.app_config("shop", &rw);
    let rt = pgherd_testkit::runtime();
    rt.block_on(pgherd_testkit::writer::prepare(&writer_config))
        .unwrap();
    execute(
        &local,
        "reports",
        &format!(
            "CREATE TABLE {} (source text NOT NULL, seq bigint NOT NULL, PRIMARY KEY (source, seq))",
            pgherd_testkit::writer::TABLE
        ),
    );
    let objects = dir.path().join("objects.yaml");
    std::fs::write(
        &objects,
        OBJECTS.replace(
            "  subscriptionReclaimPolicy: delete\n",
            "  parameters:\n    failover: \"true\"\n",
        ),
    )
    .unwrap();
    local.run_ok(&["apply", "-f", objects.to_str().unwrap()]);
    wait("the initial copy", &local, || {
        count(&local, "reports", "SELECT count(*) FROM items") == 1
    });
    // The standby has a synchronized copy of the slot.
    let ro = local.status("shop").endpoints["ro"].clone();
    wait("the slot synchronized to the standby", &local, || {
        pgherd_testkit::runtime().block_on(async {
            let c = connect(&local.app_config("shop", &ro)).await.unwrap();
            c.query_one(
                "SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'orders_sub' AND synced",
                &[],
            )
            .await
            .map(|r| r.get::<_, i64>(0) == 1)
            .unwrap_or(false)
        })
    });
    // A writer commits through the publisher's -rw across the switchover: every acknowledged
    // commit must be on the new primary (so there never were two writable primaries taking
    // them) and must reach the subscriber.
    let writer = Writer::start("logical", writer_config, Duration::from_millis(10));
    writer.wait_for_progress(20, Duration::from_secs(30));
    local.run_ok(&["promote", "shop", "shop-2"]);
    local.wait_for("shop", "shop-2 primary", Duration::from_secs(120), |s| {
        s.current_primary.as_deref() == Some("shop-2") && s.ready_instances == 2
    });
    writer.wait_for_progress(20, Duration::from_secs(60));
    let report = writer.stop();
    execute(
        &local,
        "shop",
        "INSERT INTO items VALUES (2, 'after the switchover')",
    );
    wait("a row written on the new primary", &local, || {
        count(&local, "reports", "SELECT count(*) FROM items WHERE id = 2") == 1
    });
    let on = |cluster: &str| {
        let endpoint = local.status(cluster).endpoints["rw"].clone();
        let config = local.app_config(cluster, &endpoint);
        rt.block_on(async {
            let c = connect(&config).await.unwrap();
            pgherd_testkit::writer::missing(&c, &report).await.unwrap()
        })
    };
    let lost = on("shop");
    assert!(
        lost.is_empty(),
        "acknowledged commits lost on the publisher: {lost:?}"
    );
    wait(
        "every acknowledged commit at the subscriber",
        &local,
        || on("reports").is_empty(),
    );
    eprintln!(
        "logical replication across a switchover: {} commits acknowledged, {} in doubt",
        report.acknowledged.len(),
        report.failed
    );
}
