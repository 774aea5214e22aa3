//! The operator's admission webhooks, served by every replica (leader or not) on
//! `--webhook-port` (9443) over HTTPS, at CloudNativePG's paths
//! (`/mutate-postgresql-cnpg-io-v1-cluster`, `/validate-postgresql-cnpg-io-v1-pooler`, …):
//!
//! - [`kinds`]: the served kinds and their paths;
//! - [`review`]: one AdmissionReview answered (defaults as a JSON patch; `pgherd validate`'s
//!   rules, denying with every error and its field, warnings returned);
//! - [`server`]: the HTTPS listener;
//! - [`certs`]: Secret `cnpg-webhook-cert` (made once, race-safe) and the configurations'
//!   `caBundle`;
//! - [`config`]: the release's Service and webhook configurations.
//!
//! [`Webhooks::bind`] takes the port (an error if it is taken); [`Webhooks::run`] makes or
//! reads the certificate, serves, and keeps the configurations' `caBundle` (or, with
//! `--webhook-url`, the whole configurations) in step with the Secret, re-checking every
//! [`RECHECK`].

pub mod certs;
pub mod config;
pub mod kinds;
pub mod review;
pub mod server;

use kube::Client;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::net::TcpListener;

/// How often the Secret and the configurations are checked again.
pub const RECHECK: Duration = Duration::from_secs(10);

/// How the webhooks are served.
#[derive(Debug, Clone)]
pub struct WebhookOptions {
    /// Address to listen on (all interfaces in a pod).
    pub host: IpAddr,
    pub port: u16,
    /// The operator's namespace: the Secret and the Service are there.
    pub namespace: String,
    /// The Kubernetes cluster's DNS domain (for the certificate's names).
    pub cluster_domain: String,
    /// `https://HOST:PORT`: the operator runs outside the cluster; it makes the webhook
    /// configurations itself, calling this URL (the certificate is valid for HOST).
    pub url: Option<String>,
}

/// The host of an `https://HOST[:PORT][/…]` URL.
fn url_host(url: &str) -> Result<String, String> {
    let rest = url
        .strip_prefix("https://")
        .ok_or_else(|| format!("--webhook-url {url:?} must start with https://"))?;
    let authority = rest.split('/').next().unwrap_or_default();
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default().to_string(),
        None => authority
            .rsplit_once(':')
            .map_or(authority, |(h, _)| h)
            .to_string(),
    };
    if host.is_empty() {
        return Err(format!("--webhook-url {url:?} has no host"));
    }
    Ok(host)
}

/// A bound webhook server, not yet serving.
#[derive(Debug)]
pub struct Webhooks {
    listener: TcpListener,
    options: WebhookOptions,
    dns_names: Vec<String>,
    ips: Vec<IpAddr>,
}

impl Webhooks {
    /// Take the port; check the options.
    pub async fn bind(options: WebhookOptions) -> Result<Webhooks, String> {
        let mut extra = Vec::new();
        let mut ips = Vec::new();
        if let Some(url) = &options.url {
            let host = url_host(url)?;
            match host.parse::<IpAddr>() {
                Ok(ip) => ips.push(ip),
                Err(_) => extra.push(host),
            }
        }
        let dns_names = config::server_names(&options.namespace, &options.cluster_domain, &extra);
        let address = SocketAddr::new(options.host, options.port);
        let listener = TcpListener::bind(address).await.map_err(|e| {
            format!("cannot serve webhooks on {address}: {e} (choose another with --webhook-port)")
        })?;
        Ok(Webhooks {
            listener,
            options,
            dns_names,
            ips,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.local_addr().ok()
    }

    /// Serve until dropped, counting requests in `metrics`.
    pub async fn run(
        self,
        client: Client,
        metrics: pgherd_metrics::controller_metrics::ControllerMetrics,
    ) {
        let Webhooks {
            listener,
            options,
            dns_names,
            ips,
        } = self;
        let namespace = options.namespace.as_str();
        // The certificate first: nothing is served without it.
        let mut certificate = loop {
            match certs::ensure(&client, namespace, &dns_names, &ips).await {
                Ok(c) => break c,
                Err(e) => {
                    tracing::warn!("webhook certificate: {e}");
                    tokio::time::sleep(Duration::from_secs(2)).await;
                }
            }
        };
        let tls: server::CurrentTls = match server::tls_config(&certificate) {
            Ok(c) => Arc::new(RwLock::new(c)),
            Err(e) => {
                // A Secret someone else wrote with an unusable certificate: said until fixed.
                loop {
                    tracing::error!(
                        "Secret {namespace}/{}: {e}: delete it and the operator makes a new one",
                        config::SECRET
                    );
                    tokio::time::sleep(RECHECK).await;
                    if let Ok(c) = certs::ensure(&client, namespace, &dns_names, &ips).await {
                        if let Ok(tls) = server::tls_config(&c) {
                            certificate = c;
                            break Arc::new(RwLock::new(tls));
                        }
                    }
                }
            }
        };
        tracing::info!(
            "serving admission webhooks on {}",
            listener
                .local_addr()
                .map(|a| a.to_string())
                .unwrap_or_default()
        );
        let serving = tokio::spawn(server::serve(listener, tls.clone(), metrics));
        let _stop = AbortOnDrop(serving);
        let mut applied_for: Option<String> = None;
        let mut missing_said = false;
        loop {
            match certs::ensure(&client, namespace, &dns_names, &ips).await {
                Ok(current) if current != certificate => match server::tls_config(&current) {
                    Ok(config) => {
                        tracing::info!(
                            "Secret {namespace}/{} changed: serving its certificate",
                            config::SECRET
                        );
                        if let Ok(mut slot) = tls.write() {
                            *slot = config;
                        }
                        certificate = current;
                    }
                    Err(e) => tracing::error!("Secret {namespace}/{}: {e}", config::SECRET),
                },
                Ok(_) => {}
                Err(e) => tracing::warn!("webhook certificate: {e}"),
            }
            if let Some(url) = &options.url {
                if applied_for.as_deref() != Some(certificate.ca_pem.as_str()) {
                    match certs::apply_url_configurations(&client, url, &certificate.ca_pem).await {
                        Ok(()) => {
                            tracing::info!("webhook configurations call {url}");
                            applied_for = Some(certificate.ca_pem.clone());
                        }
                        Err(e) => tracing::warn!("webhook configurations: {e}"),
                    }
                }
            }
            match certs::patch_ca_bundles(&client, &certificate.ca_pem).await {
                Ok(true) => missing_said = false,
                Ok(false) if !missing_said => {
                    tracing::info!(
                        "no {} or {}: nothing calls the webhooks (they come with the release: pgherd manifests)",
                        config::MUTATING,
                        config::VALIDATING
                    );
                    missing_said = true;
                }
                Ok(false) => {}
                Err(e) => tracing::warn!("caBundle: {e}"),
            }
            tokio::time::sleep(RECHECK).await;
        }
    }
}

/// Ends the serving task with the loop that owns it.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_hosts() {
        assert_eq!(
            url_host("https://127.0.0.1:9443").as_deref(),
            Ok("127.0.0.1")
        );
        assert_eq!(
            url_host("https://hooks.example.com/x").as_deref(),
            Ok("hooks.example.com")
        );
        assert_eq!(url_host("https://[::1]:9443").as_deref(), Ok("::1"));
        assert!(url_host("http://127.0.0.1").is_err());
        assert!(url_host("https://").is_err());
    }
}
