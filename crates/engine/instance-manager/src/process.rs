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
