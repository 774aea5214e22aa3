//! The webhook server's certificate and the configurations' `caBundle`.
//!
//! Secret `cnpg-webhook-cert` (type `kubernetes.io/tls`: `tls.crt`, `tls.key`, and the CA's
//! `ca.crt`) is made once by whichever replica comes first and never overwritten: a replica
//! that loses the creation race (409) reads the winner's, so every replica serves the same
//! certificate. The CA's key is not kept (nothing else is ever signed). Deleting the Secret
//! makes the operator create a new one, serve it and patch the new CA into the
//! configurations.
//!
//! `caBundle` is written with a JSON patch of exactly the `webhooks[i].clientConfig.caBundle`
//! fields that differ, each guarded by a `test` of the webhook's name, so nothing else of a
//! configuration (installed from the release) is touched. With `--webhook-url` the operator
//! owns the configurations and server-side applies them whole.

use super::config::{self, Endpoint};
use crate::operator::{OperatorError, FIELD_MANAGER};
use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ValidatingWebhookConfiguration,
};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::ByteString;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client, Resource};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::net::IpAddr;

/// Ten years: the certificate is never renewed in place (delete the Secret to rotate it).
const VALIDITY_DAYS: i64 = 3650;

/// What the webhook server serves with.
#[derive(Clone, PartialEq, Eq)]
pub struct ServingCertificate {
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
}

impl std::fmt::Debug for ServingCertificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServingCertificate")
            .field("key_pem", &"<redacted>")
            .finish_non_exhaustive()
    }
}

fn text(secret: &Secret, key: &str) -> Option<String> {
    secret
        .data
        .as_ref()?
        .get(key)
        .and_then(|v| String::from_utf8(v.0.clone()).ok())
        .filter(|s| !s.is_empty())
}

fn read(secret: &Secret, namespace: &str) -> Result<ServingCertificate, OperatorError> {
    match (
        text(secret, "ca.crt"),
        text(secret, "tls.crt"),
        text(secret, "tls.key"),
    ) {
        (Some(ca_pem), Some(cert_pem), Some(key_pem)) => Ok(ServingCertificate {
            ca_pem,
            cert_pem,
            key_pem,
        }),
        _ => Err(OperatorError::Invalid(format!(
            "Secret {namespace}/{} lacks ca.crt, tls.crt or tls.key: delete it and the operator makes a new one",
            config::SECRET
        ))),
    }
}

fn new_secret(
    namespace: &str,
    dns_names: &[String],
    ips: &[IpAddr],
) -> Result<Secret, OperatorError> {
    let (ca, server) = pgherd_controller::pki::generate_server(
        "cnpg-webhook-ca",
        &format!("{}.{namespace}.svc", config::SERVICE),
        dns_names,
        ips,
        VALIDITY_DAYS,
    )?;
    let bytes = |s: &str| ByteString(s.as_bytes().to_vec());
    Ok(Secret {
        metadata: crate::install::meta(config::SECRET, Some(namespace)),
        type_: Some("kubernetes.io/tls".to_string()),
        data: Some(BTreeMap::from([
            ("ca.crt".to_string(), bytes(&ca.cert)),
            ("tls.crt".to_string(), bytes(&server.cert)),
            ("tls.key".to_string(), bytes(&server.key)),
        ])),
        ..Secret::default()
    })
}

/// The Secret's certificate, made first if there is none (race-safe: create, 409 → read).
pub async fn ensure(
    client: &Client,
    namespace: &str,
    dns_names: &[String],
    ips: &[IpAddr],
) -> Result<ServingCertificate, OperatorError> {
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    if let Some(existing) = api.get_opt(config::SECRET).await? {
        return read(&existing, namespace);
    }
    let secret = new_secret(namespace, dns_names, ips)?;
    match api.create(&PostParams::default(), &secret).await {
        Ok(made) => {
            tracing::info!(
                "made Secret {namespace}/{} for the webhook server",
                config::SECRET
            );
            read(&made, namespace)
        }
        Err(kube::Error::Api(e)) if e.code == 409 => {
            let theirs = api.get(config::SECRET).await?;
            read(&theirs, namespace)
        }
        Err(e) => Err(e.into()),
    }
}

