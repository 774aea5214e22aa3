//! What the kubelet reports of a pod (API reference "PodStatus v1 core", "ContainerStatus v1
//! core"; docs "Pod Lifecycle": pod phase and conditions): phase, podIP(s), hostIP(s),
//! startTime, the conditions PodScheduled, PodReadyToStartContainers, Initialized,
//! ContainersReady and Ready (each keeping its lastTransitionTime while unchanged), and per
//! container its state, lastState, ready, started and restartCount.

use crate::clock;
use serde_json::{json, Value};
use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq)]
pub enum CState {
    Waiting {
        reason: String,
        message: String,
    },
    Running {
        started: String,
    },
    Terminated {
        code: i32,
        reason: String,
        started: String,
        finished: String,
        /// The termination message (`terminationMessagePolicy: FallbackToLogsOnError`: the
        /// log's end when the container failed).
        message: String,
    },
}

impl CState {
    fn to_json(&self) -> Value {
        match self {
            CState::Waiting { reason, message } if message.is_empty() => {
                json!({"waiting": {"reason": reason}})
            }
            CState::Waiting { reason, message } => {
                json!({"waiting": {"reason": reason, "message": message}})
            }
            CState::Running { started } => json!({"running": {"startedAt": started}}),
            CState::Terminated {
                code,
                reason,
                started,
                finished,
                message,
            } => {
                let mut t = json!({
                    "exitCode": code, "reason": reason, "startedAt": started, "finishedAt": finished});
                if !message.is_empty() {
                    t["message"] = json!(message);
                }
                json!({ "terminated": t })
            }
        }
    }
}

#[derive(Debug, Clone)]
pub struct ContainerStatus {
    pub name: String,
    pub image: String,
    pub state: CState,
    pub last: Option<CState>,
    pub restart_count: i64,
    /// How many times it was started by this worker (restarts count from the second).
    pub runs: u32,
    pub ready: bool,
    pub started: bool,
}

impl ContainerStatus {
    fn new(c: &Value, previous: Option<&Value>, init: bool) -> Self {
        let restart_count = previous
            .and_then(|p| p["restartCount"].as_i64())
            .unwrap_or(0);
        ContainerStatus {
            name: c["name"].as_str().unwrap_or_default().into(),
            image: c["image"].as_str().unwrap_or_default().into(),
            state: CState::Waiting {
                reason: if init {
                    "PodInitializing"
                } else {
                    "ContainerCreating"
                }
                .into(),
                message: String::new(),
            },
            last: None,
            restart_count,
            runs: u32::from(previous.is_some_and(|p| p["state"].get("waiting").is_none())),
            ready: false,
            started: false,
        }
    }

    fn to_json(&self, uid: &str) -> Value {
        let mut v = json!({
            "name": self.name, "image": self.image, "imageID": format!("kube-sim://{}", self.image),
            "ready": self.ready, "started": self.started, "restartCount": self.restart_count,
            "state": self.state.to_json(), "lastState": self.last.as_ref().map_or(json!({}), CState::to_json),
        });
        if !matches!(self.state, CState::Waiting { .. }) || self.last.is_some() {
            v["containerID"] = json!(format!("kube-sim://{uid}/{}", self.name));
        }
        v
    }
}

/// A pod as its worker sees it.
#[derive(Debug, Clone)]
pub struct PodState {
    pub init: Vec<ContainerStatus>,
    pub containers: Vec<ContainerStatus>,
    pub initialized: bool,
    pub phase: &'static str,
    /// The worker is done: nothing runs any more.
    pub finished: bool,
    pub start_time: String,
    /// Main process of each running container.
    pub pids: BTreeMap<String, u32>,
    /// How each container was last started (for `pods/exec`).
    pub launches: BTreeMap<String, super::container::Launch>,
}

