//! Pod volumes as directories (Kubernetes docs "Volumes", "Projected Volumes", "Downward API",
//! "Configure a Security Context for a Pod": fsGroup): emptyDir (any medium) a directory of the
//! pod, deleted with it; a PersistentVolumeClaim the claim's directory, which outlives pods;
//! Secret, ConfigMap, downwardAPI and projected volumes files written from the API objects
//! (items, defaultMode and per-item modes, optional sources), rewritten when the objects
//! change; hostPath the host's path. With an `fsGroup`, writable volumes and the files the
//! kubelet writes belong to that group (setgid directories), as the kubelet's ownership
//! management makes them.

use super::api::Api;
use base64::Engine;
use serde_json::Value;
use std::collections::BTreeMap;
use std::os::unix::fs::{chown, PermissionsExt};
use std::path::{Path, PathBuf};

/// Where a claim's data lives: `STATE/kubelet/volumes/NAMESPACE/CLAIM`.
pub fn claim_dir(root: &Path, ns: &str, claim: &str) -> PathBuf {
    root.join("volumes").join(ns).join(claim)
}

/// One volume made ready: its directory (or file) on this machine.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub name: String,
    pub source: PathBuf,
}

/// Files a volume should contain: relative path → (bytes, mode).
type Files = BTreeMap<String, (Vec<u8>, u32)>;

/// Make every volume of `pod` exist under `pod_dir` (or the claims' directories); returns them
/// or the first reason one cannot be (a missing Secret, an unbound claim: the pod waits).
pub fn prepare(
    api: &Api,
    root: &Path,
    pod_dir: &Path,
    pod: &Value,
) -> Result<Vec<Prepared>, String> {
    let ns = pod["metadata"]["namespace"].as_str().unwrap_or_default();
    let fs_group = pod["spec"]["securityContext"]["fsGroup"]
        .as_u64()
        .map(|g| g as u32);
    let mut out = Vec::new();
    for v in pod["spec"]["volumes"].as_array().into_iter().flatten() {
        let name = v["name"].as_str().unwrap_or_default().to_string();
        let own = pod_dir.join("volumes").join(&name);
        let source = if v.get("persistentVolumeClaim").is_some() {
            let claim = v["persistentVolumeClaim"]["claimName"]
                .as_str()
                .unwrap_or_default();
            let pvc = api
                .get("persistentvolumeclaims", ns, claim)
                .ok_or_else(|| format!("persistentvolumeclaim \"{claim}\" not found"))?;
            if pvc["status"]["phase"] != "Bound" {
                return Err(format!("persistentvolumeclaim \"{claim}\" is not bound"));
            }
            let dir = claim_dir(root, ns, claim);
            writable_dir(&dir, fs_group, 0o775)?;
            dir
        } else if let Some(path) = v["hostPath"]["path"].as_str() {
            if v["hostPath"]["type"] == "DirectoryOrCreate" {
                std::fs::create_dir_all(path).map_err(|e| format!("hostPath {path}: {e}"))?;
            }
            PathBuf::from(path)
        } else if let Some(files) = files_of(api, pod, v)? {
            write_files(&own, &files, fs_group)?;
            own
        } else {
            // emptyDir, and any other kind: an empty directory of the pod.
            writable_dir(&own, fs_group, 0o777)?;
            own
        };
        out.push(Prepared { name, source });
    }
    Ok(out)
}

/// Rewrite the Secret/ConfigMap/downward API/projected volumes whose sources changed.
pub fn refresh(api: &Api, pod_dir: &Path, pod: &Value) {
    let fs_group = pod["spec"]["securityContext"]["fsGroup"]
        .as_u64()
        .map(|g| g as u32);
    for v in pod["spec"]["volumes"].as_array().into_iter().flatten() {
        let name = v["name"].as_str().unwrap_or_default();
        if let Ok(Some(files)) = files_of(api, pod, v) {
            let _ = write_files(&pod_dir.join("volumes").join(name), &files, fs_group);
        }
    }
}

fn writable_dir(dir: &Path, fs_group: Option<u32>, mode: u32) -> Result<(), String> {
    let err = |e: std::io::Error| format!("{}: {e}", dir.display());
    let fresh = !dir.exists();
    std::fs::create_dir_all(dir).map_err(err)?;
    if let Some(g) = fs_group {
        chown(dir, None, Some(g)).map_err(err)?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o2775 | mode))
            .map_err(err)?;
    } else if fresh {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode)).map_err(err)?;
    }
    Ok(())
}

