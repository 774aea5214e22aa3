//! Services (Kubernetes docs "Service", "EndpointSlices", "Virtual IPs and Service Proxies"):
//! the EndpointSlice controller and kube-proxy in one loop. Every Service with a selector gets
//! an EndpointSlice (`kubernetes.io/service-name`) listing the matching pods that have an IP,
//! with ready/serving/terminating conditions; every ClusterIP (a loopback address, see
//! `defaults`) gets a TCP forwarder per port to the ready endpoints (all of them with
//! `publishNotReadyAddresses`), targetPort names resolved per pod. Services without a selector
//! forward to the addresses of EndpointSlices others wrote for them. When an address stops
//! being an endpoint, connections through the Service to it are closed (what kube-proxy's
//! conntrack cleanup achieves), so clients reconnect to a current endpoint. The pods' hosts
//! files are rewritten when Services or endpoints change.

use super::api::Api;
use super::hosts;
use super::Shared;
use crate::selector::LabelSelector;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

const MANAGED_BY: &str = "endpointslice-controller.k8s.io";

/// One address behind a Service.
#[derive(Debug, Clone, PartialEq)]
pub struct Endpoint {
    pub pod: Value,
    pub ip: String,
    pub ready: bool,
    pub terminating: bool,
}

fn ready(pod: &Value) -> bool {
    pod["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Ready" && c["status"] == "True")
}

/// The pods behind `svc` (its selector, in its namespace) that have an IP.
pub fn endpoints(pods: &[Value], svc: &Value) -> Vec<Endpoint> {
    let Some(sel) = svc["spec"]["selector"]
        .as_object()
        .filter(|s| !s.is_empty())
    else {
        return Vec::new();
    };
    let selector = LabelSelector::from_object(&json!({ "matchLabels": sel }));
    let ns = &svc["metadata"]["namespace"];
    pods.iter()
        .filter(|p| p["metadata"]["namespace"] == *ns && selector.matches(p))
        .filter(|p| !matches!(p["status"]["phase"].as_str(), Some("Succeeded" | "Failed")))
        .filter_map(|p| {
            let ip = p["status"]["podIP"].as_str()?.to_string();
            let terminating = !p["metadata"]["deletionTimestamp"].is_null();
            Some(Endpoint {
                pod: p.clone(),
                ip,
                ready: ready(p) && !terminating,
                terminating,
            })
        })
        .collect()
}

/// A Service port's target on `pod`: a number, or a container port's name.
fn target_port(port: &Value, pod: &Value) -> Option<u16> {
    match &port["targetPort"] {
        Value::Number(n) => n.as_u64().map(|n| n as u16),
        Value::String(name) => pod["spec"]["containers"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|c| c["ports"].as_array().into_iter().flatten())
            .find(|p| p["name"] == name.as_str())
            .and_then(|p| p["containerPort"].as_u64())
            .map(|n| n as u16),
        _ => port["port"].as_u64().map(|n| n as u16),
    }
}

/// The hosts file of `pod` as things are now.
pub fn hosts_for(api: &Api, pod: &Value) -> String {
    let services = api.list("services");
    let pods = api.list("pods");
    render_hosts(pod, &services, &pods)
}

fn render_hosts(pod: &Value, services: &[Value], pods: &[Value]) -> String {
    let headless = |svc: &Value| -> Vec<String> {
        let publish = svc["spec"]["publishNotReadyAddresses"] == true;
        endpoints(pods, svc)
            .into_iter()
            .filter(|e| e.ready || publish)
            .map(|e| e.ip)
            .collect()
    };
    hosts::render(pod, services, &headless, pods)
}

