//! `pgherd operator`: the Kubernetes operator (wiring only; the operator is
//! `pgherd_kubernetes::operator`).

use anyhow::Context as _;
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct OperatorOptions {
    /// The operator image, whose `/manager` every instance pod copies (CloudNativePG's
    /// variable).
    #[arg(long, env = "OPERATOR_IMAGE_NAME")]
    image: Option<String>,
    /// The namespace of the leader-election Lease (the operator's own namespace in its pod).
    #[arg(long, env = "OPERATOR_NAMESPACE", default_value = "default")]
    namespace: String,
    /// Run without leader election (one operator only).
    #[arg(long)]
    no_leader_election: bool,
    /// The Kubernetes cluster's DNS domain.
    #[arg(
        long,
        env = "KUBERNETES_CLUSTER_DOMAIN",
        default_value = "cluster.local"
    )]
    cluster_domain: String,
    /// Port of the admission webhook server (HTTPS; every replica serves it, leading or not).
    #[arg(long, env = "WEBHOOK_PORT", default_value_t = pgherd_kubernetes::webhook::config::DEFAULT_PORT)]
    webhook_port: u16,
    /// Address the webhook server listens on.
    #[arg(long, default_value = "0.0.0.0")]
    webhook_address: std::net::IpAddr,
    /// For an operator run outside the cluster (tests, local runs): the webhook configurations
    /// call `https://HOST:PORT` instead of Service cnpg-webhook-service; the operator creates
    /// them itself and its certificate is made valid for HOST.
    #[arg(long, value_name = "URL")]
    webhook_url: Option<String>,
    /// Serve no admission webhooks.
    #[arg(long, conflicts_with = "webhook_url")]
    no_webhooks: bool,
    /// Serve the operator's metrics (`/metrics`: controller-runtime's reconcile counters and
    /// pgherd's failover, switchover and backup counters) on this address (CloudNativePG's
    /// flag; the release passes the pod's address and port 8080).
    #[arg(long, value_name = "HOST:PORT")]
    metrics_bind_address: Option<std::net::SocketAddr>,
}

/// The image of this build.
pub fn default_image() -> String {
    format!("ghcr.io/pgherd/pgherd:{}", env!("CARGO_PKG_VERSION"))
}

pub fn run(options: OperatorOptions) -> anyhow::Result<ExitCode> {
    let mut settings =
        pgherd_kubernetes::OperatorSettings::new(options.image.unwrap_or_else(default_image));
    settings.cluster_domain = options.cluster_domain;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let client = pgherd_kubernetes::operator::connect()
            .await
            .context("cannot reach the Kubernetes API")?;
        tracing::info!("operator started (image {})", settings.image);
        let metrics = pgherd_kubernetes::operator::ControllerMetrics::default();
        if let Some(address) = options.metrics_bind_address {
            let listener = tokio::net::TcpListener::bind(address)
                .await
                .with_context(|| format!("cannot serve metrics on {address}"))?;
            tokio::spawn(pgherd_kubernetes::operator::serve_metrics(
                listener,
                metrics.clone(),
            ));
        }
        if !options.no_webhooks {
            let webhooks = pgherd_kubernetes::webhook::Webhooks::bind(
                pgherd_kubernetes::webhook::WebhookOptions {
                    host: options.webhook_address,
                    port: options.webhook_port,
                    namespace: options.namespace.clone(),
                    cluster_domain: settings.cluster_domain.clone(),
                    url: options.webhook_url.clone(),
                },
            )
            .await
            .map_err(anyhow::Error::msg)?;
            // Every replica serves webhooks, leading or not; ends with the runtime.
            tokio::spawn(webhooks.run(client.clone(), metrics.clone()));
        }
        if options.no_leader_election {
            pgherd_kubernetes::operator::run(client, settings, metrics).await;
            return Ok(ExitCode::SUCCESS);
        }
        // The pod's name when in a pod, else this host and process.
        let identity = std::env::var("POD_NAME").unwrap_or_else(|_| {
            let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
            format!("{}-{}", host.trim(), std::process::id())
        });
        pgherd_kubernetes::operator::run_leading(
            client,
            settings,
            metrics,
            &options.namespace,
            identity,
        )
        .await
        .map_err(anyhow::Error::msg)?;
        Ok(ExitCode::SUCCESS)
    })
}
