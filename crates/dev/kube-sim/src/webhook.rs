//! The webhook client (API reference "Dynamic Admission Control"): an admission plugin,
//! registered at server start, that calls the stored MutatingWebhookConfigurations (in name
//! order, each webhook in list order) and then the ValidatingWebhookConfigurations for every
//! create and update (patches and server-side apply are updates) that one of their rules
//! matches.
//!
//! - Matching: `rules` (`apiGroups`, `apiVersions`, `resources` with `*`, `*/*`, `x/status`
//!   and `*/status` forms, `operations`, `scope`), `namespaceSelector` (the Namespace's labels;
//!   cluster-scoped objects always match) and `objectSelector` (the new or the old object's
//!   labels). Webhook configurations themselves are never sent to webhooks.
//! - Calling: `AdmissionReview` `admission.k8s.io/v1` POSTed over HTTPS to `clientConfig.url`,
//!   or to `clientConfig.service` resolved to the Service's ClusterIP (the server name checked
//!   is then `NAME.NAMESPACE.svc`, as the real API server checks it); the server certificate
//!   must chain to `clientConfig.caBundle` (kube-sim trusts nothing else); `timeoutSeconds`
//!   (default 10, at most 30) bounds the whole call.
//! - Answers: `allowed: false` refuses the write with the webhook's status code (403 by
//!   default) and message, prefixed `admission webhook "NAME" denied the request: `; a
//!   mutating webhook's `JSONPatch` is applied before the next webhook sees the object;
//!   `warnings` reach the client as `Warning` headers.
//! - Failures (no connection, TLS, timeout, a non-200 answer, an unreadable review, a patch that
//!   does not apply): `failurePolicy: Ignore` skips the webhook; `Fail` (the default) refuses
//!   the write with 500 `InternalError` saying which webhook and why.
//!
//! Not implemented: `matchConditions` (CEL), `matchPolicy: Equivalent` conversions,
//! `reinvocationPolicy`, `sideEffects` checks for dry runs, service endpoints without a
//! ClusterIP.

use crate::admission::{Admission, AdmissionRequest, Operation};
use crate::error::ApiError;
use crate::selector::LabelSelector;
use crate::server::BoxFuture;
use crate::verbs::State;
use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const MUTATING: &str = "admissionregistration.k8s.io/mutatingwebhookconfigurations";
const VALIDATING: &str = "admissionregistration.k8s.io/validatingwebhookconfigurations";

/// The webhook client, as an admission plugin over the server's state.
#[derive(Debug)]
pub struct Webhooks {
    state: Arc<Mutex<State>>,
}

impl Webhooks {
    pub fn new(state: Arc<Mutex<State>>) -> Self {
        Webhooks { state }
    }

    /// Every webhook of every configuration stored under `storage`, configurations in name
    /// order (the store's), each with its configuration's name.
    fn configured(&self, storage: &str) -> Vec<Value> {
        let Ok(state) = self.state.lock() else {
            return Vec::new();
        };
        state
            .store
            .objects(storage)
            .into_iter()
            .flat_map(|objects| objects.values())
            .flat_map(|config| config["webhooks"].as_array().cloned().unwrap_or_default())
            .collect()
    }

    fn namespace_labels(&self, namespace: &str) -> Value {
        let Ok(state) = self.state.lock() else {
            return json!({});
        };
        state
            .store
            .get("/namespaces", "", namespace)
            .cloned()
            .unwrap_or_else(|| json!({"metadata": {"name": namespace}}))
    }

    /// Where a webhook is: the address to connect to, the name its certificate must carry
    /// and the request path.
    fn endpoint(&self, client: &Value) -> Result<Endpoint, String> {
        if let Some(url) = client["url"].as_str() {
            return Endpoint::from_url(url);
        }
        let service = &client["service"];
        let (Some(namespace), Some(name)) =
            (service["namespace"].as_str(), service["name"].as_str())
        else {
            return Err("clientConfig has neither url nor service".to_string());
        };
        let port = service["port"].as_u64().unwrap_or(443);
        let path = service["path"].as_str().unwrap_or("/").to_string();
        let cluster_ip = {
            let state = self.state.lock().map_err(|_| "state lock poisoned")?;
            let svc = state
                .store
                .get("/services", namespace, name)
                .ok_or_else(|| format!("service \"{namespace}/{name}\" not found"))?;
            svc["spec"]["clusterIP"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        };
        if cluster_ip.parse::<std::net::IpAddr>().is_err() {
            return Err(format!(
                "service \"{namespace}/{name}\" has no cluster IP to call (kube-sim calls services through their ClusterIP; use clientConfig.url)"
            ));
        }
        let host = if cluster_ip.contains(':') {
            format!("[{cluster_ip}]")
        } else {
            cluster_ip
        };
        Ok(Endpoint {
            address: format!("{host}:{port}"),
            server_name: format!("{name}.{namespace}.svc"),
            path,
            shown: format!("https://{name}.{namespace}.svc:{port}"),
        })
    }
}

/// Where one webhook is called.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Endpoint {
    /// `host:port` to connect to.
    address: String,
    /// The name the server certificate must be valid for.
    server_name: String,
    /// Path and query.
    path: String,
    /// For messages: the URL without the path.
    shown: String,
}

