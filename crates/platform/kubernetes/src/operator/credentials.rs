//! A Cluster's Secrets, made once and never overwritten (as CloudNativePG): the CA (`-ca`),
//! the server certificate (`-server`), `streaming_replica`'s client certificate
//! (`-replication`), the application owner's credentials (`-app`) and, with
//! `enableSuperuserAccess`, the superuser's (`-superuser`). From the CA the operator derives its
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
    pub(crate) ca: PemPair,
    pub(crate) lease_token: LeaseToken,
    /// When each certificate Secret's certificate expires (`status.certificates.expirations`).
    pub(crate) expirations: std::collections::BTreeMap<String, String>,
}

/// The operator's client identity towards one cluster's managers.
pub(crate) struct ControllerIdentity {
    /// The CA certificate that issued it (a new CA means a new identity).
    ca_cert: String,
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

/// Make the cluster's missing Secrets; read the CA.
pub(crate) async fn ensure(
    client: &Client,
    cluster: &Cluster,
    settings: &OperatorSettings,
) -> Result<ClusterCredentials, OperatorError> {
    let namespace = cluster.metadata.namespace.as_deref().unwrap_or("default");
    let name = cluster.metadata.name.as_deref().unwrap_or_default();
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let ca_name = names::ca_secret(name);
    let ca = match api.get_opt(&ca_name).await? {
        Some(existing) => match (data(&existing, "ca.crt"), data(&existing, "ca.key")) {
            (Some(cert), Some(key)) => PemPair { cert, key },
            _ => {
                return Err(OperatorError::Invalid(format!(
                    "Secret {namespace}/{ca_name} has no ca.crt and ca.key: delete it and the operator makes a new CA (with new -server and -replication certificates)"
                )))
            }
        },
        None => {
            let dns_names = pki::server_names(
                name,
                namespace,
                &cluster
                    .spec
                    .certificates
                    .as_ref()
                    .and_then(|c| c.server_alt_dns_names.clone())
                    .unwrap_or_default(),
            );
            let made = pki::generate(name, &dns_names, &[], VALIDITY_DAYS)?;
            // The server and replication certificates first: a CA Secret without them would
            // read as "made" on the next pass.
            create(&api, secret::server_secret(cluster, &pair(&made.server))?).await?;
            create(&api, secret::replication_secret(cluster, &pair(&made.replication))?).await?;
            create(&api, secret::ca_secret(cluster, &pair(&made.ca))?).await?;
            // Another operator replica may have won the race: use what is stored.
            let stored = api.get(&ca_name).await?;
            match (data(&stored, "ca.crt"), data(&stored, "ca.key")) {
                (Some(cert), Some(key)) => PemPair { cert, key },
                _ => made.ca,
            }
        }
    };
    let mut expirations = std::collections::BTreeMap::new();
    if let Some(at) = pgherd_instance_manager::tls::expiration(&ca.cert) {
        expirations.insert(ca_name.clone(), at);
    }
    for (secret_name, what) in [
        (names::server_secret(name), "server"),
        (names::replication_secret(name), "replication"),
    ] {
        let Some(stored) = api.get_opt(&secret_name).await? else {
            return Err(OperatorError::Invalid(format!(
                "Secret {namespace}/{secret_name} (the {what} certificate) is missing while {ca_name} exists: delete {ca_name} and the operator makes all three again"
            )));
        };
        if let Some(at) =
            data(&stored, "tls.crt").and_then(|c| pgherd_instance_manager::tls::expiration(&c))
        {
            expirations.insert(secret_name, at);
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
        expirations,
    })
}

/// The operator's client identity for the cluster's CA, issued once per CA.
pub(crate) fn controller_identity(
    runtime: &mut ClusterRuntime,
    credentials: &ClusterCredentials,
) -> Result<ClientTls, OperatorError> {
    if let Some(identity) = &runtime.controller {
        if identity.ca_cert == credentials.ca.cert {
            return Ok(identity.tls.clone());
        }
    }
    let mine = pki::client_certificate(
        &credentials.ca,
        pgherd_instance_protocol::CONTROLLER_COMMON_NAME,
        VALIDITY_DAYS,
    )?;
    let tls = pgherd_instance_manager::tls::client_config_from_pem(
        &credentials.ca.cert,
        &mine.cert,
        &mine.key,
    )
    .map_err(|e| OperatorError::Invalid(e.to_string()))?;
    let tls: ClientTls = Arc::new(tls);
    runtime.controller = Some(ControllerIdentity {
        ca_cert: credentials.ca.cert.clone(),
        tls: tls.clone(),
    });
    Ok(tls)
}
