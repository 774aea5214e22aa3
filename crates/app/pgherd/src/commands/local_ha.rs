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

/// `local restart CLUSTER [INSTANCE] [--primary]`, as `kubectl cnpg restart`: the whole cluster
/// rolled (the restart annotation changed), or one instance restarted in place (the primary as
/// CloudNativePG's in-place restart, a replica as its deleted Pod; its data kept either way).
pub fn restart(
    state: &StateDir,
    namespace: &str,
    cluster: &str,
    instance: Option<&str>,
    primary: bool,
) -> anyhow::Result<ExitCode> {
    if !state.has(&state.object_path("Cluster", namespace, cluster))? {
        eprintln!("cluster {cluster:?} not found in namespace {namespace}");
        return Ok(ExitCode::from(1));
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    if instance.is_none() && !primary {
        pgherd_local::apply::annotate_cluster(
            state,
            namespace,
            cluster,
            pgherd_local::control::RESTARTED_AT_ANNOTATION,
            Some(&now.as_secs().to_string()),
        )?;
        outln!("{cluster}: rolling restart requested");
        return Ok(ExitCode::SUCCESS);
    }
    let current = status(state, namespace, cluster);
    let target = match instance {
        Some(given) => {
            let names: Vec<String> = current
                .as_ref()
                .map(|s| s.instances_status.iter().map(|i| i.name.clone()).collect())
                .unwrap_or_default();
            match pgherd_controller::operations::resolve_instance(cluster, &names, given) {
                Ok(name) => name,
                Err(e) => {
                    eprintln!("{e}");
                    return Ok(ExitCode::from(1));
                }
            }
        }
        None => match current.as_ref().and_then(|s| s.current_primary.clone()) {
            Some(p) => p,
            None => {
                eprintln!(
                    "cluster {cluster:?} has no primary yet (see `pgherd local status {cluster}`); nothing to restart"
                );
                return Ok(ExitCode::from(1));
            }
        },
    };
    let path = state
        .cluster_dir(namespace, cluster)
        .join(pgherd_local::control::RESTART_REQUESTS);
    let mut requests: std::collections::BTreeMap<String, String> =
        read_json(&path)?.unwrap_or_default();
    requests.insert(target.clone(), now.as_nanos().to_string());
    pgherd_local::state::write_json(&path, &requests, 0o644)?;
    let is_primary = current
        .as_ref()
        .is_some_and(|s| s.current_primary.as_deref() == Some(target.as_str()));
    if is_primary {
        outln!("{cluster}: in-place restart of the primary {target} requested");
    } else {
        outln!("{cluster}: restart of instance {target} requested");
    }
    Ok(ExitCode::SUCCESS)
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
