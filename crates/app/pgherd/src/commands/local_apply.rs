//! `pgherd local apply` and `up`: the manifests validated and stored, the control plane started.

use super::local::LocalOptions;
use anyhow::Context as _;
use pgherd_api::manifest;
use pgherd_local::instances::{running_pid, spawn_detached};
use pgherd_local::state::{StateDir, DEFAULT_NAMESPACE};

/// Validate every file; store the objects only when there is no error at all.
pub(super) fn apply(state: &StateDir, files: &[String]) -> anyhow::Result<Option<Vec<String>>> {
    let mut loaded = Vec::new();
    for file in super::validate::expand(files)? {
        let text = match super::validate::read(&file) {
            Ok(text) => text,
            Err(e) => {
                eprintln!("{file}: {e}");
                return Ok(None);
            }
        };
        loaded.push((file, manifest::load(&text)));
    }
    if loaded.iter().all(|(_, m)| m.is_empty()) {
        eprintln!("nothing to apply: {} hold(s) no objects", files.join(", "));
        return Ok(None);
    }
    for (_, manifests) in &mut loaded {
        for m in manifests.iter_mut() {
            pgherd_local::apply::mark_stored(state, m)?;
        }
    }
    // Stored catalogs and clusters come after the input, so the input's own win.
    let mut stored_refs = pgherd_local::apply::stored_references(state)?;
    let mut all: Vec<&mut manifest::Manifest> = loaded
        .iter_mut()
        .flat_map(|(_, m)| m.iter_mut())
        .chain(stored_refs.iter_mut())
        .collect();
    manifest::validate_all(&mut all);
    drop(all);
    for (_, manifests) in &mut loaded {
        for m in manifests.iter_mut() {
            pgherd_local::apply::check_image_change(state, m)?;
        }
    }
    let mut errors = 0;
    for (file, manifests) in &loaded {
        for m in manifests {
            for d in &m.diagnostics {
                errors += usize::from(d.is_error());
                eprintln!("{file}:{}: {}: {d}", m.index, m.label());
            }
        }
    }
    if errors > 0 {
        eprintln!("nothing applied: {errors} error(s)");
        return Ok(None);
    }
    // A new Cluster never starts over the data a deleted one of the same name left behind
    // (it would come back with the old data and skip its bootstrap, silently).
    for (file, manifests) in &loaded {
        for m in manifests {
            if let Some(manifest::Object::Cluster(c)) = &m.object {
                let namespace = c.metadata.namespace.as_deref().unwrap_or(DEFAULT_NAMESPACE);
                let name = c.metadata.name.as_deref().unwrap_or_default();
                let kept = state.cluster_dir(namespace, name).join("instances");
                // Data: a PGDATA in any instance directory (empty directories, such as volumes
                // mounted ahead of the cluster, are not data).
                let holds_data = std::fs::read_dir(&kept).is_ok_and(|d| {
                    d.flatten()
                        .any(|i| i.path().join("pgdata/PG_VERSION").is_file())
                });
                if holds_data && !state.has(&state.object_path("Cluster", namespace, name))? {
                    errors += 1;
                    eprintln!("{file}:{}: {}: {} holds the data of a deleted cluster of this name; a new cluster does not start over it: remove that directory (or choose another name)", m.index, m.label(), kept.display());
                }
            }
        }
    }
    if errors > 0 {
        eprintln!("nothing applied: {errors} error(s)");
        return Ok(None);
    }
    state.create()?;
    let mut stored = Vec::new();
    for (_, manifests) in &loaded {
        stored.extend(pgherd_local::apply::store(state, manifests)?);
    }
    for s in &stored {
        outln!("{s} applied");
    }
    for (file, manifests) in &loaded {
        for m in manifests.iter() {
            for why in m
                .object
                .as_ref()
                .map(pgherd_local::apply::not_honoured)
                .unwrap_or_default()
            {
                eprintln!("{file}:{}: {}: warning: {why}", m.index, m.label());
            }
        }
    }
    Ok(Some(stored))
}

pub(super) fn ensure_control_plane(state: &StateDir, options: &LocalOptions) -> anyhow::Result<()> {
    let user = pgherd_instance_manager::OsUser::for_postgres(&options.postgres_user)?;
    state.check_reachable(&user)?;
    if running_pid(&state.control_plane_pid()).is_some() {
        return Ok(());
    }
    let exe = std::env::current_exe().context("cannot find the pgherd executable")?;
    let root = state.root.display().to_string();
    let mut args = vec![
        "local",
        "--state-dir",
        &root,
        "--postgres-user",
        &options.postgres_user,
    ];
    let bin = options
        .postgres_bin
        .as_ref()
        .map(|b| b.display().to_string());
    if let Some(bin) = &bin {
        args.extend(["--postgres-bin", bin]);
    }
    args.push("controller");
    spawn_detached(
        &exe,
        &args,
        &state.control_plane_log(),
        &state.control_plane_pid(),
        None,
        None,
    )?;
    Ok(())
}
