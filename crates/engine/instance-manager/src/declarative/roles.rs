//! Managed roles (`spec.managed.roles`) and the `postgres` password: the catalog's roles read
//! in one query, diffed against the spec by [`diff_role`] (pure), and only the difference run.

use super::password::verifier_matches;
use super::plan::{apply_each, message, Executor, Failure, Statement};
use super::{ident, literal};
use pgherd_instance_protocol::{ApplyResult, PasswordSource, RoleSpec};
use std::collections::{BTreeMap, BTreeSet};
use tokio_postgres::Client;

/// Roles the operator or PostgreSQL own; never touched through `managed.roles`.
pub(crate) fn reserved(name: &str) -> bool {
    matches!(name, "postgres" | "streaming_replica")
        || name.starts_with("cnpg_")
        || name.starts_with("pg_")
}

/// How the stored password compares with the declared one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StoredPassword {
    /// `rolpassword` is NULL.
    Null,
    /// The stored verifier is the declared password's.
    Declared,
    /// Something else (or the spec declares none to compare with).
    Other,
}

/// A role as the catalog has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ObservedRole {
    pub superuser: bool,
    pub inherit: bool,
    pub createrole: bool,
    pub createdb: bool,
    pub login: bool,
    pub replication: bool,
    pub bypassrls: bool,
    pub connection_limit: i64,
    /// `VALID UNTIL` in microseconds since the epoch; `None`: never expires.
    pub valid_until: Option<i64>,
    pub comment: Option<String>,
    pub in_roles: BTreeSet<String>,
    pub password: StoredPassword,
}

impl ObservedRole {
    /// What `CREATE ROLE name` makes.
    pub fn fresh() -> Self {
        ObservedRole {
            superuser: false,
            inherit: true,
            createrole: false,
            createdb: false,
            login: false,
            replication: false,
            bypassrls: false,
            connection_limit: -1,
            valid_until: None,
            comment: None,
            in_roles: BTreeSet::new(),
            password: StoredPassword::Null,
        }
    }

