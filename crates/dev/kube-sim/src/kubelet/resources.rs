//! Resource requests against node allocatable (docs "Resource Management for Pods and
//! Containers", "Pod Quality of Service Classes", API reference "Quantity"): the scheduler's
//! NodeResourcesFit filter for `cpu`, `memory` and the pod count, and the pod's QoS class.
//! Limits are recorded in the spec and decide the QoS class; nothing enforces them.

use serde_json::Value;

/// A resource.Quantity as a number of base units (cores, bytes); `None` if malformed.
pub fn quantity(q: &Value) -> Option<f64> {
    let s = match q {
        Value::String(s) => s.trim().to_string(),
        Value::Number(n) => return n.as_f64(),
        _ => return None,
    };
    const SUFFIXES: [(&str, f64); 16] = [
        ("Ki", 1024.0),
        ("Mi", 1048576.0),
        ("Gi", 1073741824.0),
        ("Ti", 1099511627776.0),
        ("Pi", 1125899906842624.0),
        ("Ei", 1152921504606846976.0),
        ("n", 1e-9),
        ("u", 1e-6),
        ("m", 1e-3),
        ("k", 1e3),
        ("M", 1e6),
        ("G", 1e9),
        ("T", 1e12),
        ("P", 1e15),
        ("E", 1e18),
        ("", 1.0),
    ];
    SUFFIXES.iter().find_map(|(suffix, factor)| {
        let number: f64 = s.strip_suffix(suffix)?.parse().ok()?;
        number.is_finite().then_some(number * factor)
    })
}

/// A container's request of `resource` (its limit when only that is given, as the API server
/// defaults it).
fn container_request(c: &Value, resource: &str) -> f64 {
    let r = &c["resources"];
    quantity(&r["requests"][resource])
        .or_else(|| quantity(&r["limits"][resource]))
        .unwrap_or(0.0)
}

/// The pod's effective request: the larger of the containers' sum and any init container's
/// (init containers run one at a time), plus `overhead`.
pub fn pod_request(pod: &Value, resource: &str) -> f64 {
    let spec = &pod["spec"];
    let sum: f64 = spec["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| container_request(c, resource))
        .sum();
    let init = spec["initContainers"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| container_request(c, resource))
        .fold(0.0, f64::max);
    sum.max(init) + quantity(&spec["overhead"][resource]).unwrap_or(0.0)
}

/// Why `pod` does not fit on `node` next to the pods already there (`on_node`), if it does not:
/// the scheduler's reasons `Insufficient cpu`, `Insufficient memory`, `Too many pods`.
pub fn misfit(pod: &Value, node: &Value, on_node: &[&Value]) -> Option<String> {
    let allocatable = &node["status"]["allocatable"];
    if let Some(max) = quantity(&allocatable["pods"]) {
        if on_node.len() as f64 + 1.0 > max {
            return Some("Too many pods".into());
        }
    }
    for resource in ["cpu", "memory"] {
        let want = pod_request(pod, resource);
        if want <= 0.0 {
            continue;
        }
        let Some(capacity) = quantity(&allocatable[resource]) else {
            continue;
        };
        let used: f64 = on_node.iter().map(|p| pod_request(p, resource)).sum();
        // A little slack for the float arithmetic of millicores and bytes.
        if used + want > capacity * (1.0 + 1e-9) {
            return Some(format!("Insufficient {resource}"));
        }
    }
    None
}

/// `status.qosClass`: Guaranteed (every container has cpu and memory limits equal to its
/// requests), BestEffort (no requests or limits at all), Burstable otherwise.
pub fn qos_class(pod: &Value) -> &'static str {
    let spec = &pod["spec"];
    let all: Vec<&Value> = spec["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .chain(spec["initContainers"].as_array().into_iter().flatten())
        .collect();
    let set = |c: &Value, kind: &str, r: &str| quantity(&c["resources"][kind][r]);
    let none = all.iter().all(|c| {
        ["cpu", "memory"]
            .iter()
            .all(|r| set(c, "requests", r).is_none() && set(c, "limits", r).is_none())
    });
    if none {
        return "BestEffort";
    }
    let guaranteed = all.iter().all(|c| {
        ["cpu", "memory"].iter().all(|r| {
            let limit = set(c, "limits", r);
            limit.is_some() && set(c, "requests", r).or(limit) == limit
        })
    });
    if guaranteed {
        "Guaranteed"
    } else {
        "Burstable"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn quantities_parse_with_their_suffixes() {
        assert_eq!(quantity(&json!("500m")), Some(0.5));
        assert_eq!(quantity(&json!("2")), Some(2.0));
        assert_eq!(quantity(&json!(3)), Some(3.0));
        assert_eq!(quantity(&json!("1Gi")), Some(1073741824.0));
        assert_eq!(quantity(&json!("1G")), Some(1e9));
        assert_eq!(quantity(&json!("1e3")), Some(1000.0));
        assert_eq!(quantity(&json!("12Zi")), None);
        assert_eq!(quantity(&json!("lots")), None);
    }

    #[test]
    fn requests_fit_and_qos_classes() {
        let pod = |cpu: &str, mem: &str| {
            json!({"spec": {"containers": [{"resources": {"requests": {"cpu": cpu}, "limits": {"memory": mem}}}],
                "initContainers": [{"resources": {"requests": {"cpu": "3"}}}]}})
        };
        let p = pod("1", "1Gi");
        assert_eq!(
            pod_request(&p, "cpu"),
            3.0,
            "the init container's is larger"
        );
        assert_eq!(pod_request(&p, "memory"), 1073741824.0, "limit as request");
        let node = json!({"status": {"allocatable": {"cpu": "4", "memory": "2Gi", "pods": "3"}}});
        assert_eq!(misfit(&p, &node, &[]), None);
        assert_eq!(misfit(&p, &node, &[&p]), Some("Insufficient cpu".into()));
        let small = json!({"spec": {"containers": [{"resources": {"requests": {"cpu": "100m", "memory": "1536Mi"}}}]}});
        assert_eq!(
            misfit(&small, &node, &[&small]),
            Some("Insufficient memory".into())
        );
        let none = json!({"spec": {"containers": [{}]}});
        assert_eq!(
            misfit(&none, &node, &[&none, &none, &none]),
            Some("Too many pods".into())
        );
        assert_eq!(qos_class(&none), "BestEffort");
        assert_eq!(qos_class(&p), "Burstable");
        let g = json!({"spec": {"containers": [{"resources": {"limits": {"cpu": "1", "memory": "1Gi"}}}]}});
        assert_eq!(qos_class(&g), "Guaranteed");
    }
}
