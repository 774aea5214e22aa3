//! The server's TLS: a CA and a serving certificate for `127.0.0.1`/`localhost` (made with the
//! controller's PKI code), the rustls configuration, and the kubeconfig clients use (the CA
//! inline and the admin's bearer token).

use crate::error::ApiError;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

/// The CA clients trust and the server's certificate.
#[derive(Debug, Clone)]
pub struct ServerPki {
    pub ca_pem: String,
    cert_pem: String,
    key_pem: String,
}

pub fn generate() -> Result<ServerPki, ApiError> {
    let pki = pgherd_controller::pki::generate(
        "kube-sim",
        &[
            "localhost".to_string(),
            "kubernetes".to_string(),
            "kubernetes.default".to_string(),
            "kubernetes.default.svc".to_string(),
            "kubernetes.default.svc.cluster.local".to_string(),
        ],
        &[IpAddr::V4(Ipv4Addr::LOCALHOST)],
        3650,
    )
    .map_err(|e| ApiError::internal(e.to_string()))?;
    Ok(ServerPki {
        ca_pem: pki.ca.cert,
        cert_pem: pki.server.cert,
        key_pem: pki.server.key,
    })
}

pub fn server_config(pki: &ServerPki) -> Result<Arc<rustls::ServerConfig>, ApiError> {
    let bad = |e: &dyn std::fmt::Display| ApiError::internal(format!("TLS setup: {e}"));
    let certs: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(pki.cert_pem.as_bytes())
            .collect::<Result<_, _>>()
            .map_err(|e| bad(&e))?;
    let key = PrivateKeyDer::from_pem_slice(pki.key_pem.as_bytes()).map_err(|e| bad(&e))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| bad(&e))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| bad(&e))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// A kubeconfig for `server` (https URL) with a user authenticating by `token`.
pub fn kubeconfig(server: &str, ca_pem: &str, user: &str, token: &str, namespace: &str) -> String {
    use base64::Engine;
    let ca = base64::engine::general_purpose::STANDARD.encode(ca_pem);
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: kube-sim\n  cluster:\n    server: {server}\n    certificate-authority-data: {ca}\nusers:\n- name: {user}\n  user:\n    token: {token}\ncontexts:\n- name: kube-sim\n  context:\n    cluster: kube-sim\n    user: {user}\n    namespace: {namespace}\ncurrent-context: kube-sim\n"
    )
}
