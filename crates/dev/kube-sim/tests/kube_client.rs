//! Conformance tests driven by a kube-rs client (the operator's client library): watches,
//! optimistic concurrency, server-side apply, selectors, subresources. Each test cites the
//! Kubernetes API documentation section it follows.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

mod common;
use common::{api_error, cm, eventually, sim, sim_with};
use futures_util::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ConfigMap;
use kube_client::api::{Api, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use kube_runtime::watcher;
use pgherd_kube_sim::Config;
use serde_json::json;
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

// API reference "API Concepts: Efficient detection of changes" and "410 Gone responses": a
// watch resumed from a compacted resourceVersion gets 410, and kube-runtime's watcher relists
// and carries on, seeing what changed in between.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watcher_survives_410_gone_by_relisting() {
    let s = sim().await;
    let api: Api<ConfigMap> = Api::namespaced(s.client().await, "default");
    let seen = Arc::new(Mutex::new(BTreeSet::new()));
    let inits = Arc::new(Mutex::new(0));
    let (seen2, inits2) = (seen.clone(), inits.clone());
    let mut stream = watcher(api.clone(), watcher::Config::default()).boxed();
    let task = tokio::spawn(async move {
        while let Some(ev) = stream.next().await {
            match ev {
                Ok(watcher::Event::Init) => *inits2.lock().unwrap() += 1,
                Ok(watcher::Event::Apply(o)) | Ok(watcher::Event::InitApply(o)) => {
                    seen2.lock().unwrap().insert(o.metadata.name.unwrap());
                }
                _ => {}
            }
        }
    });
    api.create(&PostParams::default(), &cm("before"))
        .await
        .unwrap();
    eventually("the first object", || {
        seen.lock().unwrap().contains("before")
    })
    .await;
    s.running.server.compact();
    api.create(&PostParams::default(), &cm("after"))
        .await
        .unwrap();
    eventually("the object made across the 410", || {
        seen.lock().unwrap().contains("after")
    })
    .await;
    assert!(*inits.lock().unwrap() >= 2, "the watcher relisted");
    task.abort();
}

