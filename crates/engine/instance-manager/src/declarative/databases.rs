//! `Database` objects: the database itself (owner, tablespace, connection limit, allow
//! connections, template flag) read from `pg_database`, and the schemas and extensions it
//! declares read inside it; each diffed against the spec by a pure function ([`diff_database`],
//! [`diff_contents`]) and only the difference run.

use super::plan::{apply_each, Executor, Failure, Statement};
use super::{ident, literal};
use crate::observe::connect;
use crate::Postgres;
use pgherd_instance_protocol::{ApplyResult, DatabaseSpec};
use std::collections::BTreeMap;
use tokio_postgres::Client;

/// A database as `pg_database` has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ObservedDatabase {
    pub owner: String,
    pub connection_limit: i64,
    pub allow_connections: bool,
    pub is_template: bool,
    pub tablespace: String,
}

/// One `ALTER DATABASE … WITH` option.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum DatabaseOption {
    AllowConnections(bool),
    ConnectionLimit(i64),
    IsTemplate(bool),
}

/// One step from the observed database towards the declared one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum DatabaseChange {
    /// `CREATE DATABASE` with every creation option the spec gives.
    Create,
    Drop,
    Owner(String),
    Tablespace(String),
    Options(Vec<DatabaseOption>),
}

/// What `CREATE DATABASE` makes of `db`.
pub(crate) fn created(db: &DatabaseSpec) -> ObservedDatabase {
    ObservedDatabase {
        owner: db.owner.clone(),
        connection_limit: -1,
        allow_connections: true,
        is_template: false,
        tablespace: db
            .tablespace
            .clone()
            .unwrap_or_else(|| "pg_default".to_string()),
    }
}

/// What turns `observed` (`None`: no such database) into `db`; settings the spec leaves out
/// are left as they are. Pure.
pub(crate) fn diff_database(
    db: &DatabaseSpec,
    observed: Option<&ObservedDatabase>,
) -> Vec<DatabaseChange> {
    let fresh;
    let mut changes = Vec::new();
    let current = match (db.present, observed) {
        (false, None) => return changes,
        (false, Some(_)) => return vec![DatabaseChange::Drop],
        (true, Some(o)) => o,
        (true, None) => {
            changes.push(DatabaseChange::Create);
            fresh = created(db);
            &fresh
        }
    };
    if db.owner != current.owner {
        changes.push(DatabaseChange::Owner(db.owner.clone()));
    }
    if let Some(t) = db.tablespace.as_ref().filter(|t| **t != current.tablespace) {
        changes.push(DatabaseChange::Tablespace(t.clone()));
    }
    let mut options = Vec::new();
    if let Some(v) = db
        .allow_connections
        .filter(|v| *v != current.allow_connections)
    {
        options.push(DatabaseOption::AllowConnections(v));
    }
    if let Some(v) = db
        .connection_limit
        .filter(|v| *v != current.connection_limit)
    {
        options.push(DatabaseOption::ConnectionLimit(v));
    }
    if let Some(v) = db.is_template.filter(|v| *v != current.is_template) {
        options.push(DatabaseOption::IsTemplate(v));
    }
    if !options.is_empty() {
        changes.push(DatabaseChange::Options(options));
    }
    changes
}

/// An extension as `pg_extension` has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ObservedExtension {
    pub version: String,
    pub schema: String,
}

/// The declared schemas and extensions as the database has them (missing: not there).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ObservedContents {
    /// Schema name → owner.
    pub schemas: BTreeMap<String, String>,
    pub extensions: BTreeMap<String, ObservedExtension>,
}

/// One step inside the database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ContentChange {
    CreateSchema {
        name: String,
        owner: String,
    },
    SchemaOwner {
        name: String,
        owner: String,
    },
    DropSchema(String),
    CreateExtension {
        name: String,
        schema: Option<String>,
        version: Option<String>,
    },
    UpdateExtension {
        name: String,
        version: String,
    },
    ExtensionSchema {
        name: String,
        schema: String,
    },
    DropExtension(String),
}

