//! `pods/proxy` (API reference "Pod v1 core: proxy"; `GET /api/v1/namespaces/NS/pods/
//! [SCHEME:]NAME[:PORT]/proxy/PATH`): the request, with its method, query and body, forwarded to
//! the pod's IP and port, over HTTP or HTTPS (the pod's certificate not verified, as the API
//! server does not verify it either), and the pod's answer returned as it came. What
//! `kubectl cnpg status` uses to read each instance manager's report.

use crate::error::ApiError;
use crate::server::{ApiServer, Body, BoxFuture, Subresource};
use crate::verbs::Target;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;

#[derive(Debug)]
pub struct PodProxy;

/// `[SCHEME:]NAME[:PORT]` as the proxy path names a pod: (https, name, port).
pub(crate) fn parse_target(text: &str) -> Result<(bool, &str, Option<u16>), ApiError> {
    let parts: Vec<&str> = text.split(':').collect();
    let (scheme, name, port) = match parts.as_slice() {
        [name] => ("http", *name, ""),
        [name, port] => ("http", *name, *port),
        [scheme, name, port] => (*scheme, *name, *port),
        _ => {
            return Err(ApiError::bad_request(format!(
                "invalid pod proxy target {text:?}"
            )))
        }
    };
    let https = match scheme {
        "http" | "" => false,
        "https" => true,
        other => {
            return Err(ApiError::bad_request(format!(
                "unsupported scheme {other:?} in {text:?}"
            )))
        }
    };
    let port = if port.is_empty() {
        None
    } else {
        Some(
            port.parse()
                .map_err(|_| ApiError::bad_request(format!("invalid port {port:?} in {text:?}")))?,
        )
    };
    Ok((https, name, port))
}

fn unreachable(why: impl std::fmt::Display) -> ApiError {
    ApiError::new(
        503,
        "ServiceUnavailable",
        format!("error trying to reach service: {why}"),
    )
}

impl Subresource for PodProxy {
    fn handles(&self, storage: &str, sub: &str) -> bool {
        storage == "/pods" && (sub == "proxy" || sub.starts_with("proxy/"))
    }

    fn call(
        &self,
        server: Arc<ApiServer>,
        t: Target,
        request: Request<Bytes>,
    ) -> BoxFuture<Result<Response<Body>, ApiError>> {
        Box::pin(async move {
            let (https, name, port) = parse_target(&t.name)?;
            let ip = {
                let state = server
                    .state
                    .lock()
                    .map_err(|_| ApiError::internal("state lock poisoned"))?;
                let pod = state
                    .store
                    .get("/pods", &t.namespace, name)
                    .ok_or_else(|| ApiError::not_found("", "pods", name))?;
                pod["status"]["podIP"].as_str().map(str::to_string)
            };
            let ip = ip.ok_or_else(|| unreachable(format!("pod {name} has no IP")))?;
            let port = port.unwrap_or(if https { 443 } else { 80 });
            let rest = t.subresource.strip_prefix("proxy").unwrap_or_default();
            let mut path = format!("/{}", rest.trim_start_matches('/'));
            if let Some(q) = request.uri().query() {
                path.push('?');
                path.push_str(q);
            }
            let (parts, body) = request.into_parts();
            let mut forwarded = Request::builder()
                .method(parts.method)
                .uri(&path)
                .header("host", format!("{ip}:{port}"));
            for (k, v) in &parts.headers {
                if !matches!(k.as_str(), "host" | "authorization" | "connection") {
                    forwarded = forwarded.header(k, v);
                }
            }
            let forwarded = forwarded
                .body(Full::new(body))
                .map_err(|e| ApiError::internal(e.to_string()))?;
            let exchange = async {
                let tcp = TcpStream::connect((ip.as_str(), port))
                    .await
                    .map_err(unreachable)?;
                if https {
                    let tls = super::probes::tls_unverified(&ip, tcp)
                        .await
                        .ok_or_else(|| unreachable("TLS handshake failed"))?;
                    send(TokioIo::new(tls), forwarded).await
                } else {
                    send(TokioIo::new(tcp), forwarded).await
                }
            };
            tokio::time::timeout(Duration::from_secs(30), exchange)
                .await
                .map_err(|_| unreachable("no answer within 30s"))?
        })
    }
}

async fn send<IO>(io: IO, request: Request<Full<Bytes>>) -> Result<Response<Body>, ApiError>
where
    IO: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(unreachable)?;
    tokio::spawn(connection);
    let response = sender.send_request(request).await.map_err(unreachable)?;
    let (parts, body) = response.into_parts();
    let bytes = body.collect().await.map_err(unreachable)?.to_bytes();
    let mut out = Response::builder().status(parts.status);
    for (k, v) in &parts.headers {
        if !matches!(k.as_str(), "connection" | "transfer-encoding") {
            out = out.header(k, v);
        }
    }
    out.body(Full::new(bytes).map_err(|e| match e {}).boxed())
        .map_err(|e| ApiError::internal(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::parse_target;

    #[test]
    fn proxy_targets_read_as_the_api_server_reads_them() {
        assert_eq!(parse_target("pg-1").unwrap(), (false, "pg-1", None));
        assert_eq!(
            parse_target("pg-1:8000").unwrap(),
            (false, "pg-1", Some(8000))
        );
        assert_eq!(
            parse_target("https:pg-1:8000").unwrap(),
            (true, "pg-1", Some(8000))
        );
        assert_eq!(parse_target("https:pg-1:").unwrap(), (true, "pg-1", None));
        assert!(parse_target("ftp:pg-1:21").is_err());
        assert!(parse_target("pg-1:port").is_err());
    }
}
