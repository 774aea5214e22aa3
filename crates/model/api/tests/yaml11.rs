//! Manifests read as Kubernetes reads them: YAML 1.1 booleans (`on`/`off`/`yes`/`no`/`y`/`n`)
//! where the schema wants a boolean, and rejected where it wants a string.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

use pgherd_api::manifest::{load, validate_all, Manifest, Object};

fn validated(text: &str) -> Vec<Manifest> {
    let mut docs = load(text);
    let mut refs: Vec<&mut Manifest> = docs.iter_mut().collect();
    validate_all(&mut refs);
    docs
}

const CLUSTER: &str = "apiVersion: postgresql.cnpg.io/v1
kind: Cluster
metadata:
  name: drain
spec:
  instances: 3
  storage:
    size: 1Gi
";

#[test]
fn unquoted_off_is_false_where_a_boolean_is_wanted() {
    // CloudNativePG's drain-node fixtures write it this way.
    for (word, expected) in [
        ("off", false),
        ("Off", false),
        ("no", false),
        ("on", true),
        ("YES", true),
        ("y", true),
    ] {
        let text = format!(
            "{CLUSTER}  nodeMaintenanceWindow:\n    inProgress: {word}\n    reusePVC: {word}\n"
        );
        let docs = validated(&text);
        assert!(!docs[0].has_errors(), "{word}: {:?}", docs[0].diagnostics);
        let Some(Object::Cluster(c)) = &docs[0].object else {
            panic!("a cluster")
        };
        let window = c.spec.node_maintenance_window.as_ref().expect("window");
        assert_eq!(window.reuse_pvc, Some(expected), "{word}");
        assert_eq!(window.in_progress, Some(expected), "{word}");
    }
}

#[test]
fn quoted_off_is_a_string_and_refused_for_a_boolean() {
    let docs = validated(&format!(
        "{CLUSTER}  nodeMaintenanceWindow:\n    reusePVC: \"off\"\n"
    ));
    let error = docs[0]
        .diagnostics
        .iter()
        .find(|d| d.path == "spec.nodeMaintenanceWindow.reusePVC")
        .expect("an error on reusePVC");
    assert!(error.is_error());
    assert!(
        error
            .hint
            .as_deref()
            .unwrap_or("")
            .contains("remove the quotes"),
        "{error:?}"
    );
}

#[test]
fn unquoted_on_under_parameters_is_refused_with_a_hint_to_quote_it() {
    let text = format!("{CLUSTER}  postgresql:\n    parameters:\n      log_checkpoints: on\n      log_connections: \"on\"\n      wal_compression: 'off'\n");
    let docs = validated(&text);
    let errors: Vec<_> = docs[0]
        .diagnostics
        .iter()
        .filter(|d| d.is_error())
        .collect();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].path, "spec.postgresql.parameters.log_checkpoints");
    assert!(errors[0].message.contains("must be a string"), "{errors:?}");
    let hint = errors[0].hint.as_deref().unwrap_or("");
    assert!(
        hint.contains("quotes") && hint.contains("YAML 1.1"),
        "{hint}"
    );
}

#[test]
fn unquoted_booleans_in_labels_are_refused_too() {
    let text = CLUSTER.replace(
        "  name: drain\n",
        "  name: drain\n  labels:\n    enabled: yes\n",
    );
    let docs = validated(&text);
    assert!(
        docs[0]
            .diagnostics
            .iter()
            .any(|d| d.is_error() && d.path == "metadata.labels.enabled"),
        "{:?}",
        docs[0].diagnostics
    );
}

#[test]
fn yaml11_numbers_as_kubernetes_reads_them() {
    // `log_file_mode: 0600` is the octal number 384 to Kubernetes: refused under parameters.
    let text = format!("{CLUSTER}  postgresql:\n    parameters:\n      log_file_mode: 0600\n      max_connections: \"0100\"\n");
    let docs = validated(&text);
    let errors: Vec<_> = docs[0]
        .diagnostics
        .iter()
        .filter(|d| d.is_error())
        .collect();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].path, "spec.postgresql.parameters.log_file_mode");
    assert!(errors[0].message.contains("the number 384"), "{errors:?}");
    assert!(
        errors[0]
            .hint
            .as_deref()
            .unwrap_or("")
            .contains("quotes as written"),
        "{errors:?}"
    );
    // And `instances: 03` is 3.
    let docs = validated(&CLUSTER.replace("instances: 3", "instances: 03"));
    assert!(!docs[0].has_errors(), "{:?}", docs[0].diagnostics);
    let Some(Object::Cluster(c)) = &docs[0].object else {
        panic!("a cluster")
    };
    assert_eq!(c.spec.instances, Some(3));
}
