//! The role diff: a model of what each change does to a role, so "applying the plan yields
//! the declared role" and "a role already as declared yields no plan" are checked over
//! arbitrary specs and catalog states.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

use super::*;
use proptest::prelude::*;
use std::path::PathBuf;

fn spec(name: &str) -> RoleSpec {
    RoleSpec::login(name)
}

/// What PostgreSQL does with each change, on the model.
fn apply(mut role: Option<ObservedRole>, changes: &[RoleChange]) -> Option<ObservedRole> {
    for change in changes {
        match change {
            RoleChange::Create => {
                assert!(role.is_none(), "CREATE ROLE of an existing role");
                role = Some(ObservedRole::fresh());
            }
            RoleChange::Drop => {
                assert!(role.is_some(), "DROP ROLE of a missing role");
                role = None;
            }
            other => {
                let r = role.as_mut().expect("a change to a missing role");
                match other {
                    RoleChange::Alter(attributes) => {
                        assert!(!attributes.is_empty());
                        for a in attributes {
                            match a {
                                Attribute::Flag(word, on) => {
                                    let on = *on;
                                    match *word {
                                        "LOGIN" => r.login = on,
                                        "SUPERUSER" => r.superuser = on,
                                        "CREATEDB" => r.createdb = on,
                                        "CREATEROLE" => r.createrole = on,
                                        "INHERIT" => r.inherit = on,
                                        "REPLICATION" => r.replication = on,
                                        "BYPASSRLS" => r.bypassrls = on,
                                        w => panic!("unknown flag {w}"),
                                    }
                                }
                                Attribute::ConnectionLimit(n) => r.connection_limit = *n,
                                Attribute::ValidUntil(v) => r.valid_until = v.as_ref().map(|v| v.1),
                            }
                        }
                    }
                    RoleChange::SetPassword => r.password = StoredPassword::Declared,
                    RoleChange::ClearPassword => r.password = StoredPassword::Null,
                    RoleChange::Comment(c) => r.comment = c.clone(),
                    RoleChange::Grant(p) => assert!(r.in_roles.insert(p.clone())),
                    RoleChange::Revoke(p) => assert!(r.in_roles.remove(p)),
                    RoleChange::Create | RoleChange::Drop => unreachable!(),
                }
            }
        }
    }
    role
}

fn names() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("a".to_string()),
        Just("b".to_string()),
        Just("c\"; x".to_string())
    ]
}

fn password_source() -> impl Strategy<Value = PasswordSource> {
    prop_oneof![
        Just(PasswordSource::Unchanged),
        Just(PasswordSource::Disabled),
        Just(PasswordSource::File {
            path: PathBuf::from("/nonexistent")
        }),
    ]
}

fn stored_password() -> impl Strategy<Value = StoredPassword> {
    prop_oneof![
        Just(StoredPassword::Null),
        Just(StoredPassword::Declared),
        Just(StoredPassword::Other)
    ]
}

fn instant() -> impl Strategy<Value = Option<i64>> {
    prop_oneof![Just(None), (0i64..3).prop_map(|t| Some(t * 1_000_000))]
}

prop_compose! {
    fn arb_spec()(
        present in any::<bool>(),
        flags in proptest::array::uniform7(any::<bool>()),
        connection_limit in -1i64..3,
        comment in proptest::option::of(prop_oneof![Just("x".to_string()), Just("it's".to_string()), Just(String::new())]),
        in_roles in proptest::collection::btree_set(names(), 0..3),
        password in password_source(),
        until in instant(),
    ) -> (RoleSpec, Option<i64>) {
        let mut role = spec("r");
        role.present = present;
        [role.login, role.superuser, role.createdb, role.createrole, role.inherit,
         role.replication, role.bypassrls] = flags;
        role.connection_limit = connection_limit;
        role.comment = comment;
        role.in_roles = in_roles.into_iter().collect();
        role.password = password;
        role.valid_until = until.map(|t| format!("1970-01-01T00:00:0{}Z", t / 1_000_000));
        (role, until)
    }
}

prop_compose! {
    fn arb_observed()(
        flags in proptest::array::uniform7(any::<bool>()),
        connection_limit in -1i64..3,
        comment in proptest::option::of(prop_oneof![Just("x".to_string()), Just("y".to_string())]),
        in_roles in proptest::collection::btree_set(names(), 0..3),
        password in stored_password(),
        valid_until in instant(),
    ) -> ObservedRole {
        let [login, superuser, createdb, createrole, inherit, replication, bypassrls] = flags;
        ObservedRole {
            login, superuser, createdb, createrole, inherit, replication, bypassrls,
            connection_limit, valid_until, comment, in_roles, password,
        }
    }
}

