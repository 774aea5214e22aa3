//! Conformance tests driven by the installed `kubectl`: each follows one section of the
//! Kubernetes API reference / concepts documentation (cited per test) and checks kube-sim
//! behaves as a real API server would for it.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

mod common;
use common::{kubectl_available, sim};
use serde_json::Value;

fn json(s: &str) -> Value {
    serde_json::from_str(s).unwrap()
}

// API reference: "Discovery API" (legacy /api, /apis, resource lists) and "Version".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_discovers_version_resources_and_nodes() {
    if !kubectl_available() {
        return;
    }
    let s = sim().await;
    assert!(s.kubectl(&["version"]).contains("Server Version: v1.33"));
    let resources = s.kubectl(&["api-resources"]);
    for r in [
        "pods",
        "poddisruptionbudgets",
        "leases",
        "endpointslices",
        "clusterrolebindings",
        "customresourcedefinitions",
    ] {
        assert!(resources.contains(r), "{r} missing:\n{resources}");
    }
    s.kubectl(&["get", "nodes"]);
    assert!(s.kubectl(&["get", "ns"]).contains("kube-system"));
}

const DEPLOYMENT: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, labels: {app: web}}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: a
        image: nginx
        env: [{name: A, value: "1"}]
      - name: b
        image: busybox
"#;

// API reference: "Declarative Management of Kubernetes Objects Using Configuration Files"
// (client-side apply: last-applied-configuration + strategic merge patch, list merge by
// `name`, removed list items deleted with `$patch: delete`) and "Generation" (metadata.generation
// bumps on spec changes only).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_side_apply_merges_lists_by_key_and_bumps_generation() {
    if !kubectl_available() {
        return;
    }
    let s = sim().await;
    s.kubectl_in(&["apply", "-f", "-"], DEPLOYMENT);
    // Someone else adds an env var to container a: client-side apply must keep it.
    s.kubectl(&["patch", "deploy", "web", "--type=strategic", "-p",
        r#"{"spec":{"template":{"spec":{"containers":[{"name":"a","env":[{"name":"B","value":"2"}]}]}}}}"#]);
    let changed = DEPLOYMENT
        .replace("      - name: b\n        image: busybox\n", "")
        .replace("replicas: 2", "replicas: 3");
    let out = s.kubectl_in(&["apply", "-f", "-"], &changed);
    assert!(out.contains("configured"), "{out}");
    let d = json(&s.kubectl(&["get", "deploy", "web", "-o", "json"]));
    let containers = d["spec"]["template"]["spec"]["containers"]
        .as_array()
        .unwrap();
    assert_eq!(containers.len(), 1, "container b removed: {containers:?}");
    let env: Vec<&str> = containers[0]["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(env, ["A", "B"]);
    assert_eq!(d["spec"]["replicas"], 3);
    assert_eq!(d["metadata"]["generation"], 3);
    // Labels and annotations are metadata: no generation bump.
    s.kubectl(&["label", "deploy", "web", "tier=front"]);
    s.kubectl(&["annotate", "deploy", "web", "note=hello"]);
    let d = json(&s.kubectl(&["get", "deploy", "-l", "tier in (front,back)", "-o", "json"]));
    assert_eq!(d["items"][0]["metadata"]["annotations"]["note"], "hello");
    assert_eq!(d["items"][0]["metadata"]["generation"], 3);
    assert!(s.kubectl(&["describe", "deploy", "web"]).contains("web"));
    s.kubectl(&["delete", "deploy", "web"]);
    assert!(s
        .kubectl_fails(&["get", "deploy", "web"], None)
        .contains("NotFound"));
}

// API reference: "Server-Side Apply" — field management and conflicts: a second manager
// setting an owned field to another value conflicts (409) until it forces.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_side_apply_conflicts_between_managers_until_forced() {
    if !kubectl_available() {
        return;
    }
    let s = sim().await;
    let cm = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata: {k: one, mine: x}\n";
    s.kubectl_in(
        &["apply", "--server-side", "--field-manager=alice", "-f", "-"],
        cm,
    );
    let other = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata: {k: two}\n";
    let err = s.kubectl_fails(
        &["apply", "--server-side", "--field-manager=bob", "-f", "-"],
        Some(other),
    );
    assert!(
        err.contains("conflict") && err.contains("alice") && err.contains(".data.k"),
        "{err}"
    );
    s.kubectl_in(
        &[
            "apply",
            "--server-side",
            "--field-manager=bob",
            "--force-conflicts",
            "-f",
            "-",
        ],
        other,
    );
    // alice stops sending `mine`: it is removed; `k` is bob's now and stays.
    s.kubectl_in(
        &["apply", "--server-side", "--field-manager=alice", "-f", "-"],
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata: {}\n",
    );
    let c = json(&s.kubectl(&["get", "cm", "c", "-o", "json", "--show-managed-fields"]));
    assert_eq!(c["data"], serde_json::json!({"k": "two"}));
    let managers: Vec<&str> = c["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["manager"].as_str().unwrap())
        .collect();
    assert!(managers.contains(&"bob"), "{managers:?}");
}

// API reference: "Finalizers" and "DeleteOptions": an object with finalizers gets a
// deletionTimestamp and stays until its finalizers are removed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finalizer_holds_deletion_until_removed() {
    if !kubectl_available() {
        return;
    }
    let s = sim().await;
    s.kubectl_in(
        &["create", "-f", "-"],
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: held, finalizers: [example.com/hold]}\n",
    );
    s.kubectl(&["delete", "cm", "held", "--wait=false"]);
    let c = json(&s.kubectl(&["get", "cm", "held", "-o", "json"]));
    assert!(c["metadata"]["deletionTimestamp"].is_string(), "{c}");
    // No new finalizers on an object being deleted.
    s.kubectl_fails(
        &[
            "patch",
            "cm",
            "held",
            "--type=merge",
            "-p",
            r#"{"metadata":{"finalizers":["example.com/hold","x/y"]}}"#,
        ],
        None,
    );
    s.kubectl(&[
        "patch",
        "cm",
        "held",
        "--type=json",
        "-p",
        r#"[{"op":"remove","path":"/metadata/finalizers"}]"#,
    ]);
    s.kubectl(&["wait", "--for=delete", "cm/held", "--timeout=5s"]);
}

