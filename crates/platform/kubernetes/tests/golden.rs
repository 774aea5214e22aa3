//! Golden tests: every Cluster and Pooler in `tests/golden/*.yaml`, in the seeds' manifests
//! (`tests/fixtures/seeds/`, the valid ones) and in `examples/` is built into all its objects,
//! rendered as multi-document YAML and compared with `tests/golden/expected/<input>.yaml`.
//!
//! Regenerate after an intended change with
//! `PGHERD_BLESS=1 cargo test -p pgherd-kubernetes --test golden` and review the diff; the
//! expected files are also validated against the official Kubernetes OpenAPI schemas by
//! `tests/schema/test_generated_objects.py`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

use pgherd_api::manifest::{load, validate_all, Object};
use pgherd_api::{Cluster, Pooler};
use pgherd_kubernetes::secret::{CertificatePair, Credentials};
use pgherd_kubernetes::{cluster_objects, pooler_objects, ClusterSecrets, OperatorSettings};
use serde::Serialize;
use std::path::{Path, PathBuf};

/// The uid given to inputs that have none (objects read from the API server always have one).
const TEST_UID: &str = "00000000-0000-4000-8000-000000000000";
const OPERATOR_IMAGE: &str = "ghcr.io/pgherd/pgherd:0.1.0";

fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn repo_root() -> PathBuf {
    crate_dir().join("../../..").canonicalize().unwrap()
}

fn expected_dir() -> PathBuf {
    crate_dir().join("tests/golden/expected")
}

fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    files.sort();
    files
}

/// `(output name, input file)` for every input holding a Cluster or a Pooler.
fn inputs() -> Vec<(String, PathBuf)> {
    let stem = |p: &Path| p.file_stem().unwrap().to_string_lossy().into_owned();
    let mut out: Vec<(String, PathBuf)> = yaml_files(&crate_dir().join("tests/golden"))
        .into_iter()
        .map(|p| (stem(&p), p))
        .collect();
    for (prefix, dir) in [
        ("seed-", repo_root().join("tests/fixtures/seeds")),
        ("example-", repo_root().join("examples")),
    ] {
        for path in yaml_files(&dir) {
            let text = std::fs::read_to_string(&path).unwrap();
            let invalid = path.to_string_lossy().contains(".invalid.")
                || text.lines().any(|l| l.trim() == "# expect: invalid");
            let relevant = text
                .lines()
                .any(|l| l.trim() == "kind: Cluster" || l.trim() == "kind: Pooler");
            if !invalid && relevant {
                out.push((format!("{prefix}{}", stem(&path)), path));
            }
        }
    }
    out
}

fn test_pair(what: &str) -> CertificatePair {
    CertificatePair {
        certificate_pem: format!(
            "-----BEGIN CERTIFICATE-----\n{what}\n-----END CERTIFICATE-----\n"
        ),
        private_key_pem: format!(
            "-----BEGIN PRIVATE KEY-----\n{what}\n-----END PRIVATE KEY-----\n"
        ),
    }
}

fn secrets() -> ClusterSecrets {
    ClusterSecrets {
        app: Credentials {
            username: String::new(),
            password: "app-password-for-tests".to_string(),
        },
        superuser_password: "superuser-password-for-tests".to_string(),
        ca: test_pair("test-ca"),
        server: test_pair("test-server"),
        replication: test_pair("test-replication"),
        pooler: None,
    }
}

fn push<T: Serialize>(docs: &mut Vec<String>, object: &T) {
    let value = serde_json::to_value(object).unwrap();
    docs.push(serde_yaml_ng::to_string(&value).unwrap());
}

