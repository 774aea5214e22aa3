//! The process kubelet and the controllers around it: simulated Nodes, a scheduler, a PVC
//! provisioner, a kubelet per node running pods' containers as local processes, a node
//! lifecycle controller, and a Service proxy with EndpointSlices and per-pod hosts files.
//! They run in-process next to the API server and read and write through its verbs, as
//! controllers and kubelets do through the API.

pub mod api;
pub mod container;
pub mod disruption;
pub mod env;
pub mod events;
pub mod exec;
pub mod hosts;
pub mod images;
pub mod logs;
pub mod node_faults;
pub mod nodes;
pub mod partition;
pub mod pod_proxy;
pub mod pod_runtime;
pub mod probes;
pub mod process;
pub mod proxy;
pub mod resources;
pub mod scheduler;
pub mod status;
pub mod tty;
pub mod volumes;
pub mod workloads;

use crate::server::ApiServer;
use api::Api;
use images::Images;
use nix::sys::signal::Signal;
use node_faults::{Mode, NodeRuntime};
use pod_runtime::Signals;
use serde_json::{json, Value};
use status::PodState;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// How the kubelet runs.
#[derive(Debug, Clone)]
pub struct KubeletConfig {
    /// How many Nodes (`node-1`…).
    pub nodes: usize,
    pub images: Images,
    /// Cap on termination grace periods (tests: short), `None` to honour them fully.
    pub max_grace: Option<Duration>,
    /// A node whose kubelet is silent this long goes NotReady (Ready=Unknown).
    pub node_grace: Duration,
    /// Restart back-off: first delay, maximum.
    pub backoff: (Duration, Duration),
    /// Every node's allocatable cpu and memory (quantities), unless overridden per node.
    pub node_cpu: String,
    pub node_memory: String,
    /// Per node name: (cpu, memory).
    pub node_resources: BTreeMap<String, (String, String)>,
}

impl KubeletConfig {
    /// The allocatable (and capacity) of node `name`.
    pub fn allocatable(&self, name: &str) -> Value {
        let (cpu, memory) = self
            .node_resources
            .get(name)
            .cloned()
            .unwrap_or_else(|| (self.node_cpu.clone(), self.node_memory.clone()));
        json!({"cpu": cpu, "memory": memory, "pods": "110"})
    }

    /// Check the resource quantities (clear errors for bad ones).
    pub fn check(&self) -> Result<(), String> {
        let all = std::iter::once((
            "every node".to_string(),
            (&self.node_cpu, &self.node_memory),
        ))
        .chain(
            self.node_resources
                .iter()
                .map(|(n, (c, m))| (n.clone(), (c, m))),
        );
        for (node, (cpu, memory)) in all {
            for (what, q) in [("cpu", cpu), ("memory", memory)] {
                if resources::quantity(&json!(q)).is_none_or(|v| v < 0.0) {
                    return Err(format!(
                        "{node}: {what} {q:?} is not a quantity (e.g. 4, 500m, 8Gi)"
                    ));
                }
            }
        }
        Ok(())
    }

    pub fn new(nodes: usize, pgherd_bin: PathBuf) -> Self {
        KubeletConfig {
            nodes,
            images: Images::new(pgherd_bin),
            max_grace: None,
            node_grace: Duration::from_secs(5),
            backoff: (Duration::from_secs(1), Duration::from_secs(30)),
            node_cpu: "8".into(),
            node_memory: "32Gi".into(),
            node_resources: BTreeMap::new(),
        }
    }
}

/// What pod workers share.
#[derive(Debug)]
pub struct Ctx {
    pub api: Api,
    /// `STATE_DIR/kubelet`.
    pub root: PathBuf,
    pub images: Images,
    pub grace_cap: Option<Duration>,
    pub backoff: (Duration, Duration),
}

/// A pod the kubelet runs.
#[derive(Debug)]
pub struct PodHandle {
    pub namespace: String,
    pub name: String,
    pub node: String,
    pub ip: String,
    pub state: Arc<Mutex<PodState>>,
    stop: watch::Sender<Option<Duration>>,
    task: JoinHandle<()>,
}

/// Shared by the loops and the fault commands.
#[derive(Debug, Default)]
pub struct Shared {
    /// The server's loopback network `127.B` (see `Store::network`).
    pub network: u8,
    pub nodes: BTreeMap<String, NodeRuntime>,
    /// By pod uid.
    pub pods: BTreeMap<String, PodHandle>,
    /// The kubelet is shutting down: start nothing more.
    pub stopped: bool,
    /// The indexes of the partitioned nodes (the proxy stalls connections to their pods).
    pub partitioned: watch::Sender<BTreeSet<usize>>,
    /// The API server's port on 127.0.0.1 (cut off from partitioned nodes).
    pub api_port: u16,
}

