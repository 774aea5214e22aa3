//! Where unix sockets live. Linux caps a socket path at 107 bytes, and an instance's own
//! directory (`<state>/clusters/<ns>/<cluster>/instances/<cluster>-N`) is easily longer, so
//! every PostgreSQL and PgBouncer socket goes to a short directory of its own:
//! `/run/pgherd/<hash>` when pgherd runs as root, `/tmp/pgherd-<uid>/<hash>` otherwise, where
//! `<hash>` names the instance's directory (stable across restarts and reboots).
//!
//! The base directory belongs to this process's user and nobody else can write to it: one that
//! exists with another owner or looser permissions is refused, never used. Each socket
//! directory is created inside it and given to the PostgreSQL user on the open directory.

use crate::LocalError;
use pgherd_instance_manager::OsUser;
use std::path::{Path, PathBuf};

/// The directory all of this user's socket directories go in.
pub fn base() -> PathBuf {
    let uid = nix::unistd::geteuid();
    if uid.is_root() && Path::new("/run").is_dir() {
        PathBuf::from("/run/pgherd")
    } else {
        PathBuf::from(format!("/tmp/pgherd-{uid}"))
    }
}

/// The socket directory of the instance (or PgBouncer) whose own directory is `dir`.
pub fn socket_dir(dir: &Path) -> PathBuf {
    let absolute = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
    let hash = absolute
        .as_os_str()
        .as_encoded_bytes()
        .iter()
        .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
        });
    base().join(format!("{hash:016x}"))
}

/// Create (if needed) the socket directory of `dir` for `user`, mode 0700, after checking that
/// the base directory is this process's user's alone.
pub fn prepare(dir: &Path, user: &OsUser) -> Result<PathBuf, LocalError> {
    let base = base();
    let opened = pgherd_safe_fs::Dir::open_or_create(&base).map_err(LocalError::Files)?;
    let (owner, mode) = opened.owner_and_mode().map_err(LocalError::Files)?;
    let me = nix::unistd::geteuid().as_raw();
    if owner != me || mode & 0o022 != 0 {
        return Err(LocalError::Invalid(format!(
            "{} (pgherd's socket directory) belongs to user {owner} with mode {mode:o}; only this user ({me}) may own it and nobody else may write to it: remove it and try again",
            base.display()
        )));
    }
    // Others must reach their own socket directories (the PostgreSQL user), not list them.
    opened
        .set_mode_and_owner(if me == 0 { 0o711 } else { 0o700 }, None)
        .map_err(LocalError::Files)?;
    let run = socket_dir(dir);
    user.own_dir(&run, 0o700)?;
    Ok(run)
}

/// Remove the socket directory of `dir` (the instance is gone or stopped for good).
pub fn remove(dir: &Path) {
    let _ = std::fs::remove_dir_all(socket_dir(dir));
}

fn children(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .collect()
}

/// Remove the socket directories of every instance and PgBouncer of the cluster whose
/// directory is `cluster_dir`.
pub fn remove_cluster(cluster_dir: &Path) {
    for instance in children(&cluster_dir.join("instances")) {
        remove(&instance);
    }
    for pooler in children(&cluster_dir.join("poolers")) {
        for instance in children(&pooler) {
            remove(&instance);
        }
    }
}

/// Remove the socket directories of every instance and PgBouncer in `state` (`local destroy`).
pub fn remove_all(state: &crate::StateDir) {
    for namespace in children(&state.root.join("clusters")) {
        for cluster in children(&namespace) {
            remove_cluster(&cluster);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_paths_stay_within_the_kernel_limit_and_are_stable() {
        let deep = PathBuf::from(format!(
            "/home/{}/clusters/default/{}/instances/{}-10",
            "x".repeat(60),
            "c".repeat(50),
            "c".repeat(50)
        ));
        let dir = socket_dir(&deep);
        assert!(
            dir.join(".s.PGSQL.65535").as_os_str().len() <= 107,
            "{dir:?}"
        );
        assert_eq!(dir, socket_dir(&deep), "stable");
        assert_ne!(dir, socket_dir(&deep.with_file_name("c-11")));
        assert!(dir.starts_with(base()));
    }
}