// Same section: a raw watch from an expired resourceVersion gets an ERROR event with a 410
// Expired Status; bookmarks carry the current resourceVersion when asked for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_watch_gets_410_and_bookmarks_arrive() {
    let s = sim_with(Config {
        bookmark_interval: Duration::from_millis(200),
        ..Config::default()
    })
    .await;
    let api: Api<ConfigMap> = Api::namespaced(s.client().await, "default");
    api.create(&PostParams::default(), &cm("a")).await.unwrap();
    s.running.server.compact();
    let mut w = api
        .watch(&WatchParams::default(), "2")
        .await
        .unwrap()
        .boxed();
    match w.next().await.unwrap().unwrap() {
        WatchEvent::Error(e) => assert_eq!((e.code, e.reason.as_str()), (410, "Expired")),
        other => panic!("expected 410, got {other:?}"),
    }
    let rv = api
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    let wp = WatchParams {
        bookmarks: true,
        ..WatchParams::default()
    };
    let mut w = api.watch(&wp, &rv).await.unwrap().boxed();
    api.create(&PostParams::default(), &cm("b")).await.unwrap();
    let mut kinds = Vec::new();
    while kinds.len() < 2 {
        match tokio::time::timeout(Duration::from_secs(5), w.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap()
        {
            WatchEvent::Added(o) => kinds.push(format!("added {}", o.metadata.name.unwrap())),
            WatchEvent::Bookmark(_) => kinds.push("bookmark".into()),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(kinds, ["added b", "bookmark"]);
}

// API reference "API Concepts: Resource versions" / "Conflicts" (optimistic concurrency):
// an update carrying a stale resourceVersion loses with 409 Conflict.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_with_a_stale_resource_version_loses_the_race() {
    let s = sim().await;
    let api: Api<ConfigMap> = Api::namespaced(s.client().await, "default");
    let created = api
        .create(&PostParams::default(), &cm("race"))
        .await
        .unwrap();
    let mut first = created.clone();
    let mut second = created.clone();
    first.data = Some([("k".to_string(), "first".to_string())].into());
    second.data = Some([("k".to_string(), "second".to_string())].into());
    api.replace("race", &PostParams::default(), &first)
        .await
        .unwrap();
    let e = api_error(
        api.replace("race", &PostParams::default(), &second)
            .await
            .unwrap_err(),
    );
    assert_eq!((e.code, e.reason.as_str()), (409, "Conflict"));
    assert_eq!(api.get("race").await.unwrap().data.unwrap()["k"], "first");
    // create of an existing name: 409 AlreadyExists; generateName picks a fresh name.
    let e = api_error(
        api.create(&PostParams::default(), &cm("race"))
            .await
            .unwrap_err(),
    );
    assert_eq!((e.code, e.reason.as_str()), (409, "AlreadyExists"));
    let gen: ConfigMap =
        serde_json::from_value(json!({"metadata": {"generateName": "gen-"}})).unwrap();
    let made = api.create(&PostParams::default(), &gen).await.unwrap();
    assert!(made.metadata.name.unwrap().starts_with("gen-"));
}

// API reference "Server-Side Apply: Conflicts" and "Managers": two field managers, one
// conflict on a shared field, resolved by forcing; both managers recorded in managedFields.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_side_apply_reports_field_manager_conflicts() {
    let s = sim().await;
    let api: Api<Deployment> = Api::namespaced(s.client().await, "default");
    let deploy = |image: &str, replicas: i32| {
        json!({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "d"}},
                 "template": {"metadata": {"labels": {"app": "d"}},
                              "spec": {"containers": [{"name": "main", "image": image}]}}}})
    };
    api.patch(
        "d",
        &PatchParams::apply("operator"),
        &Patch::Apply(deploy("pg:15", 1)),
    )
    .await
    .unwrap();
    let replicas = |n: i32| json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"}, "spec": {"replicas": n}});
    let e = api_error(
        api.patch(
            "d",
            &PatchParams::apply("autoscaler"),
            &Patch::Apply(replicas(3)),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!((e.code, e.reason.as_str()), (409, "Conflict"));
    assert!(
        e.message.contains(".spec.replicas") && e.message.contains("operator"),
        "{}",
        e.message
    );
    let d = api
        .patch(
            "d",
            &PatchParams::apply("autoscaler").force(),
            &Patch::Apply(replicas(3)),
        )
        .await
        .unwrap();
    assert_eq!(d.spec.unwrap().replicas, Some(3));
    let managers: BTreeSet<String> = d
        .metadata
        .managed_fields
        .unwrap()
        .into_iter()
        .filter_map(|m| m.manager)
        .collect();
    assert_eq!(
        managers,
        BTreeSet::from(["autoscaler".to_string(), "operator".to_string()])
    );
    // The operator re-applies without replicas: it no longer conflicts (autoscaler owns it).
    let mut mine = deploy("pg:16", 1);
    mine["spec"].as_object_mut().unwrap().remove("replicas");
    let d = api
        .patch(
            "d",
            &PatchParams::apply("operator"),
            &Patch::Apply(mine.clone()),
        )
        .await
        .unwrap();
    // The same intent again is a no-op: same resourceVersion.
    let again = api
        .patch("d", &PatchParams::apply("operator"), &Patch::Apply(mine))
        .await
        .unwrap();
    assert_eq!(again.metadata.resource_version, d.metadata.resource_version);
    let spec = d.spec.unwrap();
    assert_eq!(spec.replicas, Some(3));
    assert_eq!(
        spec.template.spec.unwrap().containers[0].image.as_deref(),
        Some("pg:16")
    );
}

// API reference "Labels and Selectors" (equality- and set-based) and "Field Selectors".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_filters_by_label_and_field_selectors() {
    let s = sim().await;
    let api: Api<ConfigMap> = Api::namespaced(s.client().await, "default");
    for n in ["a", "b", "c"] {
        api.create(&PostParams::default(), &cm(n)).await.unwrap();
    }
    let names = |l: kube_client::core::ObjectList<ConfigMap>| -> Vec<String> {
        l.items
            .into_iter()
            .map(|o| o.metadata.name.unwrap())
            .collect()
    };
    assert_eq!(
        names(
            api.list(&ListParams::default().labels("app in (a,c)"))
                .await
                .unwrap()
        ),
        ["a", "c"]
    );
    assert_eq!(
        names(
            api.list(&ListParams::default().labels("app notin (a),app"))
                .await
                .unwrap()
        ),
        ["b", "c"]
    );
    assert_eq!(
        names(
            api.list(&ListParams::default().fields("metadata.name=b"))
                .await
                .unwrap()
        ),
        ["b"]
    );
    let page = api.list(&ListParams::default().limit(2)).await.unwrap();
    assert_eq!(page.items.len(), 2);
    let rest = api
        .list(
            &ListParams::default()
                .limit(2)
                .continue_token(page.metadata.continue_.as_deref().unwrap()),
        )
        .await
        .unwrap();
    assert_eq!(names(rest), ["c"]);
}

