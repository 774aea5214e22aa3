//! An instance's spec file (`instance.json`): what its manager converges to. Written only when
//! its content changes, with a new generation the manager reports back once applied.

use crate::state::{read_json, write_json_owned};
use crate::LocalError;
use pgherd_instance_manager::OsUser;
use pgherd_instance_protocol::{DesiredRole, InstanceSpec};
use std::path::Path;

/// Write `instance.json` when its content changes, bumping the generation.
pub(crate) fn write_spec(
    user: &OsUser,
    dir: &Path,
    mut spec: InstanceSpec,
) -> Result<(), LocalError> {
    let path = dir.join("instance.json");
    let old: Option<InstanceSpec> = read_json(&path)?;
    if let Some(old) = &old {
        spec.generation = old.generation;
        if old == &spec {
            return Ok(());
        }
    }
    spec.generation += 1;
    let upstream = |s: &InstanceSpec| s.primary.as_ref().map(|p| p.name.clone());
    if old.as_ref().is_none_or(|o| {
        (o.role, upstream(o), o.fenced) != (spec.role, upstream(&spec), spec.fenced)
    }) {
        // Who is to be primary, who follows whom: the decisions worth reading afterwards.
        tracing::info!(
            "{}: to be {}{}{}",
            spec.name,
            match spec.role {
                DesiredRole::Primary => "primary",
                DesiredRole::Replica => "replica",
            },
            upstream(&spec)
                .map(|p| format!(" following {p}"))
                .unwrap_or_default(),
            if spec.fenced { " (fenced)" } else { "" }
        );
    }
    // 0600: it may carry custom queries taken from a Secret.
    write_json_owned(&path, &spec, 0o600, user)
}
