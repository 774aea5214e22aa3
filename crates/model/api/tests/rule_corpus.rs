//! CloudNativePG's webhook rules, one minimal manifest each (`tests/fixtures/validation/`):
//! every document is validated on its own, as the webhook sees one object, and is accepted or
//! refused at the field CloudNativePG refuses it on. Every create-time rule of CloudNativePG's
//! Cluster webhook is covered by a document or listed in `NOT_COVERED` with its reason.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

use pgherd_api::manifest::{load, validate_all};
use std::collections::BTreeSet;
use std::path::PathBuf;

/// CloudNativePG's `ClusterCustomValidator.validate` list (internal/webhook/v1/cluster_webhook.go
/// at cloudnative-pg/cloudnative-pg a95a534d, 1.30.0), in its order.
const CLUSTER_RULES: &[&str] = &[
    "validateInitDB",
    "validateRecoveryApplicationDatabase",
    "validatePgBaseBackupApplicationDatabase",
    "validateImport",
    "validateSuperuserSecret",
    "validateCerts",
    "validateBootstrapMethod",
    "validateImageName",
    "validateImagePullPolicy",
    "validateRecoveryTarget",
    "validatePrimaryUpdateStrategy",
    "validateMinSyncReplicas",
    "validateMaxSyncReplicas",
    "validateStorageSize",
    "validateWalStorageSize",
    "validateEphemeralVolumeSource",
    "validateTablespaceStorageSize",
    "validateName",
    "validateTablespaceNames",
    "validateBootstrapPgBaseBackupSource",
    "validateTablespaceBackupSnapshot",
    "validateBootstrapRecoverySource",
    "validateBootstrapRecoveryDataSource",
    "validateExternalClusters",
    "validateTolerations",
    "validateAntiAffinity",
    "validateReplicaMode",
    "validateBackupConfiguration",
    "validateRetentionPolicy",
    "validateConfiguration",
    "validateSynchronousReplicaConfiguration",
    "validateFailoverQuorumAlphaAnnotation",
    "validateFailoverQuorum",
    "validateLDAP",
    "validateReplicationSlots",
    "validateSynchronizeLogicalDecoding",
    "validateEnv",
    "validateManagedServices",
    "validateManagedRoles",
    "validateManagedExtensions",
    "validateResources",
    "validateHibernationAnnotation",
    "validatePodPatchAnnotation",
    "validatePromotionToken",
    "validatePluginConfiguration",
    "validateLivenessPingerProbe",
    "validatePodSelectorRefs",
    "validateExtensions",
    "validateServiceAccountConfig",
    "validatePrimaryLease",
];

/// Rules of the other webhooks, by `kind/what` as the corpus names them.
const OTHER_RULES: &[&str] = &[
    "backup/online",
    "backup/onlineConfiguration",
    "backup/pluginConfiguration",
    "backup/volumeSnapshotDeadline",
    "scheduledbackup/schedule",
    "scheduledbackup/online",
    "pooler/authQuery",
    "pooler/authQuerySecret",
    "pooler/clusterName",
    "pooler/parameters",
    "database/extensions",
    "database/schemas",
    "database/fdws",
    "database/fdwOptions",
    "database/servers",
];

/// Rules with no document, and why.
const NOT_COVERED: &[(&str, &str)] = &[];

struct Case {
    file: String,
    rule: String,
    expect: Option<String>, // None: accepted; Some(field): refused there
    text: String,
}

fn corpus() -> Vec<Case> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../tests/fixtures/validation");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    let mut out = Vec::new();
    for path in files {
        let text = std::fs::read_to_string(&path).unwrap();
        for doc in text.split("\n---\n") {
            let header = |key: &str| {
                doc.lines()
                    .find_map(|l| l.strip_prefix(&format!("# {key}: ")))
                    .map(str::to_string)
            };
            let Some(rule) = header("rule") else {
                continue; // the file's own header
            };
            let expect = header("expect").unwrap_or_else(|| panic!("{rule}: no expect"));
            let expect = match expect.as_str() {
                "accepted" => None,
                e => Some(
                    e.strip_prefix("refused ")
                        .unwrap_or_else(|| panic!("{rule}: {e}"))
                        .to_string(),
                ),
            };
            out.push(Case {
                file: path.display().to_string(),
                rule,
                expect,
                text: doc.to_string(),
            });
        }
    }
    out
}

/// `path` is `field` or a field under it.
fn at_or_under(path: &str, field: &str) -> bool {
    path == field
        || path
            .strip_prefix(field)
            .is_some_and(|rest| rest.starts_with('.') || rest.starts_with('['))
}

#[test]
fn every_rule_refuses_at_its_field_and_accepts_the_valid() {
    let cases = corpus();
    assert!(cases.len() > 60, "{} documents", cases.len());
    let mut wrong = Vec::new();
    for case in &cases {
        let mut docs = load(&case.text);
        assert_eq!(docs.len(), 1, "{}: {}", case.file, case.rule);
        let mut refs: Vec<_> = docs.iter_mut().collect();
        validate_all(&mut refs);
        let errors: Vec<(String, String)> = docs[0]
            .diagnostics
            .iter()
            .filter(|d| d.is_error())
            .map(|d| (d.path.clone(), d.message.clone()))
            .collect();
        let ok = match &case.expect {
            None => errors.is_empty(),
            Some(field) => errors.iter().any(|(p, _)| at_or_under(p, field)),
        };
        if !ok {
            wrong.push(format!(
                "{} {}: expected {:?}, got {errors:?}",
                case.file, case.rule, case.expect
            ));
        }
    }
    assert!(wrong.is_empty(), "\n{}", wrong.join("\n"));
}

#[test]
fn every_webhook_rule_has_a_document_or_a_reason() {
    let cases = corpus();
    let covered: BTreeSet<&str> = cases.iter().map(|c| c.rule.as_str()).collect();
    let refused: BTreeSet<&str> = cases
        .iter()
        .filter(|c| c.expect.is_some())
        .map(|c| c.rule.as_str())
        .collect();
    for rule in CLUSTER_RULES.iter().chain(OTHER_RULES) {
        assert!(
            covered.contains(rule) || NOT_COVERED.iter().any(|(r, _)| r == rule),
            "{rule}: no document in tests/fixtures/validation and no reason"
        );
    }
    // Each kind has a valid document too, and every rule but those CloudNativePG's defaults
    // make unreachable has a refused one.
    for kind in [
        "accepted",
        "backup/accepted",
        "scheduledbackup/accepted",
        "pooler/accepted",
        "database/accepted",
    ] {
        assert!(covered.contains(kind), "no {kind} document");
    }
    let unreachable = [
        "validateRecoveryApplicationDatabase",
        "validatePgBaseBackupApplicationDatabase",
    ];
    for rule in CLUSTER_RULES.iter().chain(OTHER_RULES) {
        if !unreachable.contains(rule) && !NOT_COVERED.iter().any(|(r, _)| r == rule) {
            assert!(refused.contains(rule), "{rule}: no refused document");
        }
    }
}