impl Shared {
    /// SIGKILL every process of the pods on `node` (all nodes: `None`) and forget them.
    pub fn kill_pods(&mut self, node: Option<&str>) {
        let uids: Vec<String> = self
            .pods
            .iter()
            .filter(|(_, h)| node.is_none_or(|n| h.node == n))
            .map(|(u, _)| u.clone())
            .collect();
        for uid in uids {
            if let Some(h) = self.pods.remove(&uid) {
                h.task.abort();
                for pid in h
                    .state
                    .lock()
                    .map(|s| s.pids.values().copied().collect::<Vec<_>>())
                    .unwrap_or_default()
                {
                    process::signal_all(pid, Signal::SIGKILL);
                    process::signal_all(pid, Signal::SIGCONT);
                }
            }
        }
    }

    /// Send `sig` to every process of the pods on `node`.
    pub fn signal_node(&self, node: &str, sig: Signal) {
        for h in self.pods.values().filter(|h| h.node == node) {
            for pid in h
                .state
                .lock()
                .map(|s| s.pids.values().copied().collect::<Vec<_>>())
                .unwrap_or_default()
            {
                process::signal_all(pid, sig);
            }
        }
    }
}

/// The running kubelet; dropping it kills every process it started.
#[derive(Debug)]
pub struct Kubelet {
    pub shared: Arc<Mutex<Shared>>,
    pub root: PathBuf,
    tasks: Vec<JoinHandle<()>>,
    _network_claim: std::net::TcpListener,
}

impl Drop for Kubelet {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
        if let Ok(mut s) = self.shared.lock() {
            // A pass already under way must not start what is being killed here.
            s.stopped = true;
            s.kill_pods(None);
            if !s.partitioned.borrow().is_empty() {
                partition::remove_rules(s.network);
            }
            // The killed processes may take a moment to leave their cgroups.
            let network = s.network;
            std::thread::spawn(move || {
                for _ in 0..20 {
                    if partition::remove_cgroups(network) {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
            });
        }
    }
}

impl Kubelet {
    /// Create the Nodes and start the controllers, the kubelet and the proxy.
    pub fn start(
        server: Arc<ApiServer>,
        state_dir: &Path,
        config: KubeletConfig,
    ) -> std::io::Result<Kubelet> {
        let root = state_dir.join("kubelet");
        std::fs::create_dir_all(root.join("faults"))?;
        let api = Api::new(server.clone(), "kubelet");
        let (network, claim) = nodes::claim_network()?;
        if let Ok(mut s) = server.state.lock() {
            s.store.network = network;
        }
        let api_port = server
            .address
            .rsplit_once(':')
            .and_then(|(_, p)| p.parse().ok())
            .unwrap_or(0);
        // Leftovers of a server killed with this network (ours, since we hold its claim).
        partition::remove_rules(network);
        partition::remove_cgroups(network);
        partition::remove_stale_cgroups();
        let shared = Arc::new(Mutex::new(Shared {
            network,
            api_port,
            ..Shared::default()
        }));
        config.check().map_err(std::io::Error::other)?;
        nodes::create(&api, &shared, &config);
        nodes::publish_api_service(&api);
        server.add_subresource(Arc::new(logs::PodLogs { root: root.clone() }));
        server.add_subresource(Arc::new(scheduler::Binding));
        server.add_subresource(Arc::new(pod_proxy::PodProxy));
        server.add_subresource(Arc::new(exec::PodExec {
            shared: shared.clone(),
        }));
        let ctx = Arc::new(Ctx {
            api: api.clone(),
            root: root.clone(),
            images: config.images.clone(),
            grace_cap: config.max_grace,
            backoff: config.backoff,
        });
        let mut tasks = Vec::new();
        let (sh, c, cfg) = (shared.clone(), ctx.clone(), config.clone());
        tasks.push(tokio::spawn(async move { control_loop(c, sh, cfg).await }));
        let proxy_api = Api::new(server.clone(), "endpointslice-controller");
        let (sh, r) = (shared.clone(), root.clone());
        tasks.push(tokio::spawn(
            async move { proxy::run(proxy_api, sh, r).await },
        ));
        Ok(Kubelet {
            shared,
            root,
            tasks,
            _network_claim: claim,
        })
    }