fn owned_cm(name: &str, owner_uid: &str) -> String {
    format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n  ownerReferences:\n  - {{apiVersion: v1, kind: ConfigMap, name: owner, uid: {owner_uid}, blockOwnerDeletion: true}}\n")
}

// API reference: "Garbage Collection" — owners and dependents, background, foreground and
// orphan propagation policies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn owner_deletion_collects_dependents_per_propagation_policy() {
    if !kubectl_available() {
        return;
    }
    let s = sim().await;
    for policy in ["background", "foreground", "orphan"] {
        s.kubectl_in(
            &["create", "-f", "-"],
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: owner}\n",
        );
        let uid = s.kubectl(&["get", "cm", "owner", "-o", "jsonpath={.metadata.uid}"]);
        s.kubectl_in(&["create", "-f", "-"], &owned_cm("dep", &uid));
        s.kubectl(&["delete", "cm", "owner", &format!("--cascade={policy}")]);
        let left = s.kubectl_as(&s.kubeconfig(), &["get", "cm", "dep", "-o", "json"], None);
        if policy == "orphan" {
            let d = json(&String::from_utf8_lossy(&left.stdout));
            assert!(d["metadata"]["ownerReferences"].is_null(), "orphaned: {d}");
            s.kubectl(&["delete", "cm", "dep"]);
        } else {
            assert!(!left.status.success(), "{policy}: dependent collected");
        }
        s.kubectl(&["wait", "--for=delete", "cm/owner", "--timeout=5s"]);
    }
}

