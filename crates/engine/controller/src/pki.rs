//! A cluster's public-key infrastructure, as CloudNativePG manages it: one self-signed CA
//! (`<cluster>-ca`) that signs the server certificate (`<cluster>-server`, valid for the
//! cluster's service names) and the client certificate of the `streaming_replica` role
//! (`<cluster>-replication`), which replicas use to stream and to clone. Certificates are
//! valid for 90 days by default.

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, SanType,
};
use std::net::IpAddr;
use time::{Duration, OffsetDateTime};

/// Default certificate lifetime (CloudNativePG's `CERTIFICATE_DURATION`).
pub const DEFAULT_VALIDITY_DAYS: i64 = 90;

/// A certificate and its private key, PEM encoded.
#[derive(Clone, PartialEq, Eq)]
pub struct PemPair {
    pub cert: String,
    pub key: String,
}

impl std::fmt::Debug for PemPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print private keys.
        f.debug_struct("PemPair")
            .field("cert", &"<pem>")
            .field("key", &"<redacted>")
            .finish()
    }
}

/// Everything a cluster needs for TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterPki {
    pub ca: PemPair,
    pub server: PemPair,
    pub replication: PemPair,
}

/// Why certificates could not be made.
#[derive(Debug, thiserror::Error)]
#[error("cannot generate certificates: {0}")]
pub struct PkiError(#[from] rcgen::Error);

fn params(common_name: &str, days: i64) -> Result<CertificateParams, PkiError> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    params.distinguished_name = dn;
    let now = OffsetDateTime::now_utc();
    params.not_before = now - Duration::minutes(5);
    params.not_after = now + Duration::days(days);
    Ok(params)
}

/// DNS names the server certificate is valid for: each service as `name`, `name.NS`,
/// `name.NS.svc` and `name.NS.svc.cluster.local`, plus `extra`.
pub fn server_names(cluster: &str, namespace: &str, extra: &[String]) -> Vec<String> {
    let mut names = Vec::new();
    for suffix in ["rw", "r", "ro"] {
        let service = format!("{cluster}-{suffix}");
        names.push(service.clone());
        names.push(format!("{service}.{namespace}"));
        names.push(format!("{service}.{namespace}.svc"));
        names.push(format!("{service}.{namespace}.svc.cluster.local"));
    }
    names.extend(extra.iter().cloned());
    names
}

/// Generate a CA, a server certificate for `dns_names` and `ips`, and the `streaming_replica`
/// client certificate.
pub fn generate(
    cluster: &str,
    dns_names: &[String],
    ips: &[IpAddr],
    days: i64,
) -> Result<ClusterPki, PkiError> {
    let (ca, ca_key_pem, server) =
        ca_and_server(cluster, &format!("{cluster}-rw"), dns_names, ips, days)?;
    let replication = client_pair(pgherd_postgres::conf::STREAMING_REPLICA_USER, days, &ca)?;
    Ok(ClusterPki {
        ca: PemPair {
            cert: ca.pem(),
            key: ca_key_pem,
        },
        server,
        replication,
    })
}

/// A self-signed CA named `ca_name` and a server certificate named `server_name` for
/// `dns_names` and `ips`, signed by it (e.g. the operator's webhook server).
pub fn generate_server(
    ca_name: &str,
    server_name: &str,
    dns_names: &[String],
    ips: &[IpAddr],
    days: i64,
) -> Result<(PemPair, PemPair), PkiError> {
    let (ca, ca_key_pem, server) = ca_and_server(ca_name, server_name, dns_names, ips, days)?;
    Ok((
        PemPair {
            cert: ca.pem(),
            key: ca_key_pem,
        },
        server,
    ))
}

fn ca_and_server(
    ca_name: &str,
    server_name: &str,
    dns_names: &[String],
    ips: &[IpAddr],
    days: i64,
) -> Result<(CertifiedIssuer<'static, KeyPair>, String, PemPair), PkiError> {
    let (ca, ca_key_pem) = self_signed_ca(ca_name, days)?;
    let server = server_pair(server_name, dns_names, ips, days, &ca)?;
    Ok((ca, ca_key_pem, server))
}

/// A self-signed CA named `ca_name`, and its key in PEM.
fn self_signed_ca(
    ca_name: &str,
    days: i64,
) -> Result<(CertifiedIssuer<'static, KeyPair>, String), PkiError> {
    let ca_key = KeyPair::generate()?;
    let mut ca_params = params(ca_name, days)?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_key_pem = ca_key.serialize_pem();
    Ok((CertifiedIssuer::self_signed(ca_params, ca_key)?, ca_key_pem))
}

