//! Secrets as files: Kubernetes-shaped (`data` base64-encoded), mode 0600. Existing secret data
//! is never overwritten, as CloudNativePG never overwrites the data of an existing Secret.

use crate::state::{read_json, write_json, StateDir};
use crate::LocalError;
use base64::Engine as _;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::ByteString;
use std::collections::BTreeMap;

/// A random password of `len` characters from `[A-Za-z0-9]`.
pub fn generate_password(len: usize) -> Result<String, LocalError> {
    pgherd_controller::pki::generate_password(len)
        .map_err(|e| LocalError::io("cannot read", "/dev/urandom", e))
}

/// Store a Secret, turning `stringData` into `data`.
pub fn store(state: &StateDir, namespace: &str, secret: &Secret) -> Result<(), LocalError> {
    let mut secret = secret.clone();
    let mut data = secret.data.take().unwrap_or_default();
    for (k, v) in secret.string_data.take().unwrap_or_default() {
        data.insert(k, ByteString(v.into_bytes()));
    }
    secret.data = Some(data);
    secret.metadata.namespace = Some(namespace.to_string());
    let name = secret.metadata.name.clone().unwrap_or_default();
    write_json(&state.secret_path(namespace, &name), &secret, 0o600)
}

/// The cluster's lease token: made once, kept in the state's private `secrets/` directory
/// (root's, mode 0600; not a Secret object) so a restarted control plane renews with the token
/// the instances already hold, and given to the instance managers in their 0600 specs.
pub fn lease_token(
    state: &StateDir,
    namespace: &str,
    cluster: &str,
) -> Result<pgherd_instance_protocol::LeaseToken, LocalError> {
    let path = state
        .secret_path(namespace, cluster)
        .with_file_name(format!("{cluster}.lease-token"));
    if let Some(token) = crate::state::read_text(&path)? {
        if token.trim().len() >= 32 {
            return Ok(pgherd_instance_protocol::LeaseToken(
                token.trim().to_string(),
            ));
        }
    }
    let token = generate_password(48)?;
    crate::state::write_atomic(&path, token.as_bytes(), 0o600)?;
    Ok(pgherd_instance_protocol::LeaseToken(token))
}

/// The controller's client certificate for a cluster (common name
/// `pgherd_instance_protocol::CONTROLLER_COMMON_NAME`): issued once by the cluster CA in
/// `certs`, kept beside the lease token in the state's private `secrets/` directory (root's,
/// mode 0600), never in a directory the PostgreSQL user can write.
pub fn controller_certificate(
    state: &StateDir,
    namespace: &str,
    cluster: &str,
    certs: &std::path::Path,
) -> Result<(std::path::PathBuf, std::path::PathBuf), LocalError> {
    let base = state.secret_path(namespace, cluster);
    let cert = base.with_file_name(format!("{cluster}.controller.crt"));
    let key = base.with_file_name(format!("{cluster}.controller.key"));
    // The CA that issued them: a cluster deleted and made again under the same name has a new
    // CA, and a certificate from the old one would be refused.
    let issuer = base.with_file_name(format!("{cluster}.controller.ca"));
    let ca_cert = read_required(&certs.join("ca.crt"))?;
    if crate::state::read_text(&cert)?.is_some()
        && crate::state::read_text(&key)?.is_some()
        && crate::state::read_text(&issuer)?.as_deref() == Some(ca_cert.as_str())
    {
        return Ok((cert, key));
    }
    let pair = issue_client_certificate(certs, pgherd_instance_protocol::CONTROLLER_COMMON_NAME)?;
    crate::state::write_atomic(&key, pair.key.as_bytes(), 0o600)?;
    crate::state::write_atomic(&cert, pair.cert.as_bytes(), 0o600)?;
    crate::state::write_atomic(&issuer, ca_cert.as_bytes(), 0o600)?;
    Ok((cert, key))
}

/// A file that must exist, read without following links another user controls.
pub(crate) fn read_required(path: &std::path::Path) -> Result<String, LocalError> {
    crate::state::read_text(path)?
        .ok_or_else(|| LocalError::io("cannot read", path, std::io::ErrorKind::NotFound.into()))
}

/// A client certificate with common name `user`, issued by the cluster CA kept in `certs`
/// (`ca.crt`, `ca.key`).
pub fn issue_client_certificate(
    certs: &std::path::Path,
    user: &str,
) -> Result<pgherd_controller::pki::PemPair, LocalError> {
    let ca = pgherd_controller::pki::PemPair {
        cert: read_required(&certs.join("ca.crt"))?,
        key: read_required(&certs.join("ca.key"))?,
    };
    Ok(pgherd_controller::pki::client_certificate(
        &ca,
        user,
        pgherd_controller::pki::DEFAULT_VALIDITY_DAYS,
    )?)
}