fn render_cluster(
    mut cluster: Cluster,
    operator: &OperatorSettings,
    pooled: bool,
    docs: &mut Vec<String>,
) {
    let name = cluster.metadata.name.clone().unwrap_or_default();
    cluster
        .metadata
        .uid
        .get_or_insert_with(|| TEST_UID.to_string());
    let instances = u32::try_from(cluster.spec.instances.unwrap_or(1)).unwrap();
    let serials: Vec<u32> = (1..=instances).collect();
    let primary = cluster
        .status
        .as_ref()
        .and_then(|s| s.current_primary.clone())
        .unwrap_or_else(|| format!("{name}-1"));
    let mut secrets = secrets();
    if pooled {
        secrets.pooler = Some(test_pair("test-pooler"));
    }
    secrets.app.username = cluster
        .application_owner()
        .unwrap_or(pgherd_api::defaults::DEFAULT_APP_DATABASE)
        .to_string();
    match cluster_objects(&cluster, operator, &serials, Some(&primary), &secrets) {
        Ok(objects) => {
            objects.pods.iter().for_each(|o| push(docs, o));
            objects.pvcs.iter().for_each(|o| push(docs, o));
            objects.services.iter().for_each(|o| push(docs, o));
            objects
                .additional_services
                .iter()
                .for_each(|o| push(docs, &o.service));
            objects.secrets.iter().for_each(|o| push(docs, o));
            objects
                .pod_disruption_budgets
                .iter()
                .for_each(|o| push(docs, o));
            objects.service_account.iter().for_each(|o| push(docs, o));
            objects.role.iter().for_each(|o| push(docs, o));
            objects.role_binding.iter().for_each(|o| push(docs, o));
            objects.pod_monitor.iter().for_each(|o| push(docs, o));
            // The major-upgrade Job of the primary, from the major before the Cluster's.
            let major = i64::from(cluster.major_version().map_or(17, |m| m.0));
            let attempt = pgherd_controller::major_upgrade::UpgradeAttempt {
                from: pgherd_api::cluster::ImageInfo {
                    image: format!("ghcr.io/cloudnative-pg/postgresql:{}", major - 1),
                    major_version: major - 1,
                },
                to: pgherd_api::cluster::ImageInfo {
                    image: cluster.image_name(),
                    major_version: major,
                },
                instance: primary.clone(),
                retry_token: String::new(),
                failure: None,
            };
            match pgherd_kubernetes::upgrade_job::major_upgrade_job(&cluster, operator, &attempt) {
                Ok(job) => push(docs, &job),
                Err(e) => docs.push(format!(
                    "# Cluster {name}: no major-upgrade Job: {e}
"
                )),
            }
            match pgherd_kubernetes::valid_spec::config_map(&cluster) {
                Ok(map) => push(docs, &map),
                Err(e) => docs.push(format!("# Cluster {name}: valid spec not kept: {e}\n")),
            }
        }
        Err(e) => docs.push(format!("# Cluster {name}: not built: {e}\n")),
    }
}

fn render_pooler(mut pooler: Pooler, operator: &OperatorSettings, docs: &mut Vec<String>) {
    let name = pooler.metadata.name.clone().unwrap_or_default();
    pooler
        .metadata
        .uid
        .get_or_insert_with(|| TEST_UID.to_string());
    let certificates =
        pgherd_kubernetes::secret::CertificateSecrets::operators(&pooler.spec.cluster.name);
    match pooler_objects(&pooler, &certificates, operator) {
        Ok(objects) => {
            push(docs, &objects.deployment);
            push(docs, &objects.service);
            objects.service_account.iter().for_each(|o| push(docs, o));
            push(docs, &objects.role);
            push(docs, &objects.role_binding);
            objects.pod_monitor.iter().for_each(|o| push(docs, o));
        }
        Err(e) => docs.push(format!("# Pooler {name}: not built: {e}\n")),
    }
}

fn render(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    let mut manifests = load(&text);
    validate_all(&mut manifests.iter_mut().collect::<Vec<_>>());
    let operator = OperatorSettings::new(OPERATOR_IMAGE);
    let mut docs = Vec::new();
    // Clusters some Pooler of the same file uses get their `NAME-pooler` secret.
    let pooled: std::collections::BTreeSet<String> = manifests
        .iter()
        .filter_map(|m| match &m.object {
            Some(Object::Pooler(p)) => Some(p.spec.cluster.name.clone()),
            _ => None,
        })
        .collect();
    for m in manifests {
        assert!(
            !m.has_errors(),
            "{} {}: golden inputs must be valid: {:#?}",
            path.display(),
            m.label(),
            m.diagnostics
        );
        match m.object {
            Some(Object::Cluster(c)) => {
                let uses = pooled.contains(c.metadata.name.as_deref().unwrap_or_default());
                render_cluster(*c, &operator, uses, &mut docs)
            }
            Some(Object::Pooler(p)) => render_pooler(*p, &operator, &mut docs),
            _ => {}
        }
    }
    let path = path.canonicalize().unwrap();
    let source = path
        .strip_prefix(repo_root())
        .unwrap_or(&path)
        .to_string_lossy()
        .into_owned();
    let mut out = format!(
        "# Generated from {source} by the golden test of pgherd-kubernetes; do not edit.\n\
         # Regenerate: PGHERD_BLESS=1 cargo test -p pgherd-kubernetes --test golden\n"
    );
    for doc in docs {
        out.push_str("---\n");
        out.push_str(&doc);
    }
    out
}

