//! Plan/execute on real PostgreSQL: a spec applied once runs statements; applied again (also
//! as a restarted manager would, with nothing remembered) it runs none — no statement, no WAL,
//! no catalog row rewritten, the stored password verifier untouched. A changed password Secret
//! sets the password (one statement); a password changed behind the operator's back is set
//! back; and with synchronous replication required and no standby, a change is reported as
//! pending at once instead of waiting inside the converge loop.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

use pgherd_instance_manager::declarative::{
    apply_superuser_password, executed_statements, forget_verified_passwords, reconcile_databases,
    reconcile_roles,
};
use pgherd_instance_manager::observe::connect;
use pgherd_instance_protocol::{
    ApplyResult, DatabaseSpec, ExtensionSpec, PasswordSource, RoleSpec, SchemaSpec,
};
use std::time::{Duration, Instant};
use tokio_postgres::Client;

fn role(name: &str) -> RoleSpec {
    RoleSpec::login(name)
}

fn database(name: &str, owner: &str) -> DatabaseSpec {
    DatabaseSpec::owned_by(&format!("{name}-object"), name, owner)
}

fn all_applied(results: &[ApplyResult]) {
    assert!(results.iter().all(|r| r.applied), "{results:?}");
}

/// Everything a statement would leave a trace in: the WAL insert position, and each managed
/// role's and database's row version (xmin) and stored password.
async fn traces(c: &Client) -> (String, Vec<(String, String, Option<String>)>) {
    let lsn: String = c
        .query_one("SELECT pg_current_wal_insert_lsn()::text", &[])
        .await
        .unwrap()
        .get(0);
    let rows = c
        .query(
            "SELECT rolname::text, xmin::text, rolpassword FROM pg_authid \
              WHERE rolname IN ('app', 'nopass', 'postgres') \
             UNION ALL SELECT datname::text, xmin::text, NULL FROM pg_database \
              WHERE datname = 'inventory' ORDER BY 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    (lsn, rows)
}

fn password(c: &[(String, String, Option<String>)], name: &str) -> Option<String> {
    c.iter().find(|r| r.0 == name).and_then(|r| r.2.clone())
}

#[test]
fn an_unchanged_spec_runs_no_statement_and_a_changed_secret_sets_the_password() {
    let server = pgherd_testkit::TestServer::start();
    let pg = &server.pg;
    let app_password = server.dir().join("app-password");
    let superuser_password = server.dir().join("superuser-password");
    std::fs::write(&app_password, "first secret\n").unwrap();
    std::fs::write(&superuser_password, "su-pass").unwrap();

    let rt = pgherd_testkit::runtime();
    rt.block_on(async {
        let c = connect(pg, "postgres").await.unwrap();
        // Nothing but these tests writes: no autovacuum pass between the measurements.
        for sql in [
            "CREATE ROLE readers",
            "ALTER SYSTEM SET autovacuum = off",
            "SELECT pg_reload_conf()",
        ] {
            c.batch_execute(sql).await.unwrap();
        }

        let mut app = role("app");
        app.createdb = true;
        app.connection_limit = 5;
        app.comment = Some("the app's role".into());
        app.valid_until = Some("2030-01-01T00:00:00Z".into());
        app.in_roles = vec!["readers".into()];
        app.password = PasswordSource::File {
            path: app_password.clone(),
        };
        let mut nopass = role("nopass");
        nopass.password = PasswordSource::Disabled;
        let mut roles = vec![app.clone(), nopass];
        let mut inventory = database("inventory", "app");
        inventory.connection_limit = Some(7);
        inventory.schemas = vec![SchemaSpec {
            name: "stock".into(),
            present: true,
            owner: None,
        }];
        inventory.extensions = vec![ExtensionSpec {
            name: "hstore".into(),
            present: true,
            version: None,
            schema: Some("stock".into()),
        }];
        let databases = vec![inventory];
        let su = PasswordSource::File {
            path: superuser_password.clone(),
        };

        let before = executed_statements();
        all_applied(&reconcile_roles(&c, &roles).await);
        all_applied(&reconcile_databases(pg, &c, &databases).await);
        apply_superuser_password(&c, &su).await.unwrap();
        let first = executed_statements() - before;
        assert!(
            first >= 8,
            "the first pass created everything ({first} statements)"
        );

        // A second pass reads hint bits into the new rows; measure from the third.
        all_applied(&reconcile_roles(&c, &roles).await);
        all_applied(&reconcile_databases(pg, &c, &databases).await);
        let settled = traces(&c).await;
        for restarted in [false, true] {
            if restarted {
                // A restarted manager remembers nothing: the stored verifiers answer.
                forget_verified_passwords();
            }
            let before = executed_statements();
            let started = Instant::now();
            all_applied(&reconcile_roles(&c, &roles).await);
            all_applied(&reconcile_databases(pg, &c, &databases).await);
            apply_superuser_password(&c, &su).await.unwrap();
            println!(
                "idle pass (restarted: {restarted}): {:?}",
                started.elapsed()
            );
            assert_eq!(
                executed_statements() - before,
                0,
                "an idle pass runs nothing"
            );
            assert_eq!(traces(&c).await, settled, "no WAL, no row rewritten");
        }
        let row = c
            .query_one(
                "SELECT rolcreatedb, rolconnlimit, rolvaliduntil = '2030-01-01T00:00:00Z', \
                        shobj_description(oid, 'pg_authid'), \
                        (SELECT datconnlimit FROM pg_database WHERE datname = 'inventory') \
                   FROM pg_authid WHERE rolname = 'app'",
                &[],
            )
            .await
            .unwrap();
        assert_eq!(
            (
                row.get::<_, bool>(0),
                row.get::<_, i32>(1),
                row.get::<_, bool>(2),
                row.get::<_, String>(3),
                row.get::<_, i32>(4)
            ),
            (true, 5, true, "the app's role".to_string(), 7)
        );

        // The Secret written again with the same password: nothing.
        std::fs::write(&app_password, "first secret\n").unwrap();
        let before = executed_statements();
        all_applied(&reconcile_roles(&c, &roles).await);
        assert_eq!(executed_statements() - before, 0);

        // A changed Secret: exactly the password statement.
        std::fs::write(&app_password, "second secret\n").unwrap();
        let before = executed_statements();
        all_applied(&reconcile_roles(&c, &roles).await);
        assert_eq!(
            executed_statements() - before,
            1,
            "only ALTER ROLE … PASSWORD"
        );
        let changed = traces(&c).await;
        let new_verifier = password(&changed.1, "app").expect("a password is set");
        assert_ne!(Some(new_verifier.clone()), password(&settled.1, "app"));
        assert!(new_verifier.starts_with("SCRAM-SHA-256$"));
        let before = executed_statements();
        all_applied(&reconcile_roles(&c, &roles).await);
        assert_eq!(executed_statements() - before, 0, "and then nothing again");

        // Changed behind the operator's back: set back to the Secret's.
        c.batch_execute("ALTER ROLE app PASSWORD 'manual'")
            .await
            .unwrap();
        let before = executed_statements();
        all_applied(&reconcile_roles(&c, &roles).await);
        assert_eq!(executed_statements() - before, 1);

        // Another session holds the role's row: pending after the lock timeout, not stuck.
        let other = connect(pg, "postgres").await.unwrap();
        other
            .batch_execute("BEGIN; ALTER ROLE app CONNECTION LIMIT 6")
            .await
            .unwrap();
        roles[0].connection_limit = 8;
        let started = Instant::now();
        let results = reconcile_roles(&c, &roles).await;
        assert!(
            started.elapsed() < Duration::from_secs(6),
            "{:?}",
            started.elapsed()
        );
        let message = results[0].message.clone().unwrap_or_default();
        assert!(
            message.starts_with("pending: waiting for a lock"),
            "{results:?}"
        );
        other.batch_execute("ROLLBACK").await.unwrap();
        all_applied(&reconcile_roles(&c, &roles).await);

        // dataDurability: required with no standby connected: a change is pending, at once,
        // and nothing ran; with the standby requirement gone it is applied.
        for sql in [
            "ALTER SYSTEM SET synchronous_standby_names = 'ANY 1 (absent)'",
            "SELECT pg_reload_conf()",
        ] {
            c.batch_execute(sql).await.unwrap();
        }
        wait_for_setting(&c, "synchronous_standby_names", "ANY 1 (absent)").await;
        roles[0].connection_limit = 9;
        let before = executed_statements();
        let started = Instant::now();
        let results = reconcile_roles(&c, &roles).await;
        assert!(
            started.elapsed() < Duration::from_secs(4),
            "{:?}",
            started.elapsed()
        );
        assert!(!results[0].applied, "{results:?}");
        let message = results[0].message.clone().unwrap_or_default();
        assert!(
            message.starts_with("pending: waiting for a synchronous standby"),
            "{message}"
        );
        assert!(
            results[1].applied,
            "an object with nothing to do is applied: {results:?}"
        );
        assert_eq!(executed_statements() - before, 0);
        for sql in [
            "ALTER SYSTEM RESET synchronous_standby_names",
            "SELECT pg_reload_conf()",
        ] {
            c.batch_execute(sql).await.unwrap();
        }
        wait_for_setting(&c, "synchronous_standby_names", "").await;
        all_applied(&reconcile_roles(&c, &roles).await);
        let limit: i32 = c
            .query_one(
                "SELECT rolconnlimit FROM pg_roles WHERE rolname = 'app'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(limit, 9);
    });
    server.stop();
}

async fn wait_for_setting(c: &Client, name: &str, value: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let now: String = c
            .query_one("SELECT current_setting($1)", &[&name])
            .await
            .unwrap()
            .get(0);
        if now == value {
            return;
        }
        assert!(Instant::now() < deadline, "{name} is still {now:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
