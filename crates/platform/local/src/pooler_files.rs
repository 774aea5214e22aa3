//! A Pooler's files and processes on the local platform.
//!
//! ```text
//! clusters/<namespace>/<cluster>/
//!   certs/pooler.{crt,key}            cnpg_pooler_pgbouncer's client certificate (0600)
//!   poolers/<pooler>/
//!     ports.json                      the endpoint's and every instance's ports (kept)
//!     admin-password                  the admin console's password (0600)
//!     <pooler>-<n>/                   one PgBouncer instance (0700, the PostgreSQL user's)
//!       pgbouncer.ini pg_hba.conf userlist.txt (0600)  run/ (its unix socket)
//!       pgbouncer.pid pgbouncer.log exporter.pid exporter.log
//! ```
//!
//! PgBouncer and its exporter run detached as the PostgreSQL OS user, never as root, so they
//! keep serving while the control plane is away, like the instance managers.

use crate::instances::{running_pid, spawn_detached, stop};
use crate::placement::free_port;
use crate::state::{read_json, write_json, StateDir};
use crate::LocalError;
use pgherd_instance_manager::OsUser;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub const PGBOUNCER_PID: &str = "pgbouncer.pid";
pub const EXPORTER_PID: &str = "exporter.pid";

/// Where PgBouncer is installed (Debian/Ubuntu put it in /usr/sbin).
pub fn pgbouncer_binary() -> Result<PathBuf, LocalError> {
    ["/usr/sbin/pgbouncer", "/usr/bin/pgbouncer", "/usr/local/bin/pgbouncer"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .ok_or_else(|| {
            LocalError::Invalid(
                "pgbouncer is not installed (looked in /usr/sbin, /usr/bin, /usr/local/bin); install it (scripts/install.sh does)".into(),
            )
        })
}

/// Ports of one PgBouncer instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstancePorts {
    pub pgbouncer: u16,
    pub metrics: u16,
}

/// Ports of a pooler, allocated once and kept.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolerPorts {
    pub endpoint: u16,
    #[serde(default)]
    pub instances: BTreeMap<String, InstancePorts>,
}

/// The directory of pooler `name` of cluster `cluster`.
pub fn pooler_dir(state: &StateDir, namespace: &str, cluster: &str, name: &str) -> PathBuf {
    state
        .cluster_dir(namespace, cluster)
        .join("poolers")
        .join(name)
}

/// The paths of one PgBouncer instance.
#[derive(Debug, Clone)]
pub struct InstanceFiles {
    pub root: PathBuf,
    pub ini: PathBuf,
    pub hba: PathBuf,
    pub auth_file: PathBuf,
    pub run: PathBuf,
}

impl InstanceFiles {
    pub fn new(root: PathBuf) -> Self {
        InstanceFiles {
            ini: root.join("pgbouncer.ini"),
            hba: root.join("pg_hba.conf"),
            auth_file: root.join("userlist.txt"),
            run: crate::sockets::socket_dir(&root),
            root,
        }
    }
}

/// The pooler's ports, allocating what is missing for `instances` (and the endpoint).
pub fn ensure_ports(dir: &Path, instances: &[String]) -> Result<PoolerPorts, LocalError> {
    let path = dir.join("ports.json");
    let mut ports: PoolerPorts = read_json(&path)?.unwrap_or_default();
    let before = ports.clone();
    if ports.endpoint == 0 {
        ports.endpoint = free_port()?;
    }
    for name in instances {
        if !ports.instances.contains_key(name) {
            ports.instances.insert(
                name.clone(),
                InstancePorts {
                    pgbouncer: free_port()?,
                    metrics: free_port()?,
                },
            );
        }
    }
    if ports != before {
        write_json(&path, &ports, 0o644)?;
    }
    Ok(ports)
}

/// Forget the ports of instances no longer wanted.
pub fn forget_ports(
    dir: &Path,
    ports: &mut PoolerPorts,
    keep: &[String],
) -> Result<(), LocalError> {
    let before = ports.instances.len();
    ports.instances.retain(|k, _| keep.contains(k));
    if ports.instances.len() != before {
        write_json(&dir.join("ports.json"), ports, 0o644)?;
    }
    Ok(())
}

/// The admin console's password, generated once (0600, readable by the PostgreSQL user, who
/// runs the exporter).
pub fn admin_password(dir: &Path, user: &OsUser) -> Result<String, LocalError> {
    let path = dir.join("admin-password");
    if let Ok(Some(text)) = crate::state::read_text(&path) {
        if !text.trim().is_empty() {
            return Ok(text.trim().to_string());
        }
    }
    let password = crate::secrets::generate_password(32)?;
    user.write_file(&path, password.as_bytes(), 0o600)?;
    Ok(password)
}

