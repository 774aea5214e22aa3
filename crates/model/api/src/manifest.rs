//! Loading manifests: from documents to typed, defaulted, validated objects.
//!
//! Each document goes through: kind lookup → metadata check → structural check against the
//! kind's CRD schema (unknown fields, types, enums) → typed decoding of what passed → defaults
//! → semantic validation, with the other documents given as context for references. Problems
//! from every stage are collected; one bad field never hides another.

use crate::defaults::Defaults;
use crate::diagnostics::{did_you_mean, Diagnostic, FieldPath, Severity};
use crate::document::{parse_documents, RawDocument};
use crate::metadata::check_metadata;
use crate::structural;
use crate::validate::{self, Context, KnownCatalog, KnownObject};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::OnceLock;

/// API group of the CloudNativePG kinds.
pub const CNPG_GROUP: &str = "postgresql.cnpg.io";
/// API group of the barman-cloud plugin's kinds.
pub const BARMAN_GROUP: &str = "barmancloud.cnpg.io";

pub use crate::object::Object;

/// One document of a manifest file after loading.
#[derive(Debug, Clone, PartialEq)]
pub struct Manifest {
    /// 1-based position in its file.
    pub index: usize,
    /// `kind` as written (empty when missing).
    pub kind: String,
    /// `metadata.name` as written (empty when missing).
    pub name: String,
    /// The decoded and defaulted object; `None` when the document is not a pgherd kind or
    /// could not be decoded at all.
    pub object: Option<Object>,
    /// Everything found wrong, errors and warnings.
    pub diagnostics: Vec<Diagnostic>,
}

impl Manifest {
    pub fn has_errors(&self) -> bool {
        self.diagnostics.iter().any(Diagnostic::is_error)
    }

    /// `Kind/name` for messages.
    pub fn label(&self) -> String {
        match (self.kind.is_empty(), self.name.is_empty()) {
            (true, _) => "(no kind)".to_string(),
            (false, true) => self.kind.clone(),
            (false, false) => format!("{}/{}", self.kind, self.name),
        }
    }
}

const CNPG_KINDS: &[&str] = &[
    "Cluster",
    "Backup",
    "ScheduledBackup",
    "Pooler",
    "Database",
    "Publication",
    "Subscription",
    "ImageCatalog",
    "ClusterImageCatalog",
    "DatabaseRole",
];
/// CloudNativePG kinds pgherd does not serve: FailoverQuorum is the operator's own record,
/// never written by users.
const UNSUPPORTED_CNPG_KINDS: &[&str] = &["FailoverQuorum"];

fn crd_schemas() -> &'static BTreeMap<String, Value> {
    static SCHEMAS: OnceLock<BTreeMap<String, Value>> = OnceLock::new();
    SCHEMAS.get_or_init(|| {
        let mut map = BTreeMap::new();
        for crd in crate::crd::all() {
            let schema = crd
                .spec
                .versions
                .first()
                .and_then(|v| v.schema.as_ref())
                .and_then(|s| s.open_api_v3_schema.as_ref())
                .and_then(|s| serde_json::to_value(s).ok());
            if let Some(mut schema) = schema {
                // Status is written by pgherd, not by users; `kubectl apply` drops it.
                if let Some(props) = schema.get_mut("properties").and_then(Value::as_object_mut) {
                    props.remove("status");
                }
                map.insert(crd.spec.names.kind.clone(), schema);
            }
        }
        map
    })
}

fn secret_schema() -> Value {
    json!({"type": "object", "properties": {
        "apiVersion": {"type": "string"}, "kind": {"type": "string"}, "metadata": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
        "data": {"type": "object", "additionalProperties": {"type": "string"}},
        "stringData": {"type": "object", "additionalProperties": {"type": "string"}},
        "type": {"type": "string"}, "immutable": {"type": "boolean"}}})
}

fn config_map_schema() -> Value {
    json!({"type": "object", "properties": {
        "apiVersion": {"type": "string"}, "kind": {"type": "string"}, "metadata": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
        "data": {"type": "object", "additionalProperties": {"type": "string"}},
        "binaryData": {"type": "object", "additionalProperties": {"type": "string"}},
        "immutable": {"type": "boolean"}}})
}

