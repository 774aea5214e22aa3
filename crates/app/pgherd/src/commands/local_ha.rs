//! `pgherd local promote|fence|unfence`: the HA verbs of `kubectl cnpg`, against the local
//! platform's state directory.

use pgherd_controller::operations::FENCED_INSTANCES_ANNOTATION;
use pgherd_local::state::{read_json, StateDir};
use pgherd_local::status::LocalClusterStatus;
use std::process::ExitCode;
use std::time::{Duration, Instant};

fn exists(state: &StateDir, namespace: &str, cluster: &str, instance: &str) -> Result<(), String> {
    if !state
        .has(&state.object_path("Cluster", namespace, cluster))
        .map_err(|e| e.to_string())?
    {
        return Err(format!(
            "cluster {cluster:?} not found in namespace {namespace}"
        ));
    }
    if instance != "*"
        && !state
            .has(
                &state
                    .instance_dir(namespace, cluster, instance)
                    .join("instance.json"),
            )
            .map_err(|e| e.to_string())?
    {
        return Err(format!(
            "instance {instance:?} not found in cluster {cluster:?} (see `pgherd local status {cluster}`)"
        ));
    }
    Ok(())
}

fn status(state: &StateDir, namespace: &str, cluster: &str) -> Option<LocalClusterStatus> {
    read_json(&state.status_path("Cluster", namespace, cluster))
        .ok()
        .flatten()
}

/// Request a switchover to `instance` and wait until it is the primary.
pub fn promote(
    state: &StateDir,
    namespace: &str,
    cluster: &str,
    instance: &str,
    timeout: Duration,
) -> anyhow::Result<ExitCode> {
    if let Err(e) = exists(state, namespace, cluster, instance) {
        eprintln!("{e}");
        return Ok(ExitCode::from(1));
    }
    let request = state
        .cluster_dir(namespace, cluster)
        .join(pgherd_local::control::PROMOTE_REQUEST);
    pgherd_local::state::write_atomic(&request, instance.as_bytes(), 0o644)?;
    outln!("{cluster}: switchover to {instance} requested");
    let deadline = Instant::now() + timeout;
    let mut last_phase = String::new();
    while Instant::now() < deadline {
        if let Some(s) = status(state, namespace, cluster) {
            if s.phase != last_phase {
                outln!("{cluster}: {}", s.phase);
                last_phase = s.phase.clone();
            }
            let primary_ready = s
                .instances_status
                .iter()
                .any(|i| i.name == instance && i.role == "primary" && i.ready);
            if s.current_primary.as_deref() == Some(instance) && primary_ready {
                outln!("{cluster}: {instance} is the primary");
                return Ok(ExitCode::SUCCESS);
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!(
        "{cluster}: {instance} did not become primary within {}s; see `pgherd local status {cluster}`",
        timeout.as_secs()
    );
    Ok(ExitCode::from(1))
}

/// Add `instance` to (or remove it from) the cluster's fenced instances.
pub fn fence(
    state: &StateDir,
    namespace: &str,
    cluster: &str,
    instance: &str,
    on: bool,
) -> anyhow::Result<ExitCode> {
    if let Err(e) = exists(state, namespace, cluster, instance) {
        eprintln!("{e}");
        return Ok(ExitCode::from(1));
    }
    let stored: Option<pgherd_api::Cluster> =
        read_json(&state.object_path("Cluster", namespace, cluster))?;
    let current = stored
        .map(|c| pgherd_controller::operations::fenced_instances(&c))
        .unwrap_or_default();
    let value = pgherd_controller::operations::fencing_change(&current, instance, on)
        .map(|fenced| serde_json::to_string(&fenced))
        .transpose()?;
    pgherd_local::apply::annotate_cluster(
        state,
        namespace,
        cluster,
        FENCED_INSTANCES_ANNOTATION,
        value.as_deref(),
    )?;
    outln!(
        "{cluster}: {instance} {}",
        if on { "fenced" } else { "unfenced" }
    );
    Ok(ExitCode::SUCCESS)
}

/// `local hibernate on|off CLUSTER`: the `cnpg.io/hibernation` annotation, as `kubectl cnpg
/// hibernate` writes it; the control plane does the rest (`pgherd_controller::hibernation`).
pub fn hibernate(
    state: &StateDir,
    namespace: &str,
    cluster: &str,
    on: bool,
) -> anyhow::Result<ExitCode> {
    if let Err(e) = exists(state, namespace, cluster, "*") {
        eprintln!("{e}");
        return Ok(ExitCode::from(1));
    }
    pgherd_local::apply::annotate_cluster(
        state,
        namespace,
        cluster,
        pgherd_controller::operations::HIBERNATION_ANNOTATION,
        Some(if on { "on" } else { "off" }),
    )?;
    outln!(
        "{cluster}: hibernation {} (`pgherd local status {cluster}` shows its progress)",
        if on { "on" } else { "off" }
    );
    Ok(ExitCode::SUCCESS)
}
