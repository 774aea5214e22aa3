//! The state directory: where applied objects, their status, secrets, certificates and every
//! instance's data live.
//!
//! ```text
//! STATE/
//!   control-plane.pid  control-plane.log
//!   objects/<Kind>/<namespace>/<name>.json     applied (defaulted) objects
//!   status/<Kind>/<namespace>/<name>.json      status written by the control plane
//!   secrets/<namespace>/<name>.json            Secrets, Kubernetes-shaped (mode 0600)
//!   clusters/<namespace>/<cluster>/
//!     certs/                                   CA, server and replication certificates
//!     ports.json                               endpoint ports (kept across restarts)
//!     instances/<instance>/{pgdata,run,log,instance.json,manager.pid,manager.log}
//!     poolers/<pooler>/                        PgBouncer instances (see `pooler_files`)
//! ```

use crate::LocalError;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Namespace used when a manifest names none.
pub const DEFAULT_NAMESPACE: &str = "default";

/// The state directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateDir {
    pub root: PathBuf,
}

/// Write `value` as JSON atomically with `mode`.
pub fn write_json<T: Serialize>(path: &Path, value: &T, mode: u32) -> Result<(), LocalError> {
    let text = serde_json::to_string_pretty(value).map_err(|e| LocalError::Corrupt {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    write_atomic(path, text.as_bytes(), mode)
}

/// Write a file atomically (temporary file + rename) with `mode`.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<(), LocalError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| LocalError::io("cannot create", dir, e))?;
    }
    // A temporary name of this writer's own: two processes (e.g. `local up` and the control
    // plane it starts, both recording the control plane's pid) must not share one, or one
    // rename takes the other's file away.
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let unique = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{file_name}.{}.{unique}.tmp", std::process::id()));
    std::fs::write(&tmp, bytes).map_err(|e| LocalError::io("cannot write", &tmp, e))?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode))
        .map_err(|e| LocalError::io("cannot set permissions of", &tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| LocalError::io("cannot replace", path, e))
}

/// Read a JSON file; `None` when it does not exist.
pub fn read_json<T: DeserializeOwned>(path: &Path) -> Result<Option<T>, LocalError> {
    match std::fs::read_to_string(path) {
        Ok(text) => serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| LocalError::Corrupt {
                path: path.to_path_buf(),
                message: e.to_string(),
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(LocalError::io("cannot read", path, e)),
    }
}

impl StateDir {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        StateDir { root: root.into() }
    }

    /// Create the directory (mode 0711: others may traverse to their own subdirectories, as the
    /// PostgreSQL user must, but not list it).
    pub fn create(&self) -> Result<(), LocalError> {
        std::fs::create_dir_all(&self.root)
            .map_err(|e| LocalError::io("cannot create", &self.root, e))?;
        std::fs::set_permissions(&self.root, std::fs::Permissions::from_mode(0o711))
            .map_err(|e| LocalError::io("cannot set permissions of", &self.root, e))
    }

    pub fn object_path(&self, kind: &str, namespace: &str, name: &str) -> PathBuf {
        self.root
            .join("objects")
            .join(kind)
            .join(namespace)
            .join(format!("{name}.json"))
    }

    pub fn status_path(&self, kind: &str, namespace: &str, name: &str) -> PathBuf {
        self.root
            .join("status")
            .join(kind)
            .join(namespace)
            .join(format!("{name}.json"))
    }

    pub fn secret_path(&self, namespace: &str, name: &str) -> PathBuf {
        self.root
            .join("secrets")
            .join(namespace)
            .join(format!("{name}.json"))
    }

    pub fn cluster_dir(&self, namespace: &str, cluster: &str) -> PathBuf {
        self.root.join("clusters").join(namespace).join(cluster)
    }

    pub fn instance_dir(&self, namespace: &str, cluster: &str, instance: &str) -> PathBuf {
        self.cluster_dir(namespace, cluster)
            .join("instances")
            .join(instance)
    }

    pub fn control_plane_pid(&self) -> PathBuf {
        self.root.join("control-plane.pid")
    }

    pub fn control_plane_log(&self) -> PathBuf {
        self.root.join("control-plane.log")
    }

    /// Every stored object of `kind`, as (namespace, name, value).
    pub fn list_objects<T: DeserializeOwned>(
        &self,
        kind: &str,
    ) -> Result<Vec<(String, String, T)>, LocalError> {
        let dir = self.root.join("objects").join(kind);
        let mut out = Vec::new();
        let Ok(namespaces) = std::fs::read_dir(&dir) else {
            return Ok(out);
        };
        for ns in namespaces.flatten() {
            let namespace = ns.file_name().to_string_lossy().into_owned();
            let Ok(files) = std::fs::read_dir(ns.path()) else {
                continue;
            };
            for file in files.flatten() {
                let path = file.path();
                if path.extension().is_some_and(|e| e == "json") {
                    let name = path
                        .file_stem()
                        .map(|s| s.to_string_lossy().into_owned())
                        .unwrap_or_default();
                    if let Some(value) = read_json(&path)? {
                        out.push((namespace.clone(), name, value));
                    }
                }
            }
        }
        out.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_round_trip_and_list() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::new(dir.path().join("s"));
        state.create().unwrap();
        write_json(
            &state.object_path("Cluster", "default", "a"),
            &serde_json::json!({"x": 1}),
            0o600,
        )
        .unwrap();
        write_json(
            &state.object_path("Cluster", "prod", "b"),
            &serde_json::json!({"x": 2}),
            0o600,
        )
        .unwrap();
        let all: Vec<(String, String, serde_json::Value)> = state.list_objects("Cluster").unwrap();
        assert_eq!(
            all.iter()
                .map(|(n, m, _)| format!("{n}/{m}"))
                .collect::<Vec<_>>(),
            ["default/a", "prod/b"]
        );
        let mode = std::fs::metadata(state.object_path("Cluster", "default", "a"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600);
        assert!(
            read_json::<serde_json::Value>(&state.object_path("Cluster", "x", "y"))
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn concurrent_writers_of_one_file_do_not_collide() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("control-plane.pid");
        let writers: Vec<_> = (0..8)
            .map(|i| {
                let path = path.clone();
                std::thread::spawn(move || {
                    for _ in 0..50 {
                        write_atomic(&path, format!("{i}\n").as_bytes(), 0o644).unwrap();
                    }
                })
            })
            .collect();
        for w in writers {
            w.join().unwrap();
        }
        assert!(std::fs::read_to_string(&path)
            .unwrap()
            .trim()
            .parse::<u32>()
            .is_ok());
        let leftovers = std::fs::read_dir(dir.path()).unwrap().count();
        assert_eq!(leftovers, 1, "no temporary file is left behind");
    }
}
