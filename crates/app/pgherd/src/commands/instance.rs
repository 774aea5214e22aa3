//! `pgherd instance run --spec FILE`: wiring of the instance manager (HTTP server + loop).

use anyhow::Context as _;
use pgherd_instance_manager::{http, supervisor};
use std::path::Path;
use std::process::ExitCode;

pub fn run(spec_path: &Path) -> anyhow::Result<ExitCode> {
    let spec = supervisor::load_spec(spec_path)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let listener = listen(&spec, spec.status_port, "status").await?;
        let metrics_listener = if spec.metrics_port == 0 {
            None
        } else {
            Some(listen(&spec, spec.metrics_port, "metrics").await?)
        };
        let shared = supervisor::Shared::default();
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let server = tokio::spawn(http::serve(listener, shared.clone(), stop_rx.clone()));
        let metrics = metrics_listener.map(|l| {
            tokio::spawn(pgherd_instance_manager::metrics::serve(
                spec_path.to_path_buf(),
                l,
                stop_rx.clone(),
            ))
        });
        let liveness = tokio::spawn(supervisor::watch_liveness(
            spec_path.to_path_buf(),
            shared.clone(),
            stop_rx.clone(),
        ));
        let lease = tokio::spawn(pgherd_instance_manager::lease::watch(
            spec_path.to_path_buf(),
            shared.clone(),
            stop_rx.clone(),
        ));
        let supervisor = tokio::spawn(supervisor::run(spec_path.to_path_buf(), shared, stop_rx));
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        stop_tx.send(true).ok();
        supervisor.await.context("instance manager loop")??;
        liveness.await.context("liveness watch")?;
        lease.await.context("lease watch")?;
        server.await.context("status server")??;
        if let Some(metrics) = metrics {
            metrics.await.context("metrics endpoint")?;
        }
        Ok(ExitCode::SUCCESS)
    })
}

/// A listener on the instance's address for one of its ports.
async fn listen(
    spec: &pgherd_instance_protocol::InstanceSpec,
    port: u16,
    what: &str,
) -> anyhow::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind((spec.listen_host.as_str(), port))
        .await
        .with_context(|| {
            format!(
                "cannot listen on {}:{port} ({what} port of {})",
                spec.listen_host, spec.name
            )
        })
}
