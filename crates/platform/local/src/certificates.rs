//! A local cluster's certificates as `spec.certificates` asks, over the PKI the platform issues
//! (`certs/ca.crt` and its key, the server and `streaming_replica` certificates): each
//! certificate from the Secret `spec.certificates` names when it does, else issued by the CA
//! meant to sign it (the user's server or client CA, with its key), as on Kubernetes. The
//! certificates directory always holds `server-ca.crt` and `client-ca.crt` (the platform's CA
//! unless the user gives one) and, when it is known, `client-ca.key`, so the instances and the
//! poolers read one layout; the control plane keeps what it trusts in memory, and reads this
//! directory (the PostgreSQL user's) without following its links. The platform's own CA stays
//! for the control plane's identity towards the managers. Files are rewritten only when their
//! content changes.

use crate::state::{StateDir, DEFAULT_NAMESPACE};
use crate::LocalError;
use pgherd_controller::pki::{self, PemPair};
use pgherd_instance_manager::OsUser;
use pgherd_instance_protocol::CertificatePaths;
use std::path::Path;

/// File names in the certificates directory.
const SERVER_CA: &str = "server-ca.crt";
const CLIENT_CA: &str = "client-ca.crt";
const CLIENT_CA_KEY: &str = "client-ca.key";

/// A CA as its Secret holds it.
#[derive(Clone)]
struct Ca {
    cert: String,
    key: Option<String>,
}

fn key_of(data: &std::collections::BTreeMap<String, Vec<u8>>, key: &str) -> Option<String> {
    data.get(key)
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .filter(|v| !v.trim().is_empty())
}

/// The Secret `name` that `field` names, decoded; a clear error when it is missing.
fn secret(
    state: &StateDir,
    namespace: &str,
    field: &str,
    name: &str,
) -> Result<std::collections::BTreeMap<String, Vec<u8>>, LocalError> {
    crate::secrets::read(state, namespace, name)?.ok_or_else(|| {
        LocalError::Invalid(format!(
            "{field}: Secret {namespace}/{name} not found: apply it (pgherd never makes a Secret spec.certificates names)"
        ))
    })
}

fn user_ca(state: &StateDir, namespace: &str, field: &str, name: &str) -> Result<Ca, LocalError> {
    let data = secret(state, namespace, field, name)?;
    let cert = key_of(&data, "ca.crt").ok_or_else(|| {
        LocalError::Invalid(format!(
            "{field}: Secret {namespace}/{name} has no ca.crt (the CA certificate, PEM)"
        ))
    })?;
    Ok(Ca {
        cert,
        key: key_of(&data, "ca.key"),
    })
}

fn user_pair(
    state: &StateDir,
    namespace: &str,
    field: &str,
    name: &str,
) -> Result<PemPair, LocalError> {
    let data = secret(state, namespace, field, name)?;
    match (key_of(&data, "tls.crt"), key_of(&data, "tls.key")) {
        (Some(cert), Some(key)) => Ok(PemPair { cert, key }),
        _ => Err(LocalError::Invalid(format!(
            "{field}: Secret {namespace}/{name} has no tls.crt and tls.key (a kubernetes.io/tls Secret)"
        ))),
    }
}

/// Write `text` to `path` (0600, the PostgreSQL user's; a file already holding it is left
/// alone).
fn put(user: &OsUser, path: &Path, text: &str) -> Result<(), LocalError> {
    user.write_file(path, text.as_bytes(), 0o600)?;
    Ok(())
}

/// A file of the certificates directory (the PostgreSQL user's: read without following its
/// links); `None` when it is not there.
fn read(path: &Path) -> Result<Option<String>, LocalError> {
    crate::state::read_text(path)
}

/// Issue a certificate with `issue` from `ca` into `cert`/`key` unless the one there was issued
/// by that CA (its certificate kept beside it as `<cert>.issuer`).
fn issued_by(
    user: &OsUser,
    ca: &Ca,
    (cert, key): (&Path, &Path),
    why: impl FnOnce() -> String,
    issue: impl FnOnce(&PemPair) -> Result<PemPair, pki::PkiError>,
) -> Result<(), LocalError> {
    let issuer = cert.with_extension("issuer");
    if read(&issuer)?.as_deref() == Some(ca.cert.as_str()) && read(cert)?.is_some() {
        return Ok(());
    }
    let Some(ca_key) = &ca.key else {
        return Err(LocalError::Invalid(why()));
    };
    let pair = issue(&PemPair {
        cert: ca.cert.clone(),
        key: ca_key.clone(),
    })?;
    put(user, key, &pair.key)?;
    put(user, cert, &pair.cert)?;
    put(user, &issuer, &ca.cert)
}