fn first_difference(expected: &str, actual: &str) -> String {
    let (e, a): (Vec<_>, Vec<_>) = (expected.lines().collect(), actual.lines().collect());
    for i in 0..e.len().max(a.len()) {
        if e.get(i) != a.get(i) {
            return format!(
                "line {}: expected {:?}, got {:?}",
                i + 1,
                e.get(i).unwrap_or(&"<end>"),
                a.get(i).unwrap_or(&"<end>")
            );
        }
    }
    "no line differs (line endings?)".to_string()
}

#[test]
fn generated_objects_match_the_golden_files() {
    let bless = std::env::var_os("PGHERD_BLESS").is_some_and(|v| v == "1");
    let inputs = inputs();
    assert!(inputs.len() >= 8, "inputs: {inputs:?}");
    std::fs::create_dir_all(expected_dir()).unwrap();
    let mut problems = Vec::new();
    let mut wanted = std::collections::BTreeSet::new();
    for (name, path) in &inputs {
        let file = expected_dir().join(format!("{name}.yaml"));
        wanted.insert(file.clone());
        let actual = render(path);
        if bless {
            std::fs::write(&file, &actual).unwrap();
            continue;
        }
        match std::fs::read_to_string(&file) {
            Ok(expected) if expected == actual => {}
            Ok(expected) => problems.push(format!(
                "{} drifted from {}: {}",
                file.display(),
                path.display(),
                first_difference(&expected, &actual)
            )),
            Err(_) => problems.push(format!("{} is missing", file.display())),
        }
    }
    for file in yaml_files(&expected_dir()) {
        if !wanted.contains(&file) {
            if bless {
                std::fs::remove_file(&file).unwrap();
            } else {
                problems.push(format!("{} has no input any more", file.display()));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "golden files differ (if intended: PGHERD_BLESS=1 cargo test -p pgherd-kubernetes --test golden, then review the diff):\n{}",
        problems.join("\n")
    );
}

#[test]
fn the_longest_cluster_name_builds_and_an_overflowing_tablespace_is_refused() {
    let out = render(&crate_dir().join("tests/golden/long-names.yaml"));
    assert!(out.contains("name: a-cluster-name-of-exactly-fifty-characters-long-xx-1-wal"));
    assert!(
        out.contains("not built: Cluster \"a-cluster-name-of-exactly-fifty-characters-long-yy\""),
        "{out}"
    );
    assert!(out.contains("over Kubernetes' limit of 63"), "{out}");
}

#[test]
fn roles_switch_with_the_primary() {
    let text = std::fs::read_to_string(crate_dir().join("tests/golden/minimal.yaml")).unwrap();
    let Some(Object::Cluster(mut cluster)) = load(&text).remove(0).object else {
        panic!("a Cluster")
    };
    cluster.metadata.uid = Some(TEST_UID.into());
    cluster.spec.instances = Some(2);
    let operator = OperatorSettings::new(OPERATOR_IMAGE);
    let role = |serial, primary: Option<&str>| {
        let pod =
            pgherd_kubernetes::pod::instance_pod(&cluster, &operator, serial, primary).unwrap();
        let labels = pod.metadata.labels.unwrap();
        assert_eq!(labels.get("cnpg.io/instanceRole"), labels.get("role"));
        labels.get("role").cloned()
    };
    assert_eq!(role(1, Some("pg-1")).as_deref(), Some("primary"));
    assert_eq!(role(2, Some("pg-1")).as_deref(), Some("replica"));
    assert_eq!(role(1, Some("pg-2")).as_deref(), Some("replica"));
    assert_eq!(role(2, Some("pg-2")).as_deref(), Some("primary"));
    assert_eq!(
        role(1, None),
        None,
        "no role label before a primary is known"
    );
}
