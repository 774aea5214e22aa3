//! A container's environment (Kubernetes docs "Define Environment Variables for a Container",
//! "Expose Pod Information to Containers Through Environment Variables"): `envFrom` first,
//! then `env` (value with `$(VAR)` references, fieldRef, secretKeyRef, configMapKeyRef), the
//! service variables `KUBERNETES_SERVICE_HOST`/`_PORT` pointing at kube-sim's API, PATH and
//! HOME from the image and user, HOSTNAME the pod's.

use super::api::Api;
use base64::Engine;
use serde_json::Value;
use std::collections::BTreeMap;

/// A downward API field of the pod (`metadata.name`, `status.podIP`, `metadata.labels['k']`…).
pub fn field_value(pod: &Value, path: &str) -> Option<String> {
    let m = &pod["metadata"];
    let s = |v: &Value| v.as_str().map(String::from);
    match path {
        "metadata.name" => s(&m["name"]),
        "metadata.namespace" => s(&m["namespace"]),
        "metadata.uid" => s(&m["uid"]),
        "spec.nodeName" => s(&pod["spec"]["nodeName"]),
        "spec.serviceAccountName" => s(&pod["spec"]["serviceAccountName"]),
        "status.podIP" => s(&pod["status"]["podIP"]),
        "status.hostIP" => s(&pod["status"]["hostIP"]),
        "status.podIPs" => s(&pod["status"]["podIP"]),
        p => {
            let (kind, rest) = p.split_once("['")?;
            let key = rest.strip_suffix("']")?;
            match kind {
                "metadata.labels" => s(&m["labels"][key]),
                "metadata.annotations" => s(&m["annotations"][key]),
                _ => None,
            }
        }
    }
}

/// The environment of `container` in `pod`, or why it cannot be made (a missing Secret key).
pub fn environment(
    api: &Api,
    pod: &Value,
    container: &Value,
    image_path: &str,
    home: &str,
) -> Result<BTreeMap<String, String>, String> {
    let ns = pod["metadata"]["namespace"].as_str().unwrap_or_default();
    let mut env = BTreeMap::new();
    env.insert("PATH".to_string(), image_path.to_string());
    env.insert("HOME".to_string(), home.to_string());
    env.insert(
        "HOSTNAME".to_string(),
        pod["spec"]["hostname"]
            .as_str()
            .or(pod["metadata"]["name"].as_str())
            .unwrap_or_default()
            .to_string(),
    );
    let (host, port) = api
        .server
        .address
        .rsplit_once(':')
        .unwrap_or(("127.0.0.1", "443"));
    for (k, v) in [
        ("KUBERNETES_SERVICE_HOST", host),
        ("KUBERNETES_SERVICE_PORT", port),
        ("KUBERNETES_SERVICE_PORT_HTTPS", port),
        ("KUBERNETES_PORT", &format!("tcp://{host}:{port}")),
    ] {
        env.insert(k.to_string(), v.to_string());
    }
    for from in container["envFrom"].as_array().into_iter().flatten() {
        let prefix = from["prefix"].as_str().unwrap_or_default();
        let (resource, src) = match (from.get("secretRef"), from.get("configMapRef")) {
            (Some(s), _) => ("secrets", s),
            (_, Some(c)) => ("configmaps", c),
            _ => continue,
        };
        let name = src["name"].as_str().unwrap_or_default();
        match api.get(resource, ns, name) {
            Some(obj) => {
                for (k, v) in obj["data"].as_object().into_iter().flatten() {
                    env.insert(format!("{prefix}{k}"), decode(resource, v));
                }
            }
            None if src["optional"] == true => {}
            None => {
                return Err(format!(
                    "{} \"{name}\" not found",
                    &resource[..resource.len() - 1]
                ))
            }
        }
    }
    for e in container["env"].as_array().into_iter().flatten() {
        let Some(name) = e["name"].as_str() else {
            continue;
        };
        let from = &e["valueFrom"];
        let value = if let Some(v) = e["value"].as_str() {
            expand(v, &env)
        } else if let Some(path) = from["fieldRef"]["fieldPath"].as_str() {
            field_value(pod, path).unwrap_or_default()
        } else if let Some(r) = from.get("secretKeyRef").or(from.get("configMapKeyRef")) {
            let resource = if from.get("secretKeyRef").is_some() {
                "secrets"
            } else {
                "configmaps"
            };
            let obj_name = r["name"].as_str().unwrap_or_default();
            let key = r["key"].as_str().unwrap_or_default();
            match api
                .get(resource, ns, obj_name)
                .map(|o| o["data"][key].clone())
            {
                Some(v) if !v.is_null() => decode(resource, &v),
                _ if r["optional"] == true => continue,
                _ => {
                    return Err(format!(
                        "couldn't find key {key} in {} {ns}/{obj_name}",
                        &resource[..resource.len() - 1]
                    ))
                }
            }
        } else if from.get("resourceFieldRef").is_some() {
            "0".to_string()
        } else {
            String::new()
        };
        env.insert(name.to_string(), value);
    }
    Ok(env)
}

fn decode(resource: &str, v: &Value) -> String {
    let s = v.as_str().unwrap_or_default();
    if resource == "secrets" {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(s)
            .unwrap_or_default();
        String::from_utf8_lossy(&bytes).into_owned()
    } else {
        s.to_string()
    }
}

/// `$(VAR)` references to variables defined before; `$$(VAR)` escapes; unknown ones stay.
pub fn expand(s: &str, env: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(inner) = after.strip_prefix('(') {
            match inner.find(')') {
                Some(j) if env.contains_key(&inner[..j]) => {
                    out.push_str(&env[&inner[..j]]);
                    rest = &inner[j + 1..];
                }
                Some(j) => {
                    out.push_str(&rest[i..i + 2 + j + 1]);
                    rest = &inner[j + 1..];
                }
                None => {
                    out.push_str(&rest[i..]);
                    rest = "";
                }
            }
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_expand_and_escape() {
        let env = BTreeMap::from([("A".to_string(), "x".to_string())]);
        assert_eq!(expand("$(A)/$(B)/$$(A)/$", &env), "x/$(B)/$(A)/$");
    }
}
