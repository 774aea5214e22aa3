//! Names instead of cluster DNS (Kubernetes docs "DNS for Services and Pods"): every pod's
//! `/etc/hosts` lists each Service as `NAME` (same namespace only), `NAME.NS`, `NAME.NS.svc` and
//! `NAME.NS.svc.cluster.local` → its ClusterIP (headless Services: their ready pods' IPs), the
//! pod itself (hostname, `hostname.subdomain.NS.svc.cluster.local`), and pods with a hostname
//! and subdomain naming a headless Service. The file is bind-mounted into every container, so
//! it is rewritten in place (same inode) when Services or endpoints change.

use serde_json::Value;
use std::io::Write;
use std::path::Path;

const DOMAIN: &str = "cluster.local";

/// The hosts file of `pod`, given every Service and the ready addresses of headless ones.
pub fn render(
    pod: &Value,
    services: &[Value],
    headless: &dyn Fn(&Value) -> Vec<String>,
    pods: &[Value],
) -> String {
    let ns = pod["metadata"]["namespace"].as_str().unwrap_or_default();
    let mut out = String::from(
        "# Kubernetes-managed hosts file (kube-sim).\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n",
    );
    if let Some(ip) = pod["status"]["podIP"].as_str() {
        out.push_str(&format!("{ip}\t{}\n", pod_names(pod).join(" ")));
    }
    for p in pods {
        if p["metadata"]["uid"] == pod["metadata"]["uid"]
            || p["spec"]["subdomain"].as_str().is_none()
        {
            continue;
        }
        if let Some(ip) = p["status"]["podIP"].as_str() {
            let names = pod_names(p);
            if names.len() > 1 {
                out.push_str(&format!("{ip}\t{}\n", names[1..].join(" ")));
            }
        }
    }
    for s in services {
        let name = s["metadata"]["name"].as_str().unwrap_or_default();
        let sns = s["metadata"]["namespace"].as_str().unwrap_or_default();
        let mut names = Vec::new();
        if sns == ns {
            names.push(name.to_string());
        }
        names.push(format!("{name}.{sns}"));
        names.push(format!("{name}.{sns}.svc"));
        names.push(format!("{name}.{sns}.svc.{DOMAIN}"));
        let ips = match s["spec"]["clusterIP"].as_str() {
            Some("None") => headless(s),
            Some(ip) if !ip.is_empty() => vec![ip.to_string()],
            _ => Vec::new(),
        };
        for ip in ips {
            out.push_str(&format!("{ip}\t{}\n", names.join(" ")));
        }
    }
    out
}

/// The pod's hostname, then its FQDN when it has a subdomain.
fn pod_names(pod: &Value) -> Vec<String> {
    let ns = pod["metadata"]["namespace"].as_str().unwrap_or_default();
    let host = pod["spec"]["hostname"]
        .as_str()
        .or(pod["metadata"]["name"].as_str())
        .unwrap_or_default()
        .to_string();
    let mut names = vec![host.clone()];
    if let Some(sub) = pod["spec"]["subdomain"].as_str() {
        names.push(format!("{host}.{sub}.{ns}.svc.{DOMAIN}"));
        names.push(format!("{host}.{sub}.{ns}.svc"));
        names.push(format!("{host}.{sub}.{ns}"));
        names.push(format!("{host}.{sub}"));
    }
    names
}

/// Replace the file's contents keeping its inode (a bind mount of it stays valid); returns
/// whether anything changed.
pub fn write_in_place(path: &Path, content: &str) -> std::io::Result<bool> {
    if std::fs::read_to_string(path).is_ok_and(|c| c == content) {
        return Ok(false);
    }
    // Overwrite from the start, then cut the rest: a reader never sees an empty file.
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)?;
    f.write_all(content.as_bytes())?;
    f.set_len(content.len() as u64)?;
    Ok(true)
}

/// `/etc/passwd` and `/etc/group` of the images kube-sim runs: root, postgres (26, as in
/// CloudNativePG's images), nonroot (65532, distroless) and nobody.
pub fn passwd_and_group() -> (String, String) {
    (
        "root:x:0:0:root:/root:/bin/sh\npostgres:x:26:26:PostgreSQL:/var/lib/postgresql:/bin/bash\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n".into(),
        "root:x:0:\npostgres:x:26:\ntty:x:5:\nnonroot:x:65532:\nnogroup:x:65534:\n".into(),
    )
}

/// The home directory of `uid` in [`passwd_and_group`].
pub fn home_of(uid: Option<u32>) -> &'static str {
    match uid {
        None | Some(0) => "/root",
        Some(26) => "/var/lib/postgresql",
        Some(65532) => "/home/nonroot",
        Some(_) => "/",
    }
}
