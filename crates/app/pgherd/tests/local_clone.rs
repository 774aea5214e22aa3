//! `bootstrap.pg_basebackup` on the local platform: a new cluster cloned from a running one
//! while a writer commits to the source, over the connection its `externalClusters` entry
//! describes (the source's `-rw` named as a Service, a replication role with a password from a
//! Secret, as CloudNativePG's documentation sets it up). The copy holds every commit the source
//! acknowledged before the clone was asked for, with no gap before its last one; it is its own
//! cluster afterwards (its own writes, its own replica cloned from its primary, its generated
//! application password), and the password reaches the instance only as a 0600 file.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

use pgherd_testkit::local::{cluster_manifest, connect, Local};
use pgherd_testkit::writer::{Writer, TABLE};
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::time::Duration;

const PASSWORD: &str = "Migr:ator\\pw-1";

/// The source's role and its Secret (the password with `:` and `\\` to escape in the passfile).
fn source(secret: &str, password: &str) -> (String, String) {
    pgherd_testkit::local::replication_source(secret, password)
}

fn secret() -> String {
    source("migrator-secret", PASSWORD).1
}

const COPY: &str = "  bootstrap:
    pg_basebackup:
      source: shop
  externalClusters:
    - name: shop
      connectionParameters:
        host: shop-rw.default.svc
        user: migrator
        dbname: postgres
        sslmode: require
      password:
        name: migrator-secret
        key: password
";

fn query(local: &Local, cluster: &str, endpoint: &str, sql: &str) -> Vec<tokio_postgres::Row> {
    let addr = local.status(cluster).endpoints[endpoint].clone();
    pgherd_testkit::runtime().block_on(async {
        let c = connect(&local.app_config(cluster, &addr)).await.unwrap();
        c.query(sql, &[]).await.unwrap()
    })
}

