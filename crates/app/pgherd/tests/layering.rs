//! DESIGN's dependency table: model crates depend on nothing of pgherd's but other model
//! crates; engines on models and engines; platforms on models, engines and platforms; only the
//! app depends on everything. Every library opens with a `//!` paragraph saying what it owns.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

mod common;
use common::repo_root;
use std::process::Command;

fn layer_of(manifest_path: &str) -> Option<&'static str> {
    ["model", "engine", "platform", "app", "dev"]
        .into_iter()
        .find(|l| manifest_path.contains(&format!("/crates/{l}/")))
}

fn allowed(from: &str, to: &str) -> bool {
    match from {
        "model" => to == "model",
        "engine" => matches!(to, "model" | "engine"),
        "platform" => matches!(to, "model" | "engine" | "platform"),
        "dev" => to != "app",
        "app" => true,
        _ => false,
    }
}

#[test]
fn dependencies_point_downward() {
    let out = Command::new(env!("CARGO"))
        .args(["metadata", "--format-version", "1", "--no-deps"])
        .current_dir(repo_root())
        .output()
        .expect("cargo metadata runs");
    assert!(out.status.success());
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).expect("metadata is JSON");
    let packages = meta["packages"].as_array().expect("packages");
    let layer_by_name: std::collections::BTreeMap<&str, &str> = packages
        .iter()
        .filter_map(|p| Some((p["name"].as_str()?, layer_of(p["manifest_path"].as_str()?)?)))
        .collect();
    assert!(layer_by_name.len() >= 3, "{layer_by_name:?}");
    let mut violations = Vec::new();
    for p in packages {
        let name = p["name"].as_str().unwrap_or_default();
        let Some(from) = layer_by_name.get(name) else {
            continue;
        };
        for dep in p["dependencies"].as_array().into_iter().flatten() {
            if dep["kind"].as_str() == Some("dev") {
                continue;
            }
            let dep_name = dep["name"].as_str().unwrap_or_default();
            if let Some(to) = layer_by_name.get(dep_name) {
                if !allowed(from, to) {
                    violations.push(format!("{name} ({from}) depends on {dep_name} ({to})"));
                }
            }
        }
        if let Some(lib) = p["targets"].as_array().into_iter().flatten().find(|t| {
            t["kind"]
                .as_array()
                .is_some_and(|k| k.iter().any(|k| k == "lib"))
        }) {
            let src = std::fs::read_to_string(lib["src_path"].as_str().unwrap_or_default())
                .unwrap_or_default();
            if !src.starts_with("//!") {
                violations.push(format!(
                    "{name}: lib.rs must open with a //! paragraph saying what it owns"
                ));
            }
            // The header's `//! Imports: a, b.` is the crate's allow-list of pgherd crates,
            // exactly what its Cargo.toml uses (dev-dependencies aside).
            let declared: Option<std::collections::BTreeSet<String>> = src
                .lines()
                .take_while(|l| l.starts_with("//!"))
                .find_map(|l| l.strip_prefix("//! Imports: "))
                .map(|list| {
                    list.trim_end_matches('.')
                        .split(',')
                        .map(|s| s.trim().to_string())
                        .filter(|s| !s.is_empty() && s != "none")
                        .collect()
                });
            let used: std::collections::BTreeSet<String> = p["dependencies"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|d| d["kind"].is_null())
                .filter_map(|d| d["name"].as_str())
                .filter(|d| layer_by_name.contains_key(d))
                .map(str::to_string)
                .collect();
            match declared {
                None => violations.push(format!(
                    "{name}: lib.rs's header must list what it may import (`//! Imports: ...` or `//! Imports: none.`)"
                )),
                Some(declared) if declared != used => violations.push(format!(
                    "{name}: imports {used:?} but its header allows {declared:?}"
                )),
                Some(_) => {}
            }
        }
    }
    assert!(violations.is_empty(), "{violations:#?}");
}