    fn flags(&self) -> [(&'static str, bool); 7] {
        [
            ("LOGIN", self.login),
            ("SUPERUSER", self.superuser),
            ("CREATEDB", self.createdb),
            ("CREATEROLE", self.createrole),
            ("INHERIT", self.inherit),
            ("REPLICATION", self.replication),
            ("BYPASSRLS", self.bypassrls),
        ]
    }
}

fn wanted_flags(role: &RoleSpec) -> [(&'static str, bool); 7] {
    [
        ("LOGIN", role.login),
        ("SUPERUSER", role.superuser),
        ("CREATEDB", role.createdb),
        ("CREATEROLE", role.createrole),
        ("INHERIT", role.inherit),
        ("REPLICATION", role.replication),
        ("BYPASSRLS", role.bypassrls),
    ]
}

/// One `ALTER ROLE … WITH` option.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Attribute {
    Flag(&'static str, bool),
    ConnectionLimit(i64),
    /// The declared text (rendered) and its instant (compared); `None`: infinity.
    ValidUntil(Option<(String, i64)>),
}

/// One step from the observed role towards the declared one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RoleChange {
    Create,
    Drop,
    Alter(Vec<Attribute>),
    /// The password from the spec's file (read only when rendered).
    SetPassword,
    ClearPassword,
    Comment(Option<String>),
    Grant(String),
    Revoke(String),
}

/// The password step, if any: set only when the stored one is not the declared one.
pub(crate) fn password_change(
    source: &PasswordSource,
    stored: StoredPassword,
) -> Option<RoleChange> {
    match (source, stored) {
        (PasswordSource::Unchanged, _) => None,
        (PasswordSource::Disabled, StoredPassword::Null) => None,
        (PasswordSource::Disabled, _) => Some(RoleChange::ClearPassword),
        (PasswordSource::File { .. }, StoredPassword::Declared) => None,
        (PasswordSource::File { .. }, _) => Some(RoleChange::SetPassword),
    }
}

/// What turns `observed` (`None`: no such role) into `role`. `valid_until` is the declared
/// `VALID UNTIL` as an instant (microseconds since the epoch; `None`: never). Pure.
pub(crate) fn diff_role(
    role: &RoleSpec,
    valid_until: Option<i64>,
    observed: Option<&ObservedRole>,
) -> Vec<RoleChange> {
    let mut changes = Vec::new();
    let fresh = ObservedRole::fresh();
    let current = match (role.present, observed) {
        (false, None) => return changes,
        (false, Some(_)) => return vec![RoleChange::Drop],
        (true, Some(o)) => o,
        (true, None) => {
            changes.push(RoleChange::Create);
            &fresh
        }
    };
    let mut attributes: Vec<Attribute> = wanted_flags(role)
        .into_iter()
        .zip(current.flags())
        .filter(|(wanted, have)| wanted.1 != have.1)
        .map(|((word, on), _)| Attribute::Flag(word, on))
        .collect();
    if role.connection_limit != current.connection_limit {
        attributes.push(Attribute::ConnectionLimit(role.connection_limit));
    }
    if valid_until != current.valid_until {
        attributes.push(Attribute::ValidUntil(
            valid_until.and_then(|t| role.valid_until.clone().map(|text| (text, t))),
        ));
    }
    if !attributes.is_empty() {
        changes.push(RoleChange::Alter(attributes));
    }
    changes.extend(password_change(&role.password, current.password));
    // An empty comment is no comment (`COMMENT … IS ''` removes it).
    let comment = role.comment.clone().filter(|c| !c.is_empty());
    if comment != current.comment {
        changes.push(RoleChange::Comment(comment));
    }
    let wanted: BTreeSet<&String> = role.in_roles.iter().collect();
    for parent in &wanted {
        if !current.in_roles.contains(*parent) {
            changes.push(RoleChange::Grant((*parent).clone()));
        }
    }
    for parent in &current.in_roles {
        if !wanted.contains(parent) {
            changes.push(RoleChange::Revoke(parent.clone()));
        }
    }
    changes
}

/// The password in `source`'s file, without its trailing newlines.
pub(crate) fn read_password(source: &PasswordSource) -> Result<Option<String>, Failure> {
    match source {
        PasswordSource::File { path } => std::fs::read_to_string(path)
            .map(|p| Some(p.trim_end_matches('\n').to_string()))
            .map_err(|e| Failure::Failed(format!("cannot read the password file: {e}"))),
        PasswordSource::Unchanged | PasswordSource::Disabled => Ok(None),
    }
}

/// One statement per change.
pub(crate) fn render(
    name: &str,
    source: &PasswordSource,
    changes: &[RoleChange],
) -> Result<Vec<Statement>, Failure> {
    let role = ident(name)?;
    let mut out = Vec::new();
    for change in changes {
        out.push(match change {
            RoleChange::Create => Statement::new(format!("CREATE ROLE {role}")),
            RoleChange::Drop => Statement::new(format!("DROP ROLE {role}")),
            RoleChange::Alter(attributes) => {
                let mut words = Vec::new();
                for a in attributes {
                    words.push(match a {
                        Attribute::Flag(word, true) => (*word).to_string(),
                        Attribute::Flag(word, false) => format!("NO{word}"),
                        Attribute::ConnectionLimit(n) => format!("CONNECTION LIMIT {n}"),
                        Attribute::ValidUntil(Some((text, _))) => {
                            format!("VALID UNTIL {}", literal(text)?)
                        }
                        Attribute::ValidUntil(None) => "VALID UNTIL 'infinity'".to_string(),
                    });
                }
                Statement::new(format!("ALTER ROLE {role} WITH {}", words.join(" ")))
            }
            RoleChange::SetPassword => {
                let password = read_password(source)?.unwrap_or_default();
                Statement::secret(format!(
                    "ALTER ROLE {role} WITH PASSWORD {}",
                    literal(&password)?
                ))
            }
            RoleChange::ClearPassword => {
                Statement::new(format!("ALTER ROLE {role} WITH PASSWORD NULL"))
            }
            RoleChange::Comment(comment) => Statement::new(format!(
                "COMMENT ON ROLE {role} IS {}",
                match comment {
                    Some(c) => literal(c)?,
                    None => "NULL".to_string(),
                }
            )),
            RoleChange::Grant(parent) => {
                Statement::new(format!("GRANT {} TO {role}", ident(parent)?))
            }
            RoleChange::Revoke(parent) => {
                Statement::new(format!("REVOKE {} FROM {role}", ident(parent)?))
            }
        });
    }
    Ok(out)
}

/// A role's row, with its stored verifier still to be compared.
struct Row {
    role: ObservedRole,
    verifier: Option<String>,
}

/// The named roles as the catalog has them (a name not there is missing from the map).
async fn read_roles(client: &Client, names: &[&str]) -> Result<BTreeMap<String, Row>, Failure> {
    let rows = super::plan::timed_query(
        client,
        "the roles",
        "SELECT a.rolname, a.rolsuper, a.rolinherit, a.rolcreaterole, a.rolcreatedb, \
                a.rolcanlogin, a.rolreplication, a.rolbypassrls, a.rolconnlimit::int8, \
                CASE WHEN a.rolvaliduntil IS NULL OR a.rolvaliduntil = 'infinity' THEN NULL \
                     WHEN a.rolvaliduntil = '-infinity' THEN (-9223372036854775807)::int8 \
                     ELSE round(extract(epoch FROM a.rolvaliduntil) * 1000000)::int8 END, \
                pg_catalog.shobj_description(a.oid, 'pg_authid'), a.rolpassword, \
                ARRAY(SELECT g.rolname::text FROM pg_catalog.pg_auth_members m \
                      JOIN pg_catalog.pg_authid g ON g.oid = m.roleid \
                      WHERE m.member = a.oid) \
           FROM pg_catalog.pg_authid a WHERE a.rolname = ANY($1::text[])",
        names,
    )
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| {
            let in_roles: Vec<String> = r.get(12);
            (
                r.get::<_, String>(0),
                Row {
                    role: ObservedRole {
                        superuser: r.get(1),
                        inherit: r.get(2),
                        createrole: r.get(3),
                        createdb: r.get(4),
                        login: r.get(5),
                        replication: r.get(6),
                        bypassrls: r.get(7),
                        connection_limit: r.get(8),
                        valid_until: r.get(9),
                        comment: r.get(10),
                        in_roles: in_roles.into_iter().collect(),
                        password: StoredPassword::Other,
                    },
                    verifier: r.get(11),
                },
            )
        })
        .collect())
}