/// The files of a Secret/ConfigMap/downwardAPI/projected volume; `None` for other kinds.
fn files_of(api: &Api, pod: &Value, v: &Value) -> Result<Option<Files>, String> {
    let mut files = Files::new();
    if v.get("secret").is_some() || v.get("configMap").is_some() {
        object_files(api, pod, v, None, &mut files)?;
    } else if let Some(d) = v.get("downwardAPI") {
        downward_files(pod, d, d["defaultMode"].as_u64(), &mut files);
    } else if let Some(p) = v.get("projected") {
        let mode = p["defaultMode"].as_u64();
        for s in p["sources"].as_array().into_iter().flatten() {
            if let Some(t) = s.get("serviceAccountToken") {
                let ns = pod["metadata"]["namespace"].as_str().unwrap_or_default();
                let sa = pod["spec"]["serviceAccountName"]
                    .as_str()
                    .unwrap_or("default");
                let token = api.server.auth.service_account_token(ns, sa);
                let path = t["path"].as_str().unwrap_or("token").to_string();
                files.insert(path, (token.into_bytes(), mode_or(mode, 0o644)));
            } else if let Some(d) = s.get("downwardAPI") {
                downward_files(pod, d, mode, &mut files);
            } else {
                object_files(api, pod, s, mode, &mut files)?;
            }
        }
    } else {
        return Ok(None);
    }
    Ok(Some(files))
}

fn mode_or(mode: Option<u64>, default: u32) -> u32 {
    mode.map_or(default, |m| m as u32 & 0o7777)
}

/// A `secret:` or `configMap:` source (volume or projection) into `files`.
fn object_files(
    api: &Api,
    pod: &Value,
    s: &Value,
    mode: Option<u64>,
    files: &mut Files,
) -> Result<(), String> {
    let ns = pod["metadata"]["namespace"].as_str().unwrap_or_default();
    let (resource, src) = if let Some(src) = s.get("secret") {
        ("secrets", src)
    } else if let Some(src) = s.get("configMap") {
        ("configmaps", src)
    } else {
        return Ok(());
    };
    let name = src["secretName"]
        .as_str()
        .or(src["name"].as_str())
        .unwrap_or_default();
    let Some(obj) = api.get(resource, ns, name) else {
        if src["optional"] == true {
            return Ok(());
        }
        return Err(format!(
            "{} \"{name}\" not found",
            &resource[..resource.len() - 1]
        ));
    };
    let mut data: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for (k, v) in obj["data"].as_object().into_iter().flatten() {
        let s = v.as_str().unwrap_or_default();
        let bytes = if resource == "secrets" {
            base64::engine::general_purpose::STANDARD
                .decode(s)
                .unwrap_or_default()
        } else {
            s.as_bytes().to_vec()
        };
        data.insert(k.clone(), bytes);
    }
    for (k, v) in obj["binaryData"].as_object().into_iter().flatten() {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(v.as_str().unwrap_or_default())
            .unwrap_or_default();
        data.insert(k.clone(), bytes);
    }
    let mode = mode_or(src["defaultMode"].as_u64().or(mode), 0o644);
    match src["items"].as_array() {
        Some(items) => {
            for i in items {
                let key = i["key"].as_str().unwrap_or_default();
                let Some(bytes) = data.get(key) else {
                    if src["optional"] == true {
                        continue;
                    }
                    return Err(format!("key {key:?} not found in {resource} {name:?}"));
                };
                let path = i["path"].as_str().unwrap_or(key).to_string();
                files.insert(path, (bytes.clone(), mode_or(i["mode"].as_u64(), mode)));
            }
        }
        None => {
            for (k, bytes) in data {
                files.insert(k, (bytes, mode));
            }
        }
    }
    Ok(())
}

fn downward_files(pod: &Value, d: &Value, mode: Option<u64>, files: &mut Files) {
    let mode = mode_or(d["defaultMode"].as_u64().or(mode), 0o644);
    for i in d["items"].as_array().into_iter().flatten() {
        let Some(path) = i["path"].as_str() else {
            continue;
        };
        let field = i["fieldRef"]["fieldPath"].as_str().unwrap_or_default();
        let text = match field {
            "metadata.labels" | "metadata.annotations" => {
                let key = field.trim_start_matches("metadata.");
                pod["metadata"][key]
                    .as_object()
                    .into_iter()
                    .flatten()
                    .map(|(k, v)| format!("{k}=\"{}\"\n", v.as_str().unwrap_or_default()))
                    .collect()
            }
            f => super::env::field_value(pod, f).unwrap_or_default(),
        };
        files.insert(
            path.to_string(),
            (text.into_bytes(), mode_or(i["mode"].as_u64(), mode)),
        );
    }
}

/// Write `files` into `dir`, changing only what differs, removing files no longer there.
fn write_files(dir: &Path, files: &Files, fs_group: Option<u32>) -> Result<(), String> {
    let err = |e: std::io::Error| format!("{}: {e}", dir.display());
    std::fs::create_dir_all(dir).map_err(err)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).map_err(err)?;
    for (rel, (bytes, mode)) in files {
        let path = dir.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(err)?;
        }
        let same = std::fs::read(&path).is_ok_and(|b| &b == bytes);
        if !same {
            let tmp = path.with_extension("kube-sim-tmp");
            std::fs::write(&tmp, bytes).map_err(err)?;
            std::fs::rename(&tmp, &path).map_err(err)?;
        }
        if let Some(g) = fs_group {
            chown(&path, Some(0), Some(g)).map_err(err)?;
        }
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(*mode)).map_err(err)?;
    }
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if e.path().is_file() && !files.contains_key(&name) {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    Ok(())
}
