//! `pgbouncer.ini` and the PgBouncer HBA file, rendered from a Pooler as CloudNativePG renders
//! them: every database forwarded to the cluster's endpoint for the pooler's type, the
//! built-in authentication (`auth_user = cnpg_pooler_pgbouncer` with `auth_query`), CNPG's
//! defaults under the user's allow-listed parameters, and the settings the platform owns
//! (listen address, sockets, admin user, files) forced last.

use crate::{ADMIN_USER, AUTH_USER, DEFAULT_AUTH_QUERY};
use pgherd_api::kinds::pooler::{PgBouncerPoolMode, Pooler, ALLOWED_PGBOUNCER_PARAMETERS};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;

/// Why a Pooler cannot be rendered; each names the Pooler, the field and what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("Pooler {pooler}: spec.pgbouncer.parameters.{key}: not a PgBouncer parameter a Pooler may set; remove it (allowed: {allowed})")]
    NotAllowed {
        pooler: String,
        key: String,
        allowed: String,
    },
    #[error("Pooler {pooler}: {field}: contains a line break or a control character; write it on one line")]
    BadValue { pooler: String, field: String },
    #[error("Pooler {pooler}: {field}: {message}")]
    Unsupported {
        pooler: String,
        field: &'static str,
        message: String,
    },
}

impl ConfigError {
    /// A stable category (metrics labels, events).
    pub fn category(&self) -> &'static str {
        match self {
            ConfigError::NotAllowed { .. } => "parameter_not_allowed",
            ConfigError::BadValue { .. } => "bad_value",
            ConfigError::Unsupported { .. } => "unsupported",
        }
    }
}

/// Where PgBouncer sends server connections (the cluster's `-rw`, `-ro` or `-r` endpoint).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    pub host: String,
    pub port: u16,
}

/// The files and sockets the platform gives PgBouncer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigPaths {
    pub listen_addr: String,
    pub listen_port: u16,
    pub unix_socket_dir: PathBuf,
    pub hba_file: PathBuf,
    /// `"pgbouncer" "<password>"`: the admin console's user (mode 0600).
    pub auth_file: PathBuf,
    /// The cluster's CA (checks the server: `verify-ca`).
    pub server_ca: PathBuf,
    /// `cnpg_pooler_pgbouncer`'s client certificate and key.
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    /// What PgBouncer shows its clients (the cluster's server certificate) and trusts.
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
    pub client_ca: PathBuf,
}

/// The rendered files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub ini: String,
    pub hba: String,
}

/// CloudNativePG's defaults, plus pgherd's `server_login_retry`; the user's values replace
/// them (`ignore_startup_parameters` is appended to).
///
/// `server_login_retry` is PgBouncer's 15 s by default: after one failed server login (the
/// `-rw` endpoint refuses connections while no primary serves, during a failover) every client
/// gets an error for 15 s, long after the new primary serves. 1 s keeps that window to the
/// failover's own length; retries are cheap (the endpoint refuses at once).
const DEFAULTS: &[(&str, &str)] = &[
    ("log_stats", "0"),
    ("auth_type", "hba"),
    ("client_tls_sslmode", "prefer"),
    ("server_tls_sslmode", "verify-ca"),
    ("ignore_startup_parameters", "extra_float_digits,options"),
    ("server_login_retry", "1"),
];

fn one_line(pooler: &str, field: String, value: &str) -> Result<(), ConfigError> {
    if value.chars().any(char::is_control) {
        return Err(ConfigError::BadValue {
            pooler: pooler.to_string(),
            field,
        });
    }
    Ok(())
}

/// Whether the Pooler uses CloudNativePG's built-in authentication (the operator's role, its
/// certificate and `user_search`) rather than secrets of its own.
pub fn uses_builtin_auth(pooler: &Pooler) -> bool {
    let p = &pooler.spec.pgbouncer;
    p.auth_query_secret.is_none()
        && p.server_tls_secret.is_none()
        && p.server_ca_secret.is_none()
        && p.client_ca_secret.is_none()
        && p.client_tls_secret.is_none()
}

/// The parameters PgBouncer runs with: defaults, then the user's (allow-listed), checked.
pub fn parameters(pooler: &Pooler) -> Result<BTreeMap<String, String>, ConfigError> {
    let name = pooler.metadata.name.clone().unwrap_or_default();
    let mut out: BTreeMap<String, String> = DEFAULTS
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    for (key, value) in pooler.spec.pgbouncer.parameters.iter().flatten() {
        if !ALLOWED_PGBOUNCER_PARAMETERS.contains(&key.as_str()) {
            return Err(ConfigError::NotAllowed {
                pooler: name,
                key: key.clone(),
                allowed: ALLOWED_PGBOUNCER_PARAMETERS.join(", "),
            });
        }
        one_line(&name, format!("spec.pgbouncer.parameters.{key}"), value)?;
        if key == "ignore_startup_parameters" {
            let merged = format!("{},{value}", out[key]);
            out.insert(key.clone(), merged);
        } else {
            out.insert(key.clone(), value.clone());
        }
    }
    Ok(out)
}

