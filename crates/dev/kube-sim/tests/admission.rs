//! Writes refused or changed before they are stored: ObjectMeta validation and admission
//! plugins (the extension point webhooks plug into). Each test cites the Kubernetes API
//! documentation section it follows.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

mod common;
use common::{api_error, cm, sim};
use k8s_openapi::api::core::v1::ConfigMap;
use kube_client::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;
use std::sync::Arc;

// API reference "Object Names and IDs" (DNS label / subdomain names) and "Labels and
// Selectors: Syntax and character set": too-long names and label values are refused with 422
// and the field path; an object in the body for another namespace than the URL's is a 400.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_labels_and_namespaces_are_validated() {
    use k8s_openapi::api::core::v1::Service;
    let s = sim().await;
    let client = s.client().await;
    let svcs: Api<Service> = Api::namespaced(client.clone(), "default");
    let long = format!("cluster-{}-rw", "x".repeat(60));
    let svc: Service = serde_json::from_value(
        json!({"metadata": {"name": long}, "spec": {"ports": [{"port": 5432}]}}),
    )
    .unwrap();
    let e = api_error(svcs.create(&PostParams::default(), &svc).await.unwrap_err());
    assert_eq!((e.code, e.reason.as_str()), (422, "Invalid"));
    assert!(e.message.contains("metadata.name"), "{}", e.message);
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    let bad_label: ConfigMap = serde_json::from_value(
        json!({"metadata": {"name": "c", "labels": {"cnpg.io/cluster": "y".repeat(64)}}}),
    )
    .unwrap();
    let e = api_error(
        api.create(&PostParams::default(), &bad_label)
            .await
            .unwrap_err(),
    );
    assert!(
        e.message.contains("metadata.labels[cnpg.io/cluster]"),
        "{}",
        e.message
    );
    let elsewhere: ConfigMap =
        serde_json::from_value(json!({"metadata": {"name": "c", "namespace": "kube-system"}}))
            .unwrap();
    let e = api_error(
        api.create(&PostParams::default(), &elsewhere)
            .await
            .unwrap_err(),
    );
    assert_eq!(e.code, 400);
}

/// A plugin standing in for webhooks: refuses ConfigMaps labelled `deny`, labels the rest.
#[derive(Debug)]
struct Policy;

impl pgherd_kube_sim::admission::Admission for Policy {
    fn admit(
        &self,
        request: pgherd_kube_sim::admission::AdmissionRequest,
    ) -> pgherd_kube_sim::server::BoxFuture<Result<serde_json::Value, pgherd_kube_sim::ApiError>>
    {
        Box::pin(async move {
            let mut o = request.object;
            if o["metadata"]["labels"]["deny"].is_string() {
                return Err(pgherd_kube_sim::ApiError::forbidden(format!(
                    "admission webhook \"policy.example.com\" denied the request: {} is labelled deny",
                    request.name
                )));
            }
            o["metadata"]["labels"]["admitted"] = json!("yes");
            Ok(o)
        })
    }
}

// API reference "Dynamic Admission Control": mutating admission changes what is stored,
// validating admission refuses a write with its message; both see creates, updates, patches
// and server-side apply.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admission_plugins_mutate_and_refuse_writes() {
    let s = sim().await;
    s.running.server.add_admission(Arc::new(Policy));
    let api: Api<ConfigMap> = Api::namespaced(s.client().await, "default");
    let made = api.create(&PostParams::default(), &cm("ok")).await.unwrap();
    assert_eq!(made.metadata.labels.unwrap()["admitted"], "yes");
    let mut denied = cm("no");
    denied
        .metadata
        .labels
        .as_mut()
        .unwrap()
        .insert("deny".into(), "1".into());
    let e = api_error(
        api.create(&PostParams::default(), &denied)
            .await
            .unwrap_err(),
    );
    assert_eq!(e.code, 403);
    assert!(e.message.contains("denied the request"), "{}", e.message);
    let e = api_error(
        api.patch(
            "ok",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"deny": "x"}}})),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(e.code, 403);
    let applied = api
        .patch("ssa", &PatchParams::apply("tester"), &Patch::Apply(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "ssa"}, "data": {"a": "b"}})))
        .await
        .unwrap();
    assert_eq!(applied.metadata.labels.unwrap()["admitted"], "yes");
    let managers: Vec<String> = applied
        .metadata
        .managed_fields
        .unwrap()
        .into_iter()
        .filter_map(|m| m.manager)
        .collect();
    assert_eq!(managers, ["tester"]);
}
