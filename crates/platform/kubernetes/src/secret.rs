//! The cluster's Secrets with CloudNativePG's types and keys: `NAME-app` and `NAME-superuser`
//! (`kubernetes.io/basic-auth`: username, user, password, dbname, host, port, pgpass, uri,
//! jdbc-uri, fqdn-uri, fqdn-jdbc-uri), `NAME-ca` (ca.crt, ca.key), `NAME-server`,
//! `NAME-replication` and `NAME-pooler` (`kubernetes.io/tls`: tls.crt, tls.key).
//!
//! Passwords and PEMs are generated elsewhere and passed in; the input types print them
//! redacted, and nothing here logs. The operator never overwrites the data of an existing
//! Secret: these builders give what to create.

use crate::error::Result;
use crate::labels::{self, map, Base};
use crate::names;
use crate::pod::POSTGRES_PORT;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::ByteString;
use pgherd_api::Cluster;
use std::collections::BTreeMap;
use std::fmt;

/// A user's login, as a basic-auth Secret holds it.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// A certificate and its private key, PEM-encoded.
#[derive(Clone, PartialEq, Eq)]
pub struct CertificatePair {
    pub certificate_pem: String,
    pub private_key_pem: String,
}

impl fmt::Debug for CertificatePair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertificatePair")
            .field("certificate_pem", &self.certificate_pem)
            .field("private_key_pem", &"<redacted>")
            .finish()
    }
}

/// Percent-encode everything but RFC 3986's unreserved characters.
fn escape(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The data of a basic-auth Secret for `credentials` on database `dbname`, connecting
/// through `NAME-rw`.
fn basic_auth_data(
    base: &Base,
    cluster_domain: &str,
    credentials: &Credentials,
    dbname: &str,
) -> BTreeMap<String, ByteString> {
    let host = names::rw_service(&base.name);
    let namespace = base.namespace_or_default();
    let port = POSTGRES_PORT;
    let Credentials { username, password } = credentials;
    let (user, pass, db) = (escape(username), escape(password), escape(dbname));
    let uri = |h: &str| format!("postgresql://{user}:{pass}@{h}:{port}/{db}");
    let jdbc = |h: &str| format!("jdbc:postgresql://{h}:{port}/{db}?password={pass}&user={user}");
    let short = format!("{host}.{namespace}");
    let fqdn = format!("{host}.{namespace}.svc.{cluster_domain}");
    [
        ("username", username.clone()),
        ("user", username.clone()),
        ("password", password.clone()),
        ("dbname", dbname.to_string()),
        ("host", host.clone()),
        ("port", port.to_string()),
        (
            "pgpass",
            format!("{host}:{port}:{dbname}:{username}:{password}\n"),
        ),
        ("uri", uri(&short)),
        ("jdbc-uri", jdbc(&short)),
        ("fqdn-uri", uri(&fqdn)),
        ("fqdn-jdbc-uri", jdbc(&fqdn)),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), ByteString(v.into_bytes())))
    .collect()
}

fn basic_auth(
    cluster: &Cluster,
    cluster_domain: &str,
    name: &str,
    user_type: &str,
    credentials: &Credentials,
    dbname: &str,
) -> Result<Secret> {
    let base = Base::of_cluster(cluster)?;
    let mut secret_labels = map([
        (labels::CLUSTER, &base.name),
        (labels::USER_TYPE, user_type),
        (labels::RELOAD, "true"),
    ]);
    secret_labels.insert(
        "app.kubernetes.io/managed-by".to_string(),
        labels::MANAGED_BY.to_string(),
    );
    Ok(Secret {
        metadata: base.meta(name, secret_labels, BTreeMap::new())?,
        type_: Some("kubernetes.io/basic-auth".to_string()),
        data: Some(basic_auth_data(&base, cluster_domain, credentials, dbname)),
        ..Secret::default()
    })
}

/// The Secret holding the application owner's password: the bootstrap's `secret`, else
/// `NAME-app`.
pub fn app_secret_name(cluster: &Cluster) -> String {
    pgherd_controller::instance_spec::application(cluster).2
}