/// Whether `observed` is what `role` declares (a password the spec leaves alone may be
/// anything).
fn satisfies(role: &RoleSpec, until: Option<i64>, observed: Option<&ObservedRole>) -> bool {
    match (role.present, observed) {
        (false, o) => o.is_none(),
        (true, None) => false,
        (true, Some(o)) => {
            let password_ok = match role.password {
                PasswordSource::Unchanged => true,
                PasswordSource::Disabled => o.password == StoredPassword::Null,
                PasswordSource::File { .. } => o.password == StoredPassword::Declared,
            };
            wanted_flags(role) == o.flags()
                && role.connection_limit == o.connection_limit
                && until == o.valid_until
                && role.comment.clone().filter(|c| !c.is_empty()) == o.comment
                && role.in_roles.iter().cloned().collect::<BTreeSet<_>>() == o.in_roles
                && password_ok
        }
    }
}

proptest! {
    #[test]
    fn the_plan_reaches_the_declared_role(
        (role, until) in arb_spec(),
        observed in proptest::option::of(arb_observed()),
    ) {
        let changes = diff_role(&role, until, observed.as_ref());
        let after = apply(observed.clone(), &changes);
        prop_assert!(satisfies(&role, until, after.as_ref()), "{changes:?} left {after:?}");
        // Once there, nothing more to do.
        prop_assert_eq!(diff_role(&role, until, after.as_ref()), vec![]);
        // Nothing to do exactly when it was already there.
        prop_assert_eq!(changes.is_empty(), satisfies(&role, until, observed.as_ref()));
    }
}

#[test]
fn a_role_as_declared_needs_nothing() {
    let mut role = spec("app");
    role.password = PasswordSource::File { path: "/x".into() };
    role.in_roles = vec!["readers".into()];
    role.comment = Some("c".into());
    let observed = ObservedRole {
        login: true,
        comment: Some("c".into()),
        in_roles: ["readers".to_string()].into(),
        password: StoredPassword::Declared,
        ..ObservedRole::fresh()
    };
    assert_eq!(diff_role(&role, None, Some(&observed)), vec![]);
}

#[test]
fn a_changed_secret_sets_only_the_password() {
    let mut role = spec("app");
    role.password = PasswordSource::File { path: "/x".into() };
    let observed = ObservedRole {
        login: true,
        password: StoredPassword::Other,
        ..ObservedRole::fresh()
    };
    assert_eq!(
        diff_role(&role, None, Some(&observed)),
        vec![RoleChange::SetPassword]
    );
}

#[test]
fn a_new_role_is_created_then_altered() {
    let mut role = spec("app");
    role.connection_limit = 4;
    role.in_roles = vec!["readers".into()];
    assert_eq!(
        diff_role(&role, None, None),
        vec![
            RoleChange::Create,
            RoleChange::Alter(vec![
                Attribute::Flag("LOGIN", true),
                Attribute::ConnectionLimit(4)
            ]),
            RoleChange::Grant("readers".into()),
        ]
    );
    role.present = false;
    assert_eq!(diff_role(&role, None, None), vec![]);
    assert_eq!(
        diff_role(&role, None, Some(&ObservedRole::fresh())),
        vec![RoleChange::Drop]
    );
}

#[test]
fn rendered_statements_quote_every_name_and_value() {
    let changes = vec![
        RoleChange::Create,
        RoleChange::Alter(vec![
            Attribute::Flag("LOGIN", false),
            Attribute::ValidUntil(Some(("2030-01-01T00:00:00Z".into(), 0))),
            Attribute::ValidUntil(None),
        ]),
        RoleChange::Comment(Some("it's".into())),
        RoleChange::Comment(None),
        RoleChange::Grant("a\"b".into()),
        RoleChange::Revoke("c".into()),
        RoleChange::ClearPassword,
    ];
    let sql: Vec<String> = render("x\"; DROP ROLE y; --", &PasswordSource::Unchanged, &changes)
        .unwrap()
        .into_iter()
        .map(|s| s.sql)
        .collect();
    let role = "\"x\"\"; DROP ROLE y; --\"";
    assert_eq!(
        sql,
        vec![
            format!("CREATE ROLE {role}"),
            format!("ALTER ROLE {role} WITH NOLOGIN VALID UNTIL '2030-01-01T00:00:00Z' VALID UNTIL 'infinity'"),
            format!("COMMENT ON ROLE {role} IS 'it''s'"),
            format!("COMMENT ON ROLE {role} IS NULL"),
            format!("GRANT \"a\"\"b\" TO {role}"),
            format!("REVOKE \"c\" FROM {role}"),
            format!("ALTER ROLE {role} WITH PASSWORD NULL"),
        ]
    );
}

#[test]
fn a_password_statement_is_secret_and_reads_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pw");
    std::fs::write(&path, "it's\n").unwrap();
    let source = PasswordSource::File { path: path.clone() };
    let statements = render("app", &source, &[RoleChange::SetPassword]).unwrap();
    assert_eq!(statements.len(), 1);
    assert!(statements[0].secret);
    assert_eq!(
        statements[0].sql,
        "ALTER ROLE \"app\" WITH PASSWORD 'it''s'"
    );
    std::fs::remove_file(&path).unwrap();
    assert!(matches!(
        render("app", &source, &[RoleChange::SetPassword]),
        Err(Failure::Failed(m)) if m.contains("password file")
    ));
}
