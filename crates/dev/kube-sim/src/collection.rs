//! Reading collections (API reference "API Concepts: Retrieving large results sets in
//! chunks" and "Efficient detection of changes"): list with selectors, `limit`/`continue`
//! paging and Table output, and watch responses streamed as newline-delimited JSON.

use crate::convert;
use crate::error::ApiError;
use crate::routes::{header, json_response, list_selectors, lock, ok, Query};
use crate::server::{ApiServer, Body};
use crate::table;
use crate::verbs::Target;
use crate::watch::{self, WatchRequest};
use base64::Engine;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use hyper::http::request::Parts;
use hyper::Response;
use serde_json::{json, Value};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

pub fn list(
    server: &Arc<ApiServer>,
    parts: &Parts,
    query: &Query,
    t: &Target,
) -> Result<Response<Body>, ApiError> {
    let rt = &t.rt;
    let (labels, fields) = list_selectors(query)?;
    let state = lock(server)?;
    let start: Option<(String, String)> = match query.get("continue").filter(|c| !c.is_empty()) {
        Some(c) => {
            let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(c)
                .map_err(|_| ApiError::bad_request("invalid continue token"))?;
            let s = String::from_utf8_lossy(&raw).to_string();
            let (ns, name) = s
                .split_once('\u{1}')
                .ok_or_else(|| ApiError::bad_request("invalid continue token"))?;
            Some((ns.to_string(), name.to_string()))
        }
        None => None,
    };
    let limit = query
        .get("limit")
        .and_then(|l| l.parse::<usize>().ok())
        .filter(|l| *l > 0);
    let mut items = Vec::new();
    let mut next = None;
    for ((ns, name), o) in state.store.objects(&rt.storage_key()).into_iter().flatten() {
        if t.rt.namespaced && !t.namespace.is_empty() && *ns != t.namespace {
            continue;
        }
        if start.as_ref().is_some_and(|s| (ns, name) <= (&s.0, &s.1)) {
            continue;
        }
        if !(labels.matches(o) && fields.matches(o)) {
            continue;
        }
        if limit.is_some_and(|l| items.len() >= l) {
            let last: &Value = items.last().unwrap_or(&Value::Null);
            let key = format!(
                "{}\u{1}{}",
                last["metadata"]["namespace"].as_str().unwrap_or_default(),
                last["metadata"]["name"].as_str().unwrap_or_default()
            );
            next = Some(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(key));
            break;
        }
        items.push(convert::from_storage(rt, o.clone()));
    }
    let mut meta = json!({ "resourceVersion": state.store.resource_version().to_string() });
    if let Some(n) = next {
        meta["continue"] = json!(n);
    }
    if table::wants_table(header(parts, "accept")) {
        let t = table::table(rt, &items, meta);
        return Ok(json_response(
            200,
            &t,
            "application/json;as=Table;v=v1;g=meta.k8s.io",
            &[],
        ));
    }
    Ok(ok(
        &json!({ "kind": format!("{}List", rt.kind), "apiVersion": rt.api_version(), "metadata": meta, "items": items }),
    ))
}

pub fn watch_response(
    server: &Arc<ApiServer>,
    parts: &Parts,
    query: &Query,
    t: &Target,
) -> Result<Response<Body>, ApiError> {
    let (labels, fields) = list_selectors(query)?;
    let rv = query
        .get("resourceVersion")
        .filter(|r| !r.is_empty())
        .map(|r| {
            r.parse::<u64>()
                .map_err(|_| ApiError::bad_request(format!("invalid resourceVersion {r:?}")))
        })
        .transpose()?;
    let req = WatchRequest {
        storage: t.rt.storage_key(),
        namespace: (t.rt.namespaced && !t.namespace.is_empty()).then(|| t.namespace.clone()),
        labels,
        fields,
        resource_version: rv,
        send_initial_events: query.get("sendInitialEvents").is_some_and(|s| s == "true"),
        bookmarks: query
            .get("allowWatchBookmarks")
            .is_some_and(|s| s == "true"),
        timeout: Duration::from_secs(
            query
                .get("timeoutSeconds")
                .and_then(|s| s.parse().ok())
                .unwrap_or(1800),
        ),
        rt: t.rt.clone(),
        table: table::wants_table(header(parts, "accept")),
        bookmark_interval: server.bookmark_interval,
    };
    let rx = watch::start(&server.state, req)?;
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|b| (Ok::<_, Infallible>(Frame::data(b)), rx))
    });
    Response::builder()
        .status(200)
        .header("Content-Type", "application/json")
        .header("Transfer-Encoding", "chunked")
        .body(StreamBody::new(stream).boxed())
        .map_err(|e| ApiError::internal(e.to_string()))
}