/// Render `pgbouncer.ini` and the HBA file of `pooler`.
pub fn render(
    pooler: &Pooler,
    upstream: &Upstream,
    paths: &ConfigPaths,
) -> Result<Rendered, ConfigError> {
    let name = pooler.metadata.name.clone().unwrap_or_default();
    let spec = &pooler.spec.pgbouncer;
    if !uses_builtin_auth(pooler) {
        return Err(ConfigError::Unsupported {
            pooler: name,
            field: "spec.pgbouncer",
            message: "authQuerySecret and custom TLS secrets are not supported on the local platform yet; remove them to use the built-in authentication (cnpg_pooler_pgbouncer with a certificate)".into(),
        });
    }
    let auth_query = spec.auth_query.as_deref().unwrap_or(DEFAULT_AUTH_QUERY);
    one_line(&name, "spec.pgbouncer.authQuery".into(), auth_query)?;
    let mut settings = parameters(pooler)?;
    let pool_mode = match spec.pool_mode.unwrap_or_default() {
        PgBouncerPoolMode::Session => "session",
        PgBouncerPoolMode::Transaction => "transaction",
    };
    let path = |p: &PathBuf| p.display().to_string();
    for (k, v) in [
        ("pool_mode", pool_mode.to_string()),
        ("auth_query", auth_query.to_string()),
        // Forced: the platform owns these.
        ("listen_addr", paths.listen_addr.clone()),
        ("listen_port", paths.listen_port.to_string()),
        ("unix_socket_dir", path(&paths.unix_socket_dir)),
        ("admin_users", ADMIN_USER.to_string()),
        ("auth_hba_file", path(&paths.hba_file)),
        ("auth_file", path(&paths.auth_file)),
        ("server_tls_ca_file", path(&paths.server_ca)),
        ("server_tls_cert_file", path(&paths.server_cert)),
        ("server_tls_key_file", path(&paths.server_key)),
        ("client_tls_cert_file", path(&paths.client_cert)),
        ("client_tls_key_file", path(&paths.client_key)),
        ("client_tls_ca_file", path(&paths.client_ca)),
    ] {
        one_line(&name, format!("pgbouncer setting {k}"), &v)?;
        settings.insert(k.to_string(), v);
    }
    let mut ini = String::from("# Written by pgherd; changes here are overwritten.\n[databases]\n");
    // `auth_user` on the databases rather than globally (CloudNativePG sets it globally, with
    // `auth_dbname`, which PgBouncer < 1.20 lacks): a global one makes PgBouncer look a user
    // of the admin console up by `auth_query` in the `pgbouncer` database, which has no
    // server, and the client waits until it times out. So a login to the admin console other
    // than CloudNativePG's own (`pgbouncer` on the unix socket) is refused at once.
    let _ = writeln!(
        ini,
        "* = host={} port={} auth_user={AUTH_USER}\n\n[pgbouncer]",
        upstream.host, upstream.port
    );
    for (k, v) in &settings {
        let _ = writeln!(ini, "{k} = {v}");
    }

    let mut hba = String::from("# Written by pgherd; changes here are overwritten.\n");
    // The admin console, over the unix socket only. CloudNativePG writes `peer` here; PgBouncer
    // already lets its own OS user in as `pgbouncer` over the socket, and anyone else (the
    // control plane running as root) must give the password kept in the auth file.
    let _ = writeln!(hba, "local pgbouncer {ADMIN_USER} scram-sha-256");
    for (i, line) in spec.pg_hba.iter().flatten().enumerate() {
        one_line(&name, format!("spec.pgbouncer.pg_hba[{i}]"), line)?;
        hba.push_str(line.trim());
        hba.push('\n');
    }
    // Over TCP the admin console admits nobody (CloudNativePG's `pgbouncer` has no password
    // there): "login rejected" at once rather than a password prompt that cannot succeed.
    hba.push_str("host pgbouncer all 0.0.0.0/0 reject\nhost pgbouncer all ::/0 reject\n");
    hba.push_str("host all all 0.0.0.0/0 md5\nhost all all ::/0 md5\n");
    Ok(Rendered { ini, hba })
}

