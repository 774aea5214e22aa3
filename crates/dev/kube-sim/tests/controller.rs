//! A kube-runtime controller converging against kube-sim: what request-shape mocks cannot show.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

mod common;
use common::sim;
use futures_util::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube_client::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube_client::{Client, Resource, ResourceExt};
use kube_runtime::controller::{Action, Controller};
use kube_runtime::watcher;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

struct Ctx {
    client: Client,
}

async fn reconcile(cm: Arc<ConfigMap>, ctx: Arc<Ctx>) -> Result<Action, kube_client::Error> {
    let ns = cm.namespace().unwrap();
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &ns);
    let name = format!("{}-copy", cm.name_any());
    let value = cm
        .data
        .as_ref()
        .and_then(|d| d.get("k"))
        .cloned()
        .unwrap_or_default();
    let secret = json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": name, "ownerReferences": [cm.controller_owner_ref(&()).unwrap()]},
        "stringData": {"copy": value},
    });
    secrets
        .patch(
            &name,
            &PatchParams::apply("copier").force(),
            &Patch::Apply(secret),
        )
        .await?;
    Ok(Action::await_change())
}

fn error_policy(_: Arc<ConfigMap>, _: &kube_client::Error, _: Arc<Ctx>) -> Action {
    Action::requeue(Duration::from_millis(100))
}

async fn copied(secrets: &Api<Secret>, want: Option<&str>) {
    for _ in 0..100 {
        let got = secrets.get_opt("app-copy").await.unwrap();
        let value = got
            .as_ref()
            .and_then(|s| s.data.as_ref())
            .and_then(|d| d.get("copy"))
            .map(|b| String::from_utf8(b.0.clone()).unwrap());
        if value.as_deref() == want {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let last = secrets.get_opt("app-copy").await.unwrap();
    panic!("the copy never became {want:?}: {last:?}");
}

// API reference "Controllers" (watch, reconcile on change of the primary and of owned
// objects), "Server-Side Apply" (a controller applying with force) and "Garbage Collection"
// (the owned Secret goes with its ConfigMap).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_controller_converges_and_its_objects_are_collected() {
    let s = sim().await;
    let client = s.client().await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "default");
    let ctx = Arc::new(Ctx {
        client: client.clone(),
    });
    let controller = Controller::new(cms.clone(), watcher::Config::default().labels("sim/app"))
        .owns(secrets.clone(), watcher::Config::default())
        .run(reconcile, error_policy, ctx)
        .for_each(|_| async {});
    let task = tokio::spawn(controller);
    let cm: ConfigMap = serde_json::from_value(
        json!({"metadata": {"name": "app", "labels": {"sim/app": "yes"}}, "data": {"k": "one"}}),
    )
    .unwrap();
    cms.create(&PostParams::default(), &cm).await.unwrap();
    copied(&secrets, Some("one")).await;
    // Converged means quiet: re-applying the same intent writes nothing (no reconcile loop
    // fed by its own writes).
    let rv = secrets
        .get("app-copy")
        .await
        .unwrap()
        .metadata
        .resource_version;
    cms.patch(
        "app",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"touch": "1"}}})),
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        secrets
            .get("app-copy")
            .await
            .unwrap()
            .metadata
            .resource_version,
        rv
    );
    cms.patch(
        "app",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"k": "two"}})),
    )
    .await
    .unwrap();
    copied(&secrets, Some("two")).await;
    // Someone edits the owned Secret: the controller puts it back.
    secrets
        .patch(
            "app-copy",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"copy": "dGFtcGVyZWQ="}})),
        )
        .await
        .unwrap();
    copied(&secrets, Some("two")).await;
    let owner_uid = cms.get("app").await.unwrap().meta().uid.clone();
    assert_eq!(
        secrets.get("app-copy").await.unwrap().owner_references()[0].uid,
        owner_uid.unwrap()
    );
    cms.delete("app", &DeleteParams::default()).await.unwrap();
    copied(&secrets, None).await;
    task.abort();
}