impl Endpoint {
    fn from_url(url: &str) -> Result<Endpoint, String> {
        let rest = url
            .strip_prefix("https://")
            .ok_or_else(|| format!("clientConfig.url {url:?} must start with https://"))?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (h, after) = v6
                .split_once(']')
                .ok_or_else(|| format!("clientConfig.url {url:?}: unclosed ["))?;
            (h.to_string(), after.strip_prefix(':').unwrap_or("443"))
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h.to_string(), p),
                None => (authority.to_string(), "443"),
            }
        };
        let port: u16 = port
            .parse()
            .map_err(|_| format!("clientConfig.url {url:?}: bad port {port:?}"))?;
        let bracketed = if host.contains(':') {
            format!("[{host}]")
        } else {
            host.clone()
        };
        Ok(Endpoint {
            address: format!("{bracketed}:{port}"),
            server_name: host,
            path: path.to_string(),
            shown: format!("https://{bracketed}:{port}"),
        })
    }
}

fn strings(v: &Value) -> Vec<&str> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect()
}

fn listed(list: &Value, value: &str) -> bool {
    strings(list).iter().any(|s| *s == "*" || *s == value)
}

/// Whether a rule's `resources` names `plural` (with `subresource`, empty for the main one).
fn resource_listed(list: &Value, plural: &str, subresource: &str) -> bool {
    strings(list).iter().any(|r| {
        let (res, sub) = r.split_once('/').unwrap_or((r, ""));
        (res == "*" || res == plural)
            && (sub == "*" || sub == subresource)
            && !(res == "*" && sub.is_empty() && !subresource.is_empty())
    })
}

fn rule_matches(rule: &Value, request: &AdmissionRequest) -> bool {
    let rt = &request.resource;
    let operation = match request.operation {
        Operation::Create => "CREATE",
        Operation::Update => "UPDATE",
    };
    let scope_ok = match rule["scope"].as_str().unwrap_or("*") {
        "Namespaced" => rt.namespaced,
        "Cluster" => !rt.namespaced,
        _ => true,
    };
    scope_ok
        && listed(&rule["operations"], operation)
        && listed(&rule["apiGroups"], &rt.group)
        && listed(&rule["apiVersions"], &rt.version)
        && resource_listed(&rule["resources"], &rt.plural, &request.subresource)
}

/// A selector matches when absent or empty; else by labels.
fn selector_matches(selector: &Value, object: &Value) -> bool {
    if !selector.is_object() {
        return true;
    }
    LabelSelector::from_object(selector).matches(object)
}

impl Webhooks {
    fn applies(&self, webhook: &Value, request: &AdmissionRequest, object: &Value) -> bool {
        let rules = webhook["rules"].as_array().cloned().unwrap_or_default();
        if !rules.iter().any(|r| rule_matches(r, request)) {
            return false;
        }
        let object_ok = selector_matches(&webhook["objectSelector"], object)
            || request
                .old_object
                .as_ref()
                .is_some_and(|old| selector_matches(&webhook["objectSelector"], old));
        if !object_ok {
            return false;
        }
        if !request.resource.namespaced {
            return request.resource.plural != "namespaces"
                || selector_matches(&webhook["namespaceSelector"], object);
        }
        let namespace = self.namespace_labels(&request.namespace);
        selector_matches(&webhook["namespaceSelector"], &namespace)
    }
}

