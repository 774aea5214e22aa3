//! Nodes and the cluster-level controllers that are not the scheduler (Kubernetes docs
//! "Nodes": node status and heartbeats, node controller; "Persistent Volumes": binding and
//! expansion; "Configure Service Accounts": the `kube-root-ca.crt` ConfigMap).
//!
//! - `node-1`…`node-N`, labelled `kubernetes.io/hostname`, `kubernetes.io/os`,
//!   `topology.kubernetes.io/zone` (`zone-a`, `zone-b`, `zone-c` in turn), address
//!   `127.B.N.1` (B: the server's network), Ready while their kubelet runs.
//! - The node lifecycle controller: a node not heard from for the grace period gets
//!   Ready=Unknown (reason `NodeStatusUnknown`) and the `node.kubernetes.io/unreachable`
//!   NoSchedule taint, and its pods Ready=False; both are undone when it reports again.
//! - Each running node's kubelet renews its Lease `kube-node-lease/NODE`; a faulty node's
//!   Lease goes stale.
//! - The provisioner binds every pending claim at once (capacity = request; a claim's
//!   directory is created empty) and follows requests up on resize.

use super::api::Api;
use super::node_faults::{Mode, NodeRuntime};
use super::status::condition;
use super::Shared;
use crate::clock;
use serde_json::{json, Value};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Instant;

const UNREACHABLE: &str = "node.kubernetes.io/unreachable";

/// The address of node `index` (pods' host IP) in network `127.B`.
pub fn node_ip(network: u8, index: usize) -> String {
    format!("127.{network}.{index}.1")
}

/// Claim a free loopback network `127.B` for this server by listening on `127.B.0.1:1`
/// (held as long as the listener lives), so servers on one machine never share addresses.
pub fn claim_network() -> std::io::Result<(u8, std::net::TcpListener)> {
    let start = 20 + (std::process::id() % 100) as u8;
    let mut last = None;
    for i in 0..200u16 {
        let b = 20 + ((u16::from(start - 20) + i) % 200) as u8;
        match std::net::TcpListener::bind((std::net::Ipv4Addr::new(127, b, 0, 1), 1)) {
            Ok(l) => return Ok((b, l)),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::other("no free loopback network")))
}

pub fn create(api: &Api, shared: &Arc<Mutex<Shared>>, config: &super::KubeletConfig) {
    for index in 1..=config.nodes {
        let name = format!("node-{index}");
        let zone = ["zone-a", "zone-b", "zone-c"][(index - 1) % 3];
        let node = json!({
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": {
                "kubernetes.io/hostname": name, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64",
                "topology.kubernetes.io/zone": zone, "topology.kubernetes.io/region": "kube-sim"}},
            "spec": {},
        });
        if api.get("nodes", "", &name).is_none() {
            let _ = api.create("nodes", "", node);
        }
        if let Ok(mut s) = shared.lock() {
            let mut runtime = NodeRuntime::new(index);
            runtime.allocatable = config.allocatable(&name);
            s.nodes.insert(name, runtime);
        }
    }
}

