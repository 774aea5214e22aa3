//! `pgherd validate` and `pgherd crds` as a user runs them.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

mod common;
use common::{pgherd, repo_root, stdout};
use std::io::Write;
use std::process::{Command, Stdio};

fn validate_stdin(text: &str) -> (Option<i32>, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_pgherd"))
        .args(["validate", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("pgherd runs");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("pgherd exits");
    (out.status.code(), stdout(&out))
}

#[test]
fn three_mistakes_three_errors_each_with_its_path() {
    let manifest = r#"
apiVersion: postgresql.cnpg.io/v1
kind: Cluster
metadata:
  name: typo
spec:
  instaces: 3
  instances: -1
  storage:
    size: 1Gi
---
apiVersion: postgresql.cnpg.io/v1
kind: ScheduledBackup
metadata:
  name: nightly
spec:
  schedule: "0 2 * *"
  cluster:
    name: typo
"#;
    let (code, text) = validate_stdin(manifest);
    assert_eq!(code, Some(1), "{text}");
    let errors: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("<stdin>:") && !l.contains("warning:"))
        .collect();
    assert_eq!(errors.len(), 3, "{text}");
    assert!(errors[0].starts_with("<stdin>:1: Cluster/typo: spec.instaces: unknown field (hint: did you mean spec.instances?)"), "{text}");
    assert!(
        errors
            .iter()
            .any(|l| l.starts_with("<stdin>:1: Cluster/typo: spec.instances: must be >= 1")),
        "{text}"
    );
    assert!(
        errors
            .iter()
            .any(|l| l.starts_with("<stdin>:2: ScheduledBackup/nightly: spec.schedule:")),
        "{text}"
    );
}

#[test]
fn valid_examples_exit_zero() {
    let out = pgherd(&["validate", "examples/"]);
    assert!(out.status.success(), "{}", stdout(&out));
}

#[test]
fn unreadable_and_garbage_input_is_an_error_not_a_panic() {
    let out = pgherd(&["validate", "no/such/file.yaml"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).contains("no/such/file.yaml: cannot read"));
    for garbage in [
        "{{{",
        "- a\n- b",
        "42",
        "apiVersion: [",
        "kind: Cluster\n",
        "\u{0}\u{1}",
    ] {
        let (code, text) = validate_stdin(garbage);
        assert_eq!(code, Some(1), "{garbage:?}: {text}");
    }
}

#[test]
fn foreign_kinds_are_skipped_with_a_note() {
    let (code, text) =
        validate_stdin("apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: x\n");
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.contains("warning: apps/v1 Deployment is not a pgherd kind; skipped"),
        "{text}"
    );
}

#[test]
fn misspelled_kind_gets_a_suggestion() {
    let (code, text) =
        validate_stdin("apiVersion: postgresql.cnpg.io/v1\nkind: Clustr\nmetadata:\n  name: x\n");
    assert_eq!(code, Some(1));
    assert!(text.contains("did you mean Cluster?"), "{text}");
}

#[test]
fn crds_output_matches_the_committed_file() {
    let out = pgherd(&["crds"]);
    assert!(out.status.success());
    let committed = std::fs::read_to_string(repo_root().join("deploy/crds/crds.yaml"))
        .expect("deploy/crds/crds.yaml is committed");
    assert!(
        stdout(&out) == committed,
        "deploy/crds/crds.yaml is out of date: run `cargo run -q -p pgherd -- crds > deploy/crds/crds.yaml`"
    );
}

#[test]
fn release_manifest_matches_the_committed_file() {
    let out = pgherd(&["manifests"]);
    assert!(out.status.success());
    let committed = std::fs::read_to_string(repo_root().join("deploy/pgherd.yaml"))
        .expect("deploy/pgherd.yaml is committed");
    assert!(
        stdout(&out) == committed,
        "deploy/pgherd.yaml is out of date: run `cargo run -q -p pgherd -- manifests > deploy/pgherd.yaml`"
    );
    // CloudNativePG's names, which the seeds' runbooks use.
    for name in [
        "name: cnpg-system",
        "name: cnpg-controller-manager",
        "app.kubernetes.io/name: cloudnative-pg",
    ] {
        assert!(committed.contains(name), "{name} missing");
    }
}

#[test]
fn a_bad_label_or_secret_value_does_not_hide_other_errors() {
    let manifest = "apiVersion: v1\nkind: Secret\nmetadata:\n  name: s\ndata:\n  k: \"%%%\"\n---\napiVersion: postgresql.cnpg.io/v1\nkind: Cluster\nmetadata:\n  name: c\n  labels:\n    a: 1\nspec:\n  storage:\n    size: 1Gi\n  postgresql:\n    parameters:\n      max_connections: 200\n      port: \"5433\"\n    pg_hba:\n      - host all all 10.0.0.0/33 md5\n";
    let (code, text) = validate_stdin(manifest);
    assert_eq!(code, Some(1));
    for expected in [
        "<stdin>:1: Secret/s: data.k: not valid base64",
        "<stdin>:2: Cluster/c: metadata.labels.a: must be a string",
        "<stdin>:2: Cluster/c: spec.postgresql.parameters.max_connections: must be a string, got the number 200 (hint: put the value in quotes as written (unquoted, it is the number 200))",
        "<stdin>:2: Cluster/c: spec.postgresql.parameters.port: this parameter is set by the operator",
        "<stdin>:2: Cluster/c: spec.postgresql.pg_hba[0]: invalid pg_hba line",
    ] {
        assert!(text.lines().any(|l| l.starts_with(expected)), "missing {expected:?} in:\n{text}");
    }
}

#[test]
fn an_unknown_wal_archiver_plugin_is_an_error_not_wal_archived_to_nowhere() {
    let (code, out) = validate_stdin(
        "apiVersion: postgresql.cnpg.io/v1
kind: Cluster
metadata:
  name: c
spec:
  instances: 1
  storage:
    size: 1Gi
  plugins:
    - name: barman-cloud.cnpg.io
      isWALArchiver: true
      parameters:
        barmanObjectName: store
",
    );
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("spec.plugins[0].name: unknown plugin: no WAL would be archived"),
        "{out}"
    );
    assert!(out.contains("barman-cloud.cloudnative-pg.io"), "{out}");
}

#[test]
fn bootstrap_copies_the_manager_where_the_postgres_container_runs_it() {
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("manager");
    std::fs::write(&dest, "an older manager").unwrap();
    let out = common::pgherd(&["bootstrap", dest.to_str().unwrap()]);
    assert!(out.status.success(), "{out:?}");
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&dest).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o755);
    let copied = std::process::Command::new(&dest)
        .arg("--version")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&copied.stdout).starts_with("pgherd "));
}