/// The Secret holding the `postgres` role's password: `superuserSecret`, else
/// `NAME-superuser`.
pub fn superuser_secret_name(cluster: &Cluster) -> String {
    cluster
        .spec
        .superuser_secret
        .as_ref()
        .map(|s| s.name.clone())
        .unwrap_or_else(|| {
            names::superuser_secret(cluster.metadata.name.as_deref().unwrap_or_default())
        })
}

/// `NAME-app`, unless the bootstrap names the user's own secret. `credentials.username` is the
/// application owner; the database is the bootstrap's (`app` by default).
pub fn app_secret(
    cluster: &Cluster,
    cluster_domain: &str,
    credentials: &Credentials,
) -> Result<Option<Secret>> {
    let bootstrap = cluster.spec.bootstrap.as_ref();
    let initdb = bootstrap.and_then(|b| b.initdb.as_ref());
    let recovery = bootstrap.and_then(|b| b.recovery.as_ref());
    let clone = bootstrap.and_then(|b| b.pg_basebackup.as_ref());
    let user_secret = initdb
        .and_then(|i| i.secret.as_ref())
        .or_else(|| recovery.and_then(|r| r.secret.as_ref()))
        .or_else(|| clone.and_then(|c| c.secret.as_ref()));
    if user_secret.is_some() {
        return Ok(None);
    }
    let database = recovery
        .and_then(|r| r.database.clone())
        .or_else(|| clone.and_then(|c| c.database.clone()))
        .or_else(|| initdb.and_then(|i| i.database.clone()))
        .unwrap_or_else(|| pgherd_api::defaults::DEFAULT_APP_DATABASE.to_string());
    let name = names::app_secret(cluster.metadata.name.as_deref().unwrap_or_default());
    basic_auth(
        cluster,
        cluster_domain,
        &name,
        "app",
        credentials,
        &database,
    )
    .map(Some)
}

/// `NAME-superuser` (user `postgres`, database `*`), only with `enableSuperuserAccess` and no
/// `superuserSecret` of the user's.
pub fn superuser_secret(
    cluster: &Cluster,
    cluster_domain: &str,
    password: &str,
) -> Result<Option<Secret>> {
    if cluster.spec.enable_superuser_access != Some(true) || cluster.spec.superuser_secret.is_some()
    {
        return Ok(None);
    }
    let name = names::superuser_secret(cluster.metadata.name.as_deref().unwrap_or_default());
    let credentials = Credentials {
        username: "postgres".to_string(),
        password: password.to_string(),
    };
    basic_auth(
        cluster,
        cluster_domain,
        &name,
        "superuser",
        &credentials,
        "*",
    )
    .map(Some)
}

fn certificate_secret(
    cluster: &Cluster,
    name: &str,
    type_: &str,
    data: [(&str, &str); 2],
) -> Result<Secret> {
    let base = Base::of_cluster(cluster)?;
    let mut secret_labels = map([(labels::CLUSTER, &base.name)]);
    secret_labels.insert(
        "app.kubernetes.io/managed-by".to_string(),
        labels::MANAGED_BY.to_string(),
    );
    Ok(Secret {
        metadata: base.meta(name, secret_labels, BTreeMap::new())?,
        type_: Some(type_.to_string()),
        data: Some(
            data.into_iter()
                .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
                .collect(),
        ),
        ..Secret::default()
    })
}

fn certificates(cluster: &Cluster) -> pgherd_api::cluster::CertificatesConfiguration {
    cluster.spec.certificates.clone().unwrap_or_default()
}

/// Which Secret holds each of a cluster's certificates: the one `spec.certificates` names, or
/// the operator's (`NAME-ca` for both CAs, `NAME-server`, `NAME-replication`), as
/// CloudNativePG resolves them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateSecrets {
    /// `ca.crt` (and `ca.key` when the operator issues the server certificate from it).
    pub server_ca: String,
    /// `ca.crt` (and `ca.key` when the operator issues client certificates from it).
    pub client_ca: String,
    /// `tls.crt`, `tls.key`: what PostgreSQL presents.
    pub server_tls: String,
    /// `tls.crt`, `tls.key`: `streaming_replica`'s client certificate.
    pub replication_tls: String,
}