/// What turns the database's `observed` schemas and extensions into `db`'s: schemas created
/// (or given their owner) first, then extensions, then schemas dropped. Pure.
pub(crate) fn diff_contents(db: &DatabaseSpec, observed: &ObservedContents) -> Vec<ContentChange> {
    let mut changes = Vec::new();
    let mut drops = Vec::new();
    for schema in &db.schemas {
        let owner = schema.owner.clone().unwrap_or_else(|| db.owner.clone());
        match (schema.present, observed.schemas.get(&schema.name)) {
            (true, None) => changes.push(ContentChange::CreateSchema {
                name: schema.name.clone(),
                owner,
            }),
            (true, Some(have)) if *have != owner => changes.push(ContentChange::SchemaOwner {
                name: schema.name.clone(),
                owner,
            }),
            (false, Some(_)) => drops.push(ContentChange::DropSchema(schema.name.clone())),
            _ => {}
        }
    }
    for ext in &db.extensions {
        let name = ext.name.clone();
        match (ext.present, observed.extensions.get(&ext.name)) {
            (true, None) => changes.push(ContentChange::CreateExtension {
                name,
                schema: ext.schema.clone(),
                version: ext.version.clone(),
            }),
            (true, Some(have)) => {
                if let Some(v) = ext.version.as_ref().filter(|v| **v != have.version) {
                    changes.push(ContentChange::UpdateExtension {
                        name: name.clone(),
                        version: v.clone(),
                    });
                }
                if let Some(s) = ext.schema.as_ref().filter(|s| **s != have.schema) {
                    changes.push(ContentChange::ExtensionSchema {
                        name,
                        schema: s.clone(),
                    });
                }
            }
            (false, Some(_)) => changes.push(ContentChange::DropExtension(name)),
            (false, None) => {}
        }
    }
    changes.extend(drops);
    changes
}

fn render_database(
    db: &DatabaseSpec,
    changes: &[DatabaseChange],
) -> Result<Vec<Statement>, Failure> {
    let name = ident(&db.name)?;
    let mut out = Vec::new();
    for change in changes {
        out.push(match change {
            DatabaseChange::Create => {
                let mut sql = format!("CREATE DATABASE {name} OWNER {}", ident(&db.owner)?);
                for (keyword, value) in [("TEMPLATE", &db.template), ("TABLESPACE", &db.tablespace)]
                {
                    if let Some(v) = value {
                        sql.push_str(&format!(" {keyword} {}", ident(v)?));
                    }
                }
                for (keyword, value) in [
                    ("ENCODING", &db.encoding),
                    ("LOCALE", &db.locale),
                    ("LOCALE_PROVIDER", &db.locale_provider),
                    ("LC_COLLATE", &db.locale_collate),
                    ("LC_CTYPE", &db.locale_ctype),
                    ("ICU_LOCALE", &db.icu_locale),
                    ("ICU_RULES", &db.icu_rules),
                    ("BUILTIN_LOCALE", &db.builtin_locale),
                    ("COLLATION_VERSION", &db.collation_version),
                ] {
                    if let Some(v) = value {
                        sql.push_str(&format!(" {keyword} {}", literal(v)?));
                    }
                }
                Statement::copying(sql)
            }
            DatabaseChange::Drop => Statement::copying(format!("DROP DATABASE {name}")),
            DatabaseChange::Owner(owner) => {
                Statement::new(format!("ALTER DATABASE {name} OWNER TO {}", ident(owner)?))
            }
            DatabaseChange::Tablespace(t) => Statement::copying(format!(
                "ALTER DATABASE {name} SET TABLESPACE {}",
                ident(t)?
            )),
            DatabaseChange::Options(options) => {
                let words: Vec<String> = options
                    .iter()
                    .map(|o| match o {
                        DatabaseOption::AllowConnections(v) => format!("ALLOW_CONNECTIONS {v}"),
                        DatabaseOption::ConnectionLimit(v) => format!("CONNECTION LIMIT {v}"),
                        DatabaseOption::IsTemplate(v) => format!("IS_TEMPLATE {v}"),
                    })
                    .collect();
                Statement::new(format!("ALTER DATABASE {name} WITH {}", words.join(" ")))
            }
        });
    }
    Ok(out)
}

