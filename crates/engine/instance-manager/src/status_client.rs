//! Fetching another instance manager's report (`/pg/status`) over TLS with the cluster's
//! certificates: the controller does it for every instance (presenting its client certificate,
//! renewing a primary's lease as it goes), a primary does it for its peers. One HTTP/1.1
//! request per connection through hyper, on a short timeout.

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use pgherd_instance_protocol::{InstanceStatus, LeaseToken, LEASE_QUERY, STATUS_PATH};
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
        let mut builder = hyper::Request::get(path).header(hyper::header::HOST, host);
        if let Some(value) = authorization {
            builder = builder.header(hyper::header::AUTHORIZATION, value);
        }
        let request = builder.body(Empty::<Bytes>::new()).ok()?;
        let response = sender.send_request(request).await.ok()?;
        let status = response.status().as_u16();
        let body = response.into_body().collect().await.ok()?.to_bytes();
        driver.abort();
        Some((status, body))
    };
    tokio::time::timeout(timeout, attempt).await.ok().flatten()
}

/// Fetch `/pg/status` from `host:port` within `timeout`; with a lease token, the request also
/// renews the lease of a primary (accepted only from the controller's certificate).
pub async fn fetch(
    host: &str,
    port: u16,
    tls: &ClientTls,
    renew_lease: Option<&LeaseToken>,
    timeout: Duration,
) -> Option<InstanceStatus> {
    let (path, authorization) = match renew_lease {
        Some(token) => (
            format!("{STATUS_PATH}?{LEASE_QUERY}=1"),
            Some(format!("Bearer {}", token.0)),
        ),
        None => (STATUS_PATH.to_string(), None),
    };
    let (status, body) = request(host, port, tls, &path, authorization.as_deref(), timeout).await?;
    (status == 200)
        .then(|| serde_json::from_slice(&body).ok())
        .flatten()
}
