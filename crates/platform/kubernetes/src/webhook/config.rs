//! The webhook objects of the release (pure builders): Service `cnpg-webhook-service`
//! (443 → the operator pods' 9443), MutatingWebhookConfiguration
//! `cnpg-mutating-webhook-configuration` and ValidatingWebhookConfiguration
//! `cnpg-validating-webhook-configuration`, one webhook per kind and action
//! (`mcluster.cnpg.io`, `vcluster.cnpg.io`, …) on CREATE and UPDATE with `failurePolicy: Fail`
//! (the operator down ⇒ edits refused rather than unchecked) and `sideEffects: None`.
//! The configurations call the Service, or a URL for an operator run outside the cluster.

use super::kinds::{Action, Kind, KINDS};
use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhook, MutatingWebhookConfiguration, RuleWithOperations, ServiceReference,
    ValidatingWebhook, ValidatingWebhookConfiguration, WebhookClientConfig,
};
use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::ByteString;

/// The Service in front of every operator replica's webhook server.
pub const SERVICE: &str = "cnpg-webhook-service";
/// The Secret with the webhook server's CA and certificate (made by the operator).
pub const SECRET: &str = "cnpg-webhook-cert";
pub const MUTATING: &str = "cnpg-mutating-webhook-configuration";
pub const VALIDATING: &str = "cnpg-validating-webhook-configuration";
/// The operator's webhook port (CloudNativePG's `--webhook-port`).
pub const DEFAULT_PORT: u16 = 9443;
/// The container port's name.
pub const PORT_NAME: &str = "webhook-server";

/// Where the configurations send reviews.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint<'a> {
    /// The Service in the operator's namespace (the release).
    Service { namespace: &'a str },
    /// `https://HOST:PORT` (an operator outside the cluster: tests, local runs).
    Url(&'a str),
}

/// The name of the webhook for `kind` and `action`: `mcluster.cnpg.io`, `vpooler.cnpg.io`.
pub fn webhook_name(kind: &Kind, action: Action) -> String {
    let letter = match action {
        Action::Mutate => 'm',
        Action::Validate => 'v',
    };
    format!("{letter}{}.cnpg.io", kind.kind.to_ascii_lowercase())
}

fn client_config(
    endpoint: Endpoint<'_>,
    path: String,
    ca_bundle: Option<&str>,
) -> WebhookClientConfig {
    let ca_bundle = ca_bundle.map(|pem| ByteString(pem.as_bytes().to_vec()));
    match endpoint {
        Endpoint::Service { namespace } => WebhookClientConfig {
            ca_bundle,
            service: Some(ServiceReference {
                name: SERVICE.to_string(),
                namespace: namespace.to_string(),
                path: Some(path),
                port: Some(443),
            }),
            url: None,
        },
        Endpoint::Url(base) => WebhookClientConfig {
            ca_bundle,
            service: None,
            url: Some(format!("{}{path}", base.trim_end_matches('/'))),
        },
    }
}

fn rules(kind: &Kind) -> Option<Vec<RuleWithOperations>> {
    Some(vec![RuleWithOperations {
        api_groups: Some(vec![kind.group.to_string()]),
        api_versions: Some(vec!["v1".to_string()]),
        operations: Some(vec!["CREATE".to_string(), "UPDATE".to_string()]),
        resources: Some(vec![kind.plural.to_string()]),
        scope: None,
    }])
}

fn metadata(name: &str) -> k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
    crate::install::meta(name, None)
}

/// The MutatingWebhookConfiguration (caBundle `ca_pem` when known).
pub fn mutating(endpoint: Endpoint<'_>, ca_pem: Option<&str>) -> MutatingWebhookConfiguration {
    MutatingWebhookConfiguration {
        metadata: metadata(MUTATING),
        webhooks: Some(
            KINDS
                .iter()
                .filter(|k| k.mutating)
                .map(|k| MutatingWebhook {
                    admission_review_versions: vec!["v1".to_string()],
                    client_config: client_config(endpoint, k.path(Action::Mutate), ca_pem),
                    failure_policy: Some("Fail".to_string()),
                    name: webhook_name(k, Action::Mutate),
                    rules: rules(k),
                    side_effects: "None".to_string(),
                    ..MutatingWebhook::default()
                })
                .collect(),
        ),
    }
}

/// The ValidatingWebhookConfiguration (caBundle `ca_pem` when known).
pub fn validating(endpoint: Endpoint<'_>, ca_pem: Option<&str>) -> ValidatingWebhookConfiguration {
    ValidatingWebhookConfiguration {
        metadata: metadata(VALIDATING),
        webhooks: Some(
            KINDS
                .iter()
                .map(|k| ValidatingWebhook {
                    admission_review_versions: vec!["v1".to_string()],
                    client_config: client_config(endpoint, k.path(Action::Validate), ca_pem),
                    failure_policy: Some("Fail".to_string()),
                    name: webhook_name(k, Action::Validate),
                    rules: rules(k),
                    side_effects: "None".to_string(),
                    ..ValidatingWebhook::default()
                })
                .collect(),
        ),
    }
}

/// Service `cnpg-webhook-service`: port 443 to the operator pods' `webhook-server` (9443).
pub fn service(namespace: &str) -> Service {
    Service {
        metadata: crate::install::meta(SERVICE, Some(namespace)),
        spec: Some(ServiceSpec {
            selector: Some(crate::install::pod_labels()),
            ports: Some(vec![ServicePort {
                name: Some("webhook".to_string()),
                port: 443,
                protocol: Some("TCP".to_string()),
                target_port: Some(IntOrString::String(PORT_NAME.to_string())),
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

/// The DNS names the webhook server's certificate is valid for: the Service's, plus `extra`
/// (the host of `--webhook-url`).
pub fn server_names(namespace: &str, cluster_domain: &str, extra: &[String]) -> Vec<String> {
    let mut names = vec![
        SERVICE.to_string(),
        format!("{SERVICE}.{namespace}"),
        format!("{SERVICE}.{namespace}.svc"),
        format!("{SERVICE}.{namespace}.svc.{cluster_domain}"),
    ];
    names.extend(extra.iter().cloned());
    names
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn configurations_call_cloudnative_pgs_paths() {
        let m = mutating(
            Endpoint::Service {
                namespace: "cnpg-system",
            },
            None,
        );
        let hooks = m.webhooks.unwrap();
        let names: Vec<&str> = hooks.iter().map(|h| h.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "mcluster.cnpg.io",
                "mbackup.cnpg.io",
                "mscheduledbackup.cnpg.io",
                "mdatabase.cnpg.io"
            ]
        );
        let service = hooks[0].client_config.service.as_ref().unwrap();
        assert_eq!(
            (
                service.name.as_str(),
                service.namespace.as_str(),
                service.path.as_deref()
            ),
            (
                SERVICE,
                "cnpg-system",
                Some("/mutate-postgresql-cnpg-io-v1-cluster")
            )
        );
        let v = validating(Endpoint::Url("https://127.0.0.1:9443/"), Some("PEM"));
        let hooks = v.webhooks.unwrap();
        assert!(hooks.iter().any(|h| h.name == "vpooler.cnpg.io"));
        assert_eq!(
            hooks[0].client_config.url.as_deref(),
            Some("https://127.0.0.1:9443/validate-postgresql-cnpg-io-v1-cluster")
        );
        assert_eq!(hooks[0].client_config.ca_bundle.as_ref().unwrap().0, b"PEM");
        assert!(hooks
            .iter()
            .all(|h| h.failure_policy.as_deref() == Some("Fail")
                && h.side_effects == "None"
                && h.admission_review_versions == ["v1"]));
    }
}
