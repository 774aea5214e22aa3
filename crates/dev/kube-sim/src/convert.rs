//! Versions that share storage: events.k8s.io/v1 Events are core/v1 Events seen through
//! another schema (API reference "Event v1 events.k8s.io": `regarding` is `involvedObject`,
//! `note` is `message`, the `deprecated*` fields are the core ones), so an Event written by
//! kube-rs' recorder (events.k8s.io) shows in `kubectl describe` (core) and the other way round.

use crate::registry::ResourceType;
use serde_json::{json, Value};

const EVENT_FIELDS: [(&str, &str); 7] = [
    ("regarding", "involvedObject"),
    ("note", "message"),
    ("deprecatedCount", "count"),
    ("deprecatedFirstTimestamp", "firstTimestamp"),
    ("deprecatedLastTimestamp", "lastTimestamp"),
    ("deprecatedSource", "source"),
    ("reportingController", "reportingComponent"),
];

fn is_events_v1(rt: &ResourceType) -> bool {
    rt.group == "events.k8s.io" && rt.kind == "Event"
}

fn rename(mut obj: Value, from_new: bool) -> Value {
    if let Some(m) = obj.as_object_mut() {
        for (new, old) in EVENT_FIELDS {
            let (src, dst) = if from_new { (new, old) } else { (old, new) };
            if let Some(v) = m.remove(src) {
                m.insert(dst.to_string(), v);
            }
        }
    }
    obj
}

/// The object as stored, from `rt`'s version.
pub fn to_storage(rt: &ResourceType, obj: Value) -> Value {
    if !is_events_v1(rt) {
        return obj;
    }
    let mut o = rename(obj, true);
    o["apiVersion"] = json!("v1");
    o
}

/// The stored object in `rt`'s version.
pub fn from_storage(rt: &ResourceType, obj: Value) -> Value {
    let mut o = if is_events_v1(rt) {
        rename(obj, false)
    } else {
        obj
    };
    if o.is_object() {
        o["apiVersion"] = json!(rt.api_version());
        o["kind"] = json!(rt.kind);
    }
    o
}
