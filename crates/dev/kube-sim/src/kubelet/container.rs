//! One container run as a local process (Kubernetes docs "Containers", "Configure a Security
//! Context"): `unshare` gives it a private mount and UTS namespace in which a generated shell
//! script sets the hostname, bind-mounts the image's files and the volumes at their mount paths
//! (parents first; `subPath`, `readOnly`), the pod's `/etc/hosts`, `/etc/passwd`, `/etc/group`
//! and private `/tmp`, then `exec`s the command as runAsUser/runAsGroup with fsGroup and
//! supplementalGroups (`setpriv`). stdout and stderr go to the container's log file.

use super::env;
use super::images::Image;
use std::collections::BTreeMap;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;

/// Everything needed to start (and restart) one container.
#[derive(Debug, Clone)]
pub struct Launch {
    pub name: String,
    pub argv: Vec<String>,
    pub env: BTreeMap<String, String>,
    /// (host path, path in the container, read-only), in mount order.
    pub mounts: Vec<(PathBuf, PathBuf, bool)>,
    pub hostname: String,
    pub workdir: Option<String>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub groups: Vec<u32>,
    /// Where the script goes.
    pub script: PathBuf,
    /// The node's cgroup (`cgroup.procs`) the container and its execs run in (see `partition`).
    pub cgroup: Option<PathBuf>,
}

/// The user and groups a container runs as: its securityContext over the pod's.
pub fn identity(
    pod_spec: &serde_json::Value,
    container: &serde_json::Value,
) -> (Option<u32>, Option<u32>, Vec<u32>) {
    let pick = |k: &str| {
        container["securityContext"][k]
            .as_u64()
            .or(pod_spec["securityContext"][k].as_u64())
            .map(|v| v as u32)
    };
    let uid = pick("runAsUser");
    let gid = pick("runAsGroup").or(match uid {
        Some(26) => Some(26),
        Some(65532) => Some(65532),
        Some(_) => Some(0),
        None => None,
    });
    let mut groups: Vec<u32> = pod_spec["securityContext"]["supplementalGroups"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|g| g.as_u64().map(|g| g as u32))
        .collect();
    if let Some(fs) = pod_spec["securityContext"]["fsGroup"].as_u64() {
        groups.insert(0, fs as u32);
    }
    if let Some(g) = gid {
        if !groups.contains(&g) {
            groups.insert(0, g);
        }
    }
    (uid, gid, groups)
}

/// The command line: `command` (or the image's entrypoint) then `args` (or the image's cmd
/// when no command is given), with `$(VAR)` references expanded.
pub fn argv(
    container: &serde_json::Value,
    image: &Image,
    env: &BTreeMap<String, String>,
) -> Vec<String> {
    let list = |k: &str| -> Option<Vec<String>> {
        container[k].as_array().map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(|s| env::expand(s, env)))
                .collect()
        })
    };
    let command = list("command");
    let args = list("args");
    let mut argv = command.clone().unwrap_or_else(|| image.entrypoint.clone());
    match (args, command) {
        (Some(a), _) => argv.extend(a),
        (None, None) => argv.extend(image.cmd.clone()),
        (None, Some(_)) => {}
    }
    argv
}

pub(crate) fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// The script run inside the new namespaces.
pub fn script(l: &Launch) -> String {
    let mut s = String::from("set -e\n");
    s.push_str(&format!("/usr/bin/hostname {}\n", quote(&l.hostname)));
    for (src, dst, ro) in &l.mounts {
        let (src, dst) = (quote(&src.to_string_lossy()), quote(&dst.to_string_lossy()));
        s.push_str(&format!(
            "if [ -d {src} ]; then mkdir -p {dst}; elif [ ! -e {dst} ]; then mkdir -p \"$(dirname {dst})\"; : > {dst}; fi\n"
        ));
        // -n: no utab under /run (which may be a volume by now).
        s.push_str(&format!("/usr/bin/mount -n --bind {src} {dst}\n"));
        if *ro {
            s.push_str(&format!("/usr/bin/mount -n -o remount,bind,ro {dst}\n"));
        }
    }
    if let Some(w) = &l.workdir {
        s.push_str(&format!("mkdir -p {0}; cd {0}\n", quote(w)));
    }
    let argv: Vec<String> = l.argv.iter().map(|a| quote(a)).collect();
    match l.uid {
        Some(uid) => {
            let groups = if l.groups.is_empty() {
                "--clear-groups".to_string()
            } else {
                let g: Vec<String> = l.groups.iter().map(u32::to_string).collect();
                format!("--groups={}", g.join(","))
            };
            s.push_str(&format!(
                "exec /usr/bin/setpriv --reuid={uid} --regid={} {groups} -- {}\n",
                l.gid.unwrap_or(0),
                argv.join(" ")
            ));
        }
        None => s.push_str(&format!("exec {}\n", argv.join(" "))),
    }
    s
}

/// Start the container's process with stdout and stderr appended to `log`.
pub fn spawn(l: &Launch, log: &Path) -> std::io::Result<tokio::process::Child> {
    if let Some(dir) = log.parent() {
        std::fs::create_dir_all(dir)?;
    }
    if let Some(dir) = l.script.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&l.script, script(l))?;
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)?;
    let err = out.try_clone()?;
    let mut cmd = super::partition::in_cgroup(l.cgroup.as_deref(), "/usr/bin/unshare");
    // A PID namespace of its own, as a container has: a daemon that detaches (`pg_ctl start`
    // leaves the postmaster to init) stays in it, and killing its init (the forked shell; it
    // dies with `unshare`) ends every process in it, as a runtime ending a cgroup would.
    cmd.args([
        "--mount",
        "--uts",
        "--pid",
        "--fork",
        "--kill-child",
        "--mount-proc",
        "--propagation",
        "private",
        "--",
        "/bin/sh",
    ])
    .arg(&l.script)
    .env_clear()
    .envs(&l.env)
    .stdin(Stdio::null())
    .stdout(out)
    .stderr(err)
    .process_group(0);
    let mut cmd = tokio::process::Command::from(cmd);
    // Should the kubelet's task be dropped without stopping the container (shutdown), the
    // main process does not outlive it.
    cmd.kill_on_drop(true);
    cmd.spawn()
}

/// Run `argv` inside a running container (its namespaces, user and environment), for exec
/// probes and `pods/exec`.
pub fn exec_in(pid: u32, l: &Launch, argv: &[String]) -> tokio::process::Command {
    // The namespaces' init: `unshare`'s child (`unshare` itself stays in the host's PID
    // namespace).
    let target = crate::kubelet::process::namespace_init(pid).unwrap_or(pid);
    let mut cmd = super::partition::in_cgroup(l.cgroup.as_deref(), "/usr/bin/nsenter");
    cmd.arg(format!("--target={target}"))
        .args(["--mount", "--uts", "--pid"]);
    if let Some(w) = &l.workdir {
        cmd.arg(format!("--wd={w}"));
    }
    cmd.arg("--");
    if let Some(uid) = l.uid {
        cmd.arg("/usr/bin/setpriv")
            .arg(format!("--reuid={uid}"))
            .arg(format!("--regid={}", l.gid.unwrap_or(0)));
        if l.groups.is_empty() {
            cmd.arg("--clear-groups");
        } else {
            let g: Vec<String> = l.groups.iter().map(u32::to_string).collect();
            cmd.arg(format!("--groups={}", g.join(",")));
        }
        cmd.arg("--");
    }
    cmd.args(argv)
        .env_clear()
        .envs(&l.env)
        .stdin(Stdio::null())
        .process_group(0);
    tokio::process::Command::from(cmd)
}