/// A server certificate named `server_name` for `dns_names` and `ips`, signed by `issuer`.
fn server_pair<S: rcgen::SigningKey>(
    server_name: &str,
    dns_names: &[String],
    ips: &[IpAddr],
    days: i64,
    issuer: &rcgen::Issuer<'_, S>,
) -> Result<PemPair, PkiError> {
    let server_key = KeyPair::generate()?;
    let mut server_params = params(server_name, days)?;
    server_params.subject_alt_names = dns_names
        .iter()
        .map(|n| n.clone().try_into().map(SanType::DnsName))
        .chain(ips.iter().map(|ip| Ok(SanType::IpAddress(*ip))))
        .collect::<Result<_, _>>()?;
    server_params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    server_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let server = server_params.signed_by(&server_key, issuer)?;
    Ok(PemPair {
        cert: server.pem(),
        key: server_key.serialize_pem(),
    })
}

/// A client certificate for database user `user` (its common name), signed by `issuer`.
fn client_pair<S: rcgen::SigningKey>(
    user: &str,
    days: i64,
    issuer: &rcgen::Issuer<'_, S>,
) -> Result<PemPair, PkiError> {
    let key = KeyPair::generate()?;
    let mut params = params(user, days)?;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let cert = params.signed_by(&key, issuer)?;
    Ok(PemPair {
        cert: cert.pem(),
        key: key.serialize_pem(),
    })
}

/// A client certificate for `user` signed by an existing cluster CA (e.g. the pooler's
/// `cnpg_pooler_pgbouncer`, issued when the first Pooler appears).
pub fn client_certificate(ca: &PemPair, user: &str, days: i64) -> Result<PemPair, PkiError> {
    let key = KeyPair::from_pem(&ca.key)?;
    let issuer = rcgen::Issuer::from_ca_cert_pem(&ca.cert, key)?;
    client_pair(user, days, &issuer)
}

/// A server certificate for `dns_names` signed by an existing CA (a user's `serverCASecret`
/// with its key, or the operator's CA when the server certificate Secret went missing).
pub fn server_certificate(
    ca: &PemPair,
    server_name: &str,
    dns_names: &[String],
    days: i64,
) -> Result<PemPair, PkiError> {
    let key = KeyPair::from_pem(&ca.key)?;
    let issuer = rcgen::Issuer::from_ca_cert_pem(&ca.cert, key)?;
    server_pair(server_name, dns_names, &[], days, &issuer)
}

/// A CA certificate named `name` and its key.
pub fn certificate_authority(name: &str, days: i64) -> Result<PemPair, PkiError> {
    let (ca, key) = self_signed_ca(name, days)?;
    Ok(PemPair {
        cert: ca.pem(),
        key,
    })
}

/// The CA certificates (PEM) the controller trusts on an instance's status port, which presents
/// PostgreSQL's server certificate: the cluster's own CA, and the server CA when it is another
/// (a user's `serverCASecret`).
pub fn status_port_trust(own_ca: &str, server_ca: &str) -> String {
    if server_ca == own_ca {
        own_ca.to_string()
    } else {
        format!("{own_ca}\n{server_ca}")
    }
}

/// A random password of `len` characters from `[A-Za-z0-9]` (from `/dev/urandom`).
pub fn generate_password(len: usize) -> std::io::Result<String> {
    use std::io::Read;
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut out = String::with_capacity(len);
    let mut random = std::fs::File::open("/dev/urandom")?;
    while out.len() < len {
        let mut bytes = vec![0u8; len * 2];
        random.read_exact(&mut bytes)?;
        // 248 = 62 * 4: bytes above it are dropped so every character is equally likely.
        out.extend(
            bytes
                .iter()
                .filter(|b| **b < 248)
                .take(len - out.len())
                .map(|b| ALPHABET[usize::from(*b % 62)] as char),
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generates_pem_material_and_hides_keys() {
        let names = server_names("c", "default", &["localhost".to_string()]);
        assert!(names.contains(&"c-rw.default.svc".to_string()));
        let pki = generate("c", &names, &["127.0.0.1".parse().unwrap()], 90).unwrap();
        for pair in [&pki.ca, &pki.server, &pki.replication] {
            assert!(pair.cert.starts_with("-----BEGIN CERTIFICATE-----"));
            assert!(pair.key.contains("PRIVATE KEY"));
        }
        let debug = format!("{pki:?}");
        assert!(!debug.contains("PRIVATE KEY"), "{debug}");

        // A later client certificate from the same CA (PostgreSQL checks the chain for real
        // in the pooler's end-to-end test).
        let pooler = client_certificate(&pki.ca, "cnpg_pooler_pgbouncer", 90).unwrap();
        assert!(pooler.cert.starts_with("-----BEGIN CERTIFICATE-----"));
        assert_ne!(pooler.cert, pki.replication.cert);
    }
}