fn render_contents(changes: &[ContentChange]) -> Result<Vec<Statement>, Failure> {
    let mut out = Vec::new();
    for change in changes {
        out.push(Statement::new(match change {
            ContentChange::CreateSchema { name, owner } => {
                format!(
                    "CREATE SCHEMA {} AUTHORIZATION {}",
                    ident(name)?,
                    ident(owner)?
                )
            }
            ContentChange::SchemaOwner { name, owner } => {
                format!("ALTER SCHEMA {} OWNER TO {}", ident(name)?, ident(owner)?)
            }
            ContentChange::DropSchema(name) => format!("DROP SCHEMA {}", ident(name)?),
            ContentChange::CreateExtension {
                name,
                schema,
                version,
            } => {
                let mut sql = format!("CREATE EXTENSION {}", ident(name)?);
                if let Some(s) = schema {
                    sql.push_str(&format!(" SCHEMA {}", ident(s)?));
                }
                if let Some(v) = version {
                    sql.push_str(&format!(" VERSION {}", literal(v)?));
                }
                sql
            }
            ContentChange::UpdateExtension { name, version } => {
                format!(
                    "ALTER EXTENSION {} UPDATE TO {}",
                    ident(name)?,
                    literal(version)?
                )
            }
            ContentChange::ExtensionSchema { name, schema } => {
                format!(
                    "ALTER EXTENSION {} SET SCHEMA {}",
                    ident(name)?,
                    ident(schema)?
                )
            }
            ContentChange::DropExtension(name) => format!("DROP EXTENSION {}", ident(name)?),
        }));
    }
    Ok(out)
}

async fn read_databases(
    client: &Client,
    names: &[&str],
) -> Result<BTreeMap<String, ObservedDatabase>, Failure> {
    let rows = super::plan::timed_query(
        client,
        "the catalog",
        "SELECT d.datname::text, pg_catalog.pg_get_userbyid(d.datdba)::text, d.datconnlimit::int8, \
                d.datallowconn, d.datistemplate, t.spcname::text \
           FROM pg_catalog.pg_database d JOIN pg_catalog.pg_tablespace t ON t.oid = d.dattablespace \
          WHERE d.datname = ANY($1::text[])",
        names,
    )
    .await?;
    Ok(rows
        .iter()
        .map(|r| {
            (
                r.get(0),
                ObservedDatabase {
                    owner: r.get(1),
                    connection_limit: r.get(2),
                    allow_connections: r.get(3),
                    is_template: r.get(4),
                    tablespace: r.get(5),
                },
            )
        })
        .collect())
}

async fn read_contents(client: &Client, db: &DatabaseSpec) -> Result<ObservedContents, Failure> {
    let schemas: Vec<&str> = db.schemas.iter().map(|s| s.name.as_str()).collect();
    let extensions: Vec<&str> = db.extensions.iter().map(|e| e.name.as_str()).collect();
    let mut contents = ObservedContents::default();
    for r in super::plan::timed_query(
        client,
        "the catalog",
        "SELECT nspname::text, pg_catalog.pg_get_userbyid(nspowner)::text \
           FROM pg_catalog.pg_namespace WHERE nspname = ANY($1::text[])",
        &schemas,
    )
    .await?
    {
        contents.schemas.insert(r.get(0), r.get(1));
    }
    for r in super::plan::timed_query(
        client,
        "the catalog",
        "SELECT e.extname::text, e.extversion, n.nspname::text FROM pg_catalog.pg_extension e \
           JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace \
          WHERE e.extname = ANY($1::text[])",
        &extensions,
    )
    .await?
    {
        contents.extensions.insert(
            r.get(0),
            ObservedExtension {
                version: r.get(1),
                schema: r.get(2),
            },
        );
    }
    Ok(contents)
}

/// Apply every Database; one result per Database object.
pub async fn reconcile_databases(
    pg: &Postgres,
    client: &Client,
    databases: &[DatabaseSpec],
) -> Vec<ApplyResult> {
    let names: Vec<&str> = databases.iter().map(|d| d.name.as_str()).collect();
    let observed = read_databases(client, &names).await;
    apply_each(
        client,
        databases,
        observed,
        |db| &db.object,
        async |executor, db, observed| {
            apply_database(pg, executor, db, observed.get(&db.name)).await
        },
    )
    .await
}

async fn apply_database(
    pg: &Postgres,
    executor: &mut Executor<'_>,
    db: &DatabaseSpec,
    observed: Option<&ObservedDatabase>,
) -> Result<(), Failure> {
    let changes = diff_database(db, observed);
    executor.run_all(&render_database(db, &changes)?).await?;
    if !db.present || (db.schemas.is_empty() && db.extensions.is_empty()) {
        return Ok(());
    }
    let inner = connect(pg, &db.name)
        .await
        .map_err(|e| Failure::Failed(e.to_string()))?;
    let contents = read_contents(&inner, db).await?;
    let statements = render_contents(&diff_contents(db, &contents))?;
    let mut executor = Executor::new(&inner);
    let outcome = executor.run_all(&statements).await;
    executor.finish().await;
    outcome
}

#[cfg(test)]
#[path = "databases_tests.rs"]
mod tests;
