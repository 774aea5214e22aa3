//! `pgherd pooler run`: a Pooler pod's first process on Kubernetes
//! (`pgherd_kubernetes::pooler_pod`); `pgherd pooler metrics`: the `cnpg_pgbouncer_*` exporter
//! of one PgBouncer (the local platform's). Wiring only.

use anyhow::Context as _;
use clap::Subcommand;
use pgherd_pooler::admin::AdminTarget;
use pgherd_pooler::metrics::PoolerExporter;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

#[derive(Debug, Subcommand)]
pub enum PoolerCommand {
    /// Run PgBouncer in a Pooler's pod: read the Pooler and the cluster's Secrets with the pod's
    /// ServiceAccount (`NAMESPACE`, `POOLER_NAME`, `POD_IP`), render PgBouncer's files, run it,
    /// serve its metrics on :9127, reload on change, stop it on SIGTERM.
    Run,
    /// Serve PgBouncer's metrics (`/metrics`) from its admin console.
    Metrics {
        /// PgBouncer's unix socket directory.
        #[arg(long)]
        socket_dir: PathBuf,
        /// PgBouncer's port (names its socket).
        #[arg(long)]
        port: u16,
        /// Address to serve `/metrics` on.
        #[arg(long)]
        listen: String,
        /// File holding the admin console's password.
        #[arg(long)]
        password_file: PathBuf,
    },
}

pub fn run(command: PoolerCommand) -> anyhow::Result<ExitCode> {
    let (socket_dir, port, listen, password_file) = match command {
        PoolerCommand::Run => return run_in_pod(),
        PoolerCommand::Metrics {
            socket_dir,
            port,
            listen,
            password_file,
        } => (socket_dir, port, listen, password_file),
    };
    let password = std::fs::read_to_string(&password_file)
        .with_context(|| format!("cannot read {}", password_file.display()))?
        .trim()
        .to_string();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&listen)
            .await
            .with_context(|| format!("cannot listen on {listen}"))?;
        let exporter = Arc::new(PoolerExporter::new(AdminTarget {
            socket_dir,
            port,
            password,
        }));
        pgherd_pooler::metrics::serve(listener, exporter)
            .await
            .context("metrics server")?;
        Ok(ExitCode::SUCCESS)
    })
}

fn run_in_pod() -> anyhow::Result<ExitCode> {
    let settings = pgherd_kubernetes::pooler_pod::PodSettings::from_env()
        .map_err(|e| anyhow::anyhow!("pooler run: {e}"))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime
        .block_on(pgherd_kubernetes::pooler_pod::run(settings))
        .map_err(|e| anyhow::anyhow!("pooler run: {e}"))?;
    Ok(ExitCode::SUCCESS)
}