/// The AdmissionReview sent for `request` with `object`.
fn review(uid: &str, request: &AdmissionRequest, object: &Value) -> Value {
    let rt = &request.resource;
    let kind = json!({"group": rt.group, "version": rt.version, "kind": rt.kind});
    let resource = json!({"group": rt.group, "version": rt.version, "resource": rt.plural});
    let (operation, options_kind) = match request.operation {
        Operation::Create => ("CREATE", "CreateOptions"),
        Operation::Update => ("UPDATE", "UpdateOptions"),
    };
    let mut req = json!({
        "uid": uid,
        "kind": kind,
        "resource": resource,
        "requestKind": kind,
        "requestResource": resource,
        "name": request.name,
        "operation": operation,
        "userInfo": {"username": request.user.name, "groups": request.user.groups},
        "object": object,
        "oldObject": request.old_object.clone().unwrap_or(Value::Null),
        "dryRun": request.dry_run,
        "options": {"kind": options_kind, "apiVersion": "meta.k8s.io/v1"},
    });
    if rt.namespaced {
        req["namespace"] = json!(request.namespace);
    }
    if !request.subresource.is_empty() {
        req["subResource"] = json!(request.subresource);
        req["requestSubResource"] = json!(request.subresource);
    }
    json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": req})
}

fn new_uid() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let t = crate::clock::now_secs() as u64;
    format!(
        "{:08x}-{:04x}-4{:03x}-a{:03x}-{:012x}",
        t & 0xffff_ffff,
        (n >> 12) & 0xffff,
        n & 0xfff,
        (t >> 32) & 0xfff,
        n.wrapping_mul(0x9E37_79B9_7F4A_7C15) & 0xffff_ffff_ffff
    )
}

fn tls_config(ca_bundle: &str) -> Result<Arc<rustls::ClientConfig>, String> {
    if ca_bundle.is_empty() {
        return Err("clientConfig.caBundle is empty (kube-sim trusts only the caBundle)".into());
    }
    let pem = base64::engine::general_purpose::STANDARD
        .decode(ca_bundle.trim())
        .map_err(|e| format!("clientConfig.caBundle is not base64: {e}"))?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|e| format!("clientConfig.caBundle: {e}"))?;
        roots
            .add(cert)
            .map_err(|e| format!("clientConfig.caBundle: {e}"))?;
    }
    if roots.is_empty() {
        return Err("clientConfig.caBundle holds no PEM certificate".into());
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// POST `body` to the endpoint over TLS; the answer's body.
async fn post(endpoint: &Endpoint, ca_bundle: &str, body: Vec<u8>) -> Result<Vec<u8>, String> {
    let config = tls_config(ca_bundle)?;
    let server_name = ServerName::try_from(endpoint.server_name.clone())
        .map_err(|e| format!("bad server name {:?}: {e}", endpoint.server_name))?;
    let tcp = tokio::net::TcpStream::connect(&endpoint.address)
        .await
        .map_err(|e| format!("dial tcp {}: {e}", endpoint.address))?;
    let tls = tokio_rustls::TlsConnector::from(config)
        .connect(server_name, tcp)
        .await
        .map_err(|e| format!("tls: {e}"))?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
            .await
            .map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    let request = hyper::Request::post(&endpoint.path)
        .header("host", &endpoint.server_name)
        .header("content-type", "application/json")
        .header("accept", "application/json")
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| e.to_string())?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status();
    let bytes = response
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    if !status.is_success() {
        let text = String::from_utf8_lossy(&bytes);
        let text: String = text.chars().take(300).collect();
        return Err(format!("the server answered {status}: {text}"));
    }
    Ok(bytes.to_vec())
}

/// What one webhook said.
enum Verdict {
    Allowed {
        patch: Option<Value>,
        warnings: Vec<String>,
    },
    Denied(ApiError),
}

fn reason_for(code: u16) -> &'static str {
    match code {
        400 => "BadRequest",
        401 => "Unauthorized",
        404 => "NotFound",
        409 => "Conflict",
        422 => "Invalid",
        429 => "TooManyRequests",
        500 => "InternalError",
        _ => "Forbidden",
    }
}

