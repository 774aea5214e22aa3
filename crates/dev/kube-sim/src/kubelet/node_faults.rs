//! Node faults: `kill` (SIGKILL every process of the node's pods and run nothing more there,
//! as a node losing power), `freeze` (SIGSTOP them and silence the node's kubelet, as a hung
//! machine), `partition` (cut the node's pods off the network of the other nodes, the
//! ClusterIPs and the API server — see `partition` — while they and the kubelet's probes and
//! restarts go on, the kubelet no longer reporting, as a node behind a broken switch) and
//! `restore` (SIGCONT, reconnect, or after a kill start the pods again as after a reboot).
//! A faulty node stops heart-beating, so the node lifecycle controller marks it NotReady after
//! the grace period. `kube-sim node ACTION NODE --state-dir DIR` asks a running server by
//! writing `DIR/kubelet/faults/NODE`; the server applies it and removes the file.

use super::Shared;
use nix::sys::signal::Signal;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Running,
    Frozen,
    Killed,
    Partitioned,
}

/// A node as the kubelet keeps it.
#[derive(Debug)]
pub struct NodeRuntime {
    pub index: usize,
    pub mode: Mode,
    pub last_heartbeat: Instant,
    /// When the node's Lease was last renewed (never: `None`).
    pub lease_renewed: Option<Instant>,
    /// Whether the node lifecycle controller sees it Ready.
    pub ready: bool,
    pub frozen: watch::Sender<bool>,
    /// Its allocatable resources (`status.allocatable`).
    pub allocatable: serde_json::Value,
}

impl NodeRuntime {
    pub fn new(index: usize) -> Self {
        NodeRuntime {
            index,
            mode: Mode::Running,
            last_heartbeat: Instant::now(),
            lease_renewed: None,
            ready: true,
            frozen: watch::channel(false).0,
            allocatable: serde_json::json!({"cpu": "8", "memory": "32Gi", "pods": "110"}),
        }
    }
}

/// Apply `action` to `node`.
pub fn apply(shared: &Arc<Mutex<Shared>>, node: &str, action: &str) -> Result<(), String> {
    let mut s = shared
        .lock()
        .map_err(|_| "kubelet state poisoned".to_string())?;
    let mode = s
        .nodes
        .get(node)
        .map(|n| n.mode)
        .ok_or_else(|| format!("no node {node:?}"))?;
    match action {
        "kill" => {
            s.kill_pods(Some(node));
            set_mode(&mut s, node, Mode::Killed);
        }
        "freeze" if mode == Mode::Running => {
            set_mode(&mut s, node, Mode::Frozen);
            s.signal_node(node, Signal::SIGSTOP);
        }
        "freeze" => {}
        "partition" if mode == Mode::Running => {
            let index = s.nodes[node].index;
            let mut cut = s.partitioned.borrow().clone();
            cut.insert(index);
            super::partition::apply_rules(s.network, s.api_port, &cut)?;
            s.partitioned.send_replace(cut);
            set_mode(&mut s, node, Mode::Partitioned);
        }
        "partition" if mode == Mode::Partitioned => {}
        "partition" => {
            return Err(format!(
                "node {node} is {}: restore it before partitioning it",
                if mode == Mode::Frozen {
                    "frozen"
                } else {
                    "killed"
                }
            ))
        }
        "restore" => {
            if mode == Mode::Frozen {
                s.signal_node(node, Signal::SIGCONT);
            }
            if mode == Mode::Partitioned {
                let index = s.nodes[node].index;
                let mut cut = s.partitioned.borrow().clone();
                cut.remove(&index);
                super::partition::apply_rules(s.network, s.api_port, &cut)?;
                s.partitioned.send_replace(cut);
            }
            set_mode(&mut s, node, Mode::Running);
        }
        other => {
            return Err(format!(
                "unknown node action {other:?} (kill, freeze, partition, restore)"
            ))
        }
    }
    Ok(())
}

fn set_mode(s: &mut Shared, node: &str, mode: Mode) {
    if let Some(n) = s.nodes.get_mut(node) {
        n.mode = mode;
        let _ = n.frozen.send(mode == Mode::Frozen);
        if mode == Mode::Running {
            n.last_heartbeat = Instant::now();
        }
    }
}

/// Apply the requests written into `dir` by `kube-sim node`.
pub fn take_requests(dir: &Path, shared: &Arc<Mutex<Shared>>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let node = e.file_name().to_string_lossy().into_owned();
        if node.ends_with(".error") || node.starts_with('.') {
            continue;
        }
        let action = std::fs::read_to_string(e.path()).unwrap_or_default();
        let result = apply(shared, &node, action.trim());
        let _ = std::fs::remove_file(e.path());
        if let Err(msg) = result {
            let _ = std::fs::write(dir.join(format!("{node}.error")), msg);
        }
    }
}

/// The client side: write the request and wait until the server took it.
pub fn request(state_dir: &Path, node: &str, action: &str) -> Result<(), String> {
    let dir = state_dir.join("kubelet").join("faults");
    if !dir.is_dir() {
        return Err(format!(
            "{}: no kube-sim kubelet serves this state directory",
            dir.display()
        ));
    }
    let file = dir.join(node);
    let error = dir.join(format!("{node}.error"));
    let _ = std::fs::remove_file(&error);
    let tmp = dir.join(format!(".{node}.tmp"));
    std::fs::write(&tmp, action).map_err(|e| format!("{}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, &file).map_err(|e| format!("{}: {e}", file.display()))?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while file.exists() {
        if Instant::now() > deadline {
            let _ = std::fs::remove_file(&file);
            return Err("the server did not take the request within 10 s".into());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    match std::fs::read_to_string(&error) {
        Ok(msg) => {
            let _ = std::fs::remove_file(&error);
            Err(msg)
        }
        Err(_) => Ok(()),
    }
}