// API reference "Deployment v1 apps: status and scale subresources" and "Generation":
// status writes ignore spec and do not bump generation; spec writes ignore status.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_and_scale_subresources_split_spec_from_status() {
    let s = sim().await;
    let api: Api<Deployment> = Api::namespaced(s.client().await, "default");
    let d: Deployment = serde_json::from_value(json!({"metadata": {"name": "d"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "d"}},
                 "template": {"metadata": {"labels": {"app": "d"}}, "spec": {"containers": [{"name": "m", "image": "x"}]}}},
        "status": {"replicas": 7}})).unwrap();
    let d = api.create(&PostParams::default(), &d).await.unwrap();
    assert!(d.status.is_none(), "status dropped on create");
    let pp = PatchParams::default();
    let d = api
        .patch_status(
            "d",
            &pp,
            &Patch::Merge(json!({"status": {"replicas": 1}, "spec": {"replicas": 5}})),
        )
        .await
        .unwrap();
    assert_eq!(
        (d.spec.as_ref().unwrap().replicas, d.metadata.generation),
        (Some(1), Some(1))
    );
    assert_eq!(d.status.unwrap().replicas, Some(1));
    let scale = api.get_scale("d").await.unwrap();
    assert_eq!(scale.spec.unwrap().replicas, Some(1));
    api.patch_scale("d", &pp, &Patch::Merge(json!({"spec": {"replicas": 4}})))
        .await
        .unwrap();
    let d = api.get("d").await.unwrap();
    assert_eq!(
        (d.spec.unwrap().replicas, d.metadata.generation),
        (Some(4), Some(2))
    );
}

// API reference "Event v1 events.k8s.io" (fields mapped to core/v1 Event): an Event written
// through events.k8s.io (kube-rs' recorder) is the same object read through core/v1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_are_shared_between_core_and_events_k8s_io() {
    use k8s_openapi::api::core::v1::Event as CoreEvent;
    use k8s_openapi::api::events::v1::Event;
    let s = sim().await;
    let client = s.client().await;
    let new: Api<Event> = Api::namespaced(client.clone(), "default");
    let core: Api<CoreEvent> = Api::namespaced(client, "default");
    let ev: Event = serde_json::from_value(json!({
        "metadata": {"name": "e1"}, "eventTime": "2026-01-01T00:00:00.000000Z",
        "reason": "Promoted", "note": "cluster-1 is primary", "type": "Normal", "action": "Promote",
        "reportingController": "pgherd.io/operator", "reportingInstance": "op-1",
        "regarding": {"kind": "Pod", "name": "cluster-1", "namespace": "default"}}))
    .unwrap();
    new.create(&PostParams::default(), &ev).await.unwrap();
    let seen = core.get("e1").await.unwrap();
    assert_eq!(seen.message.as_deref(), Some("cluster-1 is primary"));
    assert_eq!(seen.involved_object.name.as_deref(), Some("cluster-1"));
    let listed = core
        .list(&ListParams::default().fields("involvedObject.name=cluster-1"))
        .await
        .unwrap();
    assert_eq!(listed.items.len(), 1);
    let back = new.get("e1").await.unwrap();
    assert_eq!(back.note.as_deref(), Some("cluster-1 is primary"));
}

