//! Fetching another instance manager's report (`/pg/status`) over TLS with the cluster's
//! certificates: the controller does it for every instance (presenting its client certificate,
//! renewing a primary's lease as it goes), a primary does it for its peers. One HTTP/1.1
//! request per connection through hyper, on a short timeout.

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use pgherd_instance_protocol::{
    InstanceSpec, InstanceStatus, LeaseToken, BACKUP_PATH, FRESH_QUERY, LEASE_QUERY, SPEC_PATH,
    STATUS_PATH, SWITCH_WAL_PATH,
};
use std::sync::Arc;
use std::time::Duration;

/// The TLS side of a status client: the cluster CA, and the client certificate if any.
pub type ClientTls = Arc<rustls::ClientConfig>;

/// `GET path` at `host:port` with an optional `Authorization` header; the status code and
/// body, or `None` when nothing answered within `timeout`.
pub async fn request(
    host: &str,
    port: u16,
    tls: &ClientTls,
    path: &str,
    authorization: Option<&str>,
    timeout: Duration,
) -> Option<(u16, Bytes)> {
    send(
        host,
        port,
        tls,
        (hyper::Method::GET, path),
        authorization,
        Bytes::new(),
        timeout,
    )
    .await
}

/// `method path` at `host:port` with `body` (JSON when not empty) and an optional
/// `Authorization` header; the status code and body, or `None` when nothing answered within
/// `timeout`.
pub async fn send(
    host: &str,
    port: u16,
    tls: &ClientTls,
    (method, path): (hyper::Method, &str),
    authorization: Option<&str>,
    body: Bytes,
    timeout: Duration,
) -> Option<(u16, Bytes)> {
    let attempt = async {
        let tcp = tokio::net::TcpStream::connect((host, port)).await.ok()?;
        let _ = tcp.set_nodelay(true);
        let stream = tokio_rustls::TlsConnector::from(tls.clone())
            .connect(crate::tls::server_name(), tcp)
            .await
            .ok()?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .ok()?;
        let driver = tokio::spawn(connection);
        let mut builder = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header(hyper::header::HOST, host);
        if let Some(value) = authorization {
            builder = builder.header(hyper::header::AUTHORIZATION, value);
        }
        if !body.is_empty() {
            builder = builder.header(hyper::header::CONTENT_TYPE, "application/json");
        }
        let request = builder.body(Full::new(body)).ok()?;
        let response = sender.send_request(request).await.ok()?;
        let status = response.status().as_u16();
        let body = response.into_body().collect().await.ok()?.to_bytes();
        driver.abort();
        Some((status, body))
    };
    tokio::time::timeout(timeout, attempt).await.ok().flatten()
}

/// Fetch `/pg/status` from `host:port` within `timeout`; with a lease token, the request also
/// renews the lease of a primary (accepted only from the controller's certificate); `fresh`
/// asks for WAL positions sampled for this request ([`FRESH_QUERY`]).
pub async fn fetch(
    host: &str,
    port: u16,
    tls: &ClientTls,
    renew_lease: Option<&LeaseToken>,
    fresh: bool,
    timeout: Duration,
) -> Option<InstanceStatus> {
    let mut query = Vec::new();
    if renew_lease.is_some() {
        query.push(format!("{LEASE_QUERY}=1"));
    }
    if fresh {
        query.push(format!("{FRESH_QUERY}=1"));
    }
    let path = if query.is_empty() {
        STATUS_PATH.to_string()
    } else {
        format!("{STATUS_PATH}?{}", query.join("&"))
    };
    let authorization = renew_lease.map(|token| format!("Bearer {}", token.0));
    let (status, body) = request(host, port, tls, &path, authorization.as_deref(), timeout).await?;
    (status == 200)
        .then(|| serde_json::from_slice(&body).ok())
        .flatten()
}

/// Give an instance manager its spec (`PUT /pg/spec`; accepted only from the controller's
/// certificate, by a manager that takes its spec over the protocol).
pub async fn push_spec(
    host: &str,
    port: u16,
    tls: &ClientTls,
    spec: &InstanceSpec,
    timeout: Duration,
) -> Result<(), String> {
    let body = serde_json::to_vec(spec).map_err(|e| e.to_string())?;
    match send(
        host,
        port,
        tls,
        (hyper::Method::PUT, SPEC_PATH),
        None,
        Bytes::from(body),
        timeout,
    )
    .await
    {
        Some((status, _)) if (200..300).contains(&status) => Ok(()),
        Some((status, body)) => Err(format!(
            "the instance manager refused its spec (HTTP {status}): {}",
            String::from_utf8_lossy(&body).trim()
        )),
        None => Err("the instance manager did not answer".to_string()),
    }
}

/// Start the base backup `name` on an instance (`POST /pg/backup?name=NAME`, accepted only from
/// the controller's certificate), or read how it goes (`GET`, `start: false`); `Ok(None)`: the
/// instance knows no backup of that name.
pub async fn backup(
    host: &str,
    port: u16,
    tls: &ClientTls,
    name: &str,
    start: bool,
    timeout: Duration,
) -> Result<Option<crate::base_backup::BackupReport>, String> {
    let path = format!("{BACKUP_PATH}?name={name}");
    let method = if start {
        hyper::Method::POST
    } else {
        hyper::Method::GET
    };
    match send(
        host,
        port,
        tls,
        (method, &path),
        None,
        Bytes::new(),
        timeout,
    )
    .await
    {
        Some((status, body)) if (200..300).contains(&status) => serde_json::from_slice(&body)
            .map(Some)
            .map_err(|e| format!("not a backup report: {e}")),
        Some((404, _)) if !start => Ok(None),
        Some((status, body)) => Err(format!(
            "the instance manager refused (HTTP {status}): {}",
            String::from_utf8_lossy(&body).trim()
        )),
        None => Err("the instance manager did not answer".to_string()),
    }
}

/// Ask a primary to close its current WAL segment (`POST /pg/switch-wal`).
pub async fn switch_wal(
    host: &str,
    port: u16,
    tls: &ClientTls,
    timeout: Duration,
) -> Result<(), String> {
    match send(
        host,
        port,
        tls,
        (hyper::Method::POST, SWITCH_WAL_PATH),
        None,
        Bytes::new(),
        timeout,
    )
    .await
    {
        Some((200, _)) => Ok(()),
        Some((status, body)) => Err(format!(
            "the instance manager refused (HTTP {status}): {}",
            String::from_utf8_lossy(&body).trim()
        )),
        None => Err("the instance manager did not answer".to_string()),
    }
}
