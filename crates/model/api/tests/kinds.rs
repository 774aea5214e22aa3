//! Publication, Subscription, ImageCatalog, ClusterImageCatalog and DatabaseRole: the corpus in
//! `tests/fixtures/kinds` validates, defaults are CloudNativePG's, and every rule refuses what
//! it must at the field it names.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

use pgherd_api::kinds::publication::ReclaimPolicy;
use pgherd_api::manifest::{load, validate_all, Manifest, Object};
use std::path::PathBuf;

fn validated(text: &str) -> Vec<Manifest> {
    let mut docs = load(text);
    let mut refs: Vec<&mut Manifest> = docs.iter_mut().collect();
    validate_all(&mut refs);
    docs
}

fn errors(docs: &[Manifest]) -> Vec<(String, String)> {
    docs.iter()
        .flat_map(|m| m.diagnostics.iter().filter(|d| d.is_error()))
        .map(|d| (d.path.clone(), d.message.clone()))
        .collect()
}

/// `text` is refused with exactly one error, at `path`, whose message holds `fragment`.
fn refused(text: &str, path: &str, fragment: &str) {
    let found = errors(&validated(text));
    assert_eq!(found.len(), 1, "expected one error at {path}: {found:?}");
    assert_eq!(found[0].0, path, "{found:?}");
    assert!(found[0].1.contains(fragment), "{found:?}");
}

fn corpus() -> Vec<(String, String)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../tests/fixtures/kinds");
    let mut out: Vec<(String, String)> = std::fs::read_dir(&dir)
        .expect("corpus")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .map(|p| {
            (
                p.display().to_string(),
                std::fs::read_to_string(&p).unwrap(),
            )
        })
        .collect();
    out.sort();
    out
}

#[test]
fn the_corpus_validates_and_covers_every_new_kind() {
    let mut kinds = std::collections::BTreeSet::new();
    for (file, text) in corpus() {
        let docs = validated(&text);
        assert!(errors(&docs).is_empty(), "{file}: {:?}", errors(&docs));
        let warnings: Vec<_> = docs.iter().flat_map(|m| &m.diagnostics).collect();
        assert!(
            warnings.iter().all(|d| !d.message.contains("Catalog")),
            "{file}: {warnings:?}"
        );
        kinds.extend(
            docs.iter()
                .filter_map(|m| m.object.as_ref().map(Object::kind)),
        );
    }
    for kind in [
        "Publication",
        "Subscription",
        "ImageCatalog",
        "ClusterImageCatalog",
        "DatabaseRole",
    ] {
        assert!(kinds.contains(kind), "no {kind} in the corpus");
    }
}

#[test]
fn defaults_are_cloudnativepgs() {
    let docs = validated(
        "apiVersion: postgresql.cnpg.io/v1\nkind: DatabaseRole\nmetadata: {name: r}\nspec:\n  cluster: {name: c}\n  name: r\n  login: true\n  clientCertificate: {}\n---\napiVersion: postgresql.cnpg.io/v1\nkind: Publication\nmetadata: {name: p}\nspec: {cluster: {name: c}, name: p, dbname: app, target: {allTables: true}}\n---\napiVersion: postgresql.cnpg.io/v1\nkind: Subscription\nmetadata: {name: s}\nspec: {cluster: {name: c}, name: s, dbname: app, publicationName: p, externalClusterName: x}\n",
    );
    assert!(errors(&docs).is_empty(), "{:?}", errors(&docs));
    let Some(Object::DatabaseRole(role)) = &docs[0].object else {
        panic!()
    };
    assert_eq!(
        role.spec.database_role_reclaim_policy,
        Some(ReclaimPolicy::Retain)
    );
    assert_eq!(role.spec.role.inherit, Some(true));
    assert_eq!(role.spec.role.connection_limit, Some(-1));
    assert_eq!(
        role.spec
            .client_certificate
            .as_ref()
            .and_then(|c| c.enabled),
        Some(true)
    );
    let Some(Object::Publication(p)) = &docs[1].object else {
        panic!()
    };
    assert_eq!(
        p.spec.publication_reclaim_policy,
        Some(ReclaimPolicy::Retain)
    );
    let Some(Object::Subscription(s)) = &docs[2].object else {
        panic!()
    };
    assert_eq!(
        s.spec.subscription_reclaim_policy,
        Some(ReclaimPolicy::Retain)
    );
}

