//! Server-side printing (API reference "Receiving resources as Tables"): `kubectl get` asks for
//! `application/json;as=Table;v=v1;g=meta.k8s.io`; CRD types print their
//! `additionalPrinterColumns` (simple JSONPath), built-ins a few common columns.

use crate::clock;
use crate::registry::{PrinterColumn, ResourceType};
use serde_json::{json, Value};

/// Whether an Accept header asks for a Table.
pub fn wants_table(accept: &str) -> bool {
    accept
        .split(',')
        .next()
        .is_some_and(|first| first.contains("as=Table"))
}

fn col(name: &str, type_: &str, format: &str, priority: i64) -> PrinterColumn {
    PrinterColumn {
        name: name.into(),
        type_: type_.into(),
        json_path: String::new(),
        description: String::new(),
        priority,
        format: format.into(),
    }
}

/// Evaluate a simple JSONPath such as `.status.phase` or `.spec.containers[0].image`.
pub fn json_path<'a>(o: &'a Value, path: &str) -> Option<&'a Value> {
    let path = path
        .trim()
        .trim_start_matches('{')
        .trim_end_matches('}')
        .trim_start_matches('$');
    let mut cur = o;
    for seg in path.split('.').filter(|s| !s.is_empty()) {
        let (name, index) = match seg.split_once('[') {
            Some((n, rest)) => (n, rest.trim_end_matches(']').parse::<usize>().ok()),
            None => (seg, None),
        };
        if !name.is_empty() {
            cur = cur.get(name)?;
        }
        if let Some(i) = index {
            cur = cur.get(i)?;
        }
    }
    Some(cur)
}

fn age(o: &Value) -> Value {
    let created = o["metadata"]["creationTimestamp"]
        .as_str()
        .and_then(clock::parse_rfc3339);
    match created {
        Some(t) => json!(clock::human_age(clock::now_secs() - t)),
        None => json!("<unknown>"),
    }
}