/// Read a webhook's answer to the review with `uid`.
fn verdict(name: &str, uid: &str, body: &[u8], mutating: bool) -> Result<Verdict, String> {
    let review: Value =
        serde_json::from_slice(body).map_err(|e| format!("the answer is not JSON: {e}"))?;
    if review["apiVersion"] != "admission.k8s.io/v1" || review["kind"] != "AdmissionReview" {
        return Err(format!(
            "expected an admission.k8s.io/v1 AdmissionReview, got apiVersion {} kind {}",
            review["apiVersion"], review["kind"]
        ));
    }
    let response = &review["response"];
    if response["uid"].as_str() != Some(uid) {
        return Err(format!(
            "expected response.uid {uid:?}, got {}",
            response["uid"]
        ));
    }
    let warnings: Vec<String> = strings(&response["warnings"])
        .into_iter()
        .map(str::to_string)
        .collect();
    if response["allowed"].as_bool() != Some(true) {
        let status = &response["status"];
        let code = status["code"]
            .as_u64()
            .and_then(|c| u16::try_from(c).ok())
            .filter(|c| *c >= 400)
            .unwrap_or(403);
        let message = match status["message"].as_str() {
            Some(m) if !m.is_empty() => {
                format!("admission webhook \"{name}\" denied the request: {m}")
            }
            _ => format!("admission webhook \"{name}\" denied the request without explanation"),
        };
        let mut error = ApiError::new(code, reason_for(code), message);
        if let Some(details) = status.get("details").filter(|d| d.is_object()) {
            error.details = Some(details.clone());
        }
        return Ok(Verdict::Denied(error));
    }
    // `patch` is a `[]byte` on the API server: a base64 string, or a list of byte values
    // (which Go's decoder also takes).
    let raw = match &response["patch"] {
        Value::Null => None,
        Value::String(encoded) => Some(
            base64::engine::general_purpose::STANDARD
                .decode(encoded)
                .map_err(|e| format!("response.patch is not base64: {e}"))?,
        ),
        Value::Array(bytes) => Some(
            bytes
                .iter()
                .map(|b| b.as_u64().and_then(|b| u8::try_from(b).ok()))
                .collect::<Option<Vec<u8>>>()
                .ok_or("response.patch is neither base64 nor a list of bytes")?,
        ),
        other => {
            return Err(format!(
                "response.patch is neither base64 nor a list of bytes: {other}"
            ))
        }
    };
    let patch = match raw {
        None => None,
        Some(_) if !mutating => {
            return Err("a validating webhook may not return a patch".to_string())
        }
        Some(raw) => {
            if response["patchType"].as_str() != Some("JSONPatch") {
                return Err(format!(
                    "patchType must be JSONPatch, got {}",
                    response["patchType"]
                ));
            }
            Some(
                serde_json::from_slice(&raw)
                    .map_err(|e| format!("response.patch is not a JSON patch: {e}"))?,
            )
        }
    };
    Ok(Verdict::Allowed { patch, warnings })
}

/// Call one webhook about `object`.
async fn call(
    endpoint: &Endpoint,
    webhook: &Value,
    request: &AdmissionRequest,
    object: &Value,
    mutating: bool,
) -> Result<Verdict, String> {
    let name = webhook["name"].as_str().unwrap_or_default();
    if !strings(&webhook["admissionReviewVersions"]).contains(&"v1") {
        return Err("admissionReviewVersions does not include v1".to_string());
    }
    let uid = new_uid();
    let body = serde_json::to_vec(&review(&uid, request, object)).map_err(|e| e.to_string())?;
    let ca_bundle = webhook["clientConfig"]["caBundle"]
        .as_str()
        .unwrap_or_default();
    let seconds = webhook["timeoutSeconds"]
        .as_u64()
        .unwrap_or(10)
        .clamp(1, 30);
    let answer = tokio::time::timeout(
        Duration::from_secs(seconds),
        post(endpoint, ca_bundle, body),
    )
    .await
    .map_err(|_| format!("context deadline exceeded (timeoutSeconds: {seconds})"))??;
    verdict(name, &uid, &answer, mutating)
}

impl Webhooks {
    async fn run(&self, request: AdmissionRequest) -> Result<(Value, Vec<String>), ApiError> {
        let mut object = request.object.clone();
        let mut warnings = Vec::new();
        if request.resource.group == "admissionregistration.k8s.io" {
            // Never sent to webhooks: a broken webhook could not be removed otherwise.
            return Ok((object, warnings));
        }
        for (storage, mutating) in [(MUTATING, true), (VALIDATING, false)] {
            for webhook in self.configured(storage) {
                if !self.applies(&webhook, &request, &object) {
                    continue;
                }
                let name = webhook["name"].as_str().unwrap_or_default().to_string();
                let ignore = webhook["failurePolicy"].as_str() == Some("Ignore");
                let outcome = match self.endpoint(&webhook["clientConfig"]) {
                    Ok(endpoint) => call(&endpoint, &webhook, &request, &object, mutating)
                        .await
                        .map_err(|e| {
                            format!(
                                "failed to call webhook: Post \"{}{}\": {e}",
                                endpoint.shown, endpoint.path
                            )
                        }),
                    Err(e) => Err(format!("failed to call webhook: {e}")),
                };
                let outcome = outcome.and_then(|verdict| match verdict {
                    Verdict::Allowed {
                        patch: Some(patch),
                        warnings,
                    } => {
                        let mut patched = object.clone();
                        crate::patch::json_patch(&mut patched, &patch).map_err(|e| {
                            format!("the webhook's patch does not apply: {}", e.message)
                        })?;
                        object = patched;
                        Ok(Verdict::Allowed {
                            patch: None,
                            warnings,
                        })
                    }
                    v => Ok(v),
                });
                match outcome {
                    Ok(Verdict::Denied(error)) => return Err(error),
                    Ok(Verdict::Allowed { warnings: w, .. }) => warnings.extend(w),
                    Err(_) if ignore => {}
                    Err(e) => {
                        return Err(ApiError::internal(format!(
                            "Internal error occurred: failed calling webhook \"{name}\": {e}"
                        )))
                    }
                }
            }
        }
        Ok((object, warnings))
    }
}

