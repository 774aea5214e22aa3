//! The database and contents diffs against a model of what each change does.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

use super::*;
use pgherd_instance_protocol::{ExtensionSpec, SchemaSpec};
use proptest::prelude::*;

fn spec(name: &str, owner: &str) -> DatabaseSpec {
    DatabaseSpec::owned_by(&format!("{name}-object"), name, owner)
}

fn apply(
    mut db: Option<ObservedDatabase>,
    spec: &DatabaseSpec,
    changes: &[DatabaseChange],
) -> Option<ObservedDatabase> {
    for change in changes {
        match change {
            DatabaseChange::Create => {
                assert!(db.is_none());
                db = Some(created(spec));
            }
            DatabaseChange::Drop => {
                assert!(db.take().is_some());
            }
            DatabaseChange::Owner(o) => db.as_mut().unwrap().owner = o.clone(),
            DatabaseChange::Tablespace(t) => db.as_mut().unwrap().tablespace = t.clone(),
            DatabaseChange::Options(options) => {
                assert!(!options.is_empty());
                let d = db.as_mut().unwrap();
                for o in options {
                    match o {
                        DatabaseOption::AllowConnections(v) => d.allow_connections = *v,
                        DatabaseOption::ConnectionLimit(v) => d.connection_limit = *v,
                        DatabaseOption::IsTemplate(v) => d.is_template = *v,
                    }
                }
            }
        }
    }
    db
}

fn apply_contents(mut c: ObservedContents, changes: &[ContentChange]) -> ObservedContents {
    for change in changes {
        match change {
            ContentChange::CreateSchema { name, owner } => {
                assert!(c.schemas.insert(name.clone(), owner.clone()).is_none());
            }
            ContentChange::SchemaOwner { name, owner } => {
                *c.schemas.get_mut(name).unwrap() = owner.clone();
            }
            ContentChange::DropSchema(name) => assert!(c.schemas.remove(name).is_some()),
            ContentChange::CreateExtension {
                name,
                schema,
                version,
            } => {
                let e = ObservedExtension {
                    version: version.clone().unwrap_or_else(|| "default".into()),
                    schema: schema.clone().unwrap_or_else(|| "public".into()),
                };
                assert!(c.extensions.insert(name.clone(), e).is_none());
            }
            ContentChange::UpdateExtension { name, version } => {
                c.extensions.get_mut(name).unwrap().version = version.clone();
            }
            ContentChange::ExtensionSchema { name, schema } => {
                c.extensions.get_mut(name).unwrap().schema = schema.clone();
            }
            ContentChange::DropExtension(name) => assert!(c.extensions.remove(name).is_some()),
        }
    }
    c
}

fn word() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("a".to_string()),
        Just("b".to_string()),
        Just("x'\"y".to_string())
    ]
}

prop_compose! {
    fn arb_spec()(
        present in any::<bool>(),
        owner in word(),
        tablespace in proptest::option::of(word()),
        allow in proptest::option::of(any::<bool>()),
        limit in proptest::option::of(-1i64..2),
        template in proptest::option::of(any::<bool>()),
        schemas in proptest::collection::btree_map(word(), (any::<bool>(), proptest::option::of(word())), 0..3),
        extensions in proptest::collection::btree_map(word(), (any::<bool>(), proptest::option::of(word()), proptest::option::of(word())), 0..3),
    ) -> DatabaseSpec {
        let mut db = spec("d", &owner);
        db.present = present;
        db.tablespace = tablespace;
        db.allow_connections = allow;
        db.connection_limit = limit;
        db.is_template = template;
        db.schemas = schemas.into_iter().map(|(name, (present, owner))| SchemaSpec { name, present, owner }).collect();
        db.extensions = extensions
            .into_iter()
            .map(|(name, (present, version, schema))| ExtensionSpec { name, present, version, schema })
            .collect();
        db
    }
}

prop_compose! {
    fn arb_observed()(
        owner in word(), tablespace in word(), allow in any::<bool>(), limit in -1i64..2,
        template in any::<bool>(),
    ) -> ObservedDatabase {
        ObservedDatabase { owner, connection_limit: limit, allow_connections: allow, is_template: template, tablespace }
    }
}

prop_compose! {
    fn arb_contents()(
        schemas in proptest::collection::btree_map(word(), word(), 0..3),
        extensions in proptest::collection::btree_map(word(), (word(), word()), 0..3),
    ) -> ObservedContents {
        ObservedContents {
            schemas,
            extensions: extensions.into_iter().map(|(n, (version, schema))| (n, ObservedExtension { version, schema })).collect(),
        }
    }
}

