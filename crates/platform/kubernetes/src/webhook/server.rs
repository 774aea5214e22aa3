//! The HTTPS listener (HTTP/1.1 over rustls with the `ring` provider): `POST` of an
//! AdmissionReview to a webhook path ([`super::review`]), `GET /readyz` for probes. The
//! certificate can be replaced while serving (a recreated Secret): each new connection uses
//! the current one.

use super::certs::ServingCertificate;
use super::review;
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::{Request, Response};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::convert::Infallible;
use std::sync::{Arc, RwLock};
use tokio::net::TcpListener;

/// The TLS configuration new connections get.
pub type CurrentTls = Arc<RwLock<Arc<rustls::ServerConfig>>>;

/// A rustls server configuration for `certificate`.
pub fn tls_config(certificate: &ServingCertificate) -> Result<Arc<rustls::ServerConfig>, String> {
    let certs: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(certificate.cert_pem.as_bytes())
            .collect::<Result<_, _>>()
            .map_err(|e| format!("the webhook certificate: {e}"))?;
    let key = PrivateKeyDer::from_pem_slice(certificate.key_pem.as_bytes())
        .map_err(|e| format!("the webhook certificate's key: {e}"))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("the webhook certificate: {e}"))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

fn respond(status: u16, content_type: &str, body: Vec<u8>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() =
        hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
    if let Ok(v) = hyper::header::HeaderValue::from_str(content_type) {
        response
            .headers_mut()
            .insert(hyper::header::CONTENT_TYPE, v);
    }
    response
}

/// Serve one request, counted under its webhook path (controller-runtime's metrics).
async fn counted(
    request: Request<hyper::body::Incoming>,
    metrics: &pgherd_metrics::controller_metrics::ControllerMetrics,
) -> Response<Full<Bytes>> {
    let path = request.uri().path().to_string();
    let webhook = request.method() == hyper::Method::POST;
    if webhook {
        metrics.webhook_started(&path);
    }
    let response = handle(request).await;
    if webhook {
        metrics.webhook_finished(&path, response.status().as_u16());
    }
    response
}

async fn handle(request: Request<hyper::body::Incoming>) -> Response<Full<Bytes>> {
    let path = request.uri().path().to_string();
    let method = request.method().clone();
    if path == "/readyz" || path == "/healthz" {
        return respond(200, "text/plain", b"ok\n".to_vec());
    }
    if method != hyper::Method::POST {
        return respond(
            405,
            "text/plain",
            format!("{method} {path}: webhooks take a POST of an AdmissionReview\n").into_bytes(),
        );
    }
    let body = match Limited::new(request.into_body(), review::MAX_BODY)
        .collect()
        .await
    {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            return respond(
                413,
                "text/plain",
                format!(
                    "cannot read the request body (at most {} bytes): {e}\n",
                    review::MAX_BODY
                )
                .into_bytes(),
            )
        }
    };
    // Pure, but CPU-bound for a large Cluster: off the I/O threads.
    let answer = tokio::task::spawn_blocking(move || review::handle(&path, &body))
        .await
        .unwrap_or_else(|e| review::Answer {
            status: 500,
            content_type: "text/plain",
            body: format!("the review failed: {e}\n").into_bytes(),
        });
    respond(answer.status, answer.content_type, answer.body)
}

/// Serve on `listener` until the task is dropped.
pub async fn serve(
    listener: TcpListener,
    tls: CurrentTls,
    metrics: pgherd_metrics::controller_metrics::ControllerMetrics,
) {
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::debug!("webhook server: accept: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let config = match tls.read() {
            Ok(c) => c.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        };
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let stream = match tokio_rustls::TlsAcceptor::from(config).accept(tcp).await {
                Ok(s) => s,
                Err(e) => {
                    tracing::debug!("webhook server: TLS with {peer}: {e}");
                    return;
                }
            };
            let metrics = &metrics;
            let service = hyper::service::service_fn(|request| async move {
                Ok::<_, Infallible>(counted(request, metrics).await)
            });
            if let Err(e) = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await
            {
                tracing::debug!("webhook server: connection from {peer}: {e}");
            }
        });
    }
}
