//! Admission webhooks called by kube-sim, as the Kubernetes API reference "Dynamic Admission
//! Control" describes them: a test webhook server (HTTPS, its own CA) registered with
//! Mutating/ValidatingWebhookConfigurations, driven with `kubectl` and a kube-rs client.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

mod common;
use base64::Engine as _;
use common::{api_error, cm, kubectl_available, sim};
use http_body_util::{BodyExt as _, Full};
use k8s_openapi::api::core::v1::ConfigMap;
use kube_client::api::{Api, Patch, PatchParams, PostParams};
use rustls::pki_types::pem::PemObject as _;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// A webhook server for tests: `/deny` refuses objects labelled `deny` (with a warning for
/// the rest), `/label` adds the label `mutated=yes` by JSON patch, `/require-mutated` refuses
/// objects without that label, `/slow` answers after 5 s.
struct Hooks {
    url: String,
    ca_bundle: String,
    calls: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Hooks {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn answer(path: &str, review: &Value) -> Value {
    let request = &review["request"];
    let uid = request["uid"].clone();
    let object = &request["object"];
    let mut response = json!({"uid": uid, "allowed": true});
    match path {
        "/deny" if object["metadata"]["labels"]["deny"].is_string() => {
            response = json!({"uid": uid, "allowed": false, "status": {
                "code": 403,
                "message": format!("{} {} is labelled deny; remove the label", request["operation"].as_str().unwrap(), object["metadata"]["name"].as_str().unwrap()),
            }});
        }
        "/deny" => response["warnings"] = json!(["looked at by deny.example.com"]),
        "/require-mutated" if object["metadata"]["labels"]["mutated"] != "yes" => {
            response = json!({"uid": uid, "allowed": false, "status": {"message": "not mutated"}});
        }
        "/label" => {
            let op = if object["metadata"]["labels"].is_object() {
                json!({"op": "add", "path": "/metadata/labels/mutated", "value": "yes"})
            } else {
                json!({"op": "add", "path": "/metadata/labels", "value": {"mutated": "yes"}})
            };
            response["patchType"] = json!("JSONPatch");
            response["patch"] = json!(base64::engine::general_purpose::STANDARD
                .encode(serde_json::to_vec(&json!([op])).unwrap()));
        }
        _ => {}
    }
    json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response})
}

async fn hooks() -> Hooks {
    let pki = pgherd_controller::pki::generate(
        "hooks",
        &["localhost".to_string(), "hooks.default.svc".to_string()],
        &[std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST)],
        1,
    )
    .unwrap();
    let certs = rustls::pki_types::CertificateDer::pem_slice_iter(pki.server.cert.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(pki.server.key.as_bytes()).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("https://{}", listener.local_addr().unwrap());
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let task = tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let acceptor = acceptor.clone();
            let counter = counter.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| {
                        let counter = counter.clone();
                        async move {
                            counter.fetch_add(1, Ordering::SeqCst);
                            let path = req.uri().path().to_string();
                            let body = req.into_body().collect().await.unwrap().to_bytes();
                            if path == "/slow" {
                                tokio::time::sleep(Duration::from_secs(5)).await;
                            }
                            let review: Value = serde_json::from_slice(&body).unwrap();
                            let out = serde_json::to_vec(&answer(&path, &review)).unwrap();
                            Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(
                                bytes::Bytes::from(out),
                            )))
                        }
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    Hooks {
        url,
        ca_bundle: base64::engine::general_purpose::STANDARD.encode(&pki.ca.cert),
        calls,
        task,
    }
}

/// One webhook named `name` calling `url` for ConfigMap creates and updates.
fn configuration(kind: &str, name: &str, url: &str, ca_bundle: &str, extra: Value) -> Value {
    let mut webhook = json!({
        "name": name,
        "clientConfig": {"url": url, "caBundle": ca_bundle},
        "rules": [{"apiGroups": [""], "apiVersions": ["v1"], "resources": ["configmaps"], "operations": ["CREATE", "UPDATE"], "scope": "Namespaced"}],
        "sideEffects": "None",
        "admissionReviewVersions": ["v1"],
    });
    for (k, v) in extra.as_object().unwrap() {
        webhook[k] = v.clone();
    }
    json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": kind,
        "metadata": {"name": name},
        "webhooks": [webhook],
    })
}

fn labelled(name: &str, label: &str) -> ConfigMap {
    let mut c = cm(name);
    c.metadata
        .labels
        .get_or_insert_with(Default::default)
        .insert(label.into(), "1".into());
    c
}