/// What the instances use, and what the control plane trusts on their status port.
#[derive(Debug)]
pub struct Certificates {
    pub paths: CertificatePaths,
    /// The platform's CA and the server CA (PEM): the status port presents PostgreSQL's
    /// server certificate.
    pub trust: String,
}

/// Lay `spec.certificates` over the platform's certificates in `dir` (`paths`).
pub fn apply(
    state: &StateDir,
    cluster: &pgherd_api::Cluster,
    dir: &Path,
    user: &OsUser,
    paths: CertificatePaths,
) -> Result<Certificates, LocalError> {
    let namespace = cluster
        .metadata
        .namespace
        .as_deref()
        .unwrap_or(DEFAULT_NAMESPACE);
    let name = cluster.metadata.name.as_deref().unwrap_or_default();
    let spec = cluster.spec.certificates.clone().unwrap_or_default();
    let own = Ca {
        cert: crate::secrets::read_required(&paths.ca)?,
        key: read(&dir.join("ca.key"))?,
    };
    const SERVER_CA_FIELD: &str = "spec.certificates.serverCASecret";
    const CLIENT_CA_FIELD: &str = "spec.certificates.clientCASecret";
    let server_ca = match &spec.server_ca_secret {
        Some(s) => user_ca(state, namespace, SERVER_CA_FIELD, s)?,
        None => own.clone(),
    };
    let client_ca = match &spec.client_ca_secret {
        Some(s) => user_ca(state, namespace, CLIENT_CA_FIELD, s)?,
        None => own.clone(),
    };
    match &spec.server_tls_secret {
        Some(s) => {
            let pair = user_pair(state, namespace, "spec.certificates.serverTLSSecret", s)?;
            put(user, &paths.server_key, &pair.key)?;
            put(user, &paths.server_cert, &pair.cert)?;
        }
        None if spec.server_ca_secret.is_some() => {
            let names = pki::server_names(name, namespace, &["localhost".to_string()]);
            issued_by(
                user,
                &server_ca,
                (&paths.server_cert, &paths.server_key),
                || {
                    format!("{SERVER_CA_FIELD}: Secret {namespace}/{} has no ca.key, so the server certificate cannot be issued: add ca.key, or give the certificate in spec.certificates.serverTLSSecret", spec.server_ca_secret.clone().unwrap_or_default())
                },
                |ca| {
                    pki::server_certificate(
                        ca,
                        &format!("{name}-rw"),
                        &names,
                        pki::DEFAULT_VALIDITY_DAYS,
                    )
                },
            )?;
        }
        None => {}
    }
    match &spec.replication_tls_secret {
        Some(s) => {
            let pair = user_pair(
                state,
                namespace,
                "spec.certificates.replicationTLSSecret",
                s,
            )?;
            put(user, &paths.replication_key, &pair.key)?;
            put(user, &paths.replication_cert, &pair.cert)?;
        }
        None if spec.client_ca_secret.is_some() => {
            issued_by(
                user,
                &client_ca,
                (&paths.replication_cert, &paths.replication_key),
                || {
                    format!("{CLIENT_CA_FIELD}: Secret {namespace}/{} has no ca.key, so streaming_replica's certificate cannot be issued: add ca.key, or give the certificate in spec.certificates.replicationTLSSecret", spec.client_ca_secret.clone().unwrap_or_default())
                },
                |ca| {
                    pki::client_certificate(
                        ca,
                        pgherd_postgres::conf::STREAMING_REPLICA_USER,
                        pki::DEFAULT_VALIDITY_DAYS,
                    )
                },
            )?;
        }
        None => {}
    }
    put(user, &dir.join(SERVER_CA), &server_ca.cert)?;
    put(user, &dir.join(CLIENT_CA), &client_ca.cert)?;
    match &client_ca.key {
        Some(key) => put(user, &dir.join(CLIENT_CA_KEY), key)?,
        None => {
            let _ = std::fs::remove_file(dir.join(CLIENT_CA_KEY));
        }
    }
    let trust = pki::status_port_trust(&own.cert, &server_ca.cert);
    Ok(Certificates {
        paths: CertificatePaths {
            server_ca: Some(dir.join(SERVER_CA)),
            client_ca: Some(dir.join(CLIENT_CA)),
            ..paths
        },
        trust,
    })
}

/// The client CA of the cluster whose certificates are in `dir`, with its key, to issue client
/// certificates (the pooler's); why not when the user's client CA came without its key.
pub fn client_ca(dir: &Path) -> Result<PemPair, LocalError> {
    Ok(PemPair {
        cert: crate::secrets::read_required(&dir.join(CLIENT_CA))?,
        key: read(&dir.join(CLIENT_CA_KEY))?.ok_or_else(|| {
            LocalError::Invalid("spec.certificates.clientCASecret: the client CA has no ca.key, so the pooler's client certificate cannot be issued: add ca.key to it".into())
        })?,
    })
}
