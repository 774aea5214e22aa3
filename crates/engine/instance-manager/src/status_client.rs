//! Fetching another instance manager's report (`/pg/status`): the controller does it for every
//! instance (renewing a primary's lease as it goes), a primary does it for its peers.
//! A fixed one-line HTTP/1.0 request on a short timeout; a full HTTP client would add weight
//! for nothing here.

use pgherd_instance_protocol::{InstanceStatus, LeaseToken, LEASE_QUERY, STATUS_PATH};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Fetch `/pg/status` from `host:port` within `timeout`; with a lease token, the request also
/// renews the lease of a primary (only the controller has the token).
pub async fn fetch(
    host: &str,
    port: u16,
    renew_lease: Option<&LeaseToken>,
    timeout: Duration,
) -> Option<InstanceStatus> {
    let attempt = async {
        let mut stream = tokio::net::TcpStream::connect((host, port)).await.ok()?;
        let (query, authorization) = match renew_lease {
            Some(token) => (
                format!("?{LEASE_QUERY}=1"),
                format!("Authorization: Bearer {}\r\n", token.0),
            ),
            None => (String::new(), String::new()),
        };
        let request =
            format!("GET {STATUS_PATH}{query} HTTP/1.0\r\nHost: {host}\r\n{authorization}\r\n");
        stream.write_all(request.as_bytes()).await.ok()?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await.ok()?;
        let text = String::from_utf8(response).ok()?;
        let (head, body) = text.split_once("\r\n\r\n")?;
        let ok = head.split_whitespace().nth(1) == Some("200");
        ok.then(|| serde_json::from_str(body).ok())?
    };
    tokio::time::timeout(timeout, attempt).await.ok().flatten()
}