// "Dynamic Admission Control" → "Webhook request and response": a validating webhook's
// `allowed: false` refuses the write and its `status.message` reaches the user (kubectl prints
// it, prefixed with the webhook's name); an allowed answer's `warnings` reach the client; a
// webhook is not called for objects its rules do not match.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_validating_webhook_refuses_an_object_with_its_message() {
    if !kubectl_available() {
        return;
    }
    let s = sim().await;
    let h = hooks().await;
    let config = configuration(
        "ValidatingWebhookConfiguration",
        "deny.example.com",
        &format!("{}/deny", h.url),
        &h.ca_bundle,
        json!({"failurePolicy": "Fail"}),
    );
    s.kubectl_in(&["create", "-f", "-"], &config.to_string());

    let denied = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "bad", "labels": {"deny": "yes"}}});
    let stderr = s.kubectl_fails(&["apply", "-f", "-"], Some(&denied.to_string()));
    assert!(
        stderr.contains(
            "admission webhook \"deny.example.com\" denied the request: CREATE bad is labelled deny; remove the label"
        ),
        "{stderr}"
    );
    let api: Api<ConfigMap> = Api::namespaced(s.client().await, "default");
    assert!(api.get_opt("bad").await.unwrap().is_none());

    // Allowed, with the webhook's warning shown by kubectl.
    let good = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "good"}});
    let out = s.kubectl_as(
        &s.kubeconfig(),
        &["apply", "-f", "-"],
        Some(&good.to_string()),
    );
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("Warning: looked at by deny.example.com"),
        "{stderr}"
    );

    // Updates are reviewed too (a merge patch adding the label).
    let e = api_error(
        api.patch(
            "good",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"deny": "now"}}})),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(e.code, 403);
    assert!(
        e.message.contains("UPDATE good is labelled deny"),
        "{}",
        e.message
    );

    // Secrets are not in the rules: never sent.
    let before = h.calls.load(Ordering::SeqCst);
    s.kubectl(&["create", "secret", "generic", "s", "--from-literal=a=b"]);
    assert_eq!(h.calls.load(Ordering::SeqCst), before);
}

// "Dynamic Admission Control" → "Response" (patch, patchType JSONPatch): a mutating
// webhook's patch is applied to what is stored; mutating webhooks run before validating ones,
// which see the patched object; `objectSelector` limits the objects sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mutating_webhook_patches_the_object() {
    let s = sim().await;
    let h = hooks().await;
    let client = s.client().await;
    let mutating: Api<kube_client::core::DynamicObject> = Api::all_with(
        client.clone(),
        &kube_client::core::ApiResource::from_gvk_with_plural(
            &kube_client::core::GroupVersionKind::gvk(
                "admissionregistration.k8s.io",
                "v1",
                "MutatingWebhookConfiguration",
            ),
            "mutatingwebhookconfigurations",
        ),
    );
    let config = configuration(
        "MutatingWebhookConfiguration",
        "label.example.com",
        &format!("{}/label", h.url),
        &h.ca_bundle,
        json!({"objectSelector": {"matchExpressions": [{"key": "skip", "operator": "DoesNotExist"}]}}),
    );
    mutating
        .create(
            &PostParams::default(),
            &serde_json::from_value(config).unwrap(),
        )
        .await
        .unwrap();
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let made = api.create(&PostParams::default(), &cm("m")).await.unwrap();
    assert_eq!(made.metadata.labels.as_ref().unwrap()["mutated"], "yes");
    assert_eq!(
        api.get("m").await.unwrap().metadata.labels.unwrap()["mutated"],
        "yes",
        "stored as patched"
    );
    let skipped = api
        .create(&PostParams::default(), &labelled("n", "skip"))
        .await
        .unwrap();
    assert!(!skipped.metadata.labels.unwrap().contains_key("mutated"));

    // Validating webhooks run after the mutating ones: this one requires the mutation.
    let validating = configuration(
        "ValidatingWebhookConfiguration",
        "require.example.com",
        &format!("{}/require-mutated", h.url),
        &h.ca_bundle,
        json!({}),
    );
    s.kubectl_in(&["create", "-f", "-"], &validating.to_string());
    let ok = api.create(&PostParams::default(), &cm("o")).await.unwrap();
    assert_eq!(ok.metadata.labels.unwrap()["mutated"], "yes");
    let e = api_error(
        api.create(&PostParams::default(), &labelled("p", "skip"))
            .await
            .unwrap_err(),
    );
    assert_eq!(e.code, 403);
    assert!(
        e.message.ends_with("denied the request: not mutated"),
        "{}",
        e.message
    );
}