const PUB: &str = "apiVersion: postgresql.cnpg.io/v1\nkind: Publication\nmetadata: {name: p}\nspec:\n  cluster: {name: c}\n  name: p\n  dbname: app\n";

#[test]
fn publication_rules() {
    refused(
        &format!("{PUB}  target: {{}}\n"),
        "spec.target",
        "one of allTables or objects",
    );
    refused(
        &format!("{PUB}  target: {{allTables: true, objects: [{{tablesInSchema: s}}]}}\n"),
        "spec.target",
        "mutually exclusive",
    );
    refused(
        &format!("{PUB}  target: {{objects: [{{tablesInSchema: s, table: {{name: t}}}}]}}\n"),
        "spec.target.objects[0]",
        "mutually exclusive",
    );
    refused(
        &format!("{PUB}  target: {{objects: [{{tablesInSchema: s}}, {{table: {{name: t, columns: [a]}}}}]}}\n"),
        "spec.target.objects[1].table.columns",
        "column list",
    );
    refused(
        &format!("{PUB}  target: {{allTables: true}}\n  publicationReclaimPolicy: keep\n"),
        "spec.publicationReclaimPolicy",
        "unsupported value",
    );
    refused(
        &format!("{PUB}  target: {{allTables: true}}\n  parameters: {{\"publish; DROP\": x}}\n"),
        "spec.parameters[\"publish; DROP\"]",
        "not a parameter name",
    );
    refused(
        &PUB.replace("  dbname: app\n", "  target: {allTables: true}\n"),
        "spec.dbname",
        "required",
    );
}

const SUB_CLUSTER: &str = "apiVersion: postgresql.cnpg.io/v1\nkind: Cluster\nmetadata: {name: dest}\nspec:\n  instances: 1\n  storage: {size: 1Gi}\n  externalClusters:\n  - name: source\n    connectionParameters: {host: source-rw, dbname: app}\n---\n";
const SUB: &str = "apiVersion: postgresql.cnpg.io/v1\nkind: Subscription\nmetadata: {name: s}\nspec:\n  cluster: {name: dest}\n  name: s\n  dbname: app\n  publicationName: p\n";

#[test]
fn subscription_rules() {
    let ok = format!("{SUB_CLUSTER}{SUB}  externalClusterName: source\n");
    assert!(errors(&validated(&ok)).is_empty());
    refused(
        &format!("{SUB_CLUSTER}{SUB}  externalClusterName: sourse\n"),
        "spec.externalClusterName",
        "has no external cluster",
    );
    // Without the Cluster among the documents, the name cannot be checked.
    assert!(errors(&validated(&format!("{SUB}  externalClusterName: other\n"))).is_empty());
    refused(SUB, "spec.externalClusterName", "required");
    let named = |name: &str, extra: &str| {
        format!("{SUB}  externalClusterName: x\n{extra}")
            .replace("  name: s\n", &format!("  name: {name}\n"))
    };
    refused(&named("Orders-Sub", ""), "spec.name", "replication slot");
    assert!(errors(&validated(&named(
        "Orders-Sub",
        "  parameters: {slot_name: orders_sub}\n"
    )))
    .is_empty());
    refused(
        &format!("{SUB}  externalClusterName: source\n  subscriptionReclaimPolicy: Delete\n"),
        "spec.subscriptionReclaimPolicy",
        "unsupported value",
    );
}

const CATALOG: &str = "apiVersion: postgresql.cnpg.io/v1\nkind: ImageCatalog\nmetadata: {name: cat}\nspec:\n  images:\n  - {major: 17, image: 'pg:17'}\n";

#[test]
fn image_catalog_rules() {
    refused(
        &format!("{CATALOG}  - {{major: 17, image: 'pg:17.1'}}\n"),
        "spec.images[1].major",
        "listed twice",
    );
    refused(
        &CATALOG.replace("major: 17", "major: 9"),
        "spec.images[0].major",
        ">= 10",
    );
    refused(
        "apiVersion: postgresql.cnpg.io/v1\nkind: ClusterImageCatalog\nmetadata: {name: cat}\nspec:\n  images: []\n",
        "spec.images",
        "at least 1",
    );
    let nine: String = (10..19)
        .map(|m| format!("  - {{major: {m}, image: 'pg:{m}'}}\n"))
        .collect();
    refused(
        &format!("apiVersion: postgresql.cnpg.io/v1\nkind: ImageCatalog\nmetadata: {{name: cat}}\nspec:\n  images:\n{nine}"),
        "spec.images",
        "at most 8",
    );
    refused(
        &format!("{CATALOG}  componentImages:\n  - {{key: PgBouncer, image: 'pgb:1'}}\n"),
        "spec.componentImages[0].key",
        "pattern",
    );
    refused(
        &format!("{CATALOG}  componentImages:\n  - {{key: pgbouncer, image: 'a'}}\n  - {{key: pgbouncer, image: 'b'}}\n"),
        "spec.componentImages[1].key",
        "listed twice",
    );
}