/// How `verifier` compares with the password `source` declares for `role`.
fn classify(
    role: &str,
    verifier: Option<&str>,
    source: &PasswordSource,
) -> Result<StoredPassword, Failure> {
    let Some(verifier) = verifier else {
        return Ok(StoredPassword::Null);
    };
    Ok(match read_password(source)? {
        Some(password) if verifier_matches(verifier, role, password.as_bytes()) => {
            StoredPassword::Declared
        }
        _ => StoredPassword::Other,
    })
}

/// The declared `VALID UNTIL` as an instant: RFC 3339 (what the API carries) is read here;
/// anything else PostgreSQL accepts is read by the server.
async fn valid_until(client: &Client, role: &RoleSpec) -> Result<Option<i64>, Failure> {
    let Some(text) = &role.valid_until else {
        return Ok(None);
    };
    if text.trim().eq_ignore_ascii_case("infinity") {
        return Ok(None);
    }
    if let Ok(t) = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
    {
        return i64::try_from(t.unix_timestamp_nanos() / 1000)
            .map(Some)
            .map_err(|_| Failure::Failed("validUntil is out of range".into()));
    }
    let row = client
        .query_one(
            "SELECT round(extract(epoch FROM $1::text::timestamptz) * 1000000)::int8",
            &[text],
        )
        .await
        .map_err(|e| Failure::Failed(format!("validUntil: {}", message(&e))))?;
    Ok(row.get(0))
}

/// Apply every managed role; one result per role.
pub async fn reconcile_roles(client: &Client, roles: &[RoleSpec]) -> Vec<ApplyResult> {
    let names: Vec<&str> = roles.iter().map(|r| r.name.as_str()).collect();
    let observed = read_roles(client, &names).await;
    apply_each(
        client,
        roles,
        observed,
        |role| &role.name,
        async |executor, role, observed| apply_role(client, executor, role, observed).await,
    )
    .await
}

async fn apply_role(
    client: &Client,
    executor: &mut Executor<'_>,
    role: &RoleSpec,
    observed: &BTreeMap<String, Row>,
) -> Result<(), Failure> {
    if reserved(&role.name) {
        return Err(Failure::Failed(format!("{:?} is reserved", role.name)));
    }
    let current = match observed.get(&role.name) {
        // A role to drop needs no password comparison (nor a readable password file).
        Some(row) if !role.present => Some(row.role.clone()),
        Some(row) => Some(ObservedRole {
            password: classify(&role.name, row.verifier.as_deref(), &role.password)?,
            ..row.role.clone()
        }),
        None => None,
    };
    let until = if role.present {
        valid_until(client, role).await?
    } else {
        None
    };
    let changes = diff_role(role, until, current.as_ref());
    executor
        .run_all(&render(&role.name, &role.password, &changes)?)
        .await
}

/// The `postgres` role's password as `source` says (`enableSuperuserAccess`), set only when
/// the stored verifier is not the declared password's.
pub async fn apply_superuser_password(
    client: &Client,
    source: &PasswordSource,
) -> Result<(), String> {
    if *source == PasswordSource::Unchanged {
        return Ok(());
    }
    let observed = read_roles(client, &["postgres"]).await.map_err(text)?;
    let verifier = observed.get("postgres").and_then(|r| r.verifier.as_deref());
    let stored = classify("postgres", verifier, source).map_err(text)?;
    let changes: Vec<RoleChange> = password_change(source, stored).into_iter().collect();
    let statements = render("postgres", source, &changes).map_err(text)?;
    let mut executor = Executor::new(client);
    let outcome = executor.run_all(&statements).await;
    executor.finish().await;
    outcome.map_err(text)
}

fn text(f: Failure) -> String {
    match f {
        Failure::Pending(m) => format!("pending: {m}"),
        Failure::Failed(m) => m,
    }
}

#[cfg(test)]
#[path = "roles_tests.rs"]
mod tests;
