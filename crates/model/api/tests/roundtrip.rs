//! Parse → serialize → parse gives the same object, and defaulting is idempotent, for every
//! seed and example manifest.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

use pgherd_api::defaults::Defaults;
use pgherd_api::manifest::{load, Object};
use std::path::PathBuf;

fn manifests() -> Vec<(String, String)> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../..");
    let mut out = Vec::new();
    for dir in ["tests/fixtures/seeds", "examples"] {
        for entry in std::fs::read_dir(root.join(dir))
            .expect("fixture dir")
            .flatten()
        {
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "yaml") {
                out.push((
                    path.display().to_string(),
                    std::fs::read_to_string(&path).expect("readable"),
                ));
            }
        }
    }
    assert!(out.len() > 10, "fixtures missing");
    out
}

fn roundtrip<T>(file: &str, object: &T)
where
    T: serde::Serialize
        + serde::de::DeserializeOwned
        + PartialEq
        + std::fmt::Debug
        + Clone
        + Defaults,
{
    let yaml = serde_yaml_ng::to_string(object).expect("serializes");
    let again: T = serde_yaml_ng::from_str(&yaml).expect("parses back");
    assert_eq!(&again, object, "{file}: round trip changed the object");
    let mut twice = object.clone();
    twice.apply_defaults();
    assert_eq!(&twice, object, "{file}: defaulting is not idempotent");
}

#[test]
fn seeds_and_examples_round_trip() {
    let mut checked = 0;
    for (file, text) in manifests() {
        for m in load(&text) {
            match &m.object {
                Some(Object::Cluster(o)) => roundtrip(&file, o.as_ref()),
                Some(Object::Backup(o)) => roundtrip(&file, o.as_ref()),
                Some(Object::ScheduledBackup(o)) => roundtrip(&file, o.as_ref()),
                Some(Object::Pooler(o)) => roundtrip(&file, o.as_ref()),
                Some(Object::Database(o)) => roundtrip(&file, o.as_ref()),
                Some(Object::ObjectStore(o)) => roundtrip(&file, o.as_ref()),
                _ => continue,
            }
            checked += 1;
        }
    }
    assert!(checked >= 15, "only {checked} objects checked");
}

#[test]
fn defaults_match_cloudnativepg() {
    let text = "apiVersion: postgresql.cnpg.io/v1\nkind: Cluster\nmetadata:\n  name: c\nspec:\n  storage:\n    size: 1Gi\n";
    let m = load(text).remove(0);
    let Some(Object::Cluster(c)) = m.object else {
        panic!("a cluster: {m:?}")
    };
    let s = &c.spec;
    assert_eq!(s.instances, Some(1));
    assert_eq!(
        s.image_name.as_deref(),
        Some(pgherd_api::defaults::DEFAULT_IMAGE_NAME)
    );
    let initdb = s
        .bootstrap
        .as_ref()
        .and_then(|b| b.initdb.as_ref())
        .expect("initdb defaulted");
    assert_eq!(
        (initdb.database.as_deref(), initdb.owner.as_deref()),
        (Some("app"), Some("app"))
    );
    assert_eq!(initdb.encoding.as_deref(), Some("UTF8"));
    let params = s
        .postgresql
        .as_ref()
        .and_then(|p| p.parameters.as_ref())
        .expect("parameters");
    assert_eq!(params.get("archive_mode").map(String::as_str), Some("on"));
    assert_eq!(params.get("wal_level").map(String::as_str), Some("logical"));
    assert_eq!(s.switchover_delay, Some(3600));
    assert_eq!(s.start_delay, Some(3600));
    assert_eq!(s.stop_delay, Some(1800));
    assert_eq!(
        s.primary_update_strategy,
        Some(pgherd_api::cluster::PrimaryUpdateStrategy::Unsupervised)
    );
    assert_eq!(
        s.affinity
            .as_ref()
            .and_then(|a| a.pod_anti_affinity_type.as_deref()),
        Some("preferred")
    );
    let slots = s
        .replication_slots
        .as_ref()
        .and_then(|r| r.high_availability.as_ref())
        .expect("slots");
    assert_eq!(
        (slots.enabled, slots.slot_prefix.as_deref()),
        (Some(true), Some("_cnpg_"))
    );
}