// API reference "Pod v1 core" (PodSpec/Container defaults; "Pod update and replacement":
// most of a Pod's spec is immutable), "PersistentVolumeClaim" (requests may only grow) and
// "Service" (clusterIP allocated, then immutable).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn built_in_defaults_and_immutable_fields() {
    use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, Service, ServiceAccount};
    let s = sim().await;
    let client = s.client().await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let pod: Pod = serde_json::from_value(json!({"metadata": {"name": "p"},
        "spec": {"containers": [{"name": "pg", "image": "postgres:15", "ports": [{"containerPort": 5432}]}]}})).unwrap();
    let p = pods.create(&PostParams::default(), &pod).await.unwrap();
    let spec = p.spec.unwrap();
    assert_eq!(spec.restart_policy.as_deref(), Some("Always"));
    assert_eq!(
        spec.containers[0].image_pull_policy.as_deref(),
        Some("IfNotPresent")
    );
    assert_eq!(p.status.unwrap().phase.as_deref(), Some("Pending"));
    pods.patch(
        "p",
        &PatchParams::default(),
        &Patch::Strategic(
            json!({"spec": {"containers": [{"name": "pg", "image": "postgres:16"}]}}),
        ),
    )
    .await
    .unwrap();
    let e = api_error(
        pods.patch("p", &PatchParams::default(), &Patch::Strategic(json!({"spec": {"containers": [{"name": "pg", "env": [{"name": "A", "value": "1"}]}]}})))
            .await
            .unwrap_err(),
    );
    assert_eq!((e.code, e.reason.as_str()), (422, "Invalid"));
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), "default");
    let pvc: PersistentVolumeClaim = serde_json::from_value(json!({"metadata": {"name": "data"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "2Gi"}}}}))
    .unwrap();
    pvcs.create(&PostParams::default(), &pvc).await.unwrap();
    let grow = |size: &str| json!({"spec": {"resources": {"requests": {"storage": size}}}});
    pvcs.patch("data", &PatchParams::default(), &Patch::Merge(grow("3Gi")))
        .await
        .unwrap();
    let e = api_error(
        pvcs.patch("data", &PatchParams::default(), &Patch::Merge(grow("1Gi")))
            .await
            .unwrap_err(),
    );
    assert!(
        e.message.contains("spec.resources.requests.storage"),
        "{}",
        e.message
    );
    let svcs: Api<Service> = Api::namespaced(client.clone(), "default");
    let svc: Service = serde_json::from_value(json!({"metadata": {"name": "pg-rw"},
        "spec": {"selector": {"role": "primary"}, "ports": [{"name": "postgres", "port": 5432}]}}))
    .unwrap();
    let made = svcs
        .create(&PostParams::default(), &svc)
        .await
        .unwrap()
        .spec
        .unwrap();
    assert!(made.cluster_ip.unwrap().starts_with("127."));
    assert_eq!(made.ports.unwrap()[0].protocol.as_deref(), Some("TCP"));
    let e = api_error(
        svcs.patch(
            "pg-rw",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"clusterIP": "10.96.9.9"}})),
        )
        .await
        .unwrap_err(),
    );
    assert!(e.message.contains("spec.clusterIP"), "{}", e.message);
    // Every namespace gets the `default` ServiceAccount.
    let sas: Api<ServiceAccount> = Api::namespaced(client, "default");
    sas.get("default").await.unwrap();
}

// API reference "Pod Lifecycle: Termination of Pods": deleting a pod bound to a node marks it
// with its grace period; the kubelet's delete with grace 0 removes it. Unbound pods go at once.
// And "Namespaces": deleting a namespace deletes what is in it, then the namespace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bound_pods_are_deleted_gracefully_and_namespaces_empty_themselves() {
    use k8s_openapi::api::core::v1::{Namespace, Pod};
    use kube_client::api::DeleteParams;
    let s = sim().await;
    let client = s.client().await;
    let nss: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": "team"}})).unwrap();
    nss.create(&PostParams::default(), &ns).await.unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "team");
    let pod = |name: &str, node: Option<&str>| -> Pod {
        serde_json::from_value(json!({"metadata": {"name": name},
            "spec": {"nodeName": node, "terminationGracePeriodSeconds": 5, "containers": [{"name": "c", "image": "x:1"}]}})).unwrap()
    };
    pods.create(&PostParams::default(), &pod("bound", Some("node-1")))
        .await
        .unwrap();
    pods.create(&PostParams::default(), &pod("loose", None))
        .await
        .unwrap();
    pods.delete("loose", &DeleteParams::default())
        .await
        .unwrap();
    assert!(pods.get_opt("loose").await.unwrap().is_none());
    pods.delete("bound", &DeleteParams::default())
        .await
        .unwrap();
    let marked = pods.get("bound").await.unwrap();
    assert_eq!(marked.metadata.deletion_grace_period_seconds, Some(5));
    assert!(marked.metadata.deletion_timestamp.is_some());
    pods.delete(
        "bound",
        &DeleteParams {
            grace_period_seconds: Some(0),
            ..DeleteParams::default()
        },
    )
    .await
    .unwrap();
    assert!(pods.get_opt("bound").await.unwrap().is_none());
    pods.create(&PostParams::default(), &pod("inside", None))
        .await
        .unwrap();
    nss.delete("team", &DeleteParams::default()).await.unwrap();
    assert!(pods.get_opt("inside").await.unwrap().is_none());
    assert!(nss.get_opt("team").await.unwrap().is_none());
    let e = api_error(
        pods.create(&PostParams::default(), &pod("late", None))
            .await
            .unwrap_err(),
    );
    assert_eq!(e.code, 404);
}