/// Report running nodes Ready; mark silent ones Unknown after `grace`, with their pods.
pub fn heartbeat(api: &Api, shared: &Arc<Mutex<Shared>>, grace: std::time::Duration) {
    let mut lost = Vec::new();
    let mut alive = Vec::new();
    let mut renew = Vec::new();
    let mut network = 0;
    let renew_every = (grace / 2).min(std::time::Duration::from_secs(10));
    if let Ok(mut s) = shared.lock() {
        network = s.network;
        for (name, n) in s.nodes.iter_mut() {
            if n.mode == Mode::Running {
                n.last_heartbeat = Instant::now();
                if n.lease_renewed.is_none_or(|t| t.elapsed() >= renew_every) {
                    n.lease_renewed = Some(Instant::now());
                    renew.push(name.clone());
                }
            }
            n.ready = n.last_heartbeat.elapsed() < grace;
            if n.ready {
                alive.push((name.clone(), n.index, n.allocatable.clone()));
            } else {
                lost.push(name.clone());
            }
        }
    }
    for name in renew {
        renew_lease(api, &name);
    }
    for (name, index, allocatable) in alive {
        let Some(node) = api.get("nodes", "", &name) else {
            continue;
        };
        let ready_now = node["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["type"] == "Ready" && c["status"] == "True");
        if !ready_now || node["status"]["nodeInfo"].is_null() {
            let status = json!({
                "conditions": [
                    condition(&node["status"], "Ready", true, "KubeletReady"),
                    condition(&node["status"], "MemoryPressure", false, "KubeletHasSufficientMemory"),
                    condition(&node["status"], "DiskPressure", false, "KubeletHasNoDiskPressure"),
                    condition(&node["status"], "PIDPressure", false, "KubeletHasSufficientPID"),
                ],
                "addresses": [{"type": "InternalIP", "address": node_ip(network, index)}, {"type": "Hostname", "address": name}],
                "capacity": allocatable,
                "allocatable": allocatable,
                "nodeInfo": {"kubeletVersion": "v1.32.0-kube-sim", "containerRuntimeVersion": "kube-sim://processes",
                    "operatingSystem": "linux", "architecture": "amd64", "osImage": "kube-sim", "kernelVersion": "",
                    "machineID": name, "systemUUID": name, "bootID": "", "kubeProxyVersion": ""},
            });
            let _ = api.update_status("nodes", "", &name, status);
        }
        set_unreachable_taint(api, &node, false);
    }
    for name in lost {
        let Some(node) = api.get("nodes", "", &name) else {
            continue;
        };
        let mut status = node["status"].clone();
        let mut changed = false;
        for c in status["conditions"].as_array_mut().into_iter().flatten() {
            if c["status"] != "Unknown" {
                changed = true;
                c["status"] = json!("Unknown");
                c["reason"] = json!("NodeStatusUnknown");
                c["message"] = json!("the node's kubelet has not reported within the grace period");
                c["lastTransitionTime"] = json!(clock::now_rfc3339());
            }
        }
        if changed {
            let _ = api.update_status("nodes", "", &name, status);
        }
        set_unreachable_taint(api, &node, true);
        for pod in api
            .list("pods")
            .iter()
            .filter(|p| p["spec"]["nodeName"] == name.as_str())
        {
            let (ns, pname) = crate::store::key_of(pod);
            let mut status = pod["status"].clone();
            for c in status["conditions"].as_array_mut().into_iter().flatten() {
                if c["type"] == "Ready" && c["status"] != "False" {
                    c["status"] = json!("False");
                    c["reason"] = json!("NodeNotReady");
                    c["lastTransitionTime"] = json!(clock::now_rfc3339());
                }
            }
            let _ = api.update_status("pods", &ns, &pname, status);
        }
    }
}

/// The node's heartbeat Lease (docs "Nodes": heartbeats; "Leases": node heartbeats): in
/// `kube-node-lease`, named after the node and owned by it, held by the node, 40 s long,
/// `renewTime` renewed by the kubelet while it runs (every 10 s, or half the grace period when
/// that is shorter).
fn renew_lease(api: &Api, node: &str) {
    const RESOURCE: &str = "coordination.k8s.io/leases";
    let now = clock::now_micro();
    match api.get(RESOURCE, LEASE_NAMESPACE, node) {
        Some(mut lease) => {
            lease["spec"]["renewTime"] = json!(now);
            lease["spec"]["holderIdentity"] = json!(node);
            lease["spec"]["leaseDurationSeconds"] = json!(40);
            let _ = api.update(RESOURCE, lease);
        }
        None => {
            let Some(n) = api.get("nodes", "", node) else {
                return;
            };
            let lease = json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": {"name": node, "namespace": LEASE_NAMESPACE,
                    "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": node,
                        "uid": n["metadata"]["uid"]}]},
                "spec": {"holderIdentity": node, "leaseDurationSeconds": 40, "renewTime": now}});
            let _ = api.create(RESOURCE, LEASE_NAMESPACE, lease);
        }
    }
}