impl CertificateSecrets {
    /// The Secrets of `cluster`.
    pub fn of(cluster: &Cluster) -> Self {
        Self::with(
            cluster.metadata.name.as_deref().unwrap_or_default(),
            certificates(cluster),
        )
    }

    /// The operator's Secrets of the cluster named `name` (no `spec.certificates`).
    pub fn operators(name: &str) -> Self {
        Self::with(name, Default::default())
    }

    fn with(name: &str, user: pgherd_api::cluster::CertificatesConfiguration) -> Self {
        let pick =
            |own: Option<String>, default: String| own.filter(|s| !s.is_empty()).unwrap_or(default);
        CertificateSecrets {
            server_ca: pick(user.server_ca_secret, names::ca_secret(name)),
            client_ca: pick(user.client_ca_secret, names::ca_secret(name)),
            server_tls: pick(user.server_tls_secret, names::server_secret(name)),
            replication_tls: pick(user.replication_tls_secret, names::replication_secret(name)),
        }
    }
}

/// `NAME-ca` (`ca.crt`, `ca.key`): the operator's CA. It signs whichever side the user does
/// not provide (server certificates, or client certificates such as `streaming_replica`'s),
/// and always the operator's own identity towards the instance managers, so pgherd keeps it
/// even when the user provides both CAs (where CloudNativePG would not make it).
pub fn ca_secret(cluster: &Cluster, ca: &CertificatePair) -> Result<Secret> {
    let name = names::ca_secret(cluster.metadata.name.as_deref().unwrap_or_default());
    certificate_secret(
        cluster,
        &name,
        "Opaque",
        [
            ("ca.crt", &ca.certificate_pem),
            ("ca.key", &ca.private_key_pem),
        ],
    )
}

/// `NAME-server` (`kubernetes.io/tls`), unless the user provides the server certificate.
pub fn server_secret(cluster: &Cluster, server: &CertificatePair) -> Result<Option<Secret>> {
    if certificates(cluster).server_tls_secret.is_some() {
        return Ok(None);
    }
    let name = names::server_secret(cluster.metadata.name.as_deref().unwrap_or_default());
    tls_secret(cluster, &name, server).map(Some)
}

/// `NAME-replication` (`kubernetes.io/tls`, CN `streaming_replica`), unless the user
/// provides the replication certificate.
pub fn replication_secret(cluster: &Cluster, client: &CertificatePair) -> Result<Option<Secret>> {
    if certificates(cluster).replication_tls_secret.is_some() {
        return Ok(None);
    }
    let name = names::replication_secret(cluster.metadata.name.as_deref().unwrap_or_default());
    tls_secret(cluster, &name, client).map(Some)
}

/// `NAME-pooler` (`kubernetes.io/tls`, CN `cnpg_pooler_pgbouncer`): the client certificate
/// PgBouncer authenticates with; the operator makes it while any Pooler uses the cluster.
pub fn pooler_secret(cluster: &Cluster, client: &CertificatePair) -> Result<Secret> {
    let name = names::pooler_secret(cluster.metadata.name.as_deref().unwrap_or_default());
    tls_secret(cluster, &name, client)
}

fn tls_secret(cluster: &Cluster, name: &str, pair: &CertificatePair) -> Result<Secret> {
    certificate_secret(
        cluster,
        name,
        "kubernetes.io/tls",
        [
            ("tls.crt", &pair.certificate_pem),
            ("tls.key", &pair.private_key_pem),
        ],
    )
}