/// The JSON patch setting `ca_bundle` (base64 in JSON) in every webhook of `configuration`
/// that has another one; `None` when all have it.
pub fn ca_bundle_patch(configuration: &Value, ca_bundle: &str) -> Option<Value> {
    let mut ops = Vec::new();
    for (i, webhook) in configuration["webhooks"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        if webhook["clientConfig"]["caBundle"].as_str() == Some(ca_bundle) {
            continue;
        }
        ops.push(
            json!({"op": "test", "path": format!("/webhooks/{i}/name"), "value": webhook["name"]}),
        );
        ops.push(json!({"op": "add", "path": format!("/webhooks/{i}/clientConfig/caBundle"), "value": ca_bundle}));
    }
    (!ops.is_empty()).then_some(Value::Array(ops))
}

async fn patch_one<K>(client: &Client, name: &str, ca_bundle: &str) -> Result<bool, OperatorError>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::ClusterResourceScope>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + serde::Serialize,
{
    let api: Api<K> = Api::all(client.clone());
    let Some(current) = api.get_opt(name).await? else {
        return Ok(false);
    };
    let current = serde_json::to_value(&current)
        .map_err(|e| OperatorError::Invalid(format!("{name}: {e}")))?;
    if let Some(ops) = ca_bundle_patch(&current, ca_bundle) {
        let patch: json_patch::Patch = serde_json::from_value(ops)
            .map_err(|e| OperatorError::Invalid(format!("{name}: {e}")))?;
        api.patch(name, &PatchParams::default(), &Patch::Json::<()>(patch))
            .await?;
        tracing::info!("caBundle of {name} set to the webhook server's CA");
    }
    Ok(true)
}

/// Patch the CA into both configurations; whether both exist.
pub async fn patch_ca_bundles(client: &Client, ca_pem: &str) -> Result<bool, OperatorError> {
    use base64::Engine as _;
    let ca_bundle = base64::engine::general_purpose::STANDARD.encode(ca_pem);
    let mutating =
        patch_one::<MutatingWebhookConfiguration>(client, config::MUTATING, &ca_bundle).await?;
    let validating =
        patch_one::<ValidatingWebhookConfiguration>(client, config::VALIDATING, &ca_bundle).await?;
    Ok(mutating && validating)
}

/// Server-side apply both configurations calling `url` (the `--webhook-url` mode).
pub async fn apply_url_configurations(
    client: &Client,
    url: &str,
    ca_pem: &str,
) -> Result<(), OperatorError> {
    let params = PatchParams::apply(FIELD_MANAGER).force();
    let mut mutating = config::mutating(Endpoint::Url(url), Some(ca_pem));
    mutating.metadata.managed_fields = None;
    let api: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
    let body = with_type(&mutating)?;
    api.patch(config::MUTATING, &params, &Patch::Apply(body))
        .await?;
    let validating = config::validating(Endpoint::Url(url), Some(ca_pem));
    let api: Api<ValidatingWebhookConfiguration> = Api::all(client.clone());
    let body = with_type(&validating)?;
    api.patch(config::VALIDATING, &params, &Patch::Apply(body))
        .await?;
    Ok(())
}

/// An object with its `apiVersion` and `kind` (server-side apply needs them).
fn with_type<K: Resource<DynamicType = ()> + serde::Serialize>(
    object: &K,
) -> Result<Value, OperatorError> {
    let mut value = serde_json::to_value(object)
        .map_err(|e| OperatorError::Invalid(format!("cannot encode {}: {e}", K::kind(&()))))?;
    value["apiVersion"] = json!(K::api_version(&()));
    value["kind"] = json!(K::kind(&()));
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_differing_ca_bundles_are_patched_each_guarded_by_its_name() {
        let configuration = json!({"webhooks": [
            {"name": "a", "clientConfig": {"caBundle": "NEW"}},
            {"name": "b", "clientConfig": {"caBundle": "OLD", "service": {}}},
            {"name": "c", "clientConfig": {}},
        ]});
        let ops = ca_bundle_patch(&configuration, "NEW").unwrap();
        assert_eq!(
            ops,
            json!([
                {"op": "test", "path": "/webhooks/1/name", "value": "b"},
                {"op": "add", "path": "/webhooks/1/clientConfig/caBundle", "value": "NEW"},
                {"op": "test", "path": "/webhooks/2/name", "value": "c"},
                {"op": "add", "path": "/webhooks/2/clientConfig/caBundle", "value": "NEW"},
            ])
        );
        let mut patched = configuration.clone();
        let patch: json_patch::Patch = serde_json::from_value(ops).unwrap_or_default();
        assert!(json_patch::patch(&mut patched, &patch).is_ok());
        assert_eq!(patched["webhooks"][1]["clientConfig"]["service"], json!({}));
        assert!(ca_bundle_patch(&patched, "NEW").is_none());
    }
}
