//! The defaults the API server fills into built-in kinds (API reference, per kind: PodSpec,
//! Container, Probe, ServiceSpec, DeploymentSpec, JobSpec, PersistentVolumeClaimSpec), so an
//! object read back looks as it would from a real cluster — which matters to anything that
//! compares what it wrote with what it reads. ClusterIPs are loopback addresses (`127.B.0.x`, see `Store::network`).

use crate::registry::ResourceType;
use crate::store::Store;
use serde_json::{json, Value};

fn set(obj: &mut Value, key: &str, value: Value) {
    if obj.is_object() && obj.get(key).is_none_or(Value::is_null) {
        obj[key] = value;
    }
}

fn probe(p: &mut Value) {
    if !p.is_object() {
        return;
    }
    set(p, "timeoutSeconds", json!(1));
    set(p, "periodSeconds", json!(10));
    set(p, "successThreshold", json!(1));
    set(p, "failureThreshold", json!(3));
    if p["httpGet"].is_object() {
        set(&mut p["httpGet"], "scheme", json!("HTTP"));
        set(&mut p["httpGet"], "path", json!("/"));
    }
}

fn container(c: &mut Value) {
    set(c, "terminationMessagePath", json!("/dev/termination-log"));
    set(c, "terminationMessagePolicy", json!("File"));
    let image = c["image"].as_str().unwrap_or_default();
    let last = image.rsplit('/').next().unwrap_or_default();
    let latest = !last.contains(':') || last.ends_with(":latest");
    let policy = if latest && !image.contains('@') {
        "Always"
    } else {
        "IfNotPresent"
    };
    set(c, "imagePullPolicy", json!(policy));
    set(c, "resources", json!({}));
    for p in c["ports"].as_array_mut().into_iter().flatten() {
        set(p, "protocol", json!("TCP"));
    }
    for k in ["livenessProbe", "readinessProbe", "startupProbe"] {
        if let Some(p) = c.get_mut(k) {
            probe(p);
        }
    }
}

/// PodSpec defaults (also for the templates of Deployments, ReplicaSets and Jobs).
pub fn pod_spec(spec: &mut Value) {
    if !spec.is_object() {
        return;
    }
    set(spec, "restartPolicy", json!("Always"));
    set(spec, "terminationGracePeriodSeconds", json!(30));
    set(spec, "dnsPolicy", json!("ClusterFirst"));
    set(spec, "schedulerName", json!("default-scheduler"));
    set(spec, "securityContext", json!({}));
    if spec.get("serviceAccountName").is_some() {
        let sa = spec["serviceAccountName"].clone();
        set(spec, "serviceAccount", sa);
    }
    for k in ["containers", "initContainers"] {
        for c in spec[k].as_array_mut().into_iter().flatten() {
            container(c);
        }
    }
}

fn template(spec: &mut Value) {
    if spec["template"]["spec"].is_object() {
        pod_spec(&mut spec["template"]["spec"]);
    }
}

/// Fill in the defaults of a built-in kind (no-op for others).
pub fn apply(rt: &ResourceType, obj: &mut Value, store: &Store) {
    if rt.crd.is_some() || !obj["spec"].is_object() && rt.kind != "Service" {
        return;
    }
    let spec = &mut obj["spec"];
    match (rt.group.as_str(), rt.kind.as_str()) {
        ("", "Pod") => pod_spec(spec),
        ("apps", "Deployment") => {
            set(spec, "replicas", json!(1));
            set(spec, "revisionHistoryLimit", json!(10));
            set(spec, "progressDeadlineSeconds", json!(600));
            set(
                spec,
                "strategy",
                json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}}),
            );
            template(spec);
        }
        ("apps", "ReplicaSet") => {
            set(spec, "replicas", json!(1));
            template(spec);
        }
        ("batch", "Job") => {
            set(spec, "parallelism", json!(1));
            set(spec, "completions", json!(1));
            set(spec, "backoffLimit", json!(6));
            set(spec, "completionMode", json!("NonIndexed"));
            set(spec, "suspend", json!(false));
            template(spec);
            // A Job's pods restart per the Job, never Always; keep what was given.
        }
        ("", "Service") => {
            if !spec.is_object() {
                *spec = json!({});
            }
            set(spec, "type", json!("ClusterIP"));
            set(spec, "sessionAffinity", json!("None"));
            for p in spec["ports"].as_array_mut().into_iter().flatten() {
                set(p, "protocol", json!("TCP"));
                let port = p["port"].clone();
                set(p, "targetPort", port);
            }
            if spec["type"] != "ExternalName" {
                if spec["clusterIP"].as_str().is_none_or(str::is_empty) {
                    spec["clusterIP"] = json!(next_cluster_ip(store));
                }
                let ip = spec["clusterIP"].clone();
                set(spec, "clusterIPs", json!([ip]));
                set(spec, "ipFamilies", json!(["IPv4"]));
                set(spec, "ipFamilyPolicy", json!("SingleStack"));
                set(spec, "internalTrafficPolicy", json!("Cluster"));
            }
        }
        ("", "PersistentVolumeClaim") => set(spec, "volumeMode", json!("Filesystem")),
        _ => {}
    }
}

/// Job pods get the controller's labels and the Job a selector on them (at creation).
pub fn job_selector(obj: &mut Value) {
    let uid = obj["metadata"]["uid"].clone();
    let name = obj["metadata"]["name"].clone();
    if !obj["spec"].is_object() || obj["spec"]["manualSelector"] == json!(true) {
        return;
    }
    let labels = json!({
        "batch.kubernetes.io/controller-uid": uid, "controller-uid": uid,
        "batch.kubernetes.io/job-name": name, "job-name": name,
    });
    if obj["spec"]["selector"].is_null() {
        obj["spec"]["selector"] =
            json!({"matchLabels": {"batch.kubernetes.io/controller-uid": uid}});
    }
    if !obj["spec"]["template"]["metadata"].is_object() {
        obj["spec"]["template"]["metadata"] = json!({});
    }
    let meta = &mut obj["spec"]["template"]["metadata"];
    if !meta["labels"].is_object() {
        meta["labels"] = json!({});
    }
    if let (Some(l), Some(add)) = (meta["labels"].as_object_mut(), labels.as_object()) {
        for (k, v) in add {
            l.entry(k.clone()).or_insert(v.clone());
        }
    }
}

fn next_cluster_ip(store: &Store) -> String {
    let used: Vec<String> = store
        .objects("/services")
        .into_iter()
        .flat_map(|o| o.values())
        .filter_map(|s| s["spec"]["clusterIP"].as_str().map(String::from))
        .collect();
    // Loopback addresses of the server's network, so the kubelet's proxy can listen on them.
    let b = store.network;
    (2u32..254)
        .map(|n| format!("127.{b}.0.{n}"))
        .chain((200u32..255).flat_map(|c| (1u32..255).map(move |n| format!("127.{b}.{c}.{n}"))))
        .find(|ip| !used.contains(ip))
        .unwrap_or_else(|| format!("127.{b}.254.254"))
}
