#![allow(clippy::unwrap_used)]
use super::*;
use base64::Engine as _;
use serde_json::json;

fn review(operation: &str, kind: &str, object: Value) -> Vec<u8> {
    review_update(operation, kind, object, Value::Null)
}

fn review_update(operation: &str, kind: &str, object: Value, old: Value) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "6f1c",
            "kind": {"group": "postgresql.cnpg.io", "version": "v1", "kind": kind},
            "resource": {"group": "postgresql.cnpg.io", "version": "v1", "resource": "clusters"},
            "name": object["metadata"]["name"],
            "namespace": "default",
            "operation": operation,
            "userInfo": {"username": "admin"},
            "object": object,
            "oldObject": old,
            "dryRun": false,
        }
    }))
    .unwrap()
}

fn response(answer: &Answer) -> Value {
    assert_eq!(
        answer.status,
        200,
        "{}",
        String::from_utf8_lossy(&answer.body)
    );
    let v: Value = serde_json::from_slice(&answer.body).unwrap();
    assert_eq!(v["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(v["kind"], "AdmissionReview");
    assert_eq!(v["response"]["uid"], "6f1c");
    v["response"].clone()
}

fn cluster(spec: Value) -> Value {
    json!({"apiVersion": "postgresql.cnpg.io/v1", "kind": "Cluster",
           "metadata": {"name": "pg", "namespace": "default", "uid": "u1", "resourceVersion": "7", "creationTimestamp": "2025-01-01T00:00:00Z"},
           "spec": spec})
}

#[test]
fn mutate_answers_the_patch_to_the_defaulted_object() {
    let object = cluster(json!({"instances": 3, "storage": {"size": "1Gi"}}));
    let answer = handle(
        "/mutate-postgresql-cnpg-io-v1-cluster",
        &review("CREATE", "Cluster", object.clone()),
    );
    let r = response(&answer);
    assert_eq!(r["allowed"], true);
    assert_eq!(r["patchType"], "JSONPatch");
    let patch: json_patch::Patch = serde_json::from_slice(
        &base64::engine::general_purpose::STANDARD
            .decode(r["patch"].as_str().unwrap())
            .unwrap(),
    )
    .unwrap();
    let mut patched = object.clone();
    json_patch::patch(&mut patched, &patch).unwrap();
    assert_eq!(
        patched["spec"]["imageName"],
        pgherd_api::defaults::DEFAULT_IMAGE_NAME
    );
    assert_eq!(patched["spec"]["instances"], 3, "what was set stays");
    assert_eq!(
        patched["metadata"], object["metadata"],
        "metadata untouched"
    );
    // Defaulting twice changes nothing more.
    let again = handle(
        "/mutate-postgresql-cnpg-io-v1-cluster",
        &review("UPDATE", "Cluster", patched),
    );
    assert!(response(&again).get("patch").is_none());
}

#[test]
fn what_the_operator_does_not_run_is_refused_at_admission() {
    let object = cluster(json!({"instances": 1, "storage": {"size": "1Gi"},
        "backup": {"volumeSnapshot": {"className": "csi-snapshots"}}}));
    let answer = handle(
        "/validate-postgresql-cnpg-io-v1-cluster",
        &review("CREATE", "Cluster", object),
    );
    let r = response(&answer);
    assert_eq!(r["allowed"], false, "{r}");
    let causes = r["status"]["details"]["causes"].to_string();
    assert!(
        causes.contains("spec.backup.volumeSnapshot")
            && causes.contains("not supported by pgherd's Kubernetes operator yet"),
        "{causes}"
    );
}

#[test]
fn a_primary_cluster_cannot_become_a_replica_cluster_but_a_replica_cluster_is_promoted() {
    let primary = cluster(json!({"instances": 1, "storage": {"size": "1Gi"},
        "bootstrap": {"pg_basebackup": {"source": "origin"}},
        "externalClusters": [{"name": "origin", "connectionParameters": {"host": "h"}}]}));
    let mut replica = primary.clone();
    replica["spec"]["replica"] = json!({"enabled": true, "source": "origin"});
    let demote = handle(
        "/validate-postgresql-cnpg-io-v1-cluster",
        &review_update("UPDATE", "Cluster", replica.clone(), primary.clone()),
    );
    let r = response(&demote);
    assert_eq!(r["allowed"], false, "{r}");
    assert!(
        r["status"]["details"]["causes"]
            .to_string()
            .contains("spec.replica.enabled"),
        "{r}"
    );
    // The distributed topology's demotion (`primary` naming the other cluster) is allowed,
    // `self` given or defaulting to the cluster's name, as the operator then demotes it.
    for replica_section in [
        json!({"self": "pg", "primary": "origin", "source": "origin"}),
        json!({"primary": "origin", "source": "origin"}),
    ] {
        let mut demoted = primary.clone();
        demoted["spec"]["replica"] = replica_section;
        demoted["metadata"]["resourceVersion"] = json!("7");
        let typed: Cluster = serde_json::from_value(demoted.clone()).unwrap();
        assert!(pgherd_controller::external::demoted_by_topology(&typed));
        let answer = handle(
            "/validate-postgresql-cnpg-io-v1-cluster",
            &review_update("UPDATE", "Cluster", demoted, primary.clone()),
        );
        assert_eq!(response(&answer)["allowed"], true, "{}", response(&answer));
    }
    for (new, old) in [(replica.clone(), replica.clone()), (primary, replica)] {
        let answer = handle(
            "/validate-postgresql-cnpg-io-v1-cluster",
            &review_update("UPDATE", "Cluster", new, old),
        );
        assert_eq!(response(&answer)["allowed"], true, "{}", response(&answer));
    }
}

#[test]
fn an_update_to_an_older_major_or_smaller_storage_is_refused() {
    let mut old = cluster(
        json!({"instances": 3, "imageName": "ghcr.io/cloudnative-pg/postgresql:16.4", "storage": {"size": "2Gi"}}),
    );
    old["status"] = json!({"pgDataImageInfo": {"image": "ghcr.io/cloudnative-pg/postgresql:16.4", "majorVersion": 16}});
    let new = cluster(
        json!({"instances": 3, "imageName": "ghcr.io/cloudnative-pg/postgresql:15.14", "storage": {"size": "1Gi"}}),
    );
    let answer = handle(
        "/validate-postgresql-cnpg-io-v1-cluster",
        &review_update("UPDATE", "Cluster", new, old.clone()),
    );
    let r = response(&answer);
    assert_eq!(r["allowed"], false, "{r}");
    let causes = r["status"]["details"]["causes"].to_string();
    assert!(
        causes.contains("spec.imageName") && causes.contains("can't downgrade from major 16 to 15"),
        "{causes}"
    );
    assert!(
        causes.contains("spec.storage.size")
            && causes.contains("can't shrink existing storage from 2Gi to 1Gi"),
        "{causes}"
    );
    // A tablespace removed, or its volume shrunk: refused.
    let mut with = cluster(json!({"instances": 1, "storage": {"size": "1Gi"},
        "tablespaces": [{"name": "a", "storage": {"size": "2Gi"}}, {"name": "b", "storage": {"size": "1Gi"}}]}));
    let without = cluster(json!({"instances": 1, "storage": {"size": "1Gi"},
        "tablespaces": [{"name": "a", "storage": {"size": "1Gi"}}]}));
    let answer = handle(
        "/validate-postgresql-cnpg-io-v1-cluster",
        &review_update("UPDATE", "Cluster", without, with.clone()),
    );
    let causes = response(&answer)["status"]["details"]["causes"].to_string();
    assert!(
        causes.contains("tablespace \\\"b\\\" can't be removed"),
        "{causes}"
    );
    assert!(
        causes.contains("spec.tablespaces[0].storage.size") && causes.contains("from 2Gi to 1Gi"),
        "{causes}"
    );
    // Added, or grown: fine.
    let more = cluster(json!({"instances": 1, "storage": {"size": "1Gi"},
        "tablespaces": [{"name": "b", "storage": {"size": "1Gi"}}, {"name": "a", "storage": {"size": "3Gi"}},
                        {"name": "c", "storage": {"size": "1Gi"}}]}));
    with["status"] = json!({});
    let answer = handle(
        "/validate-postgresql-cnpg-io-v1-cluster",
        &review_update("UPDATE", "Cluster", more, with),
    );
    assert_eq!(response(&answer)["allowed"], true);
    // A new minor and more storage pass.
    let fine = cluster(
        json!({"instances": 3, "imageName": "ghcr.io/cloudnative-pg/postgresql:16.6", "storage": {"size": "3Gi"}}),
    );
    let answer = handle(
        "/validate-postgresql-cnpg-io-v1-cluster",
        &review_update("UPDATE", "Cluster", fine, old),
    );
    assert_eq!(response(&answer)["allowed"], true);
}

#[test]
fn validate_refuses_with_every_error_and_its_field() {
    let object = cluster(
        json!({"instances": 0, "storage": {"size": "lots"}, "minSyncReplicas": 1, "maxSyncReplicas": 0}),
    );
    let answer = handle(
        "/validate-postgresql-cnpg-io-v1-cluster",
        &review("CREATE", "Cluster", object.clone()),
    );
    let r = response(&answer);
    assert_eq!(r["allowed"], false);
    assert_eq!(r["status"]["code"], 422);
    assert_eq!(r["status"]["reason"], "Invalid");
    let message = r["status"]["message"].as_str().unwrap();
    assert!(
        message.starts_with("Cluster.postgresql.cnpg.io \"pg\" is invalid: "),
        "{message}"
    );
    let expected: Vec<String> = diagnostics(&object)
        .iter()
        .filter(|d| d.is_error())
        .map(|d| d.to_string())
        .collect();
    assert!(expected.len() >= 2, "{expected:?}");
    for e in &expected {
        assert!(message.contains(e.as_str()), "{message} lacks {e}");
    }
    let causes = r["status"]["details"]["causes"].as_array().unwrap();
    assert_eq!(causes.len(), expected.len());
    assert!(
        causes.iter().any(|c| c["field"] == "spec.instances"),
        "{causes:?}"
    );
}

#[test]
fn warnings_are_returned_and_unresolvable_references_dropped() {
    let object = cluster(json!({"instances": 1, "storage": {"size": "1Gi"},
        "bootstrap": {"initdb": {"database": "app", "owner": "app", "secret": {"name": "app-credentials"}}}}));
    let found = diagnostics(&object);
    assert!(
        found
            .iter()
            .all(|d| !d.message.contains("not among the documents")),
        "{found:?}"
    );
    let r = response(&handle(
        "/validate-postgresql-cnpg-io-v1-cluster",
        &review("CREATE", "Cluster", object),
    ));
    assert_eq!(r["allowed"], true);
}

#[test]
fn objects_being_deleted_and_deletes_are_allowed() {
    let mut object = cluster(json!({"instances": 0}));
    let r = response(&handle(
        "/validate-postgresql-cnpg-io-v1-cluster",
        &review("DELETE", "Cluster", object.clone()),
    ));
    assert_eq!(r["allowed"], true);
    object["metadata"]["deletionTimestamp"] = json!("2025-01-01T00:00:00Z");
    let r = response(&handle(
        "/validate-postgresql-cnpg-io-v1-cluster",
        &review("UPDATE", "Cluster", object),
    ));
    assert_eq!(r["allowed"], true);
}

#[test]
fn bad_input_gets_a_clear_error() {
    let a = handle("/validate-postgresql-cnpg-io-v1-cluster", b"{not json");
    assert_eq!(a.status, 400);
    assert!(String::from_utf8_lossy(&a.body).contains("not JSON"));
    let a = handle(
        "/validate-postgresql-cnpg-io-v1-cluster",
        br#"{"apiVersion":"admission.k8s.io/v1beta1","kind":"AdmissionReview"}"#,
    );
    assert_eq!(a.status, 400);
    assert!(String::from_utf8_lossy(&a.body).contains("admissionReviewVersions"));
    let a = handle(
        "/validate-postgresql-cnpg-io-v1-cluster",
        br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#,
    );
    assert_eq!(a.status, 400);
    let a = handle("/validate-apps-v1-deployment", b"{}");
    assert_eq!(a.status, 404);
    assert!(String::from_utf8_lossy(&a.body).contains("/validate-postgresql-cnpg-io-v1-pooler"));
    // A review of another kind than the path's.
    let r = response(&handle(
        "/validate-postgresql-cnpg-io-v1-pooler",
        &review("CREATE", "Cluster", cluster(json!({}))),
    ));
    assert_eq!(r["allowed"], false);
    assert!(r["status"]["message"]
        .as_str()
        .unwrap()
        .contains("serves Pooler"));
    // No object.
    let mut body: Value =
        serde_json::from_slice(&review("CREATE", "Cluster", cluster(json!({})))).unwrap();
    body["request"]["object"] = Value::Null;
    let r = response(&handle(
        "/validate-postgresql-cnpg-io-v1-cluster",
        &serde_json::to_vec(&body).unwrap(),
    ));
    assert_eq!(r["allowed"], false);
    // An object the model cannot decode: no patch, never a panic.
    let r = response(&handle(
        "/mutate-postgresql-cnpg-io-v1-cluster",
        &review("CREATE", "Cluster", cluster(json!({"instances": "three"}))),
    ));
    assert_eq!(r["allowed"], true);
    assert!(r.get("patch").is_none());
}
