//! TLS with the cluster's certificates, for the manager's own connections: a rustls client
//! configuration that trusts the cluster CA only and presents a client certificate, with
//! libpq's `verify-ca` meaning (the chain is checked, the host name is not: instances are
//! reached at addresses no certificate names).

use crate::InstanceError;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use std::path::Path;
use std::sync::Arc;

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, InstanceError> {
    CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| {
            InstanceError::Tls(format!(
                "cannot read certificates from {}: {e}",
                path.display()
            ))
        })
}

fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, InstanceError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| {
        InstanceError::Tls(format!(
            "cannot read the private key {}: {e}",
            path.display()
        ))
    })
}

/// The cluster CA as a root store.
pub fn roots(ca_file: &Path) -> Result<rustls::RootCertStore, InstanceError> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in certificates(ca_file)? {
        roots
            .add(cert)
            .map_err(|e| InstanceError::Tls(format!("{}: {e}", ca_file.display())))?;
    }
    Ok(roots)
}

/// `verify-ca`: the server's chain must lead to the cluster CA; its names are not checked.
#[derive(Debug)]
struct ChainOnly(Arc<rustls::client::WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// A client configuration being built: TLS 1.2+, trusting `ca_file` (chain only).
fn client_trusting(
    ca_file: &Path,
) -> Result<
    rustls::ConfigBuilder<rustls::ClientConfig, rustls::client::WantsClientCert>,
    InstanceError,
> {
    client_trusting_roots(roots(ca_file)?)
}

fn client_trusting_roots(
    roots: rustls::RootCertStore,
) -> Result<
    rustls::ConfigBuilder<rustls::ClientConfig, rustls::client::WantsClientCert>,
    InstanceError,
> {
    let verifier =
        rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider())
            .build()
            .map_err(|e| InstanceError::Tls(e.to_string()))?;
    Ok(rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| InstanceError::Tls(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(ChainOnly(verifier))))
}

/// A client configuration trusting `ca_file` (chain only) and presenting `cert_file`/`key_file`.
pub fn client_config(
    ca_file: &Path,
    cert_file: &Path,
    key_file: &Path,
) -> Result<rustls::ClientConfig, InstanceError> {
    client_trusting(ca_file)?
        .with_client_auth_cert(certificates(cert_file)?, private_key(key_file)?)
        .map_err(|e| InstanceError::Tls(e.to_string()))
}

/// [`client_config`] from PEM text held in memory (the operator keeps the cluster CA and its
/// own certificate in Secrets and memory, never in files).
pub fn client_config_from_pem(
    ca_pem: &str,
    cert_pem: &str,
    key_pem: &str,
) -> Result<rustls::ClientConfig, InstanceError> {
    let bad = |what: &str, e: rustls_pki_types::pem::Error| {
        InstanceError::Tls(format!("cannot read {what}: {e}"))
    };
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots
            .add(cert.map_err(|e| bad("the CA certificate", e))?)
            .map_err(|e| InstanceError::Tls(format!("the CA certificate: {e}")))?;
    }
    let chain = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad("the client certificate", e))?;
    let key =
        PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(|e| bad("the client key", e))?;
    client_trusting_roots(roots)?
        .with_client_auth_cert(chain, key)
        .map_err(|e| InstanceError::Tls(e.to_string()))
}

/// A client configuration trusting `ca_file` (chain only) that presents no certificate (a
/// peer reading another instance's report).
pub fn anonymous_client_config(ca_file: &Path) -> Result<rustls::ClientConfig, InstanceError> {
    Ok(client_trusting(ca_file)?.with_no_client_auth())
}

/// The status endpoint's server configuration: the instance's server certificate; a client
/// certificate is asked for and, when given, must chain to the cluster CA (anyone may read a
/// report; what needs an identity checks it, see [`peer_common_name`]).
pub fn server_config(
    cert_file: &Path,
    key_file: &Path,
    ca_file: &Path,
) -> Result<rustls::ServerConfig, InstanceError> {
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots(ca_file)?),
        provider(),
    )
    .allow_unauthenticated()
    .build()
    .map_err(|e| InstanceError::Tls(e.to_string()))?;
    rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| InstanceError::Tls(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certificates(cert_file)?, private_key(key_file)?)
        .map_err(|e| InstanceError::Tls(e.to_string()))
}

/// When the first certificate in `pem` expires (RFC 3339, UTC), as CloudNativePG reports it in
/// `status.certificates.expirations`.
pub fn expiration(pem: &str) -> Option<String> {
    use rustls::pki_types::pem::PemObject as _;
    let der = CertificateDer::pem_slice_iter(pem.as_bytes())
        .next()?
        .ok()?;
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).ok()?;
    let at = cert.validity().not_after.to_datetime();
    at.format(&time::format_description::well_known::Rfc3339)
        .ok()
}

/// The common name of a verified client certificate chain's end entity.
pub fn peer_common_name(chain: Option<&[CertificateDer<'_>]>) -> Option<String> {
    let end_entity = chain?.first()?;
    let (_, cert) = x509_parser::parse_x509_certificate(end_entity.as_ref()).ok()?;
    let name = cert
        .subject()
        .iter_common_name()
        .next()?
        .as_str()
        .ok()?
        .to_string();
    Some(name)
}

/// The name a client asks for when connecting to an instance (the server certificate's
/// names are not checked: see `ChainOnly`).
pub fn server_name() -> ServerName<'static> {
    ServerName::try_from("pgherd-instance")
        .unwrap_or(ServerName::IpAddress(std::net::Ipv4Addr::LOCALHOST.into()))
}

/// The client a manager reads its peers' reports with (the cluster CA, no certificate), built
/// once from the spec and kept: `None` until the CA can be read.
pub fn peer_client(
    cached: &mut Option<crate::status_client::ClientTls>,
    spec: &pgherd_instance_protocol::InstanceSpec,
) -> Option<crate::status_client::ClientTls> {
    if cached.is_none() {
        *cached = anonymous_client_config(spec.certificates.server_ca())
            .map(Arc::new)
            .ok();
    }
    cached.clone()
}