impl Admission for Webhooks {
    fn active(&self) -> bool {
        !self.configured(MUTATING).is_empty() || !self.configured(VALIDATING).is_empty()
    }

    fn admit(&self, request: AdmissionRequest) -> BoxFuture<Result<Value, ApiError>> {
        let f = self.admit_with_warnings(request);
        Box::pin(async move { f.await.map(|(object, _)| object) })
    }

    fn admit_with_warnings(
        &self,
        request: AdmissionRequest,
    ) -> BoxFuture<Result<(Value, Vec<String>), ApiError>> {
        let this = Webhooks {
            state: self.state.clone(),
        };
        Box::pin(async move { this.run(request).await })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_the_address_and_the_certificate_name() {
        let e = Endpoint::from_url("https://127.0.0.1:9443/validate-x?timeout=3s").unwrap();
        assert_eq!(e.address, "127.0.0.1:9443");
        assert_eq!(e.server_name, "127.0.0.1");
        assert_eq!(e.path, "/validate-x?timeout=3s");
        let e = Endpoint::from_url("https://hooks.example.com").unwrap();
        assert_eq!(
            (e.address.as_str(), e.path.as_str()),
            ("hooks.example.com:443", "/")
        );
        let e = Endpoint::from_url("https://[::1]:8443/m").unwrap();
        assert_eq!(
            (e.address.as_str(), e.server_name.as_str()),
            ("[::1]:8443", "::1")
        );
        assert!(Endpoint::from_url("http://127.0.0.1/x").is_err());
    }

    #[test]
    fn resources_match_with_wildcards_and_subresources() {
        let r = json!(["clusters"]);
        assert!(resource_listed(&r, "clusters", ""));
        assert!(!resource_listed(&r, "clusters", "status"));
        assert!(!resource_listed(&r, "poolers", ""));
        assert!(resource_listed(&json!(["*"]), "poolers", ""));
        assert!(!resource_listed(&json!(["*"]), "poolers", "status"));
        assert!(resource_listed(&json!(["*/*"]), "poolers", "status"));
        assert!(resource_listed(&json!(["*/status"]), "poolers", "status"));
        assert!(resource_listed(
            &json!(["clusters/status"]),
            "clusters",
            "status"
        ));
    }

    #[test]
    fn answers_are_read_strictly() {
        let ok = br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{"uid":"u","allowed":true,"warnings":["w"]}}"#;
        assert!(
            matches!(verdict("h", "u", ok, false), Ok(Verdict::Allowed { warnings, .. }) if warnings == ["w"])
        );
        assert!(
            verdict("h", "other", ok, false).is_err(),
            "the uid must match"
        );
        let no = br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{"uid":"u","allowed":false,"status":{"code":422,"message":"spec.x: bad"}}}"#;
        let Ok(Verdict::Denied(e)) = verdict("h", "u", no, false) else {
            panic!("denied")
        };
        assert_eq!((e.code, e.reason), (422, "Invalid"));
        assert_eq!(
            e.message,
            "admission webhook \"h\" denied the request: spec.x: bad"
        );
        let patch = base64::engine::general_purpose::STANDARD
            .encode(r#"[{"op":"add","path":"/a","value":1}]"#);
        let patched = format!(
            r#"{{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{{"uid":"u","allowed":true,"patchType":"JSONPatch","patch":"{patch}"}}}}"#
        );
        assert!(
            verdict("h", "u", patched.as_bytes(), false).is_err(),
            "validating webhooks do not patch"
        );
        assert!(matches!(
            verdict("h", "u", patched.as_bytes(), true),
            Ok(Verdict::Allowed { patch: Some(_), .. })
        ));
        assert!(verdict("h", "u", b"<html>", true).is_err());
        let bytes: Vec<u8> = br#"[{"op":"add","path":"/a","value":1}]"#.to_vec();
        let listed = json!({"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{"uid":"u","allowed":true,"patchType":"JSONPatch","patch":bytes}});
        assert!(matches!(
            verdict("h", "u", listed.to_string().as_bytes(), true),
            Ok(Verdict::Allowed { patch: Some(_), .. })
        ));
    }
}