/// DNS names the server certificate must carry: each Service as `name`, `name.NS`,
/// `name.NS.svc` and `name.NS.svc.DOMAIN`, then `certificates.serverAltDNSNames`.
pub fn server_dns_names(
    cluster: &Cluster,
    service_names: &[String],
    cluster_domain: &str,
) -> Vec<String> {
    let namespace = cluster.metadata.namespace.as_deref().unwrap_or("default");
    let mut out = Vec::new();
    for service in service_names {
        out.push(service.clone());
        out.push(format!("{service}.{namespace}"));
        out.push(format!("{service}.{namespace}.svc"));
        out.push(format!("{service}.{namespace}.svc.{cluster_domain}"));
    }
    out.extend(
        certificates(cluster)
            .server_alt_dns_names
            .unwrap_or_default(),
    );
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn cluster() -> Cluster {
        let mut c = Cluster::new("pg", Default::default());
        c.metadata.uid = Some("u".into());
        c.metadata.namespace = Some("ns".into());
        c
    }

    #[test]
    fn app_secret_has_cloudnativepgs_keys() {
        let credentials = Credentials {
            username: "app".into(),
            password: "p@ss".into(),
        };
        assert!(!format!("{credentials:?}").contains("p@ss"));
        let s = app_secret(&cluster(), "cluster.local", &credentials)
            .unwrap()
            .unwrap();
        assert_eq!(s.type_.as_deref(), Some("kubernetes.io/basic-auth"));
        let data = s.data.unwrap();
        let get = |k: &str| String::from_utf8(data[k].0.clone()).unwrap();
        assert_eq!(get("uri"), "postgresql://app:p%40ss@pg-rw.ns:5432/app");
        assert_eq!(
            get("fqdn-jdbc-uri"),
            "jdbc:postgresql://pg-rw.ns.svc.cluster.local:5432/app?password=p%40ss&user=app"
        );
        assert_eq!(get("pgpass"), "pg-rw:5432:app:app:p@ss\n");
        assert_eq!(s.metadata.labels.unwrap()["cnpg.io/userType"], "app");
    }

    #[test]
    fn user_certificates_replace_the_operators_one_by_one() {
        let pair = CertificatePair {
            certificate_pem: "c".into(),
            private_key_pem: "k".into(),
        };
        let mut c = cluster();
        let operators = CertificateSecrets::of(&c);
        assert_eq!(operators.server_ca, "pg-ca");
        assert_eq!(operators.client_ca, "pg-ca");
        assert_eq!(operators.server_tls, "pg-server");
        assert_eq!(operators.replication_tls, "pg-replication");
        let certificates = c.spec.certificates.get_or_insert_with(Default::default);
        certificates.server_ca_secret = Some("my-ca".into());
        certificates.server_tls_secret = Some("my-server".into());
        assert!(server_secret(&c, &pair).unwrap().is_none());
        assert!(replication_secret(&c, &pair).unwrap().is_some());
        let certificates = c.spec.certificates.get_or_insert_with(Default::default);
        certificates.client_ca_secret = Some("my-client-ca".into());
        let user = CertificateSecrets::of(&c);
        assert_eq!(user.server_ca, "my-ca");
        assert_eq!(user.client_ca, "my-client-ca");
        assert_eq!(user.server_tls, "my-server");
        assert_eq!(user.replication_tls, "pg-replication");
        assert_eq!(
            ca_secret(&c, &pair).unwrap().metadata.name.as_deref(),
            Some("pg-ca"),
            "the operator's own CA stays: it signs the operator's identity"
        );
        let secret_key = CertificatePair {
            certificate_pem: "cert".into(),
            private_key_pem: "PRIVATE-KEY-BYTES".into(),
        };
        assert!(!format!("{secret_key:?}").contains("PRIVATE-KEY-BYTES"));
    }

    #[test]
    fn superuser_secret_only_when_enabled() {
        let mut c = cluster();
        assert!(superuser_secret(&c, "cluster.local", "x")
            .unwrap()
            .is_none());
        c.spec.enable_superuser_access = Some(true);
        let s = superuser_secret(&c, "cluster.local", "x").unwrap().unwrap();
        let data = s.data.unwrap();
        assert_eq!(data["dbname"].0, b"*");
        assert_eq!(data["username"].0, b"postgres");
    }
}
