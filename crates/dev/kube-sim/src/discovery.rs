//! Discovery and OpenAPI (API reference "Discovery API" and "OpenAPI V3"): the legacy
//! (unaggregated) group and resource lists, `/version`, and OpenAPI v3 documents that carry
//! each resource's paths with their `x-kubernetes-group-version-kind` and the `fieldValidation`
//! parameter, which is what `kubectl` reads to decide that the server validates fields itself.
//! No schemas for built-in kinds are published.

use crate::registry::{Registry, ResourceType};
use serde_json::{json, Map, Value};

const VERBS: [&str; 8] = [
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

pub fn version() -> Value {
    json!({
        "major": "1", "minor": "33", "gitVersion": "v1.33.0-kube-sim",
        "gitCommit": "0000000000000000000000000000000000000000", "gitTreeState": "clean",
        "buildDate": "2026-01-01T00:00:00Z", "goVersion": "none", "compiler": "rustc",
        "platform": "linux/amd64",
    })
}

pub fn core_versions(address: &str) -> Value {
    json!({
        "kind": "APIVersions", "versions": ["v1"],
        "serverAddressByClientCIDRs": [{ "clientCIDR": "0.0.0.0/0", "serverAddress": address }],
    })
}

fn preferred(versions: &[String]) -> &str {
    versions
        .iter()
        .find(|v| v.as_str() == "v1")
        .or(versions.first())
        .map(String::as_str)
        .unwrap_or("v1")
}

pub fn group_list(reg: &Registry) -> Value {
    let mut groups: Vec<(String, Vec<String>)> = Vec::new();
    for (g, v) in reg.group_versions() {
        if g.is_empty() {
            continue;
        }
        match groups.iter_mut().find(|(name, _)| *name == g) {
            Some((_, vs)) => vs.push(v),
            None => groups.push((g, vec![v])),
        }
    }
    let list: Vec<Value> = groups.iter().map(|(g, vs)| group(g, vs)).collect();
    json!({ "kind": "APIGroupList", "apiVersion": "v1", "groups": list })
}

fn group(g: &str, vs: &[String]) -> Value {
    let p = preferred(vs);
    json!({
        "name": g,
        "versions": vs.iter().map(|v| json!({"groupVersion": format!("{g}/{v}"), "version": v})).collect::<Vec<_>>(),
        "preferredVersion": { "groupVersion": format!("{g}/{p}"), "version": p },
    })
}

/// `/apis/G` (one group), if served.
pub fn one_group(reg: &Registry, g: &str) -> Option<Value> {
    let vs: Vec<String> = reg
        .group_versions()
        .into_iter()
        .filter(|(gg, _)| gg == g)
        .map(|(_, v)| v)
        .collect();
    if vs.is_empty() {
        return None;
    }
    let mut v = group(g, &vs);
    v["kind"] = json!("APIGroup");
    v["apiVersion"] = json!("v1");
    Some(v)
}

fn resource_entry(t: &ResourceType) -> Value {
    let mut e = json!({
        "name": t.plural, "singularName": t.singular, "namespaced": t.namespaced,
        "kind": t.kind, "verbs": VERBS,
    });
    if !t.short_names.is_empty() {
        e["shortNames"] = json!(t.short_names);
    }
    if !t.categories.is_empty() {
        e["categories"] = json!(t.categories);
    }
    e
}

/// `/api/v1` or `/apis/G/V`, if served.
pub fn resource_list(reg: &Registry, g: &str, v: &str) -> Option<Value> {
    let types: Vec<_> = reg
        .all()
        .iter()
        .filter(|t| t.group == g && t.version == v)
        .collect();
    if types.is_empty() {
        return None;
    }
    let mut resources = Vec::new();
    for t in types {
        resources.push(resource_entry(t));
        if t.status {
            resources.push(
                json!({"name": format!("{}/status", t.plural), "singularName": "",
                "namespaced": t.namespaced, "kind": t.kind, "verbs": ["get", "patch", "update"]}),
            );
        }
        if t.scale.is_some() {
            resources.push(json!({"name": format!("{}/scale", t.plural), "singularName": "",
                "namespaced": t.namespaced, "group": "autoscaling", "version": "v1", "kind": "Scale",
                "verbs": ["get", "patch", "update"]}));
        }
        if t.group.is_empty() && t.plural == "pods" {
            // `kubectl drain` looks for this entry before it evicts (else it deletes).
            resources.push(
                json!({"name": "pods/eviction", "singularName": "", "namespaced": true,
                "group": "policy", "version": "v1", "kind": "Eviction", "verbs": ["create"]}),
            );
        }
    }
    let gv = if g.is_empty() {
        v.to_string()
    } else {
        format!("{g}/{v}")
    };
    Some(
        json!({ "kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources }),
    )
}

fn gv_path(g: &str, v: &str) -> String {
    if g.is_empty() {
        format!("api/{v}")
    } else {
        format!("apis/{g}/{v}")
    }
}

/// `/openapi/v3`: one entry per group-version; `hash` changes when the served types do.
pub fn openapi_v3_root(reg: &Registry, hash: u64) -> Value {
    let mut paths = Map::new();
    for (g, v) in reg.group_versions() {
        let p = gv_path(&g, &v);
        paths.insert(
            p.clone(),
            json!({ "serverRelativeURL": format!("/openapi/v3/{p}?hash={hash:016X}") }),
        );
    }
    json!({ "paths": paths })
}

/// `/openapi/v3/api/v1`, `/openapi/v3/apis/G/V`.
pub fn openapi_v3_group_version(reg: &Registry, g: &str, v: &str) -> Option<Value> {
    let types: Vec<_> = reg
        .all()
        .iter()
        .filter(|t| t.group == g && t.version == v)
        .cloned()
        .collect();
    if types.is_empty() {
        return None;
    }
    let mut paths = Map::new();
    let mut schemas = Map::new();
    let query = |name: &str| json!({"name": name, "in": "query", "schema": {"type": "string", "uniqueItems": true}});
    for t in &types {
        let gvk = json!({"group": t.group, "version": t.version, "kind": t.kind});
        let base = if t.namespaced {
            format!("/{}/namespaces/{{namespace}}/{}", gv_path(g, v), t.plural)
        } else {
            format!("/{}/{}", gv_path(g, v), t.plural)
        };
        let op = |action: &str, params: Vec<Value>| {
            json!({
                "x-kubernetes-action": action, "x-kubernetes-group-version-kind": gvk,
                "parameters": params, "responses": {"200": {"description": "OK"}},
            })
        };
        paths.insert(base.clone(), json!({
            "get": op("list", vec![query("labelSelector"), query("fieldSelector")]),
            "post": op("post", vec![query("dryRun"), query("fieldManager"), query("fieldValidation")]),
        }));
        paths.insert(format!("{base}/{{name}}"), json!({
            "get": op("get", vec![]),
            "put": op("put", vec![query("dryRun"), query("fieldManager"), query("fieldValidation")]),
            "patch": op("patch", vec![query("dryRun"), query("fieldManager"), query("fieldValidation"), query("force")]),
            "delete": op("delete", vec![query("dryRun")]),
        }));
        if let Some(schema) = &t.schema {
            let mut s = schema.clone();
            s["x-kubernetes-group-version-kind"] = json!([gvk]);
            let prefix = if g.is_empty() {
                "io.k8s.api.core".to_string()
            } else {
                g.split('.').rev().collect::<Vec<_>>().join(".")
            };
            schemas.insert(format!("{prefix}.{}.{}", t.version, t.kind), s);
        }
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": { "title": "Kubernetes", "version": "v1.33.0" },
        "paths": paths,
        "components": { "schemas": schemas },
    }))
}