    /// Apply a node fault (`kill`, `freeze`, `partition`, `restore`) now.
    pub fn fault(&self, node: &str, action: &str) -> Result<(), String> {
        node_faults::apply(&self.shared, node, action)
    }
}

/// Wake on any change to the store, or every 200 ms.
async fn wait_for_change(rx: &mut tokio::sync::broadcast::Receiver<Arc<crate::store::Change>>) {
    tokio::select! {
        _ = rx.recv() => {}
        _ = tokio::time::sleep(Duration::from_millis(200)) => {}
    }
    tokio::time::sleep(Duration::from_millis(20)).await;
}

pub(crate) fn subscribe(
    api: &Api,
) -> Option<tokio::sync::broadcast::Receiver<Arc<crate::store::Change>>> {
    let s = api.server.state.lock().ok()?;
    Some(s.store.changes_since(u64::MAX).1)
}

async fn control_loop(ctx: Arc<Ctx>, shared: Arc<Mutex<Shared>>, config: KubeletConfig) {
    let Some(mut rx) = subscribe(&ctx.api) else {
        return;
    };
    let mut last_refresh = Instant::now();
    let workload_api = Api::new(ctx.api.server.clone(), "kube-controller-manager");
    let disruption_api = Api::new(ctx.api.server.clone(), "disruption-controller");
    loop {
        node_faults::take_requests(&ctx.root.join("faults"), &shared);
        nodes::heartbeat(&ctx.api, &shared, config.node_grace);
        nodes::provision_claims(&ctx.api, &ctx.root);
        nodes::publish_root_ca(&ctx.api);
        workloads::reconcile(&workload_api);
        disruption::reconcile(&disruption_api);
        scheduler::schedule(&ctx.api);
        let refresh = last_refresh.elapsed() > Duration::from_secs(2);
        if refresh {
            last_refresh = Instant::now();
        }
        sync_pods(&ctx, &shared, refresh);
        wait_for_change(&mut rx).await;
    }
}

/// Start, stop, report and clean up the pods of the live nodes.
fn sync_pods(ctx: &Arc<Ctx>, shared: &Arc<Mutex<Shared>>, refresh: bool) {
    let pods = ctx.api.list("pods");
    let Ok(mut sh) = shared.lock() else { return };
    if sh.stopped {
        return;
    }
    let live: BTreeMap<String, (usize, bool)> = sh
        .nodes
        .iter()
        .filter(|(_, n)| n.mode == Mode::Running)
        .map(|(name, n)| (name.clone(), (n.index, n.ready)))
        .collect();
    let mut seen = BTreeSet::new();
    for pod in &pods {
        let uid = pod["metadata"]["uid"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let node = pod["spec"]["nodeName"].as_str().unwrap_or_default();
        let Some(&(index, node_ready)) = live.get(node) else {
            continue;
        };
        seen.insert(uid.clone());
        let (ns, name) = crate::store::key_of(pod);
        let deleting = !pod["metadata"]["deletionTimestamp"].is_null();
        if !sh.pods.contains_key(&uid) {
            let done = matches!(
                pod["status"]["phase"].as_str(),
                Some("Succeeded" | "Failed")
            );
            if deleting || done {
                if deleting {
                    let _ = ctx.api.delete_now("pods", &ns, &name, &uid);
                }
                continue;
            }
            let ip = pod["status"]["podIP"]
                .as_str()
                .map(String::from)
                .unwrap_or_else(|| allocate_ip(&sh, &pods, index));
            let frozen = sh.nodes[node].frozen.subscribe();
            let handle = start_pod(ctx, pod, &ip, &nodes::node_ip(sh.network, index), &frozen);
            sh.pods.insert(uid.clone(), handle);
        }
        let Some(h) = sh.pods.get(&uid) else { continue };
        let ip = h.ip.clone();
        if deleting && h.stop.borrow().is_none() {
            let grace = Duration::from_secs(
                pod["metadata"]["deletionGracePeriodSeconds"]
                    .as_u64()
                    .unwrap_or(30),
            );
            let grace = ctx.grace_cap.map_or(grace, |c| grace.min(c));
            let _ = h.stop.send(Some(grace));
        }
        let Ok(state) = h.state.lock().map(|s| s.clone()) else {
            continue;
        };
        if deleting && state.finished {
            let _ = ctx.api.delete_now("pods", &ns, &name, &uid);
            sh.pods.remove(&uid);
            let _ = std::fs::remove_dir_all(ctx.root.join("pods").join(&uid));
            continue;
        }
        let host_ip = nodes::node_ip(sh.network, index);
        let status = state.to_status(pod, &ip, &host_ip, node_ready);
        let _ = ctx.api.update_status("pods", &ns, &name, status);
        if refresh && !state.finished {
            volumes::refresh(&ctx.api, &ctx.root.join("pods").join(&uid), pod);
        }
    }
    // Pods gone from the API (force deletion) or moved away: stop at once, then forget.
    let gone: Vec<String> = sh
        .pods
        .iter()
        .filter(|(uid, h)| !seen.contains(*uid) && live.contains_key(&h.node))
        .map(|(u, _)| u.clone())
        .collect();
    for uid in gone {
        let finished = sh.pods[&uid].state.lock().is_ok_and(|s| s.finished);
        if finished {
            sh.pods.remove(&uid);
            let _ = std::fs::remove_dir_all(ctx.root.join("pods").join(&uid));
        } else if sh.pods[&uid].stop.borrow().is_none() {
            let _ = sh.pods[&uid].stop.send(Some(Duration::ZERO));
        }
    }
}

/// A free pod IP on node `index`: `127.B.INDEX.2`…`254`.
fn allocate_ip(sh: &Shared, pods: &[Value], index: usize) -> String {
    let used: BTreeSet<String> = sh
        .pods
        .values()
        .map(|h| h.ip.clone())
        .chain(
            pods.iter()
                .filter_map(|p| p["status"]["podIP"].as_str().map(String::from)),
        )
        .collect();
    (2..255)
        .map(|k| format!("127.{}.{index}.{k}", sh.network))
        .find(|ip| !used.contains(ip))
        .unwrap_or_else(|| format!("127.{}.{index}.254", sh.network))
}

fn start_pod(
    ctx: &Arc<Ctx>,
    pod: &Value,
    ip: &str,
    host_ip: &str,
    frozen: &watch::Receiver<bool>,
) -> PodHandle {
    let mut pod = pod.clone();
    pod["status"]["podIP"] = json!(ip);
    pod["status"]["hostIP"] = json!(host_ip);
    let node = pod["spec"]["nodeName"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let state = Arc::new(Mutex::new(PodState::new(&pod)));
    let (stop, stop_rx) = watch::channel(None);
    let sig = Signals {
        stop: stop_rx,
        frozen: frozen.clone(),
    };
    let task = tokio::spawn(pod_runtime::run(
        ctx.clone(),
        pod.clone(),
        state.clone(),
        sig,
    ));
    let (namespace, name) = crate::store::key_of(&pod);
    PodHandle {
        namespace,
        name,
        node,
        ip: ip.to_string(),
        state,
        stop,
        task,
    }
}

/// The kubelet-written files of a pod: `/etc/hosts`, `/etc/passwd`, `/etc/group`, the
/// ServiceAccount directory (token, ca.crt, namespace) and the private `/tmp`.
pub fn pod_files(ctx: &Ctx, pod_dir: &Path, pod: &Value) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    let err = |e: std::io::Error| format!("{}: {e}", pod_dir.display());
    let etc = pod_dir.join("etc");
    std::fs::create_dir_all(&etc).map_err(err)?;
    let (passwd, group) = hosts::passwd_and_group();
    std::fs::write(etc.join("passwd"), passwd).map_err(err)?;
    std::fs::write(etc.join("group"), group).map_err(err)?;
    let hosts_file = etc.join("hosts");
    if !hosts_file.exists() {
        let content = proxy::hosts_for(&ctx.api, pod);
        std::fs::write(&hosts_file, content).map_err(err)?;
    }
    for f in ["passwd", "group", "hosts"] {
        std::fs::set_permissions(etc.join(f), std::fs::Permissions::from_mode(0o644))
            .map_err(err)?;
    }
    let tmp = pod_dir.join("tmp");
    std::fs::create_dir_all(&tmp).map_err(err)?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o1777)).map_err(err)?;
    let sa = pod_dir.join("serviceaccount");
    std::fs::create_dir_all(&sa).map_err(err)?;
    let ns = pod["metadata"]["namespace"].as_str().unwrap_or_default();
    let account = pod["spec"]["serviceAccountName"]
        .as_str()
        .unwrap_or("default");
    std::fs::write(
        sa.join("token"),
        ctx.api.server.auth.service_account_token(ns, account),
    )
    .map_err(err)?;
    std::fs::write(sa.join("ca.crt"), &ctx.api.server.ca_pem).map_err(err)?;
    std::fs::write(sa.join("namespace"), ns).map_err(err)?;
    for f in ["token", "ca.crt", "namespace"] {
        std::fs::set_permissions(sa.join(f), std::fs::Permissions::from_mode(0o644))
            .map_err(err)?;
    }
    Ok(())
}
