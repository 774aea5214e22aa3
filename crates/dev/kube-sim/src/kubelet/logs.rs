//! `pods/log` (API reference "Pod v1 core: read log"): a container's output, by `container`
//! (required when the pod has several), `previous` (the run before the last restart),
//! `tailLines`, `limitBytes`, and `follow` (streamed until the container stops running).

use crate::error::ApiError;
use crate::server::{ApiServer, Body, BoxFuture, Subresource};
use crate::verbs::Target;
use bytes::Bytes;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use hyper::{Request, Response};
use serde_json::Value;
use std::collections::HashMap;
use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug)]
pub struct PodLogs {
    pub root: PathBuf,
}

/// The runs of a container that have a log: their numbers, ascending.
fn runs(dir: &Path) -> Vec<u64> {
    let mut n: Vec<u64> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.strip_suffix(".log")?.parse().ok())
        .collect();
    n.sort_unstable();
    n
}

fn container_running(server: &ApiServer, ns: &str, pod: &str, container: &str) -> bool {
    let Ok(state) = server.state.lock() else {
        return false;
    };
    let Some(p) = state.store.get("/pods", ns, pod) else {
        return false;
    };
    ["containerStatuses", "initContainerStatuses"]
        .iter()
        .any(|k| {
            p["status"][*k]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| c["name"] == container && c["state"].get("running").is_some())
        })
}

impl Subresource for PodLogs {
    fn handles(&self, storage: &str, sub: &str) -> bool {
        storage == "/pods" && sub == "log"
    }

    fn call(
        &self,
        server: Arc<ApiServer>,
        t: Target,
        request: Request<Bytes>,
    ) -> BoxFuture<Result<Response<Body>, ApiError>> {
        let root = self.root.clone();
        Box::pin(async move {
            let query: HashMap<String, String> = request
                .uri()
                .query()
                .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
                .unwrap_or_default();
            let pod: Value = {
                let state = server
                    .state
                    .lock()
                    .map_err(|_| ApiError::internal("state lock poisoned"))?;
                state
                    .store
                    .get("/pods", &t.namespace, &t.name)
                    .cloned()
                    .ok_or_else(|| ApiError::not_found("", "pods", &t.name))?
            };
            let names: Vec<&str> = ["initContainers", "containers"]
                .iter()
                .flat_map(|k| pod["spec"][*k].as_array().into_iter().flatten())
                .filter_map(|c| c["name"].as_str())
                .collect();
            let mains: Vec<&str> = pod["spec"]["containers"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|c| c["name"].as_str())
                .collect();
            let container = match query.get("container") {
                Some(c) if names.contains(&c.as_str()) => c.clone(),
                Some(c) => {
                    return Err(ApiError::bad_request(format!(
                        "container {c} is not valid for pod {}",
                        t.name
                    )))
                }
                None if mains.len() == 1 => mains[0].to_string(),
                None => {
                    return Err(ApiError::bad_request(format!(
                        "a container name must be specified for pod {}, choose one of: [{}]",
                        t.name,
                        mains.join(" ")
                    )))
                }
            };
            let uid = pod["metadata"]["uid"].as_str().unwrap_or_default();
            let dir = root.join("pods").join(uid).join("logs").join(&container);
            let all_runs = runs(&dir);
            let previous = query.get("previous").is_some_and(|p| p == "true");
            let run = if previous {
                all_runs.iter().rev().nth(1)
            } else {
                all_runs.last()
            };
            let Some(run) = run.copied() else {
                let why = if previous {
                    format!(
                        "previous terminated container \"{container}\" in pod \"{}\" not found",
                        t.name
                    )
                } else {
                    format!("container \"{container}\" in pod \"{}\" is waiting to start: ContainerCreating", t.name)
                };
                return Err(ApiError::bad_request(why));
            };
            let file = dir.join(format!("{run}.log"));
            let mut text = std::fs::read(&file).unwrap_or_default();
            if let Some(n) = query.get("tailLines").and_then(|n| n.parse::<usize>().ok()) {
                text = tail(&text, n);
            }
            if let Some(n) = query
                .get("limitBytes")
                .and_then(|n| n.parse::<usize>().ok())
            {
                text.truncate(n);
            }
            let follow = query.get("follow").is_some_and(|f| f == "true") && !previous;
            let builder = Response::builder()
                .status(200)
                .header("Content-Type", "text/plain");
            if !follow {
                return builder
                    .body(http_body_util::Full::new(Bytes::from(text)).boxed())
                    .map_err(|e| ApiError::internal(e.to_string()));
            }
            let offset = std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0);
            let (ns, name) = (t.namespace.clone(), t.name.clone());
            let first = futures_util::stream::once(async move {
                Ok::<_, Infallible>(Frame::data(Bytes::from(text)))
            });
            let rest = futures_util::stream::unfold((offset, false), move |(offset, done)| {
                let (file, dir, server, ns, name, container) = (
                    file.clone(),
                    dir.clone(),
                    server.clone(),
                    ns.clone(),
                    name.clone(),
                    container.clone(),
                );
                async move {
                    if done {
                        return None;
                    }
                    loop {
                        let len = std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0);
                        if len > offset {
                            let all = std::fs::read(&file).unwrap_or_default();
                            let start =
                                usize::try_from(offset).unwrap_or(usize::MAX).min(all.len());
                            let chunk = Bytes::copy_from_slice(&all[start..]);
                            return Some((Ok(Frame::data(chunk)), (len, false)));
                        }
                        let restarted = runs(&dir).last().is_some_and(|r| *r > run);
                        if restarted || !container_running(&server, &ns, &name, &container) {
                            return Some((Ok(Frame::data(Bytes::new())), (offset, true)));
                        }
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                }
            });
            builder
                .header("Transfer-Encoding", "chunked")
                .body(StreamBody::new(futures_util::StreamExt::chain(first, rest)).boxed())
                .map_err(|e| ApiError::internal(e.to_string()))
        })
    }
}

/// A failed container's termination message under `FallbackToLogsOnError`, as the kubelet
/// makes it: the last 80 lines of its log, at most 2048 bytes (the end kept).
pub(super) fn termination_message(log: &std::path::Path) -> String {
    let text = std::fs::read(log).unwrap_or_default();
    let end = tail(&text, 80);
    let end = &end[end.len().saturating_sub(2048)..];
    String::from_utf8_lossy(end).into_owned()
}

/// The last `n` lines of `text`.
fn tail(text: &[u8], n: usize) -> Vec<u8> {
    let lines: Vec<&[u8]> = text.split_inclusive(|b| *b == b'\n').collect();
    lines[lines.len().saturating_sub(n)..].concat()
}
