//! `pgherd local status` and waiting for a cluster to be healthy.

use anyhow::bail;
use pgherd_local::state::{read_json, StateDir};
use pgherd_local::status::LocalClusterStatus;
use std::process::ExitCode;
use std::time::{Duration, Instant};

pub(super) fn wait_healthy(
    state: &StateDir,
    applied: &[String],
    timeout: Duration,
) -> anyhow::Result<ExitCode> {
    let clusters: Vec<(String, String)> = applied
        .iter()
        .filter_map(|s| s.strip_prefix("Cluster/"))
        .filter_map(|s| s.split_once('/'))
        .map(|(ns, n)| (ns.to_string(), n.to_string()))
        .collect();
    let deadline = Instant::now() + timeout;
    // Only a status written after this call counts: one left from before a `down` is stale.
    let since = std::time::SystemTime::now();
    let fresh = |path: &std::path::Path| {
        std::fs::metadata(path)
            .and_then(|m| m.modified())
            .is_ok_and(|t| t > since)
    };
    let mut last = std::collections::BTreeMap::new();
    loop {
        let mut all_healthy = true;
        for (ns, name) in &clusters {
            let path = state.status_path("Cluster", ns, name);
            let status: Option<LocalClusterStatus> = if fresh(&path) {
                read_json(&path)?
            } else {
                None
            };
            let phase = status
                .as_ref()
                .map(|s| {
                    let reason = s
                        .phase_reason
                        .as_deref()
                        .map(|r| format!(": {r}"))
                        .unwrap_or_default();
                    format!(
                        "{} ({}/{} ready){reason}",
                        s.phase, s.ready_instances, s.instances
                    )
                })
                .unwrap_or_else(|| "pending".into());
            if last.get(name) != Some(&phase) {
                eprintln!("{name}: {phase}");
                last.insert(name.clone(), phase);
            }
            // Why an instance cannot progress, once per new reason.
            for i in status.iter().flat_map(|s| &s.instances_status) {
                let key = format!("{name}/{}", i.name);
                let error = i.error.clone().unwrap_or_default();
                if last.get(&key).unwrap_or(&String::new()) != &error {
                    if !error.is_empty() {
                        eprintln!("{name}: {}: {error}", i.name);
                    }
                    last.insert(key, error);
                }
            }
            match status {
                Some(s) if s.phase == pgherd_controller::phase::HEALTHY => {}
                Some(s) => {
                    all_healthy = false;
                    if let Some(reason) = cannot_start(&s) {
                        eprintln!(
                            "{name} cannot start: {reason}\n  fix the manifest and apply it again (see `pgherd local status {name}`)"
                        );
                        return Ok(ExitCode::from(1));
                    }
                }
                None => all_healthy = false,
            }
        }
        if all_healthy {
            for (ns, name) in &clusters {
                if let Some(s) =
                    read_json::<LocalClusterStatus>(&state.status_path("Cluster", ns, name))?
                {
                    outln!(
                        "{name} is healthy: primary {}, rw {}, ro {}",
                        s.current_primary.unwrap_or_default(),
                        s.endpoints.get("rw").cloned().unwrap_or_default(),
                        s.endpoints.get("ro").cloned().unwrap_or_default()
                    );
                    outln!("  connect: pgherd local psql {name}");
                }
            }
            return Ok(ExitCode::SUCCESS);
        }
        if Instant::now() > deadline {
            eprintln!("timed out waiting for the clusters to become healthy; see `pgherd local status` and {}", state.control_plane_log().display());
            return Ok(ExitCode::from(2));
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Why a cluster cannot get further without a change to its manifest (or the machine): a
/// pass refused the manifest, or an instance reports an error that trying again cannot fix.
pub(super) fn cannot_start(s: &LocalClusterStatus) -> Option<String> {
    if s.phase == pgherd_controller::phase::CANNOT_CREATE_OBJECTS {
        if let Some(c) = s
            .conditions
            .iter()
            .find(|c| c.reason == pgherd_local::plane::INVALID_CONFIGURATION)
        {
            return Some(c.message.clone());
        }
    }
    s.instances_status
        .iter()
        .find(|i| i.stuck)
        .and_then(|i| Some(format!("{}: {}", i.name, i.error.as_deref()?)))
}

pub(super) fn status(
    state: &StateDir,
    name: Option<String>,
    output: Option<&str>,
    namespace: &str,
    verbose: u8,
) -> anyhow::Result<ExitCode> {
    let mut statuses = Vec::new();
    for (ns, cluster_name, _) in state.list_objects::<serde_json::Value>("Cluster")? {
        if name.as_ref().is_some_and(|n| n != &cluster_name) || (name.is_some() && ns != namespace)
        {
            continue;
        }
        let stored =
            read_json::<LocalClusterStatus>(&state.status_path("Cluster", &ns, &cluster_name))?;
        statuses.push(pgherd_local::status::as_of_now(
            state,
            &ns,
            &cluster_name,
            stored,
        ));
    }
    if let Some(n) = &name {
        if statuses.is_empty() {
            eprintln!(
                "cluster {n:?} not found in namespace {namespace} ({})",
                state.root.display()
            );
            return Ok(ExitCode::from(1));
        }
    }
    match output {
        Some("json") if name.is_some() => {
            outln!("{}", serde_json::to_string_pretty(&statuses[0])?)
        }
        Some("json") => outln!("{}", serde_json::to_string_pretty(&statuses)?),
        Some("yaml") => out!("{}", serde_yaml_ng::to_string(&statuses)?),
        Some(other) => bail!("unknown output format {other:?}; use json or yaml"),
        None => {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
            for (i, s) in statuses.iter().enumerate() {
                if i > 0 {
                    outln!();
                }
                let view = pgherd_local::status::shared_view(state, s, now);
                out!(
                    "{}",
                    pgherd_controller::status_render::render(&view, verbose)
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
