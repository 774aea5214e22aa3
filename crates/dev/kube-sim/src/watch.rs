//! Watches (API reference "Efficient detection of changes"): newline-delimited JSON events
//! from a resourceVersion (ADDED/MODIFIED/DELETED, with selector transitions turned into
//! ADDED/DELETED), periodic BOOKMARKs when asked, `sendInitialEvents`, `timeoutSeconds`, and
//! an ERROR event carrying a `410 Expired` Status when the resourceVersion is older than the
//! retained change log.

use crate::convert;
use crate::error::ApiError;
use crate::registry::ResourceType;
use crate::selector::{FieldSelector, LabelSelector};
use crate::store::{Change, EventType};
use crate::table;
use crate::verbs::State;
use bytes::Bytes;
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{broadcast, mpsc};

/// What one watch asked for.
#[derive(Debug, Clone)]
pub struct WatchRequest {
    pub storage: String,
    pub namespace: Option<String>,
    pub labels: LabelSelector,
    pub fields: FieldSelector,
    /// `None` (or "0"): start with the current state as ADDED events.
    pub resource_version: Option<u64>,
    pub send_initial_events: bool,
    pub bookmarks: bool,
    pub timeout: Duration,
    /// The type and version the client watches (objects are converted to it).
    pub rt: Arc<ResourceType>,
    /// Send each object as a one-row Table (`kubectl get -w`).
    pub table: bool,
    pub bookmark_interval: Duration,
}

impl WatchRequest {
    fn matches(&self, o: &Value) -> bool {
        self.labels.matches(o) && self.fields.matches(o)
    }

    fn line(&self, type_: &str, object: Value) -> Bytes {
        let object = match object.get("kind").and_then(Value::as_str) {
            Some("Status") | None => object,
            Some(_) => convert::from_storage(&self.rt, object),
        };
        let object = if self.table && object["kind"] != "Status" {
            let meta = json!({"resourceVersion": object["metadata"]["resourceVersion"]});
            table::table(&self.rt, std::slice::from_ref(&object), meta)
        } else {
            object
        };
        let mut s = json!({ "type": type_, "object": object }).to_string();
        s.push('\n');
        Bytes::from(s)
    }

    fn bookmark(&self, rv: u64, initial_end: bool) -> Bytes {
        let mut meta = json!({ "resourceVersion": rv.to_string() });
        if initial_end {
            meta["annotations"] = json!({ "k8s.io/initial-events-end": "true" });
        }
        let mut b =
            json!({ "kind": self.rt.kind, "apiVersion": self.rt.api_version(), "metadata": meta });
        let mut s = json!({ "type": "BOOKMARK", "object": b.take() }).to_string();
        s.push('\n');
        Bytes::from(s)
    }

    /// The event a change becomes for this watch, if any.
    fn translate(&self, c: &Change) -> Option<Bytes> {
        if c.storage != self.storage {
            return None;
        }
        if self.namespace.as_ref().is_some_and(|ns| *ns != c.namespace) {
            return None;
        }
        let now = self.matches(&c.object);
        let before = c.old.as_ref().is_some_and(|o| self.matches(o));
        let t = match (c.type_, before, now) {
            (EventType::Added, _, true) => "ADDED",
            (EventType::Deleted, _, true) => "DELETED",
            (EventType::Modified, true, true) => "MODIFIED",
            (EventType::Modified, false, true) => "ADDED",
            (EventType::Modified, true, false) => "DELETED",
            _ => return None,
        };
        Some(self.line(t, c.object.clone()))
    }
}

/// Start a watch; lines arrive on the returned channel until the client goes, the timeout
/// passes or the log is compacted.
pub fn start(
    state: &Arc<Mutex<State>>,
    req: WatchRequest,
) -> Result<mpsc::Receiver<Bytes>, ApiError> {
    let (tx, rx) = mpsc::channel::<Bytes>(256);
    let guard = state
        .lock()
        .map_err(|_| ApiError::internal("state lock poisoned"))?;
    let store = &guard.store;
    let mut first = Vec::new();
    let from = match req.resource_version {
        Some(rv) if rv > 0 => {
            if rv < store.compacted() {
                let status = ApiError::gone(format!(
                    "too old resource version: {rv} ({})",
                    store.compacted()
                ))
                .status();
                first.push(req.line("ERROR", status));
                let _ = tx.try_send(first.remove(0));
                return Ok(rx);
            }
            rv
        }
        _ => {
            for ((ns, _), o) in store.objects(&req.storage).into_iter().flatten() {
                if req.namespace.as_ref().is_none_or(|n| n == ns) && req.matches(o) {
                    first.push(req.line("ADDED", o.clone()));
                }
            }
            if req.send_initial_events && req.bookmarks {
                first.push(req.bookmark(store.resource_version(), true));
            }
            store.resource_version()
        }
    };
    let (past, mut live, mut epoch) = store.changes_since(from);
    let mut last_rv = store.resource_version().max(from);
    first.extend(past.iter().filter_map(|c| req.translate(c)));
    drop(guard);
    tokio::spawn(async move {
        for line in first {
            if tx.send(line).await.is_err() {
                return;
            }
        }
        let deadline = tokio::time::sleep(req.timeout);
        tokio::pin!(deadline);
        let mut ticker = tokio::time::interval(req.bookmark_interval);
        ticker.tick().await;
        loop {
            tokio::select! {
                _ = &mut deadline => return,
                _ = epoch.changed() => return,
                _ = tx.closed() => return,
                _ = ticker.tick(), if req.bookmarks => {
                    if tx.send(req.bookmark(last_rv, false)).await.is_err() { return; }
                }
                c = live.recv() => match c {
                    Ok(c) => {
                        if c.rv <= from { continue; }
                        last_rv = c.rv;
                        if let Some(line) = req.translate(&c) {
                            if tx.send(line).await.is_err() { return; }
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) | Err(broadcast::error::RecvError::Closed) => return,
                },
            }
        }
    });
    Ok(rx)
}
