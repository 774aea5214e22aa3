//! A replica cluster on the local platform (`spec.replica` with `self` and `primary`,
//! CloudNativePG's distributed topology without tokens): cloned from a running cluster with `bootstrap.pg_basebackup`, its designated
//! primary a standby streaming from the source's `-rw`, its other instance streaming from the
//! designated primary; nothing accepts writes; a switchover inside it moves the designated
//! primary; `primary` naming itself promotes it into a cluster of its own. A writer commits to the
//! source throughout: every acknowledged commit reaches the replica cluster, and no instance of
//! the replica cluster is ever writable before the promotion.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

use pgherd_testkit::local::{cluster_manifest, connect, Local};
use pgherd_testkit::writer::{Writer, TABLE};
use std::path::Path;
use std::time::Duration;

/// The replica cluster in CloudNativePG's distributed topology: a replica while `primary`
/// names the source, promoted by naming itself.
fn mirror(primary: &str) -> String {
    cluster_manifest(
        "mirror",
        2,
        &format!(
            "  replica:
    self: mirror
    primary: {primary}
    source: shop
  bootstrap:
    pg_basebackup:
      source: shop
  externalClusters:
    - name: shop
      connectionParameters:
        host: shop-rw
        user: migrator
        dbname: postgres
      password:
        name: migrator-secret
        key: password
"
        ),
    )
}

/// `(is the server in recovery, rows of the writer)` through `endpoint` of `cluster`, as the
/// application user of `credentials` (a replica cluster's roles are its source's until it is
/// promoted: it cannot set its own passwords).
fn look(local: &Local, cluster: &str, endpoint: &str, credentials: &str) -> Option<(bool, i64)> {
    let addr = local.status(cluster).endpoints.get(endpoint)?.clone();
    pgherd_testkit::runtime().block_on(async {
        let c = connect(&local.app_config(credentials, &addr)).await.ok()?;
        let row = c
            .query_one(
                &format!("SELECT pg_is_in_recovery(), (SELECT count(*) FROM {TABLE})"),
                &[],
            )
            .await
            .ok()?;
        Some((row.get(0), row.get(1)))
    })
}

fn insert(local: &Local, cluster: &str, credentials: &str) -> Result<u64, String> {
    let addr = local.status(cluster).endpoints["rw"].clone();
    pgherd_testkit::runtime().block_on(async {
        let c = connect(&local.app_config(credentials, &addr))
            .await
            .map_err(|e| e.to_string())?;
        c.execute(&format!("INSERT INTO {TABLE} VALUES ('mirror', 1)"), &[])
            .await
            .map_err(|e| {
                e.as_db_error()
                    .map_or_else(|| e.to_string(), |d| d.message().to_string())
            })
    })
}

#[test]
fn a_replica_cluster_follows_its_source_and_is_promoted() {
    let local = Local::new(Path::new(env!("CARGO_BIN_EXE_pgherd")));
    let dir = tempfile::tempdir().unwrap();
    let (role, secret) =
        pgherd_testkit::local::replication_source("migrator-secret", "migrator-pw");
    local.up(
        dir.path(),
        "shop",
        &format!("{}{secret}", cluster_manifest("shop", 1, &role)),
        1,
    );
    local.wait_for("shop", "the role applied", Duration::from_secs(60), |s| {
        s.managed_roles_status.reconciled.len() == 1
    });
    let rw = local.status("shop").endpoints["rw"].clone();
    let source = local.app_config("shop", &rw);
    let rt = pgherd_testkit::runtime();
    rt.block_on(pgherd_testkit::writer::prepare(&source))
        .unwrap();
    let writer = Writer::start("replica-cluster", source.clone(), Duration::from_millis(5));
    writer.wait_for_progress(30, Duration::from_secs(30));

    // Up: both instances ready, the designated primary behind -rw, nothing writable.
    local.up(dir.path(), "mirror", &mirror("shop"), 2);
    let status = local.status("mirror");
    assert_eq!(status.current_primary.as_deref(), Some("mirror-1"));
    for endpoint in ["rw", "ro"] {
        let (recovering, _) = look(&local, "mirror", endpoint, "shop").expect(endpoint);
        assert!(recovering, "mirror's {endpoint} accepts writes");
    }
    let refused = insert(&local, "mirror", "shop").unwrap_err();
    assert!(refused.contains("read-only"), "{refused}");
    // The source's commits keep arriving, on both instances (mirror-2 from mirror-1).
    let seen = look(&local, "mirror", "ro", "shop").unwrap().1;
    writer.wait_for_progress(writer.acknowledged() + 30, Duration::from_secs(30));
    local.eventually("new rows on the replica cluster's replica", 90, || {
        look(&local, "mirror", "ro", "shop").filter(|(_, n)| *n > seen)
    });

    // A switchover inside the replica cluster moves the designated primary; it follows on.
    local.run_ok(&["promote", "mirror", "mirror-2"]);
    local.wait_for(
        "mirror",
        "mirror-2 designated",
        Duration::from_secs(90),
        |s| s.current_primary.as_deref() == Some("mirror-2") && s.ready_instances == 2,
    );
    let refused = insert(&local, "mirror", "shop").unwrap_err();
    assert!(refused.contains("read-only"), "{refused}");
    let report = writer.stop();
    let acknowledged = i64::try_from(report.acknowledged.len()).unwrap();
    local.eventually(
        "every acknowledged commit in the replica cluster",
        90,
        || {
            ["rw", "ro"]
                .iter()
                .all(|e| look(&local, "mirror", e, "shop").is_some_and(|(_, n)| n >= acknowledged))
                .then_some(())
        },
    );
    let missing = rt.block_on(async {
        let addr = local.status("mirror").endpoints["rw"].clone();
        let c = connect(&local.app_config("shop", &addr)).await.unwrap();
        pgherd_testkit::writer::missing(&c, &report).await.unwrap()
    });
    assert!(
        missing.is_empty(),
        "acknowledged commits missing: {missing:?}"
    );

    // Promoted: `primary` naming itself makes the designated primary a primary of its own cluster,
    // with its own application password; the other instance follows it; the source goes on.
    let file = dir.path().join("mirror.yaml");
    std::fs::write(&file, mirror("mirror")).unwrap();
    local.run_ok(&["apply", "-f", file.to_str().unwrap()]);
    local.eventually("the promoted cluster writable", 90, || {
        insert(&local, "mirror", "mirror").ok()
    });
    local.wait_for(
        "mirror",
        "both instances ready",
        Duration::from_secs(90),
        |s| s.ready_instances == 2,
    );
    let (recovering, _) = local.eventually("the promoted cluster's replica readable", 90, || {
        look(&local, "mirror", "ro", "mirror")
    });
    assert!(
        recovering,
        "only one writable instance in the promoted cluster"
    );
    let lost = rt.block_on(async {
        let c = connect(&source).await.unwrap();
        pgherd_testkit::writer::missing(&c, &report).await.unwrap()
    });
    assert!(
        lost.is_empty(),
        "the source lost acknowledged commits: {lost:?}"
    );
}
