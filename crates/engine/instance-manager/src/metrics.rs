//! The instance's metrics exporter: `/metrics` on its own port, with the queries of its spec,
//! reloaded when the spec changes. A custom query file that does not parse is reported in the
//! log and left out; the rest is served.

use crate::supervisor::load_spec;
use pgherd_instance_protocol::{InstanceSpec, MonitoringSpec};
use pgherd_metrics::{ClusterFacts, Exporter, ExporterConfig, PgConnector, EXPORTER_ROLE};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

const RELOAD_EVERY: Duration = Duration::from_secs(2);

/// The queries of `monitoring`; files that do not parse are logged and skipped.
fn queries(monitoring: &MonitoringSpec) -> pgherd_metrics::QuerySet {
    let files: Vec<(String, String)> = monitoring
        .custom_queries
        .iter()
        .map(|q| (q.source.clone(), q.yaml.clone()))
        .collect();
    let disable = monitoring.disable_default_queries;
    match pgherd_metrics::query_set(disable, &files) {
        Ok(set) => set,
        Err(e) => {
            tracing::warn!("metrics: {e}; serving the other query files");
            let good: Vec<(String, String)> = files
                .into_iter()
                .filter(|f| pgherd_metrics::query_set(true, std::slice::from_ref(f)).is_ok())
                .collect();
            pgherd_metrics::query_set(disable, &good).unwrap_or_default()
        }
    }
}

fn facts(spec: &InstanceSpec) -> ClusterFacts {
    let backups = &spec.monitoring.backups;
    let seconds = |t: Option<i64>| t.map(|t| t as f64);
    ClusterFacts {
        fencing_on: spec.fenced,
        first_recoverability_point: seconds(backups.first_recoverability_point),
        last_available_backup_timestamp: seconds(backups.last_available_backup),
        last_failed_backup_timestamp: seconds(backups.last_failed_backup),
        ..ClusterFacts::default()
    }
}

/// Whether two monitoring specs run the same queries (backup facts change without a reload).
fn same_queries(a: &MonitoringSpec, b: &MonitoringSpec) -> bool {
    a.disable_default_queries == b.disable_default_queries && a.custom_queries == b.custom_queries
}

fn exporter(spec: &InstanceSpec) -> Option<Exporter> {
    let mut config = match ExporterConfig::new(&spec.cluster) {
        Ok(config) => config,
        Err(e) => {
            tracing::warn!("metrics: no exporter: {e}");
            return None;
        }
    };
    config.queries = queries(&spec.monitoring);
    config.cache_ttl = Duration::from_secs(spec.monitoring.queries_ttl_seconds);
    config.volumes = vec![("pgdata".to_string(), spec.pgdata.clone())];
    let exporter = Exporter::new(
        config,
        PgConnector {
            host: spec.socket_dir.display().to_string(),
            port: spec.port,
            user: EXPORTER_ROLE.to_string(),
            password: None,
            connect_timeout: Duration::from_secs(3),
        },
    );
    exporter.set_facts(facts(spec));
    Some(exporter)
}

/// Serve `/metrics` on `listener` until `stop`.
pub async fn serve(
    spec_path: PathBuf,
    listener: tokio::net::TcpListener,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let Ok(spec) = load_spec(&spec_path) else {
        return;
    };
    let Some(exporter) = exporter(&spec) else {
        return;
    };
    let exporter = Arc::new(exporter);
    let reload = tokio::spawn(reload(spec_path, spec.monitoring, exporter.clone()));
    let app = pgherd_metrics::router(exporter);
    let shutdown = async move {
        while !*stop.borrow() {
            if stop.changed().await.is_err() {
                break;
            }
        }
    };
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
    {
        tracing::warn!("metrics endpoint stopped: {e}");
    }
    reload.abort();
}

async fn reload(spec_path: PathBuf, mut current: MonitoringSpec, exporter: Arc<Exporter>) {
    loop {
        tokio::time::sleep(RELOAD_EVERY).await;
        let Ok(spec) = load_spec(Path::new(&spec_path)) else {
            continue;
        };
        if !same_queries(&spec.monitoring, &current) {
            exporter.set_queries(queries(&spec.monitoring));
        }
        if spec.monitoring != current {
            current = spec.monitoring.clone();
        }
        exporter.set_facts(facts(&spec));
    }
}
