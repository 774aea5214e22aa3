//! A Cluster's Secrets, made once and never overwritten (as CloudNativePG): the CA (`-ca`),
//! the server certificate (`-server`), `streaming_replica`'s client certificate
//! (`-replication`), the application owner's credentials (`-app`) and, with
//! `enableSuperuserAccess`, the superuser's (`-superuser`). Certificates `spec.certificates`
//! provides are read, never made; a certificate the user does not provide is issued by the CA
//! meant to sign it (the user's server or client CA when given, with its key). From the CA the operator derives its
//! own identity towards the instance managers: a client certificate with common name
//! `pgherd-controller` (kept in memory only) and the lease token.

use super::{ClusterRuntime, OperatorError};
use crate::secret::{self, CertificatePair, Credentials as BasicAuth};
use crate::{names, OperatorSettings};
use k8s_openapi::api::core::v1::Secret;
use kube::api::PostParams;
use kube::{Api, Client};
use pgherd_api::Cluster;
use pgherd_controller::pki::{self, PemPair};
use pgherd_instance_manager::status_client::ClientTls;
use pgherd_instance_protocol::LeaseToken;
use sha2::{Digest, Sha256};
use std::sync::Arc;

/// Certificates last this long (CloudNativePG's default: 90 days).
const VALIDITY_DAYS: i64 = 90;

/// What the operator needs from a cluster's Secrets.
pub(crate) struct ClusterCredentials {
    /// The operator's CA (`NAME-ca`).
    pub(crate) ca: PemPair,
    /// The certificate of the CA the instances' server certificates chain to (the operator's
    /// unless `spec.certificates.serverCASecret`).
    pub(crate) server_ca: String,
    pub(crate) lease_token: LeaseToken,
    /// When each certificate Secret's certificate expires (`status.certificates.expirations`).
    pub(crate) expirations: std::collections::BTreeMap<String, String>,
}

/// The operator's client identity towards one cluster's managers.
pub(crate) struct ControllerIdentity {
    /// The CA certificates it trusts, the operator's first (which issued it): a new CA means a
    /// new identity.
    trusted: String,
    pub(crate) tls: ClientTls,
}

/// The lease token of the cluster whose CA key is `ca_key`: the same after an operator restart
/// (no renewal is refused for a new token), secret as long as the CA key is.
pub fn lease_token(ca_key: &str) -> LeaseToken {
    let digest = Sha256::digest(format!("pgherd-lease\n{ca_key}").as_bytes());
    LeaseToken(digest.iter().map(|b| format!("{b:02x}")).collect())
}

fn data(secret: &Secret, key: &str) -> Option<String> {
    secret
        .data
        .as_ref()
        .and_then(|d| d.get(key))
        .and_then(|v| String::from_utf8(v.0.clone()).ok())
}

fn pair(certificate: &PemPair) -> CertificatePair {
    CertificatePair {
        certificate_pem: certificate.cert.clone(),
        private_key_pem: certificate.key.clone(),
    }
}

