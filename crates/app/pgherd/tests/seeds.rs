//! The seed manifests: the valid ones validate; the ones CloudNativePG rejects are rejected by
//! pgherd for the same reasons, naming the same fields.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

mod common;
use common::{pgherd, repo_root, stdout};

fn seed_files(invalid: bool) -> Vec<String> {
    let dir = repo_root().join("tests/fixtures/seeds");
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .expect("fixtures exist")
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .filter(|p| p.to_string_lossy().ends_with(".invalid.yaml") == invalid)
        .map(|p| {
            p.strip_prefix(repo_root())
                .unwrap_or(&p)
                .display()
                .to_string()
        })
        .collect();
    files.sort();
    files
}

#[test]
fn valid_seed_manifests_validate() {
    let files = seed_files(false);
    assert!(
        files.len() >= 12,
        "expected the seed fixtures, found {files:?}"
    );
    let args: Vec<&str> = std::iter::once("validate")
        .chain(files.iter().map(String::as_str))
        .collect();
    let out = pgherd(&args);
    let text = stdout(&out);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("0 error(s)"), "{text}");
}

/// Each rejected seed, validated on its own, with the errors (path and message fragment) it
/// must produce: no more, no fewer.
fn assert_rejected(file: &str, expected: &[(&str, &str)]) {
    let out = pgherd(&["validate", file]);
    let text = stdout(&out);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{file} must be rejected:\n{text}"
    );
    let errors: Vec<&str> = text
        .lines()
        .filter(|l| l.contains(": ") && !l.contains("warning:") && l.starts_with(file))
        .collect();
    for (path, message) in expected {
        assert!(
            errors
                .iter()
                .any(|l| l.contains(&format!(": {path}: ")) && l.contains(message)),
            "{file}: expected an error at {path} containing {message:?}, got:\n{text}"
        );
    }
    assert_eq!(
        errors.len(),
        expected.len(),
        "{file}: unexpected errors:\n{text}"
    );
}

#[test]
fn restore_without_storage_is_rejected_like_cloudnativepg() {
    assert_rejected(
        "tests/fixtures/seeds/001-cluster-postgres-cluster-restored.invalid.yaml",
        &[("spec.storage.size", "size not configured")],
    );
}

#[test]
fn removed_parameter_is_rejected_before_postgres_refuses_it() {
    assert_rejected(
        "tests/fixtures/seeds/001-cluster-write-heavy-parameters.invalid.yaml",
        &[(
            "spec.postgresql.parameters.checkpoint_segments",
            "does not exist in PostgreSQL 16",
        )],
    );
}

#[test]
fn crontab_schedule_and_object_owner_reference_are_rejected() {
    assert_rejected(
        "tests/fixtures/seeds/003-scheduledbackup-weekly.invalid.yaml",
        &[
            ("spec.backupOwnerReference", "must be a string"),
            ("spec.schedule", "month"),
        ],
    );
    let text = stdout(&pgherd(&[
        "validate",
        "tests/fixtures/seeds/003-scheduledbackup-weekly.invalid.yaml",
    ]));
    assert!(
        text.contains("0 0 2 * * 0"),
        "the hint must show the 6-field line meant:\n{text}"
    );
}

#[test]
fn restores_with_invented_fields_are_rejected() {
    for file in [
        "tests/fixtures/seeds/003-cluster-restore-b2.invalid.yaml",
        "tests/fixtures/seeds/003-cluster-restore-minio.invalid.yaml",
    ] {
        assert_rejected(
            file,
            &[
                ("spec.bootstrap.recovery.externalClusterName", "unknown field"),
                ("spec.bootstrap.recovery.backupID", "unknown field (hint: did you mean spec.bootstrap.recovery.recoveryTarget.backupID?)"),
                ("spec.bootstrap.recovery.source", "external cluster \"externalCluster\" not found"),
                ("spec.storage.size", "size not configured"),
            ],
        );
    }
    assert_rejected(
        "tests/fixtures/seeds/003-cluster-pitr.invalid.yaml",
        &[
            (
                "spec.bootstrap.recovery.externalClusterName",
                "unknown field",
            ),
            (
                "spec.bootstrap.recovery.targetTime",
                "did you mean spec.bootstrap.recovery.recoveryTarget.targetTime",
            ),
            ("spec.bootstrap.recovery.source", "not found"),
            ("spec.storage.size", "size not configured"),
        ],
    );
}

#[test]
fn every_invalid_seed_has_a_test() {
    let covered = [
        "001-cluster-postgres-cluster-restored.invalid.yaml",
        "001-cluster-write-heavy-parameters.invalid.yaml",
        "003-scheduledbackup-weekly.invalid.yaml",
        "003-cluster-restore-b2.invalid.yaml",
        "003-cluster-restore-minio.invalid.yaml",
        "003-cluster-pitr.invalid.yaml",
    ];
    for file in seed_files(true) {
        assert!(
            covered.iter().any(|c| file.ends_with(c)),
            "{file} has no rejection test"
        );
    }
}

mod seed_runbooks;
mod seed_stacks;