// API reference: "CustomResourceDefinition v1" / "Extend the Kubernetes API with
// CustomResourceDefinitions" (validation with structural schemas, printer columns,
// status subresource) and "Field validation" (`fieldValidation=Strict` rejects unknown fields).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crds_serve_custom_resources_with_schema_validation_and_columns() {
    if !kubectl_available() {
        return;
    }
    let s = sim().await;
    let crds = s.repo_root().join("deploy/crds");
    s.kubectl(&["apply", "--server-side", "-f", crds.to_str().unwrap()]);
    s.kubectl(&[
        "wait",
        "--for",
        "condition=established",
        "crd/clusters.postgresql.cnpg.io",
        "--timeout=5s",
    ]);
    assert!(s
        .kubectl(&["api-resources", "--api-group=postgresql.cnpg.io"])
        .contains("clusters"));
    let cluster = "apiVersion: postgresql.cnpg.io/v1\nkind: Cluster\nmetadata: {name: pg}\nspec:\n  instances: 3\n  storage: {size: 1Gi}\n";
    s.kubectl_in(&["apply", "-f", "-"], cluster);
    let table = s.kubectl(&["get", "clusters"]);
    assert!(
        table.contains("INSTANCES") && table.contains("PRIMARY") && table.contains("pg"),
        "{table}"
    );
    let bad = "apiVersion: postgresql.cnpg.io/v1\nkind: Cluster\nmetadata: {name: bad}\nspec:\n  instances: three\n  storage: {size: 1Gi}\n";
    let err = s.kubectl_fails(&["apply", "-f", "-"], Some(bad));
    assert!(
        err.contains("is invalid") && err.contains("spec.instances"),
        "{err}"
    );
    let unknown = cluster
        .replace("instances: 3", "instances: 3\n  bogus: 1")
        .replace("name: pg", "name: pg2");
    let err = s.kubectl_fails(&["apply", "-f", "-"], Some(&unknown));
    assert!(err.contains("unknown field \"spec.bogus\""), "{err}");
    // Status is a subresource: a spec write ignores status, a status write ignores spec.
    s.kubectl(&[
        "patch",
        "cluster",
        "pg",
        "--type=merge",
        "-p",
        r#"{"status":{"phase":"x"}}"#,
    ]);
    s.kubectl(&[
        "patch",
        "cluster",
        "pg",
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"status":{"phase":"Cluster in healthy state"},"spec":{"instances":9}}"#,
    ]);
    let c = json(&s.kubectl(&["get", "cluster", "pg", "-o", "json"]));
    assert_eq!(c["status"]["phase"], "Cluster in healthy state");
    assert_eq!(c["spec"]["instances"], 3);
    assert_eq!(c["metadata"]["generation"], 1);
    s.kubectl(&["delete", "crd", "clusters.postgresql.cnpg.io"]);
    s.kubectl_fails(&["get", "clusters.postgresql.cnpg.io"], None);
}

// API reference: "Using RBAC Authorization" and "Authenticating" (ServiceAccount bearer
// tokens): a token without a binding is refused with 403; a RoleBinding grants exactly its rules.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rbac_refuses_a_token_without_the_needed_role() {
    if !kubectl_available() {
        return;
    }
    let s = sim().await;
    s.kubectl_in(
        &["create", "-f", "-"],
        "apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: bot}\n",
    );
    let token = s
        .running
        .server
        .auth
        .service_account_token("default", "bot");
    let kc = s.dir.path().join("bot.kubeconfig");
    std::fs::write(
        &kc,
        s.running.server.kubeconfig_for("bot", &token, "default"),
    )
    .unwrap();
    let out = s.kubectl_as(&kc, &["get", "configmaps"], None);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success()
            && err.contains("Forbidden")
            && err.contains("system:serviceaccount:default:bot"),
        "{err}"
    );
    s.kubectl_in(&["apply", "-f", "-"], RBAC);
    let out = s.kubectl_as(&kc, &["get", "configmaps"], None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = s.kubectl_as(
        &kc,
        &["create", "-f", "-"],
        Some("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n"),
    );
    assert!(!out.status.success(), "create is not granted");
    let out = s.kubectl_as(&kc, &["get", "configmaps", "-n", "kube-system"], None);
    assert!(
        !out.status.success(),
        "the RoleBinding grants only its namespace"
    );
    // `kubectl auth can-i` (SelfSubjectAccessReview) agrees.
    let can = |args: &[&str]| {
        String::from_utf8_lossy(&s.kubectl_as(&kc, args, None).stdout)
            .trim()
            .to_string()
    };
    assert_eq!(can(&["auth", "can-i", "list", "configmaps"]), "yes");
    assert_eq!(can(&["auth", "can-i", "delete", "configmaps"]), "no");
    // A rule limited by resourceNames allows listing that one name (a `metadata.name` field
    // selector, as watchers of one object send), not the whole list.
    let out = s.kubectl_as(
        &kc,
        &["get", "secrets", "--field-selector", "metadata.name=only"],
        None,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = s.kubectl_as(&kc, &["get", "secrets"], None);
    assert!(!out.status.success(), "resourceNames limit the list");
    // The audit says which rule served the bot, so a test can find rules never used.
    let used: Vec<_> = s
        .running
        .server
        .authorization_log()
        .into_iter()
        .filter(|d| d.user == "system:serviceaccount:default:bot")
        .filter_map(|d| d.grant)
        .collect();
    assert!(
        used.contains(&pgherd_kube_sim::rbac::Grant::Rule {
            role: "Role/default/cm-reader".into(),
            index: 0
        }),
        "{used:?}"
    );
}

const RBAC: &str = r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: cm-reader}
rules:
- apiGroups: [""]
  resources: [configmaps]
  verbs: [get, list]