/// Create `secret` unless it exists (another writer may have made it meanwhile: theirs stays).
pub(crate) async fn create(api: &Api<Secret>, secret: Option<Secret>) -> Result<(), OperatorError> {
    let Some(secret) = secret else {
        return Ok(());
    };
    match api.create(&PostParams::default(), &secret).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// A CA as its Secret holds it: the certificate, and the key when the Secret has one.
struct StoredCa {
    secret: String,
    cert: String,
    key: Option<String>,
}

impl StoredCa {
    /// The CA with its key, to issue `what` from; else why not, with the field to set instead.
    fn issuer(&self, field: &str, what: &str, instead: &str) -> Result<PemPair, OperatorError> {
        match &self.key {
            Some(key) => Ok(PemPair {
                cert: self.cert.clone(),
                key: key.clone(),
            }),
            None => Err(OperatorError::Invalid(format!(
                "{field}: Secret {} has no ca.key, so the operator cannot issue {what}: add ca.key to it, or provide {what} yourself in {instead}",
                self.secret
            ))),
        }
    }
}

/// The operator's CA (`NAME-ca`): read, or made when missing.
async fn operator_ca(api: &Api<Secret>, cluster: &Cluster) -> Result<PemPair, OperatorError> {
    let namespace = cluster.metadata.namespace.as_deref().unwrap_or("default");
    let name = cluster.metadata.name.as_deref().unwrap_or_default();
    let ca_name = names::ca_secret(name);
    let stored = match api.get_opt(&ca_name).await? {
        Some(existing) => existing,
        None => {
            let made = pki::certificate_authority(name, VALIDITY_DAYS)?;
            create(api, Some(secret::ca_secret(cluster, &pair(&made))?)).await?;
            // Another operator replica may have won the race: use what is stored.
            api.get(&ca_name).await?
        }
    };
    match (data(&stored, "ca.crt"), data(&stored, "ca.key")) {
        (Some(cert), Some(key)) => Ok(PemPair { cert, key }),
        _ => Err(OperatorError::Invalid(format!(
            "Secret {namespace}/{ca_name} has no ca.crt and ca.key: it is the operator's CA (it signs the operator's identity towards the instances, and the certificates spec.certificates does not provide); delete it and the operator makes a new one"
        ))),
    }
}

/// The CA in Secret `secret` (the operator's, or the one `field` names).
async fn ca_of(
    api: &Api<Secret>,
    namespace: &str,
    secret: &str,
    field: &str,
    operators: &PemPair,
    operators_name: &str,
) -> Result<StoredCa, OperatorError> {
    if secret == operators_name {
        return Ok(StoredCa {
            secret: format!("{namespace}/{secret}"),
            cert: operators.cert.clone(),
            key: Some(operators.key.clone()),
        });
    }
    let stored = user_secret(api, namespace, secret, field).await?;
    let cert = data(&stored, "ca.crt").ok_or_else(|| {
        OperatorError::Invalid(format!(
            "{field}: Secret {namespace}/{secret} has no ca.crt (the CA certificate, PEM)"
        ))
    })?;
    Ok(StoredCa {
        secret: format!("{namespace}/{secret}"),
        cert,
        key: data(&stored, "ca.key"),
    })
}

/// A Secret the user provides through `field`: there, or said.
async fn user_secret(
    api: &Api<Secret>,
    namespace: &str,
    secret: &str,
    field: &str,
) -> Result<Secret, OperatorError> {
    api.get_opt(secret).await?.ok_or_else(|| {
        OperatorError::Invalid(format!(
            "{field}: Secret {namespace}/{secret} not found: create it (pgherd never makes a Secret spec.certificates names)"
        ))
    })
}

/// The certificate in the `kubernetes.io/tls` Secret `name` (named by `field`), read once; when
/// it is missing, made with `make` if the operator owns it (`None`: the user provides it).
async fn tls_certificate(
    api: &Api<Secret>,
    namespace: &str,
    (name, field): (&str, &str),
    make: Option<impl FnOnce() -> Result<Option<Secret>, OperatorError>>,
) -> Result<String, OperatorError> {
    let stored = match (api.get_opt(name).await?, make) {
        (Some(stored), _) => stored,
        (None, Some(make)) => {
            create(api, make()?).await?;
            // Another operator replica may have won the race: use what is stored.
            api.get(name).await?
        }
        (None, None) => user_secret(api, namespace, name, field).await?,
    };
    match (data(&stored, "tls.crt"), data(&stored, "tls.key")) {
        (Some(cert), Some(_)) => Ok(cert),
        _ => Err(OperatorError::Invalid(format!(
            "{field}: Secret {namespace}/{name} has no tls.crt and tls.key (a kubernetes.io/tls Secret)"
        ))),
    }
}

/// Make the cluster's missing Secrets (certificates from the CA meant to sign them, as
/// `spec.certificates` says); read the CAs.
pub(crate) async fn ensure(
    client: &Client,
    cluster: &Cluster,
    settings: &OperatorSettings,
) -> Result<ClusterCredentials, OperatorError> {
    let namespace = cluster.metadata.namespace.as_deref().unwrap_or("default");
    let name = cluster.metadata.name.as_deref().unwrap_or_default();
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let ca_name = names::ca_secret(name);
    let ca = operator_ca(&api, cluster).await?;
    let secrets = secret::CertificateSecrets::of(cluster);
    let user = cluster.spec.certificates.clone().unwrap_or_default();
    const SERVER_CA: &str = "spec.certificates.serverCASecret";
    const CLIENT_CA: &str = "spec.certificates.clientCASecret";
    const SERVER_TLS: &str = "spec.certificates.serverTLSSecret";
    const REPLICATION_TLS: &str = "spec.certificates.replicationTLSSecret";
    let server_ca = ca_of(
        &api,
        namespace,
        &secrets.server_ca,
        SERVER_CA,
        &ca,
        &ca_name,
    )
    .await?;
    let client_ca = ca_of(
        &api,
        namespace,
        &secrets.client_ca,
        CLIENT_CA,
        &ca,
        &ca_name,
    )
    .await?;
    let dns_names = pki::server_names(
        name,
        namespace,
        &user.server_alt_dns_names.clone().unwrap_or_default(),
    );
    let server_tls = tls_certificate(
        &api,
        namespace,
        (&secrets.server_tls, SERVER_TLS),
        user.server_tls_secret.is_none().then_some(|| {
            let issuer = server_ca.issuer(SERVER_CA, "the server certificate", SERVER_TLS)?;
            let made =
                pki::server_certificate(&issuer, &format!("{name}-rw"), &dns_names, VALIDITY_DAYS)?;
            Ok(secret::server_secret(cluster, &pair(&made))?)
        }),
    )
    .await?;
    let replication_tls = tls_certificate(
        &api,
        namespace,
        (&secrets.replication_tls, REPLICATION_TLS),
        user.replication_tls_secret.is_none().then_some(|| {
            let issuer = client_ca.issuer(
                CLIENT_CA,
                "streaming_replica's client certificate",
                REPLICATION_TLS,
            )?;
            let made = pki::client_certificate(
                &issuer,
                pgherd_postgres::conf::STREAMING_REPLICA_USER,
                VALIDITY_DAYS,
            )?;
            Ok(secret::replication_secret(cluster, &pair(&made))?)
        }),
    )
    .await?;
    let mut expirations = std::collections::BTreeMap::new();
    for (secret_name, cert) in [
        (&ca_name, &ca.cert),
        (&secrets.server_ca, &server_ca.cert),
        (&secrets.client_ca, &client_ca.cert),
        (&secrets.server_tls, &server_tls),
        (&secrets.replication_tls, &replication_tls),
    ] {
        if let Some(at) = pgherd_instance_manager::tls::expiration(cert) {
            expirations.insert(secret_name.clone(), at);
        }
    }
    let (_, owner, app_secret_name) = pgherd_controller::instance_spec::application(cluster);
    if api.get_opt(&app_secret_name).await?.is_none() {
        let credentials = BasicAuth {
            username: owner,
            password: pki::generate_password(64)?,
        };
        create(
            &api,
            secret::app_secret(cluster, &settings.cluster_domain, &credentials)?,
        )
        .await?;
    }
    if cluster.spec.enable_superuser_access == Some(true) && cluster.spec.superuser_secret.is_none()
    {
        let superuser = names::superuser_secret(name);
        if api.get_opt(&superuser).await?.is_none() {
            create(
                &api,
                secret::superuser_secret(
                    cluster,
                    &settings.cluster_domain,
                    &pki::generate_password(64)?,
                )?,
            )
            .await?;
        }
    }
    Ok(ClusterCredentials {
        lease_token: lease_token(&ca.key),
        ca,
        server_ca: server_ca.cert,
        expirations,
    })
}

/// The operator's client identity for the cluster's CA, issued once per CA.
pub(crate) fn controller_identity(
    runtime: &mut ClusterRuntime,
    credentials: &ClusterCredentials,
) -> Result<ClientTls, OperatorError> {
    // The instances present their server certificate on the status port: trust its CA too.
    let trusted = pki::status_port_trust(&credentials.ca.cert, &credentials.server_ca);
    if let Some(identity) = &runtime.controller {
        if identity.trusted == trusted {
            return Ok(identity.tls.clone());
        }
    }
    let mine = pki::client_certificate(
        &credentials.ca,
        pgherd_instance_protocol::CONTROLLER_COMMON_NAME,
        VALIDITY_DAYS,
    )?;
    let tls = pgherd_instance_manager::tls::client_config_from_pem(&trusted, &mine.cert, &mine.key)
        .map_err(|e| OperatorError::Invalid(e.to_string()))?;
    let tls: ClientTls = Arc::new(tls);
    runtime.controller = Some(ControllerIdentity {
        trusted,
        tls: tls.clone(),
    });
    Ok(tls)
}
