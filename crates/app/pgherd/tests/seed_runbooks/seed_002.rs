//! Seed 002's runbook (SaaSOdoo HA cluster) on the local platform.

/// Seed 002 ("CloudNativePG - PostgreSQL HA Cluster" for SaaSOdoo) walked end to end: the
/// cluster, roles, Databases and PgBouncer it describes (its files are listed, not shown:
/// 3 instances of PostgreSQL 18 with 1–2 synchronous standbys, the managed roles and database
/// owners of its tables, a 2-instance transaction-mode `rw` pooler), then its runbook: ready,
/// the Databases, `\l`/`\du`, replication status, the pooler's admin console as `postgres`
/// (refused at once, as CloudNativePG's), `SELECT version()` through the pooler, a
/// switchover, a rolling restart, `restart --primary`, scaling to 5 and back (its scale to 2
/// is refused, as CloudNativePG refuses it) — all under a
/// writer through the pooler that must lose nothing acknowledged — and the cleanup.
#[test]
fn seed_002_saasodoo_runbook() {
    use super::*;
    use crate::seed_stacks::saasodoo::{self as stack, cluster, DATABASES as databases};
    use crate::seed_stacks::saasodoo::{NAMESPACE as NS, ROLES as roles};
    use pgherd_testkit::local::{connect, Local};
    use std::time::Duration;
    let local = Local::new(std::path::Path::new(env!("CARGO_BIN_EXE_pgherd")));
    let files = tempfile::tempdir().unwrap();
    // Steps 2–4 and 6: secrets, cluster, databases, pooler.
    let stack = write(
        files.path(),
        "stack.yaml",
        &format!(
            "{}{}{}{}",
            stack::secrets(),
            cluster(3),
            stack::databases(),
            stack::pooler()
        ),
    );
    local.run_ok(&["up", "-f", &stack, "--timeout-seconds", "300"]);
    let s = wait_status(
        &local,
        NS,
        "postgres-cluster",
        "ready with its pooler",
        Duration::from_secs(120),
        |s| {
            s["phase"] == "Cluster in healthy state"
                && s["readyInstances"] == 3
                && s["endpoints"]["postgres-cluster-pooler-rw"].is_string()
        },
    );
    for (db, _) in databases {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while get(&local, NS, "database", db)["status"]["applied"] != true {
            assert!(
                std::time::Instant::now() < deadline,
                "Database {db} not applied: {:#}",
                get(&local, NS, "database", db)
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }
    // "Database Verification": \l and \du.
    let listed = socket_query(&local, NS, "postgres-cluster", "postgres", "SELECT string_agg(datname || ':' || pg_get_userbyid(datdba), ',' ORDER BY datname) FROM pg_database");
    for (db, owner) in databases {
        assert!(listed.contains(&format!("{db}:{owner}")), "{listed}");
    }
    let users = socket_query(
        &local,
        NS,
        "postgres-cluster",
        "postgres",
        "SELECT string_agg(rolname || ':' || rolreplication, ',') FROM pg_roles",
    );
    for (role, _) in roles {
        assert!(
            users.contains(&format!("{role}:{}", role == "backup_user")),
            "{users}"
        );
    }
    // "Replication Status": 2 synchronous standbys.
    let sync = socket_query(
        &local,
        NS,
        "postgres-cluster",
        "postgres",
        "SELECT count(*) FROM pg_stat_replication WHERE sync_state IN ('sync', 'quorum')",
    );
    assert_eq!(sync, "2");
    // "PgBouncer Status": the admin console as postgres over TCP is refused at once.
    let pooler_rw = s["endpoints"]["postgres-cluster-pooler-rw"]
        .as_str()
        .unwrap()
        .to_string();
    let superuser = secret(&local, NS, "postgres-cluster-superuser", "password");
    let rt = pgherd_testkit::runtime();
    rt.block_on(async {
        let refused = tokio::time::timeout(
            Duration::from_secs(60),
            connect(&config(&pooler_rw, "postgres", &superuser, "pgbouncer")),
        )
        .await
        .expect("an answer, not a wait");
        let Err(e) = refused else {
            panic!("the admin console over TCP let postgres in")
        };
        assert_eq!(
            e.as_db_error().map(|d| d.message()),
            Some("login rejected"),
            "{e:?}"
        );
        // "Connection Issues": SELECT version() through the pooler as postgres.
        let c = connect(&config(&pooler_rw, "postgres", &superuser, "postgres"))
            .await
            .unwrap();
        let version: String = c.query_one("SELECT version()", &[]).await.unwrap().get(0);
        assert!(version.starts_with("PostgreSQL 18"), "{version}");
    });
    // A service writes through the pooler for the HA steps.
    let service = config(
        &pooler_rw,
        "auth_service",
        &stack::password("auth_service"),
        "auth",
    );
    rt.block_on(pgherd_testkit::writer::prepare(&service))
        .unwrap();
    let writer = pgherd_testkit::writer::Writer::start(
        "seed-002",
        service.clone(),
        Duration::from_millis(20),
    );
    writer.wait_for_progress(5, Duration::from_secs(30));
    let pids = |s: &serde_json::Value| -> Vec<(String, u64)> {
        s["instancesStatus"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| {
                (
                    i["name"].as_str().unwrap().to_string(),
                    i["pid"].as_u64().unwrap_or(0),
                )
            })
            .collect()
    };
    // "Manual Failover (Switchover)"
    let s = switch_over(&local, NS, "postgres-cluster", 3, 3, &writer);
    // "Rolling Restart": every instance restarted.
    let before = pids(&s);
    run_ns(&local, NS, &["restart", "postgres-cluster"]);
    let s = wait_status(
        &local,
        NS,
        "postgres-cluster",
        "every instance restarted",
        Duration::from_secs(240),
        |s| {
            s["phase"] == "Cluster in healthy state"
                && pids(s)
                    .iter()
                    .zip(&before)
                    .all(|(a, b)| a.0 == b.0 && a.1 != 0 && a.1 != b.1)
        },
    );
    commits_again(&local, &writer, "the rolling restart");
    // "Restart only primary": in place, the same primary, the standbys untouched.
    let before = pids(&s);
    let primary = s["currentPrimary"].as_str().unwrap().to_string();
    run_ns(&local, NS, &["restart", "postgres-cluster", "--primary"]);
    let s = wait_status(
        &local,
        NS,
        "postgres-cluster",
        "the primary restarted",
        Duration::from_secs(120),
        |s| {
            s["phase"] == "Cluster in healthy state"
                && s["readyInstances"] == 3
                && pids(s)
                    .iter()
                    .zip(&before)
                    .any(|(a, b)| a.0 == primary && a.1 != 0 && a.1 != b.1)
        },
    );
    assert_eq!(s["currentPrimary"], primary.as_str());
    for (a, b) in pids(&s).iter().zip(&before) {
        if a.0 != primary {
            assert_eq!(a.1, b.1, "{} was restarted too", a.0);
        }
    }
    commits_again(&local, &writer, "the primary's restart");
    // "Scaling Instances": to 5; "to 2 (minimum for sync replication)" is refused as
    // CloudNativePG's webhook refuses that patch (maxSyncReplicas 2 needs 3 instances), and the
    // cluster stays as it was; back to 3.
    let scale = |n: u32| write(files.path(), &format!("cluster-{n}.yaml"), &cluster(n));
    local.run_ok(&["apply", "-f", &scale(5)]);
    healthy(&local, NS, "postgres-cluster", "5 instances", 5);
    commits_again(&local, &writer, "scaling to 5");
    let out = local.run(&["apply", "-f", &scale(2)]);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("spec.maxSyncReplicas: must be lower than the number of instances"),
        "{err}"
    );
    assert_eq!(status(&local, NS, "postgres-cluster")["instances"], 5);
    local.run_ok(&["apply", "-f", &scale(3)]);
    healthy(&local, NS, "postgres-cluster", "3 instances", 3);
    commits_again(&local, &writer, "scaling to 3");
    let report = writer.stop();
    let missing = rt
        .block_on(async {
            let c = connect(&service).await?;
            pgherd_testkit::writer::missing(&c, &report).await
        })
        .unwrap();
    assert!(missing.is_empty(), "acknowledged commits lost: {missing:?}");
    // "Cleanup"
    run_ns(&local, NS, &["delete", "cluster", "postgres-cluster"]);
    assert!(!local
        .run(&["status", "postgres-cluster", "-n", NS])
        .status
        .success());
}