- apiGroups: [""]
  resources: [secrets]
  resourceNames: [only]
  verbs: [get, list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: bot-reads}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: cm-reader}
subjects:
- {kind: ServiceAccount, name: bot, namespace: default}
"#;

// API reference: "Imperative Management of Kubernetes Objects" — kubectl's `create <kind>`
// generators send protobuf: kube-sim reads it for Secrets, ConfigMaps, Namespaces,
// ServiceAccounts and RBAC objects, and refuses other kinds with a clear message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imperative_create_sends_protobuf_for_common_kinds() {
    if !kubectl_available() {
        return;
    }
    let s = sim().await;
    s.kubectl(&["create", "namespace", "team"]);
    s.kubectl(&[
        "create",
        "secret",
        "generic",
        "creds",
        "-n",
        "team",
        "--from-literal=ACCESS_KEY_ID=abc",
    ]);
    let secret = json(&s.kubectl(&["get", "secret", "creds", "-n", "team", "-o", "json"]));
    assert_eq!(secret["data"]["ACCESS_KEY_ID"], "YWJj");
    assert_eq!(secret["type"], "Opaque");
    s.kubectl(&["create", "configmap", "c", "--from-literal=a=b"]);
    assert_eq!(
        s.kubectl(&["get", "cm", "c", "-o", "jsonpath={.data.a}"]),
        "b"
    );
    s.kubectl(&["create", "serviceaccount", "bot", "-n", "team"]);
    s.kubectl(&[
        "create",
        "role",
        "r",
        "-n",
        "team",
        "--verb=get,list",
        "--resource=pods",
    ]);
    s.kubectl(&[
        "create",
        "rolebinding",
        "rb",
        "-n",
        "team",
        "--role=r",
        "--serviceaccount=team:bot",
    ]);
    let rb = json(&s.kubectl(&["get", "rolebinding", "rb", "-n", "team", "-o", "json"]));
    assert_eq!(rb["roleRef"]["name"], "r");
    assert_eq!(rb["subjects"][0]["name"], "bot");
    // TokenRequest: a token for the ServiceAccount that RBAC then judges.
    let token = s.kubectl(&["create", "token", "bot", "-n", "team"]);
    let kc = s.dir.path().join("bot.kubeconfig");
    std::fs::write(
        &kc,
        s.running.server.kubeconfig_for("bot", token.trim(), "team"),
    )
    .unwrap();
    assert!(s.kubectl_as(&kc, &["get", "pods"], None).status.success());
    assert!(!s
        .kubectl_as(&kc, &["get", "secrets"], None)
        .status
        .success());
    let err = s.kubectl_fails(&["create", "deployment", "d", "--image=x"], None);
    assert!(err.contains("protobuf"), "{err}");
}