/// Secret `data` values must be base64; report each bad one and drop it.
fn check_secret_data(body: &mut Value, out: &mut Vec<Diagnostic>) {
    use base64::Engine as _;
    let Some(data) = body.get_mut("data").and_then(Value::as_object_mut) else {
        return;
    };
    data.retain(|key, value| {
        let ok = value.as_str().is_none_or(|v| {
            base64::engine::general_purpose::STANDARD
                .decode(v.trim())
                .is_ok()
        });
        if !ok {
            out.push(
                Diagnostic::error(FieldPath::new("data").key(key).as_str(), "not valid base64")
                    .with_hint(
                        "encode the value with base64, or put it as plain text under stringData",
                    ),
            );
        }
        ok
    });
}

/// What kind of document this is, by `apiVersion` and `kind`.
enum Kind {
    Served(&'static str),
    Secret,
    ConfigMap,
    /// Not pgherd's: skipped with a note.
    Foreign,
}

fn classify(doc: &Value, out: &mut Vec<Diagnostic>) -> Option<Kind> {
    let api_version = doc
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let kind = doc.get("kind").and_then(Value::as_str).unwrap_or_default();
    if !doc.is_object() {
        out.push(Diagnostic::error(
            "",
            "a manifest must be an object with apiVersion, kind, metadata and spec",
        ));
        return None;
    }
    if api_version.is_empty() || kind.is_empty() {
        let missing = if api_version.is_empty() {
            "apiVersion"
        } else {
            "kind"
        };
        out.push(
            Diagnostic::error(missing, "required field is missing").with_hint(
                "this looks like a fragment; a manifest needs apiVersion, kind and metadata",
            ),
        );
        return None;
    }
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    match (group, kind) {
        ("", "Secret") if version == "v1" => return Some(Kind::Secret),
        ("", "ConfigMap") if version == "v1" => return Some(Kind::ConfigMap),
        (CNPG_GROUP, _) | (BARMAN_GROUP, _) => {}
        _ => return Some(Kind::Foreign),
    }
    let served: &[&'static str] = if group == BARMAN_GROUP {
        &["ObjectStore"]
    } else {
        CNPG_KINDS
    };
    if version != "v1" {
        out.push(
            Diagnostic::error(
                "apiVersion",
                format!("version {version:?} of {group} is not served"),
            )
            .with_hint(format!("use apiVersion: {group}/v1")),
        );
        return None;
    }
    if let Some(k) = served.iter().find(|k| **k == kind) {
        return Some(Kind::Served(k));
    }
    if UNSUPPORTED_CNPG_KINDS.contains(&kind) {
        out.push(Diagnostic::error(
            "kind",
            format!("{kind} is not supported by pgherd yet"),
        ));
        return None;
    }
    let mut d = Diagnostic::error("kind", format!("{group}/v1 has no kind {kind:?}"));
    d = match did_you_mean(kind, served.iter().copied()) {
        Some(best) => d.with_hint(format!("did you mean {best}?")),
        None => d.with_hint(format!("kinds: {}", served.join(", "))),
    };
    out.push(d);
    None
}

fn decode<T: serde::de::DeserializeOwned>(value: Value, out: &mut Vec<Diagnostic>) -> Option<T> {
    match serde_json::from_value(value) {
        Ok(v) => Some(v),
        // A required field that failed its schema check was dropped, so decoding fails too;
        // the schema error already says what to fix.
        Err(_) if out.iter().any(Diagnostic::is_error) => None,
        Err(e) => {
            out.push(Diagnostic::error(
                "",
                format!("cannot decode the document: {e}"),
            ));
            None
        }
    }
}

/// Decode a served kind and apply its defaults.
fn typed<T: serde::de::DeserializeOwned + Defaults>(
    value: Value,
    out: &mut Vec<Diagnostic>,
    wrap: fn(Box<T>) -> Object,
) -> Option<Object> {
    decode::<T>(value, out).map(|mut o| {
        o.apply_defaults();
        wrap(Box::new(o))
    })
}

fn load_document(raw: RawDocument) -> Manifest {
    let mut out = Vec::new();
    let doc = match raw.value {
        Ok(v) => v,
        Err(e) => {
            return Manifest {
                index: raw.index,
                kind: String::new(),
                name: String::new(),
                object: None,
                diagnostics: vec![Diagnostic::error("", format!("cannot parse: {e}"))],
            }
        }
    };
    if let Some((path, message)) = crate::limits::check_object(&doc) {
        return Manifest {
            index: raw.index,
            kind: doc
                .get("kind")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            name: doc
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            object: None,
            diagnostics: vec![Diagnostic::error(path, message)],
        };
    }
    let kind_name = doc
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let name = doc
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let mut manifest = Manifest {
        index: raw.index,
        kind: kind_name,
        name,
        object: None,
        diagnostics: Vec::new(),
    };
    let Some(kind) = classify(&doc, &mut out) else {
        manifest.diagnostics = out;
        return manifest;
    };
    if matches!(kind, Kind::Foreign) {
        let api_version = doc
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or_default();
        out.push(Diagnostic::warning(
            "",
            format!(
                "{api_version} {} is not a pgherd kind; skipped",
                manifest.kind
            ),
        ));
        manifest.diagnostics = out;
        return manifest;
    }
    let metadata = check_metadata(&doc, &mut out);
    let mut body = doc.clone();
    if let Some(m) = body.as_object_mut() {
        m.remove("apiVersion");
        m.remove("kind");
        m.remove("metadata");
    }
    let schema = match kind {
        Kind::Served(k) => crd_schemas().get(k).cloned().unwrap_or(Value::Null),
        Kind::Secret => secret_schema(),
        Kind::ConfigMap => config_map_schema(),
        Kind::Foreign => Value::Null,
    };
    let mut pruned = structural::check(&body, &schema, &FieldPath::root(), &mut out)
        .unwrap_or_else(|| json!({}));
    if let Some(map) = pruned.as_object_mut() {
        for key in ["apiVersion", "kind"] {
            if let Some(v) = doc.get(key) {
                map.insert(key.to_string(), v.clone());
            }
        }
        map.insert("metadata".to_string(), metadata);
    }
    if matches!(kind, Kind::Secret) {
        check_secret_data(&mut pruned, &mut out);
    }
    let object = match kind {
        Kind::Served("Cluster") => typed(pruned, &mut out, Object::Cluster),
        Kind::Served("Backup") => typed(pruned, &mut out, Object::Backup),
        Kind::Served("ScheduledBackup") => typed(pruned, &mut out, Object::ScheduledBackup),
        Kind::Served("Pooler") => typed(pruned, &mut out, Object::Pooler),
        Kind::Served("Database") => typed(pruned, &mut out, Object::Database),
        Kind::Served("Publication") => typed(pruned, &mut out, Object::Publication),
        Kind::Served("Subscription") => typed(pruned, &mut out, Object::Subscription),
        Kind::Served("ImageCatalog") => typed(pruned, &mut out, Object::ImageCatalog),
        Kind::Served("ClusterImageCatalog") => typed(pruned, &mut out, Object::ClusterImageCatalog),
        Kind::Served("DatabaseRole") => typed(pruned, &mut out, Object::DatabaseRole),
        Kind::Served(_) => typed(pruned, &mut out, Object::ObjectStore),
        Kind::Secret => decode::<Secret>(pruned, &mut out).map(|s| Object::Secret(Box::new(s))),
        Kind::ConfigMap => {
            decode::<ConfigMap>(pruned, &mut out).map(|c| Object::ConfigMap(Box::new(c)))
        }
        Kind::Foreign => None,
    };
    refine_hints(&mut out);
    manifest.object = object;
    manifest.diagnostics = out;
    manifest
}

/// Fields users write that CloudNativePG never had, with what they meant: a generic
/// "unknown field" is replaced by the specific fix.
const KNOWN_MISTAKES: &[(&str, &str)] = &[
    (
        "spec.bootstrap.recovery.externalClusterName",
        "put the external cluster's name in spec.bootstrap.recovery.source (source: <name>) and define it in spec.externalClusters",
    ),
    (
        "spec.bootstrap.recovery.externalCluster",
        "put the external cluster's name in spec.bootstrap.recovery.source and define it in spec.externalClusters",
    ),
    (
        "spec.backup.barmanObjectStore.retentionPolicy",
        "retentionPolicy belongs in spec.backup, beside barmanObjectStore",
    ),
];

fn refine_hints(diagnostics: &mut [Diagnostic]) {
    for d in diagnostics
        .iter_mut()
        .filter(|d| d.message == "unknown field")
    {
        if let Some((_, hint)) = KNOWN_MISTAKES.iter().find(|(path, _)| *path == d.path) {
            d.hint = Some((*hint).to_string());
        } else if let Some(name) = d.path.strip_prefix("spec.postgresql.") {
            // A PostgreSQL setting written one level too high.
            if d.hint
                .as_deref()
                .is_none_or(|h| h.starts_with("known fields"))
                && pgherd_postgres::guc::is_valid_name(name)
            {
                d.hint = Some(format!(
                    "PostgreSQL settings go under spec.postgresql.parameters: {name}: \"...\""
                ));
            }
        }
    }
}

/// Split and load one file's text; semantic validation happens in [`validate_all`].
pub fn load(text: &str) -> Vec<Manifest> {
    parse_documents(text)
        .into_iter()
        .map(load_document)
        .collect()
}

fn known(
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    keys: BTreeSet<String>,
) -> KnownObject {
    KnownObject {
        namespace: meta.namespace.clone(),
        name: meta.name.clone().unwrap_or_default(),
        keys,
    }
}

/// Validate every loaded object, with all the documents (of all files) as context.
pub fn validate_all(manifests: &mut [&mut Manifest]) {
    let mut ctx = Context::default();
    for m in manifests.iter() {
        match &m.object {
            Some(Object::Secret(s)) => {
                let keys = s
                    .data
                    .iter()
                    .flat_map(|d| d.keys())
                    .chain(s.string_data.iter().flat_map(|d| d.keys()))
                    .cloned()
                    .collect();
                ctx.secrets.push(known(&s.metadata, keys));
            }
            Some(Object::ConfigMap(c)) => {
                let keys = c
                    .data
                    .iter()
                    .flat_map(|d| d.keys())
                    .chain(c.binary_data.iter().flat_map(|d| d.keys()))
                    .cloned()
                    .collect();
                ctx.config_maps.push(known(&c.metadata, keys));
            }
            Some(Object::ObjectStore(o)) => {
                ctx.object_stores.push(known(&o.metadata, BTreeSet::new()))
            }
            Some(Object::Cluster(c)) => {
                let externals = c.spec.external_clusters.iter().flatten();
                let keys = externals.map(|e| e.name.clone()).collect();
                ctx.clusters.push(known(&c.metadata, keys));
            }
            Some(Object::ImageCatalog(c)) => ctx.image_catalogs.push(KnownCatalog::new(
                "ImageCatalog",
                c.metadata.namespace.clone(),
                c.metadata.name.as_deref().unwrap_or_default(),
                &c.spec,
            )),
            Some(Object::ClusterImageCatalog(c)) => ctx.image_catalogs.push(KnownCatalog::new(
                "ClusterImageCatalog",
                None,
                c.metadata.name.as_deref().unwrap_or_default(),
                &c.spec.0,
            )),
            _ => {}
        }
    }
    for m in manifests.iter_mut() {
        let failed: Vec<String> = m
            .diagnostics
            .iter()
            .filter(|d| d.is_error())
            .map(|d| d.path.clone())
            .collect();
        let namespaced =
            |meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta| Context {
                namespace: meta.namespace.clone(),
                ..ctx.clone()
            };
        let found = match &m.object {
            Some(Object::Cluster(c)) => validate::validate_cluster(c, &namespaced(&c.metadata)),
            Some(Object::Backup(b)) => validate::validate_backup(b),
            Some(Object::ScheduledBackup(b)) => validate::validate_scheduled_backup(b),
            Some(Object::Pooler(p)) => {
                let mut found = validate::validate_pooler(p);
                validate::validate_pooler_catalog_ref(p, &namespaced(&p.metadata), &mut found);
                found
            }
            Some(Object::Database(d)) => validate::validate_database(d),
            Some(Object::ObjectStore(o)) => {
                validate::validate_object_store(o, &namespaced(&o.metadata))
            }
            Some(Object::Publication(p)) => validate::validate_publication(p),
            Some(Object::Subscription(s)) => {
                validate::validate_subscription(s, &namespaced(&s.metadata))
            }
            Some(Object::DatabaseRole(r)) => {
                validate::validate_database_role(r, &namespaced(&r.metadata))
            }
            Some(Object::ImageCatalog(c)) => validate::validate_image_catalog(&c.spec),
            Some(Object::ClusterImageCatalog(c)) => validate::validate_image_catalog(&c.spec.0),
            _ => Vec::new(),
        };
        // A field that already failed its schema check was dropped before decoding; anything
        // semantic validation says about it (e.g. "required") would repeat the same problem.
        for d in found {
            let repeats_structural = failed
                .iter()
                .any(|f| !f.is_empty() && FieldPath::new(f).covers(&d.path));
            // One warning per missing object is enough, however many fields refer to it.
            let repeats_warning =
                !d.is_error() && m.diagnostics.iter().any(|e| e.message == d.message);
            if !repeats_structural && !repeats_warning {
                m.diagnostics.push(d);
            }
        }
        m.diagnostics
            .sort_by_key(|d| std::cmp::Reverse(d.severity == Severity::Error));
    }
}
