//! Keeping managed roles and databases in their declared state, on the primary. Every name
//! and value goes through `quote_identifier` / `quote_literal`: a name such as
//! `a"; DROP ROLE x; --` is created literally, never executed. Each object is applied on its
//! own; one failure is reported for that object and does not stop the others.

use crate::observe::connect;
use crate::{InstanceError, Postgres};
use pgherd_instance_protocol::{ApplyResult, DatabaseSpec, PasswordSource, RoleSpec};
use tokio_postgres::Client;

/// Roles the operator or PostgreSQL own; never touched through `managed.roles`.
fn reserved(name: &str) -> bool {
    matches!(name, "postgres" | "streaming_replica")
        || name.starts_with("cnpg_")
        || name.starts_with("pg_")
}

fn ident(name: &str) -> Result<String, String> {
    crate::sql::identifier(name).map_err(|e| e.to_string())
}

fn literal(value: &str) -> Result<String, String> {
    crate::sql::literal(value).map_err(|e| e.to_string())
}

async fn run(client: &Client, sql: &str) -> Result<(), String> {
    match tokio::time::timeout(crate::observe::QUERY_TIMEOUT * 6, client.batch_execute(sql)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(e
            .as_db_error()
            .map_or_else(|| e.to_string(), |d| d.message().to_string())),
        Err(_) => Err("timed out".to_string()),
    }
}

async fn exists(client: &Client, sql: &str, name: &str) -> Result<bool, String> {
    client
        .query_opt(sql, &[&name])
        .await
        .map(|r| r.is_some())
        .map_err(|e| e.to_string())
}

fn flag(on: bool, word: &str) -> String {
    if on {
        word.to_string()
    } else {
        format!("NO{word}")
    }
}

async fn apply_role(client: &Client, role: &RoleSpec) -> Result<(), String> {
    if reserved(&role.name) {
        return Err(format!("{:?} is reserved", role.name));
    }
    let name = ident(&role.name)?;
    let found = exists(
        client,
        "SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = $1",
        &role.name,
    )
    .await?;
    if !role.present {
        if found {
            run(client, &format!("DROP ROLE {name}")).await?;
        }
        return Ok(());
    }
    if !found {
        run(client, &format!("CREATE ROLE {name}")).await?;
    }
    let mut attrs = vec![
        flag(role.login, "LOGIN"),
        flag(role.superuser, "SUPERUSER"),
        flag(role.createdb, "CREATEDB"),
        flag(role.createrole, "CREATEROLE"),
        flag(role.inherit, "INHERIT"),
        flag(role.replication, "REPLICATION"),
        flag(role.bypassrls, "BYPASSRLS"),
        format!("CONNECTION LIMIT {}", role.connection_limit),
        match &role.valid_until {
            Some(t) => format!("VALID UNTIL {}", literal(t)?),
            None => "VALID UNTIL 'infinity'".to_string(),
        },
    ];
    match &role.password {
        PasswordSource::Unchanged => {}
        PasswordSource::Disabled => attrs.push("PASSWORD NULL".to_string()),
        PasswordSource::File { path } => {
            let password = std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read the password file: {e}"))?;
            attrs.push(format!(
                "PASSWORD {}",
                literal(password.trim_end_matches('\n'))?
            ));
        }
    }
    // The statement may carry a password: keep it out of the server log.
    run(
        client,
        &format!(
            "SET log_statement = 'none'; ALTER ROLE {name} WITH {}; RESET log_statement",
            attrs.join(" ")
        ),
    )
    .await?;
    let comment = match &role.comment {
        Some(c) => literal(c)?,
        None => "NULL".to_string(),
    };
    run(client, &format!("COMMENT ON ROLE {name} IS {comment}")).await?;
    let rows = client
        .query(
            "SELECT g.rolname FROM pg_catalog.pg_auth_members m JOIN pg_catalog.pg_roles g ON g.oid = m.roleid \
             JOIN pg_catalog.pg_roles r ON r.oid = m.member WHERE r.rolname = $1",
            &[&role.name],
        )
        .await
        .map_err(|e| e.to_string())?;
    let current: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    for parent in role.in_roles.iter().filter(|p| !current.contains(p)) {
        run(client, &format!("GRANT {} TO {name}", ident(parent)?)).await?;
    }
    for parent in current.iter().filter(|p| !role.in_roles.contains(p)) {
        run(client, &format!("REVOKE {} FROM {name}", ident(parent)?)).await?;
    }
    Ok(())
}