/// `cnpg_pooler_pgbouncer`'s client certificate, issued by the cluster's client CA once, kept as
/// `certs/pooler.{crt,key}` and as the `<cluster>-pooler` Secret (kubernetes.io/tls).
pub fn ensure_certificate(
    state: &StateDir,
    namespace: &str,
    cluster: &str,
    user: &OsUser,
) -> Result<(PathBuf, PathBuf), LocalError> {
    let certs = state.cluster_dir(namespace, cluster).join("certs");
    let (cert, key) = (certs.join("pooler.crt"), certs.join("pooler.key"));
    if cert.exists() && key.exists() {
        return Ok((cert, key));
    }
    // PostgreSQL checks it against the cluster's client CA: issued by that CA.
    let pair = pgherd_controller::pki::client_certificate(
        &crate::certificates::client_ca(&certs)?,
        pgherd_pooler::AUTH_USER,
        pgherd_controller::pki::DEFAULT_VALIDITY_DAYS,
    )?;
    for (path, text) in [(&cert, &pair.cert), (&key, &pair.key)] {
        user.write_file(path, text.as_bytes(), 0o600)?;
    }
    let secret: k8s_openapi::api::core::v1::Secret = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "kubernetes.io/tls",
        "metadata": {"name": format!("{cluster}-pooler"), "namespace": namespace,
                     "labels": {"cnpg.io/cluster": cluster}},
        "stringData": {"tls.crt": pair.cert, "tls.key": pair.key},
    }))
    .map_err(|e| LocalError::Invalid(format!("pooler secret: {e}")))?;
    crate::secrets::store(state, namespace, &secret)?;
    Ok((cert, key))
}

/// Write `path` (0600, the PostgreSQL user's) when its content differs; whether it changed.
pub fn write_if_changed(path: &Path, text: &str, user: &OsUser) -> Result<bool, LocalError> {
    let written = pgherd_safe_fs::write_file(path, text.as_bytes(), 0o600, user.owner())
        .map_err(LocalError::Files)?;
    Ok(written == pgherd_safe_fs::Written::Replaced)
}

/// Start PgBouncer of `files` unless it runs; its pid.
pub fn ensure_pgbouncer(files: &InstanceFiles, user: &OsUser) -> Result<(u32, bool), LocalError> {
    let pid_file = files.root.join(PGBOUNCER_PID);
    if let Some(pid) = running_pid(&pid_file) {
        return Ok((pid, false));
    }
    crate::sockets::prepare(&files.root, user)?;
    let binary = pgbouncer_binary()?;
    let ini = files.ini.display().to_string();
    let pid = spawn_detached(
        &binary,
        &[&ini],
        &files.root.join("pgbouncer.log"),
        &pid_file,
        Some(user),
        None,
    )?;
    Ok((pid, true))
}

/// Start the exporter of `files` unless it runs.
pub fn ensure_exporter(
    exe: &Path,
    files: &InstanceFiles,
    ports: InstancePorts,
    password_file: &Path,
    user: &OsUser,
) -> Result<(), LocalError> {
    let pid_file = files.root.join(EXPORTER_PID);
    if running_pid(&pid_file).is_some() {
        return Ok(());
    }
    let (socket, port, listen, password) = (
        files.run.display().to_string(),
        ports.pgbouncer.to_string(),
        format!("127.0.0.1:{}", ports.metrics),
        password_file.display().to_string(),
    );
    spawn_detached(
        exe,
        &[
            "pooler",
            "metrics",
            "--socket-dir",
            &socket,
            "--port",
            &port,
            "--listen",
            &listen,
            "--password-file",
            &password,
        ],
        &files.root.join("exporter.log"),
        &pid_file,
        Some(user),
        None,
    )?;
    Ok(())
}

/// Stop the PgBouncer and exporter in `dir` (one instance).
pub fn stop_instance(dir: &Path) {
    for pid_file in [EXPORTER_PID, PGBOUNCER_PID] {
        if let Some(pid) = running_pid(&dir.join(pid_file)) {
            // SIGTERM: PgBouncer closes at once (it waits for nothing on SIGTERM in 1.18).
            stop(pid, Duration::from_secs(10));
        }
    }
    crate::sockets::remove(dir);
}

/// Stop every pooler process of the cluster in `cluster_dir` (`local down`, cluster deleted).
pub fn stop_cluster_poolers(cluster_dir: &Path) {
    for pooler in std::fs::read_dir(cluster_dir.join("poolers"))
        .into_iter()
        .flatten()
        .flatten()
    {
        for instance in std::fs::read_dir(pooler.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            if instance.path().is_dir() {
                stop_instance(&instance.path());
            }
        }
    }
}
