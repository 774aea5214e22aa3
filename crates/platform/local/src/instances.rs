//! Instance-manager processes: started detached (their own process group, so they outlive
//! the control plane and keep PostgreSQL serving when it is down), found again by pid file,
//! stopped with SIGTERM.

use crate::state::write_atomic;
use crate::LocalError;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// File holding an instance manager's pid, in its instance directory.
pub const MANAGER_PID: &str = "manager.pid";

/// Stop every instance manager of the cluster in `cluster_dir` (each stops its PostgreSQL).
pub fn stop_cluster(cluster_dir: &Path) {
    for instance in std::fs::read_dir(cluster_dir.join("instances"))
        .into_iter()
        .flatten()
        .flatten()
    {
        if let Some(pid) = running_pid(&instance.path().join(MANAGER_PID)) {
            if !stop(pid, Duration::from_secs(120)) {
                // A wedged manager must not outlive its cluster (and keep PostgreSQL running
                // in a directory about to be deleted): by force.
                kill_instance(&instance.path(), Duration::from_secs(10));
            }
        }
    }
}

pub use pgherd_instance_manager::process::is_alive;

/// Make this process (the control plane) the reaper of orphaned descendants: a postmaster
/// whose instance manager was killed is then collected by [`reap`] instead of lingering as a
/// zombie that still looks alive to PostgreSQL.
pub fn adopt_orphans() {
    let _ = nix::sys::prctl::set_child_subreaper(true);
}

/// The pid recorded in `pid_file`, if that process still runs.
pub fn running_pid(pid_file: &Path) -> Option<u32> {
    let pid: u32 = std::fs::read_to_string(pid_file)
        .ok()?
        .trim()
        .parse()
        .ok()?;
    is_alive(pid).then_some(pid)
}

/// The postmaster pid recorded in `pgdata/postmaster.pid`, if that process still runs.
pub fn running_postmaster(instance_dir: &Path) -> Option<u32> {
    let text = std::fs::read_to_string(instance_dir.join("pgdata/postmaster.pid")).ok()?;
    let pid: u32 = text.lines().next()?.trim().parse().ok()?;
    is_alive(pid).then_some(pid)
}

/// Neither the instance manager nor PostgreSQL of the instance in `instance_dir` runs.
pub fn is_dead(instance_dir: &Path) -> bool {
    running_pid(&instance_dir.join(MANAGER_PID)).is_none()
        && running_postmaster(instance_dir).is_none()
}

/// Fence by force: SIGKILL the instance manager (so it cannot start PostgreSQL again), then
/// the postmaster and every process it started (even frozen ones). Nothing
/// committed is lost (crash recovery replays it); nothing more can commit. True when both are
/// gone within `timeout`.
pub fn kill_instance(instance_dir: &Path, timeout: Duration) -> bool {
    if let Some(pid) = running_pid(&instance_dir.join(MANAGER_PID)) {
        if let Ok(pid) = i32::try_from(pid) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
    }
    if let Some(pid) = running_postmaster(instance_dir) {
        pgherd_instance_manager::process::kill_tree(pid);
    }
    let deadline = Instant::now() + timeout;
    loop {
        reap();
        if is_dead(instance_dir) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Start `exe args...` detached, output to `log`, pid to `pid_file`; as `user` when given
/// (and this process may switch users); inside network namespace `netns` when given.
pub fn spawn_detached(
    exe: &Path,
    args: &[&str],
    log: &Path,
    pid_file: &Path,
    user: Option<&pgherd_instance_manager::OsUser>,
    netns: Option<&str>,
) -> Result<u32, LocalError> {
    use std::os::unix::process::CommandExt;
    if let Some(dir) = log.parent() {
        std::fs::create_dir_all(dir).map_err(|e| LocalError::io("cannot create", dir, e))?;
    }
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(|e| LocalError::io("cannot open", log, e))?;
    let err = out
        .try_clone()
        .map_err(|e| LocalError::io("cannot open", log, e))?;
    if let Some(user) = user {
        user.own_file(log)?;
    }
    let mut command = match netns {
        // `ip netns exec` execs the program (and `setpriv` after it), so the pid stays.
        Some(ns) => {
            let mut command = crate::netns::command_in(ns, exe, user.map(|u| (u.uid, u.gid)));
            if let Some(user) = user {
                user.set_env(&mut command);
            }
            command
        }
        None => {
            let mut command = Command::new(exe);
            if let Some(user) = user {
                user.apply(&mut command);
            }
            command
        }
    };
    let child = command
        .args(args)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .process_group(0)
        .spawn()
        .map_err(|e| LocalError::io("cannot start", exe, e))?;
    let pid = child.id();
    write_atomic(pid_file, format!("{pid}\n").as_bytes(), 0o644)?;
    // The child is not waited for here: it is reaped by init once detached, or by our own
    // SIGCHLD handling when it exits while we run (see `reap`).
    std::mem::drop(child);
    Ok(pid)
}

/// Collect exited children so they do not linger as zombies.
pub fn reap() {
    use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
    while let Ok(status) = waitpid(None, Some(WaitPidFlag::WNOHANG)) {
        if status == WaitStatus::StillAlive {
            break;
        }
    }
}

/// SIGTERM `pid` and wait up to `timeout` for it to exit.
pub fn stop(pid: u32, timeout: Duration) -> bool {
    let Ok(raw) = i32::try_from(pid) else {
        return true;
    };
    let _ = kill(Pid::from_raw(raw), Signal::SIGTERM);
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        reap();
        if !is_alive(pid) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}