/// The decoded data of a Secret, if it exists.
pub fn read(
    state: &StateDir,
    namespace: &str,
    name: &str,
) -> Result<Option<BTreeMap<String, Vec<u8>>>, LocalError> {
    let secret: Option<Secret> = read_json(&state.secret_path(namespace, name))?;
    Ok(secret.map(|s| {
        s.data
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, v.0))
            .collect()
    }))
}

/// The application user's connection details.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppCredentials {
    pub username: String,
    pub password: String,
    pub database: String,
}

/// A `kubernetes.io/basic-auth` Secret of CloudNativePG's: `<cluster>-app` (user type `app`)
/// or `<cluster>-superuser` (user `postgres`, database `*`, user type `superuser`).
#[derive(Debug, Clone, Copy)]
pub struct BasicAuth<'a> {
    pub namespace: &'a str,
    pub secret_name: &'a str,
    pub owner: &'a str,
    pub database: &'a str,
    pub host: &'a str,
    pub port: u16,
    /// The `cnpg.io/userType` label.
    pub user_type: &'a str,
}

/// Create the Secret with CloudNativePG's keys if missing; return the credentials in it.
pub fn ensure_basic_auth_secret(
    state: &StateDir,
    target: &BasicAuth<'_>,
) -> Result<AppCredentials, LocalError> {
    let BasicAuth {
        namespace,
        secret_name,
        owner,
        database,
        host,
        port,
        user_type,
    } = *target;
    if let Some(data) = read(state, namespace, secret_name)? {
        let get = |k: &str| data.get(k).map(|v| String::from_utf8_lossy(v).into_owned());
        return Ok(AppCredentials {
            username: get("username").unwrap_or_else(|| owner.to_string()),
            password: get("password").unwrap_or_default(),
            database: get("dbname").unwrap_or_else(|| database.to_string()),
        });
    }
    let password = generate_password(64)?;
    let uri = format!("postgresql://{owner}:{password}@{host}:{port}/{database}");
    let jdbc =
        format!("jdbc:postgresql://{host}:{port}/{database}?password={password}&user={owner}");
    let mut data = BTreeMap::new();
    for (k, v) in [
        ("username", owner.to_string()),
        ("user", owner.to_string()),
        ("password", password.clone()),
        ("dbname", database.to_string()),
        ("host", host.to_string()),
        ("port", port.to_string()),
        (
            "pgpass",
            format!("{host}:{port}:{database}:{owner}:{password}\n"),
        ),
        ("uri", uri.clone()),
        ("jdbc-uri", jdbc.clone()),
        ("fqdn-uri", uri),
        ("fqdn-jdbc-uri", jdbc),
    ] {
        data.insert(k.to_string(), ByteString(v.into_bytes()));
    }
    let mut labels = BTreeMap::new();
    labels.insert("cnpg.io/userType".to_string(), user_type.to_string());
    labels.insert("cnpg.io/reload".to_string(), "true".to_string());
    let secret = Secret {
        metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
            name: Some(secret_name.to_string()),
            namespace: Some(namespace.to_string()),
            labels: Some(labels),
            ..Default::default()
        },
        type_: Some("kubernetes.io/basic-auth".to_string()),
        data: Some(data),
        ..Default::default()
    };
    write_json(&state.secret_path(namespace, secret_name), &secret, 0o600)?;
    Ok(AppCredentials {
        username: owner.to_string(),
        password,
        database: database.to_string(),
    })
}

/// base64 of `bytes`, as Secret `data` holds it.
pub fn encode(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn app_secret_is_created_once_with_cnpg_keys() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::new(dir.path());
        let mut target = BasicAuth {
            namespace: "default",
            secret_name: "c-app",
            owner: "app",
            database: "app",
            host: "127.0.0.1",
            port: 5432,
            user_type: "app",
        };
        let first = ensure_basic_auth_secret(&state, &target).unwrap();
        assert_eq!(first.password.len(), 64);
        target.port = 9999;
        let second = ensure_basic_auth_secret(&state, &target).unwrap();
        assert_eq!(first, second, "existing data is never overwritten");
        let data = read(&state, "default", "c-app").unwrap().unwrap();
        for key in [
            "username", "password", "dbname", "host", "port", "uri", "jdbc-uri", "pgpass",
        ] {
            assert!(data.contains_key(key), "{key}");
        }
        let mode = std::fs::metadata(state.secret_path("default", "c-app"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600);
        let text = std::fs::read_to_string(state.secret_path("default", "c-app")).unwrap();
        assert!(
            !text.contains(&first.password),
            "data is base64-encoded, as in Kubernetes"
        );
    }

    #[test]
    fn passwords_are_random() {
        assert_ne!(
            generate_password(32).unwrap(),
            generate_password(32).unwrap()
        );
    }
}