const REF_CLUSTER: &str = "---\napiVersion: postgresql.cnpg.io/v1\nkind: Cluster\nmetadata: {name: c}\nspec:\n  instances: 1\n  storage: {size: 1Gi}\n  imageCatalogRef: {apiGroup: postgresql.cnpg.io, kind: ImageCatalog, name: cat, major: MAJOR}\n";

#[test]
fn a_cluster_must_name_a_major_its_catalog_has() {
    assert!(errors(&validated(&format!(
        "{CATALOG}{}",
        REF_CLUSTER.replace("MAJOR", "17")
    )))
    .is_empty());
    refused(
        &format!("{CATALOG}{}", REF_CLUSTER.replace("MAJOR", "16")),
        "spec.imageCatalogRef.major",
        "no image for major version 16",
    );
    // Another kind of catalog with the same name does not count.
    let other = REF_CLUSTER
        .replace("MAJOR", "17")
        .replace("kind: ImageCatalog", "kind: ClusterImageCatalog");
    let docs = validated(&format!("{CATALOG}{other}"));
    assert!(errors(&docs).is_empty());
    assert!(docs[1]
        .diagnostics
        .iter()
        .any(|d| d.message.contains("is not among the documents")));
    // A catalog in another namespace does not count either.
    let elsewhere = CATALOG.replace("{name: cat}", "{name: cat, namespace: other}");
    let cluster = REF_CLUSTER
        .replace("MAJOR", "16")
        .replace("{name: c}", "{name: c, namespace: prod}");
    let docs = validated(&format!("{elsewhere}{cluster}"));
    assert!(errors(&docs).is_empty(), "{:?}", errors(&docs));
}

#[test]
fn a_pooler_must_name_a_component_its_catalog_has() {
    let pooler = "---\napiVersion: postgresql.cnpg.io/v1\nkind: Pooler\nmetadata: {name: p}\nspec:\n  cluster: {name: c}\n  pgbouncer:\n    imageCatalogRef: {apiGroup: postgresql.cnpg.io, kind: ImageCatalog, name: cat, key: pgbouncer}\n";
    refused(
        &format!("{CATALOG}{pooler}"),
        "spec.pgbouncer.imageCatalogRef.key",
        "no component image",
    );
}

const ROLE: &str = "apiVersion: postgresql.cnpg.io/v1\nkind: DatabaseRole\nmetadata: {name: r}\nspec:\n  cluster: {name: c}\n";

#[test]
fn database_role_rules() {
    for name in ["postgres", "streaming_replica", "pg_x", "cnpg_x"] {
        refused(&format!("{ROLE}  name: {name}\n"), "spec.name", "reserved");
    }
    refused(&format!("{ROLE}  name: ''\n"), "spec.name", "1 to 63");
    refused(
        &format!("{ROLE}  name: r\n  ensure: absent\n"),
        "spec.ensure",
        "not supported",
    );
    refused(
        &format!("{ROLE}  name: r\n  disablePassword: true\n  passwordSecret: {{name: s}}\n"),
        "spec.disablePassword",
        "passwordSecret",
    );
    refused(
        &format!("{ROLE}  name: r\n  clientCertificate: {{enabled: true}}\n"),
        "spec.clientCertificate",
        "login",
    );
    assert!(errors(&validated(&format!(
        "{ROLE}  name: r\n  clientCertificate: {{enabled: false}}\n"
    )))
    .is_empty());
    refused(
        &format!("{ROLE}  name: r\n  databaseRoleReclaimPolicy: drop\n"),
        "spec.databaseRoleReclaimPolicy",
        "unsupported value",
    );
    refused("apiVersion: postgresql.cnpg.io/v1\nkind: DatabaseRole\nmetadata: {name: r}\nspec:\n  name: r\n", "spec.cluster", "required");
}

#[test]
fn failover_quorum_is_still_refused() {
    refused(
        "apiVersion: postgresql.cnpg.io/v1\nkind: FailoverQuorum\nmetadata: {name: q}\n",
        "kind",
        "not supported",
    );
}