#[test]
fn a_cluster_cloned_from_a_running_one_has_every_commit_acknowledged_before() {
    let local = Local::new(Path::new(env!("CARGO_BIN_EXE_pgherd")));
    let dir = tempfile::tempdir().unwrap();
    local.up(
        dir.path(),
        "shop",
        &format!(
            "{}{}",
            cluster_manifest("shop", 1, &source("migrator-secret", PASSWORD).0),
            secret()
        ),
        1,
    );
    local.wait_for("shop", "the role applied", Duration::from_secs(60), |s| {
        s.managed_roles_status.reconciled.len() == 1
    });
    // A wrong password: the copy waits, and says why (never with the password).
    let wrong = dir.path().join("wrong.yaml");
    std::fs::write(
        &wrong,
        format!(
            "{}{}",
            cluster_manifest("wrong", 1, &COPY.replace("migrator-secret", "wrong-secret")),
            source("wrong-secret", "Nope").1
        ),
    )
    .unwrap();
    local.run_ok(&["apply", "-f", wrong.to_str().unwrap()]);
    let said = local.wait_for("wrong", "the clone's error", Duration::from_secs(60), |s| {
        s.phase_reason
            .as_deref()
            .is_some_and(|r| r.contains("password authentication failed"))
    });
    let reason = said.phase_reason.unwrap();
    assert!(
        reason.contains("spec.bootstrap.pg_basebackup: cannot clone external cluster \"shop\""),
        "{reason}"
    );
    assert!(!reason.contains("Nope"), "{reason}");
    local.run_ok(&["delete", "cluster", "wrong"]);

    let rw = local.status("shop").endpoints["rw"].clone();
    let source_config = local.app_config("shop", &rw);
    let rt = pgherd_testkit::runtime();
    rt.block_on(pgherd_testkit::writer::prepare(&source_config))
        .unwrap();
    let writer = Writer::start("clone", source_config.clone(), Duration::from_millis(5));
    writer.wait_for_progress(50, Duration::from_secs(30));
    let before = writer.acknowledged();

    local.up(
        dir.path(),
        "copy",
        &format!("{}{}", cluster_manifest("copy", 2, COPY), secret()),
        2,
    );
    writer.wait_for_progress(before + 20, Duration::from_secs(30));
    let report = writer.stop();

    // Everything acknowledged before the clone was asked for, and no acknowledged commit
    // missing below the copy's newest row (a consistent copy, not a torn one).
    let seqs: Vec<i64> = query(
        &local,
        "copy",
        "rw",
        &format!("SELECT seq FROM {TABLE} WHERE source = 'clone' ORDER BY seq"),
    )
    .iter()
    .map(|r| r.get(0))
    .collect();
    let newest = *seqs.last().expect("the copy has the writer's rows");
    let present: std::collections::HashSet<i64> = seqs.iter().copied().collect();
    let missing: Vec<i64> = report
        .acknowledged
        .iter()
        .enumerate()
        .filter(|(i, (seq, _))| (*i < before || *seq <= newest) && !present.contains(seq))
        .map(|(_, (seq, _))| *seq)
        .collect();
    assert!(
        missing.is_empty(),
        "acknowledged commits missing from the copy: {missing:?}\n{}",
        local.logs()
    );
    // The source lost nothing and is still the only writer of its rows.
    let lost = rt.block_on(async {
        let c = connect(&source_config).await.unwrap();
        pgherd_testkit::writer::missing(&c, &report).await.unwrap()
    });
    assert!(
        lost.is_empty(),
        "the source lost acknowledged commits: {lost:?}"
    );

    // The copy is a cluster of its own: writable with its own application password (the
    // `app` role came with the copy; its password is the copy's), its replica cloned from its
    // primary and streaming, the source untouched by its writes.
    query(&local, "copy", "rw", "CREATE TABLE only_here (id int)");
    query(&local, "copy", "rw", "INSERT INTO only_here VALUES (1)");
    local.wait_for(
        "copy",
        "the replica caught up",
        Duration::from_secs(60),
        |s| s.ready_instances == 2,
    );
    let on_replica = || {
        let addr = local.status("copy").endpoints["ro"].clone();
        rt.block_on(async {
            let c = connect(&local.app_config("copy", &addr)).await.unwrap();
            c.query_one("SELECT count(*) FROM only_here", &[])
                .await
                .map(|r| r.get::<_, i64>(0))
                .unwrap_or(0)
        })
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while on_replica() != 1 {
        assert!(std::time::Instant::now() < deadline, "the copy's replica");
        std::thread::sleep(Duration::from_millis(200));
    }
    let in_source: i64 = query(
        &local,
        "shop",
        "rw",
        "SELECT count(*) FROM pg_catalog.pg_tables WHERE tablename = 'only_here'",
    )[0]
    .get(0);
    assert_eq!(in_source, 0);
    let recovering: bool = query(&local, "copy", "rw", "SELECT pg_is_in_recovery()")[0].get(0);
    assert!(!recovering);
    // A physical copy: the source's system identifier (an initdb would have its own).
    let system = |cluster: &str| -> i64 {
        query(
            &local,
            cluster,
            "rw",
            "SELECT system_identifier FROM pg_catalog.pg_control_system()",
        )[0]
        .get(0)
    };
    assert_eq!(system("copy"), system("shop"));

    // The password reached the instance only as a file of the PostgreSQL user's, mode 0600;
    // the instances' specs name the file, never the password.
    let cluster_dir = local.state.join("clusters/default/copy");
    let pgpass = cluster_dir.join("external/external-shop.pgpass");
    let mode = std::fs::metadata(&pgpass).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    for entry in walk(&cluster_dir.join("instances")) {
        if entry.extension().is_some_and(|e| e == "json") {
            let text = std::fs::read_to_string(&entry).unwrap_or_default();
            assert!(
                !text.contains("Migr"),
                "{} holds the source's password",
                entry.display()
            );
        }
    }
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() && !path.ends_with("pgdata") {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}
