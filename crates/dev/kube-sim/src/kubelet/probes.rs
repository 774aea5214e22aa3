//! Container probes (Kubernetes docs "Configure Liveness, Readiness and Startup Probes",
//! API reference "Probe v1 core"): exec (inside the container), tcpSocket, httpGet over HTTP or
//! HTTPS — HTTPS without certificate verification, as the kubelet does — at the pod IP, with
//! named ports resolved from the container's ports; a status from 200 to 399 succeeds. Timing
//! (initialDelaySeconds, periodSeconds, timeoutSeconds, success and failure thresholds) is
//! kept by [`ProbeState`].

use super::container::{exec_in, Launch};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use serde_json::Value;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// Where one probe stands.
#[derive(Debug, Clone)]
pub struct ProbeState {
    pub spec: Value,
    next: Instant,
    successes: i64,
    failures: i64,
    /// The last verdict after thresholds (None: not decided yet).
    pub passing: Option<bool>,
}

fn secs(spec: &Value, k: &str, default: i64) -> Duration {
    Duration::from_secs(spec[k].as_i64().unwrap_or(default).max(0) as u64)
}

impl ProbeState {
    pub fn new(spec: &Value, started: Instant) -> Self {
        ProbeState {
            spec: spec.clone(),
            next: started + secs(spec, "initialDelaySeconds", 0),
            successes: 0,
            failures: 0,
            passing: None,
        }
    }

    pub fn due(&self, now: Instant) -> bool {
        now >= self.next
    }

    /// Record one result; returns the verdict when it changes.
    pub fn record(&mut self, ok: bool, now: Instant) -> Option<bool> {
        self.next = now + secs(&self.spec, "periodSeconds", 10).max(Duration::from_millis(100));
        if ok {
            self.successes += 1;
            self.failures = 0;
        } else {
            self.failures += 1;
            self.successes = 0;
        }
        let verdict = if ok && self.successes >= self.spec["successThreshold"].as_i64().unwrap_or(1)
        {
            Some(true)
        } else if !ok && self.failures >= self.spec["failureThreshold"].as_i64().unwrap_or(3) {
            Some(false)
        } else {
            None
        };
        match verdict {
            Some(v) if self.passing != Some(v) => {
                self.passing = Some(v);
                Some(v)
            }
            _ => None,
        }
    }
}

/// Run one probe of a container listening at `pod_ip`.
pub async fn run(spec: &Value, container: &Value, pod_ip: &str, pid: u32, launch: &Launch) -> bool {
    let timeout = secs(spec, "timeoutSeconds", 1).max(Duration::from_secs(1));
    let port = |p: &Value| -> Option<u16> {
        match p {
            Value::Number(n) => n.as_u64().map(|n| n as u16),
            Value::String(name) => container["ports"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|cp| cp["name"] == name.as_str())
                .and_then(|cp| cp["containerPort"].as_u64())
                .map(|n| n as u16)
                .or_else(|| name.parse().ok()),
            _ => None,
        }
    };
    let attempt = async {
        if let Some(cmd) = spec["exec"]["command"].as_array() {
            let argv: Vec<String> = cmd
                .iter()
                .filter_map(|s| s.as_str().map(String::from))
                .collect();
            let mut c = exec_in(pid, launch, &argv);
            c.stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .kill_on_drop(true);
            return c.status().await.is_ok_and(|s| s.success());
        }
        if let Some(t) = spec.get("tcpSocket") {
            let host = t["host"].as_str().unwrap_or(pod_ip);
            let Some(p) = port(&t["port"]) else {
                return false;
            };
            return TcpStream::connect((host, p)).await.is_ok();
        }
        if let Some(h) = spec.get("httpGet") {
            let host = h["host"].as_str().unwrap_or(pod_ip);
            let Some(p) = port(&h["port"]) else {
                return false;
            };
            let path = h["path"].as_str().unwrap_or("/");
            let https = h["scheme"] == "HTTPS";
            return http_get(host, p, path, https)
                .await
                .is_some_and(|code| (200..400).contains(&code));
        }
        // gRPC probes and anything else: not implemented, counted as passing.
        true
    };
    tokio::time::timeout(timeout, attempt)
        .await
        .unwrap_or(false)
}

/// `GET path` and the response's status code.
pub async fn http_get(host: &str, port: u16, path: &str, https: bool) -> Option<u16> {
    let tcp = TcpStream::connect((host, port)).await.ok()?;
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUser-Agent: kube-probe/1.32\r\nAccept: */*\r\nConnection: close\r\n\r\n"
    );
    if https {
        let tls = tls_unverified(host, tcp).await?;
        status_of(tls, &request).await
    } else {
        status_of(tcp, &request).await
    }
}

/// TLS over `tcp` without verifying the server's certificate, as the kubelet probes pods and
/// the API server proxies to them.
pub(crate) async fn tls_unverified(
    host: &str,
    tcp: TcpStream,
) -> Option<tokio_rustls::client::TlsStream<TcpStream>> {
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .ok()?
    .dangerous()
    .with_custom_certificate_verifier(Arc::new(NoVerification))
    .with_no_client_auth();
    let name = ServerName::try_from(host.to_string()).ok()?;
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .ok()
}

async fn status_of<S: AsyncRead + AsyncWrite + Unpin>(mut s: S, request: &str) -> Option<u16> {
    s.write_all(request.as_bytes()).await.ok()?;
    let mut buf = [0u8; 64];
    let mut got = 0;
    while got < 12 {
        let n = s.read(&mut buf[got..]).await.ok()?;
        if n == 0 {
            break;
        }
        got += n;
    }
    let line = String::from_utf8_lossy(&buf[..got]);
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Accepts any server certificate: the kubelet does not verify probe targets.
#[derive(Debug)]
struct NoVerification;

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        rustls::crypto::ring::default_provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}
