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

/// The pid recorded in `pid_file` (its first line), if that process still runs (and may be the
/// one recorded: see [`recorded_process`]).
pub fn running_pid(pid_file: &Path) -> Option<u32> {
    let text = pgherd_safe_fs::read_file(pid_file).ok()??;
    let pid: u32 = String::from_utf8_lossy(&text)
        .lines()
        .next()?
        .trim()
        .parse()
        .ok()?;
    recorded_process(pid, pid_file).then_some(pid)
}

/// The postmaster pid recorded in `pgdata/postmaster.pid`, if that process still runs.
pub fn running_postmaster(instance_dir: &Path) -> Option<u32> {
    running_pid(&instance_dir.join("pgdata/postmaster.pid"))
}

/// Whether the running process `pid` may be the one a pid file names. Whoever owns the pid
/// file's directory can write any number into it; the control plane signals what it finds
/// there as root, so a number counts only when its process belongs to that directory's owner
/// (the PostgreSQL user cannot make root stop sshd), when the directory is root's own, or when
/// this process started it (an instance manager in a network namespace is root until `setpriv`
/// switches users).
fn recorded_process(pid: u32, pid_file: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    if !is_alive(pid) {
        return false;
    }
    let Some(dir) = pid_file.parent() else {
        return false;
    };
    let Ok(dir) = std::fs::metadata(dir) else {
        return false;
    };
    if dir.uid() == 0 {
        return true;
    }
    match std::fs::metadata(format!("/proc/{pid}")) {
        Ok(process) if process.uid() == dir.uid() => true,
        Ok(_) => parent_of(pid) == Some(std::process::id()),
        Err(_) => false,
    }
}

/// The parent of process `pid` (from `/proc/PID/stat`).
fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "pid (comm) state ppid ...": comm may hold spaces and parentheses; the last ')' ends it.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
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
    let out = match user {
        Some(user) => user.open_log(log)?,
        None => pgherd_safe_fs::open_append(log, 0o600, None).map_err(LocalError::Files)?,
    };
    let err = out
        .try_clone()
        .map_err(|e| LocalError::io("cannot open", log, e))?;
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

#[cfg(test)]
mod pid_file_tests {
    use super::*;

    #[test]
    fn a_pid_file_another_user_can_write_names_only_that_users_processes() {
        let tmp = tempfile::tempdir().unwrap();
        let own = tmp.path().join("control-plane.pid");
        std::fs::write(&own, format!("{}\n", std::process::id())).unwrap();
        assert_eq!(running_pid(&own), Some(std::process::id()));
        if !nix::unistd::geteuid().is_root() {
            return; // the rest needs a directory owned by another user
        }
        // The PostgreSQL user's directory naming a root process (this test) is not believed:
        // the control plane would otherwise signal whatever root process it names.
        let theirs = tmp.path().join("instance");
        std::fs::create_dir(&theirs).unwrap();
        std::os::unix::fs::chown(&theirs, Some(65534), Some(65534)).unwrap();
        let planted = theirs.join("manager.pid");
        std::fs::write(&planted, "1\n").unwrap();
        assert_eq!(running_pid(&planted), None, "pid 1 is root's");
        std::fs::write(&planted, format!("{}\n", std::process::id())).unwrap();
        assert_eq!(
            running_pid(&planted),
            None,
            "this root process is not its own child"
        );
        std::fs::create_dir(theirs.join("pgdata")).unwrap();
        std::os::unix::fs::chown(theirs.join("pgdata"), Some(65534), Some(65534)).unwrap();
        std::fs::write(theirs.join("pgdata/postmaster.pid"), "1\n/data\n").unwrap();
        assert_eq!(running_postmaster(&theirs), None);
        // A child this process started is believed whatever user it runs as.
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        std::fs::write(&planted, format!("{}\n", child.id())).unwrap();
        assert_eq!(running_pid(&planted), Some(child.id()));
        let _ = child.kill();
        let _ = child.wait();
    }
}
