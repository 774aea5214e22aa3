//! Signals to a container's processes. A container is its main process and everything it
//! started (found through `/proc`'s parent links, plus its process group), standing in for the
//! cgroup a container runtime would kill or freeze as a whole.

use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;
use std::collections::{BTreeSet, HashMap};

/// `pid` and its descendants still alive.
pub fn tree(pid: u32) -> Vec<u32> {
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for e in entries.flatten() {
            let Some(p) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            if let Some(ppid) = parent_of(p) {
                children.entry(ppid).or_default().push(p);
            }
        }
    }
    let mut out = BTreeSet::new();
    let mut todo = vec![pid];
    while let Some(p) = todo.pop() {
        if out.insert(p) {
            todo.extend(children.get(&p).into_iter().flatten());
        }
    }
    out.into_iter().collect()
}

/// The parent pid from `/proc/PID/stat` (the field after the parenthesised command).
fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

fn to_pid(p: u32) -> Pid {
    Pid::from_raw(i32::try_from(p).unwrap_or(i32::MAX))
}

/// Signal only the main process (SIGTERM: what a runtime sends the container's PID 1).
pub fn signal_main(pid: u32, sig: Signal) {
    let _ = kill(to_pid(pid), sig);
}

fn pid_namespace(pid: u32) -> Option<std::path::PathBuf> {
    std::fs::read_link(format!("/proc/{pid}/ns/pid")).ok()
}

/// The init of the container's own PID namespace: the descendant of `pid` (the `unshare`
/// process, which stays in the host's namespace) that is in another PID namespace.
pub fn namespace_init(pid: u32) -> Option<u32> {
    let host = pid_namespace(pid)?;
    tree(pid)
        .into_iter()
        .find(|p| *p != pid && pid_namespace(*p).is_some_and(|ns| ns != host))
}

/// The container's processes: its process tree, and every process in its PID namespace (a
/// daemon that detached was reparented to the namespace's init, out of the tree).
pub fn members(pid: u32) -> Vec<u32> {
    let mut out: BTreeSet<u32> = tree(pid).into_iter().collect();
    if let Some(ns) = namespace_init(pid).and_then(pid_namespace) {
        for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            if let Some(p) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) {
                if pid_namespace(p).as_ref() == Some(&ns) {
                    out.insert(p);
                }
            }
        }
    }
    out.into_iter().collect()
}

/// Signal the whole container: its process group and every member.
pub fn signal_all(pid: u32, sig: Signal) {
    let members = members(pid);
    let _ = killpg(to_pid(pid), sig);
    for p in members {
        let _ = kill(to_pid(p), sig);
    }
}
