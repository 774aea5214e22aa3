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
use pgherd_instance_manager::OsUser;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::path::{Path, PathBuf};

/// Namespace used when a manifest names none.
pub const DEFAULT_NAMESPACE: &str = "default";

/// The state directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateDir {
    pub root: PathBuf,
}

/// `value` as the JSON the state files hold.
fn json_text<T: Serialize>(path: &Path, value: &T) -> Result<String, LocalError> {
    serde_json::to_string_pretty(value).map_err(|e| LocalError::Corrupt {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

/// Write `value` as JSON atomically with `mode`.
pub fn write_json<T: Serialize>(path: &Path, value: &T, mode: u32) -> Result<(), LocalError> {
    write_atomic(path, json_text(path, value)?.as_bytes(), mode)
}

/// Write `value` as JSON atomically with `mode`, owned by `user` (see [`OsUser::write_file`]).
pub fn write_json_owned<T: Serialize>(
    path: &Path,
    value: &T,
    mode: u32,
    user: &OsUser,
) -> Result<(), LocalError> {
    Ok(user.write_file(path, json_text(path, value)?.as_bytes(), mode)?)
}

/// Write a file atomically with `mode`, owned by this process. The path is walked without
/// following links another user could have planted and the temporary file is created
/// exclusively (see `pgherd_safe_fs`). The file is replaced even when unchanged: a status
/// file's modification time says when the control plane last looked.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<(), LocalError> {
    pgherd_safe_fs::replace_file(path, bytes, mode, None)
        .map(|_| ())
        .map_err(LocalError::Files)
}

/// Read a text file the way [`read_json`] does (no link another user planted is followed);
/// `None` when it does not exist.
pub fn read_text(path: &Path) -> Result<Option<String>, LocalError> {
    Ok(pgherd_safe_fs::read_file(path)
        .map_err(LocalError::Files)?
        .map(|b| String::from_utf8_lossy(&b).into_owned()))
}

/// Read a JSON file; `None` when it does not exist. Links in directories another user controls
/// are not followed.
pub fn read_json<T: DeserializeOwned>(path: &Path) -> Result<Option<T>, LocalError> {
    match pgherd_safe_fs::read_file(path).map_err(LocalError::Files)? {
        Some(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| LocalError::Corrupt {
                path: path.to_path_buf(),
                message: e.to_string(),
            }),
        None => Ok(None),
    }
}

impl StateDir {
    /// The state directory at `root` (made absolute: socket directories are named after it).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        let root = root.into();
        StateDir {
            root: std::path::absolute(&root).unwrap_or(root),
        }
    }

    /// Check that `user` (PostgreSQL's) can reach the state directory: every directory above it
    /// must let that user through, or PostgreSQL cannot open its data directory and the cluster
    /// waits forever.
    pub fn check_reachable(&self, user: &OsUser) -> Result<(), LocalError> {
        use std::os::unix::fs::MetadataExt;
        if !nix::unistd::geteuid().is_root() || user.uid == 0 {
            return Ok(());
        }
        for dir in self.root.ancestors().skip(1) {
            let Ok(meta) = std::fs::metadata(dir) else {
                continue; // created later, by us, mode 0755 or 0711
            };
            let mode = meta.mode();
            let passes = if meta.uid() == user.uid {
                mode & 0o100 != 0
            } else if meta.gid() == user.gid {
                mode & 0o010 != 0
            } else {
                mode & 0o001 != 0
            };
            if !passes {
                return Err(LocalError::Invalid(format!(
                    "PostgreSQL runs as user {:?}, which cannot enter {} (owner uid {}, mode {:o}), so it could not reach its data in the state directory {}: choose a state directory it can reach (--state-dir or PGHERD_STATE_DIR; the default when pgherd runs as root is /var/lib/pgherd)",
                    user.name,
                    dir.display(),
                    meta.uid(),
                    mode & 0o7777,
                    self.root.display()
                )));
            }
        }
        Ok(())
    }

    /// Create the directory (mode 0711: others may traverse to their own subdirectories, as the
    /// PostgreSQL user must, but not list it).
    pub fn create(&self) -> Result<(), LocalError> {
        pgherd_safe_fs::ensure_dir(&self.root, 0o711, None).map_err(LocalError::Files)?;
        // What the user applied, its status and the secrets: this user's alone.
        for private in ["objects", "status", "secrets"] {
            pgherd_safe_fs::ensure_dir(&self.root.join(private), 0o700, None)
                .map_err(LocalError::Files)?;
        }
        Ok(())
    }

    /// Whether `path` (in this state directory) exists; permission denied is an error that
    /// says so, not a "not found".
    pub fn has(&self, path: &Path) -> Result<bool, LocalError> {
        match std::fs::symlink_metadata(path) {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                Err(LocalError::Invalid(format!(
                    "permission denied reading {}: the state directory {} belongs to another user; run this command as that user (e.g. with sudo)",
                    path.display(),
                    self.root.display()
                )))
            }
            Err(e) => Err(LocalError::io("cannot read", path, e)),
        }
    }

    pub fn object_path(&self, kind: &str, namespace: &str, name: &str) -> PathBuf {
        self.root
            .join("objects")
            .join(kind)
            .join(namespace)
            .join(format!("{name}.json"))
    }

    /// A resource's status as the Kubernetes API would hold it (CloudNativePG's shape), where
    /// the local platform's own view (`status_path`) differs.
    pub fn resource_status_path(&self, kind: &str, namespace: &str, name: &str) -> PathBuf {
        self.root
            .join("status")
            .join(kind)
            .join(namespace)
            .join(format!("{name}.resource.json"))
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

    /// The (namespace, name) of every stored object of `kind`, sorted; nothing is parsed.
    pub fn list_names(&self, kind: &str) -> Result<Vec<(String, String)>, LocalError> {
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
                    if let Some(name) = path.file_stem() {
                        out.push((namespace.clone(), name.to_string_lossy().into_owned()));
                    }
                }
            }
        }
        out.sort();
        Ok(out)
    }

    /// Every stored object of `kind`, as (namespace, name, value).
    pub fn list_objects<T: DeserializeOwned>(
        &self,
        kind: &str,
    ) -> Result<Vec<(String, String, T)>, LocalError> {
        let mut out = Vec::new();
        for (namespace, name) in self.list_names(kind)? {
            if let Some(value) = read_json(&self.object_path(kind, &namespace, &name))? {
                out.push((namespace, name, value));
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

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
}
