//! Keeping managed roles and databases in their declared state, on the primary, as plan and
//! execute: each reconciler reads the catalog, diffs it against the spec in a pure function
//! and runs only the difference, so an idle pass runs no statement (no `ALTER ROLE …
//! PASSWORD` re-hash, no WAL, nothing to wait on synchronous standbys for).
//!
//! - [`plan`]: the shared shape — [`plan::Statement`], the executor (timeouts, the
//!   synchronous-standby gate, "pending" results), the per-object [`ApplyResult`].
//! - [`roles`]: managed roles and the `postgres` password; [`password`] compares a declared
//!   password with the stored verifier.
//! - [`tablespaces`]: `spec.tablespaces` (their directories on every instance, the
//!   tablespaces themselves on the primary).
//! - [`databases`]: `Database` objects, their schemas and extensions; [`extensions`]: the
//!   extensions CloudNativePG manages in every database.
//!
//! Every name and value goes through `crate::sql::identifier` / `crate::sql::literal`: a name
//! such as `a"; DROP ROLE x; --` is created literally, never executed. Each object is applied
//! on its own; one failure is reported for that object and does not stop the others.

mod databases;
mod extensions;
mod password;
mod plan;
mod roles;
mod tablespaces;

use crate::observe::connect;
use crate::{InstanceError, Postgres};
use pgherd_instance_protocol::{ApplyResult, InstanceSpec};
use tokio_postgres::Client;

pub use databases::reconcile_databases;
pub use extensions::apply_managed_extensions;
pub use password::forget_verified_passwords;
pub use plan::executed_statements;
pub use roles::{apply_superuser_password, reconcile_roles};
pub use tablespaces::{prepare_locations, reconcile_tablespaces, Previous};

fn ident(name: &str) -> Result<String, String> {
    crate::sql::identifier(name).map_err(|e| e.to_string())
}

fn literal(value: &str) -> Result<String, String> {
    crate::sql::literal(value).map_err(|e| e.to_string())
}

/// What [`Applied::converge`] last did, so it does it again only on a change.
#[derive(Debug, Default)]
pub struct Applied {
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
            if let Err(e) = apply_superuser_password(client, source).await {
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

/// The primary's results, one per declared object.
#[derive(Debug, Default)]
pub struct Results {
    pub roles: Vec<ApplyResult>,
    pub tablespaces: Vec<ApplyResult>,
    pub databases: Vec<ApplyResult>,
}

/// All three, for the supervisor loop: roles first (a tablespace's or database's owner may be
/// one), then tablespaces (a database may be placed in one), then databases.
pub async fn reconcile(pg: &Postgres, spec: &InstanceSpec) -> Result<Results, InstanceError> {
    let client = connect(pg, "postgres").await?;
    Ok(Results {
        roles: reconcile_roles(&client, &spec.roles).await,
        tablespaces: reconcile_tablespaces(&client, &spec.tablespaces).await,
        databases: reconcile_databases(pg, &client, &spec.databases).await,
    })
}