/// Apply every managed role; one result per role.
pub async fn reconcile_roles(client: &Client, roles: &[RoleSpec]) -> Vec<ApplyResult> {
    let mut results = Vec::new();
    for role in roles {
        let outcome = apply_role(client, role).await;
        results.push(ApplyResult {
            name: role.name.clone(),
            applied: outcome.is_ok(),
            message: outcome.err(),
        });
    }
    results
}

async fn apply_database(pg: &Postgres, client: &Client, db: &DatabaseSpec) -> Result<(), String> {
    let name = ident(&db.name)?;
    let found = exists(
        client,
        "SELECT 1 FROM pg_catalog.pg_database WHERE datname = $1",
        &db.name,
    )
    .await?;
    if !db.present {
        if found {
            run(client, &format!("DROP DATABASE {name}")).await?;
        }
        return Ok(());
    }
    let owner = ident(&db.owner)?;
    if !found {
        let mut sql = format!("CREATE DATABASE {name} OWNER {owner}");
        for (keyword, value) in [("TEMPLATE", &db.template), ("TABLESPACE", &db.tablespace)] {
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
        run(client, &sql).await?;
    } else {
        run(client, &format!("ALTER DATABASE {name} OWNER TO {owner}")).await?;
        if let Some(t) = &db.tablespace {
            run(
                client,
                &format!("ALTER DATABASE {name} SET TABLESPACE {}", ident(t)?),
            )
            .await?;
        }
    }
    let mut options = Vec::new();
    if let Some(v) = db.allow_connections {
        options.push(format!("ALLOW_CONNECTIONS {v}"));
    }
    if let Some(v) = db.connection_limit {
        options.push(format!("CONNECTION LIMIT {v}"));
    }
    if let Some(v) = db.is_template {
        options.push(format!("IS_TEMPLATE {v}"));
    }
    if !options.is_empty() {
        run(
            client,
            &format!("ALTER DATABASE {name} WITH {}", options.join(" ")),
        )
        .await?;
    }
    if db.schemas.is_empty() && db.extensions.is_empty() {
        return Ok(());
    }
    let inner = connect(pg, &db.name).await.map_err(|e| e.to_string())?;
    for schema in &db.schemas {
        let s = ident(&schema.name)?;
        if schema.present {
            let owner = ident(schema.owner.as_deref().unwrap_or(&db.owner))?;
            run(&inner, &format!("CREATE SCHEMA IF NOT EXISTS {s} AUTHORIZATION {owner}; ALTER SCHEMA {s} OWNER TO {owner}")).await?;
        } else {
            run(&inner, &format!("DROP SCHEMA IF EXISTS {s}")).await?;
        }
    }
    for ext in &db.extensions {
        let e = ident(&ext.name)?;
        if ext.present {
            let mut sql = format!("CREATE EXTENSION IF NOT EXISTS {e}");
            if let Some(s) = &ext.schema {
                sql.push_str(&format!(" SCHEMA {}", ident(s)?));
            }
            if let Some(v) = &ext.version {
                sql.push_str(&format!(" VERSION {}", literal(v)?));
            }
            run(&inner, &sql).await?;
        } else {
            run(&inner, &format!("DROP EXTENSION IF EXISTS {e}")).await?;
        }
    }
    Ok(())
}

/// Apply every Database; one result per Database object.
pub async fn reconcile_databases(
    pg: &Postgres,
    client: &Client,
    databases: &[DatabaseSpec],
) -> Vec<ApplyResult> {
    let mut results = Vec::new();
    for db in databases {
        let outcome = apply_database(pg, client, db).await;
        results.push(ApplyResult {
            name: db.object.clone(),
            applied: outcome.is_ok(),
            message: outcome.err(),
        });
    }
    results
}

/// What [`Applied::converge`] last did, so it does it again only on a change.
#[derive(Debug, Default)]
pub struct Applied {
    /// The `postgres` password (a keyed hash; see [`apply_superuser_password`]).
    superuser_password: Option<u64>,
    /// The managed extensions and the databases they were applied in.
    managed_extensions: Option<String>,
}

impl Applied {
    /// On the primary: the superuser password and the managed extensions as `spec` says; the
    /// first failure, for the status.
    pub async fn converge(
        &mut self,
        pg: &Postgres,
        client: &Client,
        spec: &pgherd_instance_protocol::InstanceSpec,
    ) -> Option<String> {
        let mut error = None;
        if let Some(source) = &spec.superuser_password {
            if let Err(e) =
                apply_superuser_password(client, source, &mut self.superuser_password).await
            {
                error = Some(format!("superuser password: {e}"));
            }
        }
        if let Err(e) = apply_managed_extensions(
            pg,
            client,
            &spec.managed_extensions,
            &mut self.managed_extensions,
        )
        .await
        {
            error.get_or_insert(format!("managed extensions: {e}"));
        }
        error
    }
}

/// The `postgres` role's password as `source` says (`enableSuperuserAccess`), applied only
/// when it differs from what this manager last applied (`applied`: a keyed hash, so the
/// password itself is not kept): an `ALTER ROLE … PASSWORD` re-hashes and writes WAL.
pub async fn apply_superuser_password(
    client: &Client,
    source: &PasswordSource,
    applied: &mut Option<u64>,
) -> Result<(), String> {
    use std::hash::{BuildHasher, Hasher};
    static KEYS: std::sync::OnceLock<std::collections::hash_map::RandomState> =
        std::sync::OnceLock::new();
    let password = match source {
        PasswordSource::Unchanged => return Ok(()),
        PasswordSource::Disabled => None,
        PasswordSource::File { path } => Some(
            std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read the superuser password file: {e}"))?
                .trim_end_matches('\n')
                .to_string(),
        ),
    };
    let mut hasher = KEYS.get_or_init(Default::default).build_hasher();
    hasher.write_u8(u8::from(password.is_some()));
    hasher.write(password.as_deref().unwrap_or_default().as_bytes());
    let fingerprint = hasher.finish();
    if *applied == Some(fingerprint) {
        return Ok(());
    }
    let value = match &password {
        Some(p) => literal(p)?,
        None => "NULL".to_string(),
    };
    // The statement carries a password: keep it out of the server log.
    run(
        client,
        &format!(
            "SET log_statement = 'none'; ALTER ROLE postgres WITH PASSWORD {value}; RESET log_statement"
        ),
    )
    .await?;
    *applied = Some(fingerprint);
    Ok(())
}

/// The extensions CloudNativePG manages (`pg_stat_statements`, `pgaudit`): created in every
/// database that accepts connections when wanted, dropped when not. Done again only when the
/// wish or the list of databases changed since `applied`.
pub async fn apply_managed_extensions(
    pg: &Postgres,
    client: &Client,
    wanted: &std::collections::BTreeMap<String, bool>,
    applied: &mut Option<String>,
) -> Result<(), String> {
    if wanted.is_empty() {
        return Ok(());
    }
    let databases: Vec<String> = client
        .query(
            "SELECT datname FROM pg_catalog.pg_database WHERE datallowconn ORDER BY datname",
            &[],
        )
        .await
        .map_err(|e| e.to_string())?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let key = format!("{wanted:?} {databases:?}");
    if applied.as_deref() == Some(key.as_str()) {
        return Ok(());
    }
    let mut statements = Vec::new();
    for (name, on) in wanted {
        let name = ident(name)?;
        statements.push(if *on {
            format!("CREATE EXTENSION IF NOT EXISTS {name}")
        } else {
            format!("DROP EXTENSION IF EXISTS {name}")
        });
    }
    let script = statements.join("; ");
    let mut failures = Vec::new();
    for database in &databases {
        let outcome = match connect(pg, database).await {
            Ok(db) => run(&db, &script).await,
            Err(e) => Err(e.to_string()),
        };
        if let Err(e) = outcome {
            failures.push(format!("{database}: {e}"));
        }
    }
    if !failures.is_empty() {
        return Err(failures.join("; "));
    }
    *applied = Some(key);
    Ok(())
}

/// Both, for the supervisor loop.
pub async fn reconcile(
    pg: &Postgres,
    roles: &[RoleSpec],
    databases: &[DatabaseSpec],
) -> Result<(Vec<ApplyResult>, Vec<ApplyResult>), InstanceError> {
    let client = connect(pg, "postgres").await?;
    let roles = reconcile_roles(&client, roles).await;
    let databases = reconcile_databases(pg, &client, databases).await;
    Ok((roles, databases))
}
