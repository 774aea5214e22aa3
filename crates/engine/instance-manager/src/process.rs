//! Processes by PID.

/// Whether process `pid` exists and has not exited. An exited process whose parent has not
/// collected it yet (a zombie) still answers signals, so its state is read too.
pub fn is_alive(pid: u32) -> bool {
    let exists = i32::try_from(pid)
        .is_ok_and(|p| nix::sys::signal::kill(nix::unistd::Pid::from_raw(p), None).is_ok());
    let zombie = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            stat.rsplit_once(')')
                .map(|(_, rest)| rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(false);
    exists && !zombie
}

/// The processes whose parent is `pid` (from `/proc`).
pub fn children(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(child) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let parent = std::fs::read_to_string(entry.path().join("stat"))
            .ok()
            .and_then(|stat| {
                stat.rsplit_once(')')
                    .and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<u32>().ok())
            });
        if parent == Some(pid) {
            out.push(child);
        }
    }
    out
}

fn send(pid: u32, signal: nix::sys::signal::Signal) {
    if let Ok(pid) = i32::try_from(pid) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal);
    }
}

/// Kill a postmaster and every process it started, frozen or not. PostgreSQL's children each
/// lead their own process group, so a group kill would miss them: the postmaster is stopped
/// first (it cannot fork any more), its children are killed, then it is.
pub fn kill_tree(postmaster: u32) {
    use nix::sys::signal::Signal;
    send(postmaster, Signal::SIGSTOP);
    for child in children(postmaster) {
        send(child, Signal::SIGKILL);
    }
    send(postmaster, Signal::SIGKILL);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_and_kills_a_process_tree() {
        let mut parent = std::process::Command::new("sh")
            .args(["-c", "sleep 30 & sleep 30 & wait"])
            .spawn()
            .unwrap();
        let pid = parent.id();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while children(pid).len() < 2 {
            assert!(std::time::Instant::now() < deadline, "children not found");
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let kids = children(pid);
        kill_tree(pid);
        parent.wait().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(100));
        for k in kids {
            // Reparented zombies are reaped by init (or are gone): not alive either way.
            assert!(!is_alive(k), "child {k} survived");
        }
    }
}

/// The pgherd executable, for the commands PostgreSQL and the manager start (`archive_command`,
/// `restore_command`, WAL shipping, backups). When the binary was replaced on disk while this
/// process runs (an upgrade, a rebuild), Linux reports the running one as `PATH (deleted)`: a
/// command naming that path cannot start (exit 127: WAL archiving failed on every segment), so
/// the file now at `PATH` is used.
pub fn pgherd_exe() -> std::io::Result<std::path::PathBuf> {
    let exe = std::env::current_exe()?;
    Ok(replaced_binary(&exe).unwrap_or(exe))
}

/// `PATH` for a running executable reported as `PATH (deleted)` when a file is at `PATH`.
fn replaced_binary(exe: &std::path::Path) -> Option<std::path::PathBuf> {
    let text = exe.to_str()?;
    let path = std::path::PathBuf::from(text.strip_suffix(" (deleted)")?);
    path.is_file().then_some(path)
}

#[cfg(test)]
mod exe_tests {
    #[test]
    fn a_replaced_binary_is_used_at_its_path() {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("pgherd");
        let deleted = std::path::PathBuf::from(format!("{} (deleted)", bin.display()));
        assert_eq!(super::replaced_binary(&deleted), None, "nothing there yet");
        std::fs::write(&bin, b"").unwrap();
        assert_eq!(super::replaced_binary(&deleted), Some(bin.clone()));
        assert_eq!(super::replaced_binary(&bin), None);
    }
}
