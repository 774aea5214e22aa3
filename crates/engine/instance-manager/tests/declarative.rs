//! Managed roles and databases on real PostgreSQL 15, with hostile names: created literally,
//! altered, memberships granted and revoked, databases with schemas and extensions, dropped;
//! one bad object reports its error and does not stop the others.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

use pgherd_instance_manager::declarative::{reconcile_databases, reconcile_roles};
use pgherd_instance_manager::observe::connect;
use pgherd_instance_protocol::{DatabaseSpec, ExtensionSpec, PasswordSource, RoleSpec, SchemaSpec};

const HOSTILE: &str = "a\"; DROP ROLE victim; --";

fn role(name: &str) -> RoleSpec {
    RoleSpec::login(name)
}

fn database(object: &str, name: &str, owner: &str) -> DatabaseSpec {
    DatabaseSpec::owned_by(object, name, owner)
}

#[test]
fn roles_and_databases_with_hostile_names() {
    let server = pgherd_testkit::TestServer::start();
    let pg = &server.pg;
    let password_file = server.dir().join("pw");
    std::fs::write(&password_file, "it's a \\secret\n").unwrap();

    let rt = pgherd_testkit::runtime();
    rt.block_on(async {
        let c = connect(pg, "postgres").await.unwrap();
        c.batch_execute("CREATE ROLE victim; CREATE ROLE readers").await.unwrap();

        let mut hostile = role(HOSTILE);
        hostile.in_roles = vec!["readers".into()];
        hostile.createdb = true;
        hostile.connection_limit = 5;
        hostile.comment = Some("it's hostile".into());
        hostile.password = PasswordSource::File { path: password_file.clone() };
        let results = reconcile_roles(&c, &[hostile.clone(), role("postgres"), role("app_user")]).await;
        assert!(results[0].applied, "{results:?}");
        assert!(!results[1].applied && results[1].message.as_deref().unwrap_or("").contains("reserved"));
        assert!(results[2].applied, "one failure does not stop the others");

        let victim: i64 = c.query_one("SELECT count(*) FROM pg_roles WHERE rolname = 'victim'", &[]).await.unwrap().get(0);
        assert_eq!(victim, 1, "the hostile name was not executed");
        let row = c
            .query_one("SELECT rolcanlogin, rolcreatedb, rolconnlimit, rolpassword IS NOT NULL FROM pg_authid WHERE rolname = $1", &[&HOSTILE])
            .await
            .unwrap();
        assert_eq!((row.get::<_, bool>(0), row.get::<_, bool>(1), row.get::<_, i32>(2), row.get::<_, bool>(3)), (true, true, 5, true));
        let member: i64 = c
            .query_one("SELECT count(*) FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid JOIN pg_roles r ON r.oid = m.member WHERE g.rolname = 'readers' AND r.rolname = $1", &[&HOSTILE])
            .await
            .unwrap()
            .get(0);
        assert_eq!(member, 1);

        // Alter: membership revoked, login off.
        hostile.in_roles.clear();
        hostile.login = false;
        assert!(reconcile_roles(&c, std::slice::from_ref(&hostile)).await[0].applied);
        let row = c.query_one("SELECT rolcanlogin, (SELECT count(*) FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.member WHERE r.rolname = $1) FROM pg_roles WHERE rolname = $1", &[&HOSTILE]).await.unwrap();
        assert_eq!((row.get::<_, bool>(0), row.get::<_, i64>(1)), (false, 0));

        // A database with a hostile name, owned by the hostile role, with a schema and an extension.
        let mut db = database("db-object", "x'; DROP DATABASE postgres; --", HOSTILE);
        db.schemas = vec![SchemaSpec { name: "S p a c e".into(), present: true, owner: None }];
        db.extensions = vec![ExtensionSpec { name: "hstore".into(), present: true, version: None, schema: Some("S p a c e".into()) }];
        db.connection_limit = Some(7);
        let results = reconcile_databases(pg, &c, &[db.clone(), database("bad", "other", "no_such_owner")]).await;
        assert!(results[0].applied, "{results:?}");
        assert!(!results[1].applied);
        assert!(results[1].message.as_deref().unwrap_or("").contains("no_such_owner"), "{results:?}");
        let row = c.query_one("SELECT pg_get_userbyid(datdba), datconnlimit FROM pg_database WHERE datname = $1", &[&db.name]).await.unwrap();
        assert_eq!((row.get::<_, String>(0), row.get::<_, i32>(1)), (HOSTILE.to_string(), 7));
        let inner = connect(pg, &db.name).await.unwrap();
        let ext_schema: String = inner.query_one("SELECT n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace WHERE extname = 'hstore'", &[]).await.unwrap().get(0);
        assert_eq!(ext_schema, "S p a c e");
        drop(inner);

        // Idempotent, then dropped; the role goes last.
        assert!(reconcile_databases(pg, &c, std::slice::from_ref(&db)).await[0].applied);
        db.present = false;
        assert!(reconcile_databases(pg, &c, &[db.clone()]).await[0].applied);
        let n: i64 = c.query_one("SELECT count(*) FROM pg_database WHERE datname = $1", &[&db.name]).await.unwrap().get(0);
        assert_eq!(n, 0);
        hostile.present = false;
        assert!(reconcile_roles(&c, &[hostile]).await[0].applied);
        let n: i64 = c.query_one("SELECT count(*) FROM pg_roles WHERE rolname = $1", &[&HOSTILE]).await.unwrap().get(0);
        assert_eq!(n, 0);
        let n: i64 = c.query_one("SELECT count(*) FROM pg_database WHERE datname = 'postgres'", &[]).await.unwrap().get(0);
        assert_eq!(n, 1);
    });
    server.stop();
}