/// The auth file: the admin user and its password (PgBouncer's `"user" "password"` format).
pub fn render_auth_file(admin_password: &str) -> String {
    format!(
        "\"{ADMIN_USER}\" \"{}\"\n",
        admin_password.replace('"', "\"\"")
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn pooler(yaml: &str) -> Pooler {
        serde_yaml_ng::from_str(yaml).unwrap()
    }

    fn paths() -> ConfigPaths {
        let p = |s: &str| PathBuf::from(format!("/s/{s}"));
        ConfigPaths {
            listen_addr: "127.0.0.1".into(),
            listen_port: 6432,
            unix_socket_dir: p("run"),
            hba_file: p("pg_hba.conf"),
            auth_file: p("userlist.txt"),
            server_ca: p("ca.crt"),
            server_cert: p("pooler.crt"),
            server_key: p("pooler.key"),
            client_cert: p("server.crt"),
            client_key: p("server.key"),
            client_ca: p("ca.crt"),
        }
    }

    const BASE: &str = "apiVersion: postgresql.cnpg.io/v1\nkind: Pooler\nmetadata:\n  name: p-rw\nspec:\n  cluster:\n    name: c\n  instances: 1\n  type: rw\n  pgbouncer:\n    poolMode: transaction\n";

    #[test]
    fn renders_cnpg_defaults_user_values_and_forced_settings() {
        let p = pooler(&format!(
            "{BASE}    parameters:\n      max_client_conn: \"1000\"\n      ignore_startup_parameters: search_path\n      log_stats: \"1\"\n    pg_hba:\n      - host all app 10.0.0.0/8 md5\n"
        ));
        let up = Upstream {
            host: "127.0.0.1".into(),
            port: 5555,
        };
        let r = render(&p, &up, &paths()).unwrap();
        assert!(
            r.ini.contains(
                "[databases]\n* = host=127.0.0.1 port=5555 auth_user=cnpg_pooler_pgbouncer\n"
            ),
            "{}",
            r.ini
        );
        for line in [
            "pool_mode = transaction",
            "auth_query = SELECT usename, passwd FROM public.user_search($1)",
            "auth_type = hba",
            "client_tls_sslmode = prefer",
            "server_tls_sslmode = verify-ca",
            "server_login_retry = 1",
            "ignore_startup_parameters = extra_float_digits,options,search_path",
            "log_stats = 1",
            "max_client_conn = 1000",
            "listen_port = 6432",
            "admin_users = pgbouncer",
            "auth_hba_file = /s/pg_hba.conf",
            "server_tls_cert_file = /s/pooler.crt",
            "unix_socket_dir = /s/run",
        ] {
            assert!(r.ini.contains(&format!("{line}\n")), "{line}\n{}", r.ini);
        }
        assert!(r.hba.starts_with("# Written"));
        assert!(r.hba.contains("local pgbouncer pgbouncer scram-sha-256\nhost all app 10.0.0.0/8 md5\nhost pgbouncer all 0.0.0.0/0 reject\nhost pgbouncer all ::/0 reject\nhost all all 0.0.0.0/0 md5\nhost all all ::/0 md5\n"), "{}", r.hba);
        assert!(
            !r.ini.contains("\nauth_user ="),
            "no global auth_user: {}",
            r.ini
        );
    }

    #[test]
    fn session_is_the_default_and_forced_settings_win() {
        let p = pooler("apiVersion: postgresql.cnpg.io/v1\nkind: Pooler\nmetadata:\n  name: p\nspec:\n  cluster:\n    name: c\n  pgbouncer:\n    authQuery: SELECT u, p FROM x($1)\n");
        let up = Upstream {
            host: "h".into(),
            port: 1,
        };
        let r = render(&p, &up, &paths()).unwrap();
        assert!(r.ini.contains("pool_mode = session\n"));
        assert!(r.ini.contains("auth_query = SELECT u, p FROM x($1)\n"));
    }

    #[test]
    fn refuses_parameters_outside_the_allow_list_and_line_breaks() {
        let p = pooler(&format!(
            "{BASE}    parameters:\n      listen_port: \"1\"\n"
        ));
        let up = Upstream {
            host: "h".into(),
            port: 1,
        };
        let e = render(&p, &up, &paths()).unwrap_err().to_string();
        assert!(
            e.contains("Pooler p-rw")
                && e.contains("spec.pgbouncer.parameters.listen_port")
                && e.contains("remove it"),
            "{e}"
        );
        let p = pooler(&format!(
            "{BASE}    parameters:\n      server_check_query: \"select 1\\nlisten_port = 1\"\n"
        ));
        let e = render(&p, &up, &paths()).unwrap_err().to_string();
        assert!(
            e.contains("spec.pgbouncer.parameters.server_check_query") && e.contains("one line"),
            "{e}"
        );
        let p = pooler(&format!(
            "{BASE}    authQuerySecret:\n      name: s\n    authQuery: SELECT 1\n"
        ));
        let e = render(&p, &up, &paths()).unwrap_err().to_string();
        assert!(e.contains("not supported on the local platform"), "{e}");
    }

    #[test]
    fn auth_file_quotes_the_password() {
        assert_eq!(render_auth_file("a\"b"), "\"pgbouncer\" \"a\"\"b\"\n");
    }
}