/// The STATUS column of a pod: Terminating, a container's waiting reason (init containers
/// as `Init:…`), Completed, or the phase.
fn pod_status(o: &Value, statuses: &[Value]) -> String {
    if !o["metadata"]["deletionTimestamp"].is_null() {
        return "Terminating".into();
    }
    let inits = o["status"]["initContainerStatuses"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let done = inits
        .iter()
        .filter(|s| s["state"]["terminated"]["exitCode"] == 0)
        .count();
    if done < inits.len() {
        let waiting = inits
            .iter()
            .find_map(|s| s["state"]["waiting"]["reason"].as_str())
            .filter(|r| *r != "PodInitializing");
        return match waiting {
            Some(r) => format!("Init:{r}"),
            None => format!("Init:{done}/{}", inits.len()),
        };
    }
    if let Some(r) = statuses
        .iter()
        .find_map(|s| s["state"]["waiting"]["reason"].as_str())
    {
        return r.into();
    }
    match o["status"]["phase"].as_str().unwrap_or("Pending") {
        "Succeeded" => "Completed".into(),
        p => p.into(),
    }
}

fn builtin_cells(rt: &ResourceType, o: &Value) -> (Vec<PrinterColumn>, Vec<Value>) {
    let name = o["metadata"]["name"].clone();
    match (rt.group.as_str(), rt.kind.as_str()) {
        ("", "Pod") => {
            let statuses = o["status"]["containerStatuses"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let total = o["spec"]["containers"].as_array().map_or(0, Vec::len);
            let ready = statuses
                .iter()
                .filter(|s| s["ready"] == json!(true))
                .count();
            let restarts: i64 = statuses
                .iter()
                .filter_map(|s| s["restartCount"].as_i64())
                .sum();
            (
                vec![
                    col("Name", "string", "name", 0),
                    col("Ready", "string", "", 0),
                    col("Status", "string", "", 0),
                    col("Restarts", "string", "", 0),
                    col("Age", "string", "", 0),
                    col("IP", "string", "", 1),
                    col("Node", "string", "", 1),
                ],
                vec![
                    name,
                    json!(format!("{ready}/{total}")),
                    json!(pod_status(o, &statuses)),
                    json!(restarts.to_string()),
                    age(o),
                    json!(o["status"]["podIP"].as_str().unwrap_or("<none>")),
                    json!(o["spec"]["nodeName"].as_str().unwrap_or("<none>")),
                ],
            )
        }
        ("", "Node") => {
            let ready = o["status"]["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|c| c["type"] == "Ready")
                .map(|c| c["status"] == "True");
            let status = match ready {
                Some(true) => "Ready",
                Some(false) => "NotReady",
                None => "Unknown",
            };
            (
                vec![
                    col("Name", "string", "name", 0),
                    col("Status", "string", "", 0),
                    col("Age", "string", "", 0),
                ],
                vec![name, json!(status), age(o)],
            )
        }
        ("", "Event") => {
            // As the API server prints them: the last time seen (the newest of the core and
            // the events.k8s.io timestamps), type, reason, the object as kind/name, message.
            let last = ["lastTimestamp", "eventTime", "firstTimestamp"]
                .iter()
                .filter_map(|f| o[*f].as_str())
                .chain(o["series"]["lastObservedTime"].as_str())
                .filter_map(clock::parse_rfc3339)
                .max();
            let last_seen = match last {
                Some(t) => json!(clock::human_age(clock::now_secs() - t)),
                None => age(o),
            };
            let involved = &o["involvedObject"];
            let object = format!(
                "{}/{}",
                involved["kind"].as_str().unwrap_or_default().to_lowercase(),
                involved["name"].as_str().unwrap_or_default()
            );
            (
                vec![
                    col("Last Seen", "string", "", 0),
                    col("Type", "string", "", 0),
                    col("Reason", "string", "", 0),
                    col("Object", "string", "", 0),
                    col("Message", "string", "", 0),
                    col("Name", "string", "name", 1),
                ],
                vec![
                    last_seen,
                    o["type"].clone(),
                    o["reason"].clone(),
                    json!(object),
                    o["message"].clone(),
                    name,
                ],
            )
        }
        ("", "Namespace") => (
            vec![
                col("Name", "string", "name", 0),
                col("Status", "string", "", 0),
                col("Age", "string", "", 0),
            ],
            vec![name, o["status"]["phase"].clone(), age(o)],
        ),
        _ => (
            vec![
                col("Name", "string", "name", 0),
                col("Age", "string", "", 0),
            ],
            vec![name, age(o)],
        ),
    }
}

fn cells(rt: &ResourceType, o: &Value) -> (Vec<PrinterColumn>, Vec<Value>) {
    if rt.crd.is_none() {
        return builtin_cells(rt, o);
    }
    let mut cols = vec![col("Name", "string", "name", 0)];
    let mut cells = vec![o["metadata"]["name"].clone()];
    let has_age = rt
        .printer_columns
        .iter()
        .any(|c| c.json_path == ".metadata.creationTimestamp");
    for c in &rt.printer_columns {
        cols.push(c.clone());
        let v = json_path(o, &c.json_path).cloned().unwrap_or(Value::Null);
        cells.push(if c.type_ == "date" {
            match v.as_str().and_then(clock::parse_rfc3339) {
                Some(t) => json!(clock::human_age(clock::now_secs() - t)),
                None => json!("<unknown>"),
            }
        } else {
            v
        });
    }
    if !has_age {
        cols.push(col("Age", "date", "", 0));
        cells.push(age(o));
    }
    (cols, cells)
}

/// A Table of `objects` (rows carry the object's metadata as PartialObjectMetadata).
pub fn table(rt: &ResourceType, objects: &[Value], list_meta: Value) -> Value {
    let mut columns = None;
    let mut rows = Vec::new();
    for o in objects {
        let (c, cells) = cells(rt, o);
        columns.get_or_insert(c);
        rows.push(json!({
            "cells": cells,
            "object": { "kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": o["metadata"] },
        }));
    }
    let columns = columns.unwrap_or_else(|| cells(rt, &json!({"metadata": {}})).0);
    let defs: Vec<Value> = columns
        .iter()
        .map(|c| json!({"name": c.name, "type": c.type_, "format": c.format, "description": c.description, "priority": c.priority}))
        .collect();
    json!({ "kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": list_meta, "columnDefinitions": defs, "rows": rows })
}