impl PodState {
    /// The state of a pod about to start, continuing restart counts from `status`.
    pub fn new(pod: &Value) -> Self {
        let prev = |list: &str, name: &Value| {
            pod["status"][list]
                .as_array()
                .and_then(|a| a.iter().find(|s| s["name"] == *name))
                .cloned()
        };
        let make = |key: &str, list: &str, init: bool| -> Vec<ContainerStatus> {
            pod["spec"][key]
                .as_array()
                .into_iter()
                .flatten()
                .map(|c| ContainerStatus::new(c, prev(list, &c["name"]).as_ref(), init))
                .collect()
        };
        let init = make("initContainers", "initContainerStatuses", true);
        PodState {
            initialized: init.is_empty(),
            init,
            containers: make("containers", "containerStatuses", false),
            phase: "Pending",
            finished: false,
            start_time: pod["status"]["startTime"]
                .as_str()
                .map_or_else(clock::now_rfc3339, String::from),
            pids: BTreeMap::new(),
            launches: BTreeMap::new(),
        }
    }

    /// Every container not yet started waits for `reason`.
    pub fn waiting_all(&mut self, reason: &str, message: &str) {
        for c in self.init.iter_mut().chain(self.containers.iter_mut()) {
            if matches!(c.state, CState::Waiting { .. }) {
                c.state = CState::Waiting {
                    reason: reason.into(),
                    message: message.into(),
                };
            }
        }
    }

    pub fn containers_ready(&self) -> bool {
        self.initialized && self.containers.iter().all(|c| c.ready)
    }

    /// The pod's status, keeping condition transition times from `old`.
    pub fn to_status(&self, pod: &Value, pod_ip: &str, host_ip: &str, node_ready: bool) -> Value {
        let uid = pod["metadata"]["uid"].as_str().unwrap_or_default();
        let old = &pod["status"];
        let ready = self.containers_ready() && !self.finished;
        let mut conditions = vec![
            ("PodReadyToStartContainers", true, ""),
            (
                "Initialized",
                self.initialized,
                if self.initialized {
                    ""
                } else {
                    "ContainersNotInitialized"
                },
            ),
            (
                "ContainersReady",
                ready,
                if ready { "" } else { "ContainersNotReady" },
            ),
            (
                "Ready",
                ready && node_ready,
                if ready { "" } else { "ContainersNotReady" },
            ),
        ];
        if ready && !node_ready {
            conditions[3].2 = "NodeNotReady";
        }
        let mut out: Vec<Value> = conditions
            .into_iter()
            .map(|(t, ok, reason)| condition(old, t, ok, reason))
            .collect();
        out.push(condition(old, "PodScheduled", true, ""));
        let mut s = json!({
            "phase": self.phase,
            "conditions": out,
            "hostIP": host_ip, "hostIPs": [{"ip": host_ip}],
            "podIP": pod_ip, "podIPs": [{"ip": pod_ip}],
            "startTime": self.start_time,
            "qosClass": super::resources::qos_class(pod),
            "containerStatuses": self.containers.iter().map(|c| c.to_json(uid)).collect::<Vec<_>>(),
        });
        if !self.init.is_empty() {
            s["initContainerStatuses"] =
                json!(self.init.iter().map(|c| c.to_json(uid)).collect::<Vec<_>>());
        }
        s
    }
}

/// A condition with the old lastTransitionTime when its status did not change.
pub fn condition(old_status: &Value, type_: &str, ok: bool, reason: &str) -> Value {
    let status = if ok { "True" } else { "False" };
    let old = old_status["conditions"]
        .as_array()
        .and_then(|a| a.iter().find(|c| c["type"] == type_));
    let time = old
        .filter(|c| c["status"] == status)
        .and_then(|c| c["lastTransitionTime"].as_str())
        .map_or_else(clock::now_rfc3339, String::from);
    let mut c =
        json!({"type": type_, "status": status, "lastProbeTime": null, "lastTransitionTime": time});
    if !reason.is_empty() {
        c["reason"] = json!(reason);
    }
    c
}
