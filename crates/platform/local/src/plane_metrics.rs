//! The control plane's own metrics (`/metrics` on the port in `control-plane.json`): the
//! controller's metrics ([`pgherd_metrics::controller_metrics`]) and where they are served.

pub use pgherd_metrics::controller_metrics::{
    serve, ControllerMetrics as PlaneMetrics, CONTROLLERS,
};

/// File in the state directory saying where the control plane serves its metrics.
pub const CONTROL_PLANE_FILE: &str = "control-plane.json";

/// Listens on the metrics port recorded in the state directory (kept across restarts), or a
/// free one, and records it.
pub async fn listen(
    state: &crate::state::StateDir,
) -> Result<tokio::net::TcpListener, crate::LocalError> {
    let path = state.root.join(CONTROL_PLANE_FILE);
    let recorded: Option<serde_json::Value> = crate::state::read_json(&path).ok().flatten();
    let port = recorded
        .as_ref()
        .and_then(|v| v["metrics"].as_str())
        .and_then(|a| a.rsplit_once(':'))
        .and_then(|(_, p)| p.parse::<u16>().ok())
        .unwrap_or(0);
    let listener = match tokio::net::TcpListener::bind(("127.0.0.1", port)).await {
        Ok(l) => l,
        Err(_) => tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .map_err(crate::LocalError::NoPort)?,
    };
    let addr = listener.local_addr().map_err(crate::LocalError::NoPort)?;
    crate::state::write_json(
        &path,
        &serde_json::json!({ "metrics": addr.to_string() }),
        0o644,
    )?;
    Ok(listener)
}
