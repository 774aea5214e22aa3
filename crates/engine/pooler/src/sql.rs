//! The SQL of the built-in authentication: the `cnpg_pooler_pgbouncer` role (LOGIN, no
//! password: it authenticates with its TLS certificate) and `public.user_search(text)`, a
//! SECURITY DEFINER function with a pinned `search_path` that returns one user's password
//! verifier to PgBouncer's `auth_query`. The function lives in every database PgBouncer may
//! connect to (PgBouncer 1.18 runs `auth_query` in the client's target database), `template1`
//! included so databases created later have it.
//!
//! Every name and value is quoted through `pgherd_postgres::quote`.

use crate::AUTH_USER;
use pgherd_postgres::quote::{quote_identifier, quote_literal, QuoteError};

/// Whether the role exists (one boolean).
pub fn role_exists() -> Result<String, QuoteError> {
    Ok(format!(
        "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = {})",
        quote_literal(AUTH_USER)?
    ))
}

/// Create the role when missing (run in any database).
pub fn create_role() -> Result<String, QuoteError> {
    let role = quote_identifier(AUTH_USER)?;
    let name = quote_literal(AUTH_USER)?;
    Ok(format!(
        "DO $pgherd$ BEGIN \
           IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = {name}) THEN \
             CREATE ROLE {role} WITH LOGIN; \
           END IF; \
         END $pgherd$"
    ))
}

/// The databases PgBouncer may reach (and `template1`): those that accept connections, with
/// their oid (a database dropped and created again under the same name is a new one).
pub const DATABASES: &str =
    "SELECT datname, oid::pg_catalog.text FROM pg_catalog.pg_database WHERE datallowconn ORDER BY datname";

/// Whether `user_search` is in place in the current database (one boolean).
pub fn function_exists() -> Result<String, QuoteError> {
    Ok(format!(
        "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace \
         WHERE n.nspname = 'public' AND p.proname = 'user_search' AND p.prosecdef) \
         AND pg_catalog.has_function_privilege({}, 'public.user_search(text)', 'EXECUTE')",
        quote_literal(AUTH_USER)?
    ))
}

/// Create (or replace) `public.user_search` in the current database and let only the role run
/// it; also let the role connect to `database`.
pub fn create_function(database: &str) -> Result<String, QuoteError> {
    let role = quote_identifier(AUTH_USER)?;
    let db = quote_identifier(database)?;
    Ok(format!(
        "CREATE OR REPLACE FUNCTION public.user_search(uname text) \
           RETURNS TABLE (usename name, passwd text) \
           LANGUAGE sql SECURITY DEFINER \
           SET search_path = pg_catalog, pg_temp \
           AS 'SELECT usename, passwd FROM pg_catalog.pg_shadow WHERE usename = $1'; \
         REVOKE ALL ON FUNCTION public.user_search(text) FROM PUBLIC; \
         GRANT EXECUTE ON FUNCTION public.user_search(text) TO {role}; \
         GRANT CONNECT ON DATABASE {db} TO {role}"
    ))
}

/// Drop `user_search` from the current database.
pub const DROP_FUNCTION: &str = "DROP FUNCTION IF EXISTS public.user_search(text)";

/// Drop the role (after the function in every database): its remaining privileges first.
pub fn drop_role() -> Result<String, QuoteError> {
    let role = quote_identifier(AUTH_USER)?;
    let name = quote_literal(AUTH_USER)?;
    Ok(format!(
        "DO $pgherd$ BEGIN \
           IF EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = {name}) THEN \
             DROP OWNED BY {role}; DROP ROLE {role}; \
           END IF; \
         END $pgherd$"
    ))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn statements_quote_names_and_pin_the_search_path() {
        let f = create_function("my \"db\"").unwrap();
        assert!(f.contains("SECURITY DEFINER"));
        assert!(f.contains("SET search_path = pg_catalog, pg_temp"));
        assert!(
            f.contains("GRANT CONNECT ON DATABASE \"my \"\"db\"\"\" TO \"cnpg_pooler_pgbouncer\"")
        );
        assert!(f.contains("FROM PUBLIC"));
        assert!(create_role()
            .unwrap()
            .contains("CREATE ROLE \"cnpg_pooler_pgbouncer\" WITH LOGIN"));
        assert!(drop_role()
            .unwrap()
            .contains("DROP ROLE \"cnpg_pooler_pgbouncer\""));
        assert!(create_function("").is_err());
    }
}