const LEASE_NAMESPACE: &str = "kube-node-lease";

fn set_unreachable_taint(api: &Api, node: &Value, on: bool) {
    let taints: Vec<Value> = node["spec"]["taints"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let has = taints.iter().any(|t| t["key"] == UNREACHABLE);
    if has == on {
        return;
    }
    let mut taints: Vec<Value> = taints
        .into_iter()
        .filter(|t| t["key"] != UNREACHABLE)
        .collect();
    if on {
        taints.push(
            json!({"key": UNREACHABLE, "effect": "NoSchedule", "timeAdded": clock::now_rfc3339()}),
        );
    }
    let name = node["metadata"]["name"].as_str().unwrap_or_default();
    let _ = api.merge_patch("nodes", "", name, &json!({"spec": {"taints": taints}}));
}

/// Bind pending claims; follow resizes.
pub fn provision_claims(api: &Api, root: &Path) {
    for pvc in api.list("persistentvolumeclaims") {
        if !pvc["metadata"]["deletionTimestamp"].is_null() {
            continue;
        }
        let (ns, name) = crate::store::key_of(&pvc);
        let request = pvc["spec"]["resources"]["requests"]["storage"].clone();
        let mut status = pvc["status"].clone();
        if status["phase"] != "Bound" {
            let dir = super::volumes::claim_dir(root, &ns, &name);
            let _ = std::fs::remove_dir_all(&dir);
            if std::fs::create_dir_all(&dir).is_err() {
                continue;
            }
            status = json!({
                "phase": "Bound",
                "accessModes": pvc["spec"]["accessModes"].clone(),
                "capacity": {"storage": request},
            });
        } else if status["capacity"]["storage"] != request {
            status["capacity"]["storage"] = request;
        } else {
            continue;
        }
        let _ = api.update_status("persistentvolumeclaims", &ns, &name, status);
    }
}

/// The `kube-root-ca.crt` ConfigMap in every active namespace (the root CA publisher).
pub fn publish_root_ca(api: &Api) {
    let ca = api.server.ca_pem.clone();
    for ns in api.list("namespaces") {
        let name = ns["metadata"]["name"].as_str().unwrap_or_default();
        if !ns["metadata"]["deletionTimestamp"].is_null()
            || api.get("configmaps", name, "kube-root-ca.crt").is_some()
        {
            continue;
        }
        let cm = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "kube-root-ca.crt", "namespace": name,
                "annotations": {"kubernetes.io/description": "kube-sim's CA, for clients verifying the API server"}},
            "data": {"ca.crt": ca}});
        let _ = api.create("configmaps", name, cm);
    }
}

/// The `kubernetes` Service in `default` (docs "Accessing the Kubernetes API from a Pod"):
/// port 443 forwarding to the API server, through an EndpointSlice naming its address.
pub fn publish_api_service(api: &Api) {
    let (host, port) = api
        .server
        .address
        .rsplit_once(':')
        .unwrap_or(("127.0.0.1", "443"));
    let port: u16 = port.parse().unwrap_or(443);
    let svc = json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "kubernetes", "namespace": "default",
            "labels": {"component": "apiserver", "provider": "kubernetes"}},
        "spec": {"ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": port}]}});
    let Ok(svc) = api.create("services", "default", svc) else {
        return;
    };
    let slice = json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": "kubernetes", "namespace": "default",
            "labels": {"kubernetes.io/service-name": "kubernetes"},
            "ownerReferences": [{"apiVersion": "v1", "kind": "Service", "name": "kubernetes",
                "uid": svc["metadata"]["uid"], "controller": true}]},
        "addressType": "IPv4",
        "endpoints": [{"addresses": [host], "conditions": {"ready": true}}],
        "ports": [{"name": "https", "port": port, "protocol": "TCP"}]});
    let _ = api.create("discovery.k8s.io/endpointslices", "default", slice);
}
