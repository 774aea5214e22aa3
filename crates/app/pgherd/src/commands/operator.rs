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
    /// The Kubernetes cluster's DNS domain.
    #[arg(
        long,
        env = "KUBERNETES_CLUSTER_DOMAIN",
        default_value = "cluster.local"
    )]
    cluster_domain: String,
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
        pgherd_kubernetes::operator::run(client, settings).await;
        Ok(ExitCode::SUCCESS)
    })
}
