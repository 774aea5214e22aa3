//! Turning an empty PGDATA into a running instance: `initdb` plus the application database
//! for a new primary, or a clone of the primary for a replica.

use crate::observe::{connect, QUERY_TIMEOUT};
use crate::replication::PrimarySource;
use crate::sql::{identifier, literal};
use crate::{InstanceError, Postgres};
use pgherd_instance_protocol::{Bootstrap, InstanceSpec};
use std::time::Duration;

async fn run_sql(
    pg: &Postgres,
    database: &str,
    statements: &[String],
) -> Result<(), InstanceError> {
    if statements.is_empty() {
        return Ok(());
    }
    let client = connect(pg, database).await?;
    for sql in statements {
        // User-supplied SQL from the manifest, run as written (as CloudNativePG does).
        client
            .batch_execute(sql)
            .await
            .map_err(|e| InstanceError::Sql {
                context: "post-init SQL",
                message: e.to_string(),
            })?;
    }
    Ok(())
}

/// Create the application role and database of a new cluster and run the post-init SQL, in
/// CloudNativePG's order: role, `postgres` SQL, `template1` SQL, database, application SQL.
pub async fn initialize_application(
    pg: &Postgres,
    bootstrap: &Bootstrap,
) -> Result<(), InstanceError> {
    let Bootstrap::Initdb {
        database,
        owner,
        owner_password_file,
        post_init_sql,
        post_init_template_sql,
        post_init_application_sql,
        ..
    } = bootstrap
    else {
        return Ok(());
    };
    let client = connect(pg, "postgres").await?;
    let role = identifier(owner)?;
    let role_literal = literal(owner)?;
    let password = match owner_password_file {
        Some(file) => {
            let text = std::fs::read_to_string(file)
                .map_err(|e| InstanceError::io("cannot read", file, e))?;
            format!(" PASSWORD {}", literal(text.trim_end_matches('\n'))?)
        }
        None => String::new(),
    };
    // Keep the password out of the server log whatever log_statement says.
    let sql = format!(
        "SET log_statement = 'none'; SET log_min_duration_statement = -1; \
         DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = {role_literal}) THEN \
           CREATE ROLE {role} LOGIN; END IF; END $$; ALTER ROLE {role} LOGIN{password}"
    );
    tokio::time::timeout(QUERY_TIMEOUT, client.batch_execute(&sql))
        .await
        .map_err(|_| InstanceError::Sql {
            context: "create application role",
            message: "timed out".into(),
        })?
        .map_err(|e| InstanceError::Sql {
            context: "create application role",
            message: e.to_string(),
        })?;
    run_sql(pg, "postgres", post_init_sql).await?;
    run_sql(pg, "template1", post_init_template_sql).await?;
    let exists = client
        .query_opt(
            "SELECT 1 FROM pg_catalog.pg_database WHERE datname = $1",
            &[database],
        )
        .await
        .map_err(|e| InstanceError::Sql {
            context: "look up application database",
            message: e.to_string(),
        })?
        .is_some();
    if !exists {
        let sql = format!("CREATE DATABASE {} OWNER {role}", identifier(database)?);
        client
            .batch_execute(&sql)
            .await
            .map_err(|e| InstanceError::Sql {
                context: "create application database",
                message: e.to_string(),
            })?;
    }
    run_sql(pg, database, post_init_application_sql).await
}

/// The replica's source, from the spec.
pub fn primary_source(spec: &InstanceSpec) -> Result<PrimarySource, InstanceError> {
    let primary = spec.primary.as_ref().ok_or_else(|| {
        InstanceError::InvalidSetting("a replica needs a primary to stream from".into())
    })?;
    Ok(PrimarySource {
        host: primary.host.clone(),
        port: primary.port,
        application_name: spec.name.clone(),
        slot: primary.slot.clone(),
        ca_file: spec.certificates.ca.clone(),
        cert_file: spec.certificates.replication_cert.clone(),
        key_file: spec.certificates.replication_key.clone(),
    })
}

/// Give an empty PGDATA its data: `initdb` or a clone.
pub fn create_data(pg: &Postgres, spec: &InstanceSpec) -> Result<(), InstanceError> {
    match &spec.bootstrap {
        Bootstrap::Initdb { initdb_args, .. } => pg.initdb_with_args(initdb_args),
        Bootstrap::Clone => pg.clone_from(&primary_source(spec)?),
    }
}

/// How long a fresh instance may take to accept connections.
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(120);