fn satisfies(db: &DatabaseSpec, o: Option<&ObservedDatabase>) -> bool {
    match (db.present, o) {
        (false, o) => o.is_none(),
        (true, None) => false,
        (true, Some(o)) => {
            o.owner == db.owner
                && db.tablespace.as_ref().is_none_or(|t| *t == o.tablespace)
                && db
                    .allow_connections
                    .is_none_or(|v| v == o.allow_connections)
                && db.connection_limit.is_none_or(|v| v == o.connection_limit)
                && db.is_template.is_none_or(|v| v == o.is_template)
        }
    }
}

fn contents_satisfy(db: &DatabaseSpec, c: &ObservedContents) -> bool {
    db.schemas.iter().all(|s| match c.schemas.get(&s.name) {
        Some(owner) => s.present && *owner == *s.owner.as_ref().unwrap_or(&db.owner),
        None => !s.present,
    }) && db
        .extensions
        .iter()
        .all(|e| match c.extensions.get(&e.name) {
            Some(have) => {
                e.present
                    && e.version.as_ref().is_none_or(|v| *v == have.version)
                    && e.schema.as_ref().is_none_or(|s| *s == have.schema)
            }
            None => !e.present,
        })
}

proptest! {
    #[test]
    fn the_plan_reaches_the_declared_database(db in arb_spec(), observed in proptest::option::of(arb_observed())) {
        let changes = diff_database(&db, observed.as_ref());
        let after = apply(observed.clone(), &db, &changes);
        prop_assert!(satisfies(&db, after.as_ref()), "{changes:?} left {after:?}");
        prop_assert_eq!(diff_database(&db, after.as_ref()), vec![]);
        prop_assert_eq!(changes.is_empty(), satisfies(&db, observed.as_ref()));
    }

    #[test]
    fn the_plan_reaches_the_declared_contents(db in arb_spec(), observed in arb_contents()) {
        let changes = diff_contents(&db, &observed);
        let after = apply_contents(observed.clone(), &changes);
        prop_assert!(contents_satisfy(&db, &after), "{changes:?} left {after:?}");
        prop_assert_eq!(diff_contents(&db, &after), vec![]);
        prop_assert_eq!(changes.is_empty(), contents_satisfy(&db, &observed));
    }
}

#[test]
fn a_database_as_declared_needs_nothing() {
    let mut db = spec("inventory", "app");
    db.connection_limit = Some(7);
    let observed = ObservedDatabase {
        connection_limit: 7,
        ..created(&db)
    };
    assert_eq!(diff_database(&db, Some(&observed)), vec![]);
    db.schemas = vec![SchemaSpec {
        name: "stock".into(),
        present: true,
        owner: None,
    }];
    let contents = ObservedContents {
        schemas: [("stock".to_string(), "app".to_string())].into(),
        ..Default::default()
    };
    assert_eq!(diff_contents(&db, &contents), vec![]);
}

#[test]
fn a_new_database_is_created_with_its_options() {
    let mut db = spec("x'; DROP DATABASE postgres; --", "o\"wner");
    db.template = Some("template0".into());
    db.encoding = Some("UTF8".into());
    db.connection_limit = Some(3);
    let changes = diff_database(&db, None);
    assert_eq!(
        changes,
        vec![
            DatabaseChange::Create,
            DatabaseChange::Options(vec![DatabaseOption::ConnectionLimit(3)])
        ]
    );
    let sql: Vec<String> = render_database(&db, &changes)
        .unwrap()
        .into_iter()
        .map(|s| s.sql)
        .collect();
    assert_eq!(
        sql,
        vec![
            "CREATE DATABASE \"x'; DROP DATABASE postgres; --\" OWNER \"o\"\"wner\" TEMPLATE \"template0\" ENCODING 'UTF8'".to_string(),
            "ALTER DATABASE \"x'; DROP DATABASE postgres; --\" WITH CONNECTION LIMIT 3".to_string(),
        ]
    );
}

#[test]
fn schemas_are_dropped_after_extensions() {
    let mut db = spec("d", "app");
    db.schemas = vec![SchemaSpec {
        name: "old".into(),
        present: false,
        owner: None,
    }];
    db.extensions = vec![ExtensionSpec {
        name: "hstore".into(),
        present: false,
        version: None,
        schema: None,
    }];
    let contents = ObservedContents {
        schemas: [("old".to_string(), "app".to_string())].into(),
        extensions: [(
            "hstore".to_string(),
            ObservedExtension {
                version: "1.8".into(),
                schema: "old".into(),
            },
        )]
        .into(),
    };
    let sql: Vec<String> = render_contents(&diff_contents(&db, &contents))
        .unwrap()
        .into_iter()
        .map(|s| s.sql)
        .collect();
    assert_eq!(
        sql,
        vec![
            "DROP EXTENSION \"hstore\"".to_string(),
            "DROP SCHEMA \"old\"".to_string()
        ]
    );
}