/// A listener on ClusterIP:port and where it forwards.
#[derive(Debug)]
struct Forwarder {
    backends: watch::Sender<Vec<SocketAddr>>,
    task: JoinHandle<()>,
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Run the EndpointSlice controller, the proxy and the hosts writer until aborted.
pub async fn run(api: Api, shared: Arc<Mutex<Shared>>, root: PathBuf) {
    let Some(mut rx) = super::subscribe(&api) else {
        return;
    };
    let mut forwarders: BTreeMap<String, Forwarder> = BTreeMap::new();
    loop {
        pass(&api, &shared, &root, &mut forwarders).await;
        super::wait_for_change(&mut rx).await;
    }
}

async fn pass(
    api: &Api,
    shared: &Arc<Mutex<Shared>>,
    root: &std::path::Path,
    forwarders: &mut BTreeMap<String, Forwarder>,
) {
    let services = api.list("services");
    let pods = api.list("pods");
    let slices = api.list("discovery.k8s.io/endpointslices");
    let mut wanted = BTreeMap::new();
    for svc in &services {
        let eps = endpoints(&pods, svc);
        if svc["spec"]["selector"]
            .as_object()
            .is_some_and(|s| !s.is_empty())
        {
            write_slice(api, svc, &eps, &slices);
        }
        let Some(ip) = svc["spec"]["clusterIP"]
            .as_str()
            .filter(|ip| !ip.is_empty() && *ip != "None")
        else {
            continue;
        };
        let publish = svc["spec"]["publishNotReadyAddresses"] == true;
        for port in svc["spec"]["ports"].as_array().into_iter().flatten() {
            let Some(p) = port["port"].as_u64() else {
                continue;
            };
            if port["protocol"].as_str().is_some_and(|p| p != "TCP") {
                continue;
            }
            let backends: Vec<SocketAddr> = if svc["spec"]["selector"]
                .as_object()
                .is_some_and(|s| !s.is_empty())
            {
                eps.iter()
                    .filter(|e| e.ready || publish && !e.terminating)
                    .filter_map(|e| {
                        Some(SocketAddr::new(
                            e.ip.parse().ok()?,
                            target_port(port, &e.pod)?,
                        ))
                    })
                    .collect()
            } else {
                manual_backends(svc, port, &slices)
            };
            let key = format!(
                "{}/{}/{ip}:{p}",
                svc["metadata"]["uid"].as_str().unwrap_or_default(),
                port["name"].as_str().unwrap_or_default()
            );
            wanted.insert(key, (format!("{ip}:{p}"), backends));
        }
    }
    let (network, partitioned) = match shared.lock() {
        Ok(s) => (s.network, s.partitioned.subscribe()),
        Err(_) => return,
    };
    forwarders.retain(|k, _| wanted.contains_key(k));
    for (key, (listen, backends)) in wanted {
        match forwarders.get(&key) {
            Some(f) => {
                f.backends.send_if_modified(|b| {
                    let changed = *b != backends;
                    *b = backends.clone();
                    changed
                });
            }
            None => {
                let Ok(addr) = listen.parse::<SocketAddr>() else {
                    continue;
                };
                let Ok(listener) = TcpListener::bind(addr).await else {
                    continue;
                };
                let (tx, rx) = watch::channel(backends);
                let cut = Partitions {
                    network,
                    nodes: partitioned.clone(),
                };
                let task = tokio::spawn(forward(listener, rx, cut));
                forwarders.insert(key, Forwarder { backends: tx, task });
            }
        }
    }
    let uids: Vec<String> = shared
        .lock()
        .map(|s| s.pods.keys().cloned().collect())
        .unwrap_or_default();
    for pod in pods
        .iter()
        .filter(|p| uids.iter().any(|u| p["metadata"]["uid"] == u.as_str()))
    {
        let uid = pod["metadata"]["uid"].as_str().unwrap_or_default();
        let file = root.join("pods").join(uid).join("etc").join("hosts");
        if file.exists() {
            let _ = hosts::write_in_place(&file, &render_hosts(pod, &services, &pods));
        }
    }
}

/// Addresses of EndpointSlices written by others for a Service without a selector.
fn manual_backends(svc: &Value, port: &Value, slices: &[Value]) -> Vec<SocketAddr> {
    let name = &svc["metadata"]["name"];
    slices
        .iter()
        .filter(|s| s["metadata"]["namespace"] == svc["metadata"]["namespace"])
        .filter(|s| s["metadata"]["labels"]["kubernetes.io/service-name"] == *name)
        .flat_map(|s| {
            let target = s["ports"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|p| {
                    p["name"] == port["name"] || s["ports"].as_array().is_some_and(|a| a.len() == 1)
                })
                .and_then(|p| p["port"].as_u64());
            s["endpoints"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|e| e["conditions"]["ready"] != false)
                .flat_map(|e| e["addresses"].as_array().cloned().unwrap_or_default())
                .filter_map(move |a| {
                    Some(SocketAddr::new(a.as_str()?.parse().ok()?, target? as u16))
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Create or update the Service's EndpointSlice.
fn write_slice(api: &Api, svc: &Value, eps: &[Endpoint], slices: &[Value]) {
    let (ns, name) = crate::store::key_of(svc);
    let uid = svc["metadata"]["uid"].as_str().unwrap_or_default();
    let tail: String = uid
        .chars()
        .rev()
        .filter(char::is_ascii_alphanumeric)
        .take(5)
        .collect();
    let slice_name = format!("{name}-{tail}");
    let ports: Vec<Value> = svc["spec"]["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            let number = eps.first().and_then(|e| target_port(p, &e.pod)).or(p["port"].as_u64().map(|n| n as u16));
            json!({"name": p["name"].as_str().unwrap_or_default(), "port": number, "protocol": p["protocol"].as_str().unwrap_or("TCP")})
        })
        .collect();
    let endpoints: Vec<Value> = eps
        .iter()
        .map(|e| {
            json!({
                "addresses": [e.ip],
                "conditions": {"ready": e.ready, "serving": ready(&e.pod), "terminating": e.terminating},
                "nodeName": e.pod["spec"]["nodeName"],
                "targetRef": {"kind": "Pod", "namespace": ns, "name": e.pod["metadata"]["name"], "uid": e.pod["metadata"]["uid"]},
            })
        })
        .collect();
    let existing = slices.iter().find(|s| {
        s["metadata"]["namespace"] == ns.as_str() && s["metadata"]["name"] == slice_name.as_str()
    });
    let mut slice = existing.cloned().unwrap_or_else(|| {
        json!({
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": slice_name, "namespace": ns,
                "labels": {"kubernetes.io/service-name": name, "endpointslice.kubernetes.io/managed-by": MANAGED_BY},
                "ownerReferences": [{"apiVersion": "v1", "kind": "Service", "name": name, "uid": uid,
                    "controller": true, "blockOwnerDeletion": true}]},
            "addressType": "IPv4",
        })
    });
    if existing.is_some()
        && slice["endpoints"] == json!(endpoints)
        && slice["ports"] == json!(ports)
    {
        return;
    }
    slice["endpoints"] = json!(endpoints);
    slice["ports"] = json!(ports);
    let _ = if existing.is_some() {
        api.update("discovery.k8s.io/endpointslices", slice)
    } else {
        api.create("discovery.k8s.io/endpointslices", &ns, slice)
    };
}

/// The partitioned nodes, to tell whether an endpoint is cut off.
#[derive(Debug, Clone)]
struct Partitions {
    network: u8,
    nodes: watch::Receiver<BTreeSet<usize>>,
}

impl Partitions {
    fn cut(&self, target: &SocketAddr) -> bool {
        super::partition::node_of_ip(&target.ip(), self.network)
            .is_some_and(|n| self.nodes.borrow().contains(&n))
    }
}

/// Accept connections and pipe each to an endpoint (round robin); a connection ends when its
/// endpoint leaves the list. An endpoint on a partitioned node is unreachable, as its packets
/// would be dropped: a connection to it waits (neither connecting nor closing) until the
/// partition ends or the endpoint leaves the list, and an established one stalls meanwhile.
async fn forward(
    listener: TcpListener,
    backends: watch::Receiver<Vec<SocketAddr>>,
    partitions: Partitions,
) {
    let mut next = 0usize;
    loop {
        let Ok((mut client, _)) = listener.accept().await else {
            continue;
        };
        let list = backends.borrow().clone();
        if list.is_empty() {
            continue;
        }
        next = next.wrapping_add(1);
        let target = list[next % list.len()];
        let mut watch = backends.clone();
        let mut cut = partitions.clone();
        tokio::spawn(async move {
            let gone = async {
                loop {
                    if watch.changed().await.is_err() {
                        return;
                    }
                    if !watch.borrow().contains(&target) {
                        return;
                    }
                }
            };
            tokio::pin!(gone);
            while cut.cut(&target) {
                tokio::select! {
                    _ = &mut gone => return,
                    r = cut.nodes.changed() => if r.is_err() { return },
                }
            }
            let Ok(mut server) = TcpStream::connect(target).await else {
                return;
            };
            let copy = tokio::io::copy_bidirectional(&mut client, &mut server);
            tokio::pin!(copy);
            loop {
                if cut.cut(&target) {
                    // Stalled: the copy is not polled until the partition ends.
                    tokio::select! {
                        _ = &mut gone => return,
                        r = cut.nodes.changed() => if r.is_err() { return },
                    }
                    continue;
                }
                tokio::select! {
                    _ = &mut copy => return,
                    _ = &mut gone => return,
                    r = cut.nodes.changed() => if r.is_err() { return },
                }
            }
        });
    }
}