// "Dynamic Admission Control" → "Failure policy" and "Timeouts": a webhook that cannot be
// reached (or does not answer within timeoutSeconds) refuses the write under
// `failurePolicy: Fail` and is skipped under `Ignore`; a caBundle that does not sign the
// server's certificate is such a failure.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failure_policy_decides_when_the_webhook_is_down() {
    let s = sim().await;
    let h = hooks().await;
    let down = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("https://{}/deny", l.local_addr().unwrap())
    };
    let ignore = configuration(
        "ValidatingWebhookConfiguration",
        "ignore.example.com",
        &down,
        &h.ca_bundle,
        json!({"failurePolicy": "Ignore"}),
    );
    s.kubectl_in(&["create", "-f", "-"], &ignore.to_string());
    let api: Api<ConfigMap> = Api::namespaced(s.client().await, "default");
    api.create(&PostParams::default(), &cm("a")).await.unwrap();

    let fail = configuration(
        "ValidatingWebhookConfiguration",
        "fail.example.com",
        &down,
        &h.ca_bundle,
        json!({"failurePolicy": "Fail"}),
    );
    s.kubectl_in(&["create", "-f", "-"], &fail.to_string());
    let e = api_error(
        api.create(&PostParams::default(), &cm("b"))
            .await
            .unwrap_err(),
    );
    assert_eq!(e.code, 500);
    assert!(
        e.message
            .contains("failed calling webhook \"fail.example.com\""),
        "{}",
        e.message
    );
    s.kubectl(&[
        "delete",
        "validatingwebhookconfiguration",
        "fail.example.com",
    ]);
    api.create(&PostParams::default(), &cm("b")).await.unwrap();

    // Too slow for timeoutSeconds: a failure.
    let slow = configuration(
        "ValidatingWebhookConfiguration",
        "slow.example.com",
        &format!("{}/slow", h.url),
        &h.ca_bundle,
        json!({"failurePolicy": "Fail", "timeoutSeconds": 1}),
    );
    s.kubectl_in(&["create", "-f", "-"], &slow.to_string());
    let started = std::time::Instant::now();
    let e = api_error(
        api.create(&PostParams::default(), &cm("c"))
            .await
            .unwrap_err(),
    );
    assert!(e.message.contains("deadline exceeded"), "{}", e.message);
    assert!(started.elapsed() < Duration::from_secs(4));
    s.kubectl(&[
        "delete",
        "validatingwebhookconfiguration",
        "slow.example.com",
    ]);

    // A caBundle that did not sign the server's certificate.
    let other = pgherd_controller::pki::generate("other", &[], &[], 1).unwrap();
    let untrusted = configuration(
        "ValidatingWebhookConfiguration",
        "untrusted.example.com",
        &format!("{}/deny", h.url),
        &base64::engine::general_purpose::STANDARD.encode(&other.ca.cert),
        json!({}),
    );
    s.kubectl_in(&["create", "-f", "-"], &untrusted.to_string());
    let e = api_error(
        api.create(&PostParams::default(), &cm("d"))
            .await
            .unwrap_err(),
    );
    assert_eq!(e.code, 500, "failurePolicy defaults to Fail");
    assert!(e.message.contains("tls"), "{}", e.message);
}

// "Dynamic Admission Control" → "Contacting the webhook" (service reference): the API server
// calls `clientConfig.service` through the Service's cluster IP and port, and checks the
// certificate against `NAME.NAMESPACE.svc`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_is_reached_through_a_service_reference() {
    let s = sim().await;
    let h = hooks().await;
    let port: u16 = h.url.rsplit_once(':').unwrap().1.parse().unwrap();
    // A Service whose cluster IP is where the test server listens (kube-sim does not forward
    // Service ports by itself).
    let service = json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "hooks", "namespace": "default"},
        "spec": {"clusterIP": "127.0.0.1", "ports": [{"port": port, "targetPort": port}]}});
    s.kubectl_in(&["create", "-f", "-"], &service.to_string());
    let mut config = configuration(
        "MutatingWebhookConfiguration",
        "label.example.com",
        "https://unused.invalid",
        &h.ca_bundle,
        json!({}),
    );
    config["webhooks"][0]["clientConfig"] = json!({
        "service": {"namespace": "default", "name": "hooks", "path": "/label", "port": port},
        "caBundle": h.ca_bundle,
    });
    s.kubectl_in(&["create", "-f", "-"], &config.to_string());
    let api: Api<ConfigMap> = Api::namespaced(s.client().await, "default");
    let made = api
        .create(&PostParams::default(), &cm("via-service"))
        .await
        .unwrap();
    assert_eq!(made.metadata.labels.unwrap()["mutated"], "yes");

    // A Service that does not exist: a failure, refused under the default failurePolicy.
    config["metadata"]["name"] = json!("missing.example.com");
    config["webhooks"][0]["name"] = json!("missing.example.com");
    config["webhooks"][0]["clientConfig"]["service"]["name"] = json!("nowhere");
    s.kubectl_in(&["create", "-f", "-"], &config.to_string());
    let e = api_error(
        api.create(&PostParams::default(), &cm("refused"))
            .await
            .unwrap_err(),
    );
    assert_eq!(e.code, 500);
    assert!(
        e.message.contains("service \"default/nowhere\" not found"),
        "{}",
        e.message
    );
}
