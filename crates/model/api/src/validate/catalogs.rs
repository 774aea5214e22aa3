//! ImageCatalog and ClusterImageCatalog, and the references to them from a Cluster's
//! `spec.imageCatalogRef` and a Pooler's `spec.pgbouncer.imageCatalogRef`.

use super::Context;
use crate::diagnostics::{Diagnostic, FieldPath};
use crate::{Cluster, ImageCatalogSpec, Pooler};
use std::collections::BTreeSet;

/// What a catalog given among the documents offers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KnownCatalog {
    /// `ImageCatalog` or `ClusterImageCatalog`.
    pub kind: String,
    /// Namespace (ImageCatalog only).
    pub namespace: Option<String>,
    pub name: String,
    pub majors: BTreeSet<i64>,
    pub components: BTreeSet<String>,
}

impl KnownCatalog {
    pub fn new(kind: &str, namespace: Option<String>, name: &str, spec: &ImageCatalogSpec) -> Self {
        KnownCatalog {
            kind: kind.to_string(),
            namespace,
            name: name.to_string(),
            majors: spec.images.iter().map(|i| i.major).collect(),
            components: spec
                .component_images
                .iter()
                .flatten()
                .map(|c| c.key.clone())
                .collect(),
        }
    }
}

/// Every problem with a catalog's spec.
pub fn validate_image_catalog(spec: &ImageCatalogSpec) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    let mut majors = BTreeSet::new();
    for (i, image) in spec.images.iter().enumerate() {
        let path = FieldPath::new("spec.images").index(i);
        if !majors.insert(image.major) {
            out.push(
                Diagnostic::error(
                    path.key("major").as_str(),
                    format!("major version {} is listed twice", image.major),
                )
                .with_hint("images must have unique major versions"),
            );
        }
        if image.image.trim().is_empty() {
            out.push(Diagnostic::error(
                path.key("image").as_str(),
                "required field is missing",
            ));
        }
    }
    let mut keys = BTreeSet::new();
    for (i, component) in spec.component_images.iter().flatten().enumerate() {
        if !keys.insert(component.key.as_str()) {
            out.push(Diagnostic::error(
                FieldPath::new("spec.componentImages")
                    .index(i)
                    .key("key")
                    .as_str(),
                format!("component image key {:?} is listed twice", component.key),
            ));
        }
    }
    out
}

impl Context {
    fn catalog(&self, kind: &str, name: &str) -> Option<&KnownCatalog> {
        self.image_catalogs.iter().find(|c| {
            c.kind == kind
                && c.name == name
                && (kind == "ClusterImageCatalog"
                    || match (&c.namespace, &self.namespace) {
                        (Some(a), Some(b)) => a == b,
                        _ => true,
                    })
        })
    }
}

fn missing_catalog(path: &FieldPath, kind: &str, name: &str) -> Diagnostic {
    Diagnostic::warning(
        path.key("name").as_str(),
        format!("{kind} {name:?} {}", super::NOT_GIVEN),
    )
    .with_hint(format!(
        "make sure the {kind} exists before the object is applied"
    ))
}

/// A Cluster's `spec.imageCatalogRef`: the catalog, when given, must hold the major.
pub fn validate_cluster_catalog_ref(cluster: &Cluster, ctx: &Context, out: &mut Vec<Diagnostic>) {
    let Some(reference) = &cluster.spec.image_catalog_ref else {
        return;
    };
    let path = FieldPath::new("spec.imageCatalogRef");
    if let Some(group) = reference.api_group.as_deref() {
        if group != crate::manifest::CNPG_GROUP {
            out.push(Diagnostic::error(
                path.key("apiGroup").as_str(),
                format!("must be {}", crate::manifest::CNPG_GROUP),
            ));
        }
    }
    if !matches!(
        reference.kind.as_str(),
        "ImageCatalog" | "ClusterImageCatalog"
    ) {
        return; // reported with the image checks
    }
    match ctx.catalog(&reference.kind, &reference.name) {
        None => out.push(missing_catalog(&path, &reference.kind, &reference.name)),
        Some(catalog) if !catalog.majors.contains(&reference.major) => {
            let majors: Vec<String> = catalog.majors.iter().map(i64::to_string).collect();
            out.push(
                Diagnostic::error(
                    path.key("major").as_str(),
                    format!(
                        "{} {:?} has no image for major version {}",
                        reference.kind, reference.name, reference.major
                    ),
                )
                .with_hint(format!(
                    "its majors are: {}; add an entry to the catalog or pick one of them",
                    majors.join(", ")
                )),
            );
        }
        Some(_) => {}
    }
}

/// A Pooler's `spec.pgbouncer.imageCatalogRef`: the catalog, when given, must hold the key.
pub fn validate_pooler_catalog_ref(pooler: &Pooler, ctx: &Context, out: &mut Vec<Diagnostic>) {
    let Some(reference) = &pooler.spec.pgbouncer.image_catalog_ref else {
        return;
    };
    let path = FieldPath::new("spec.pgbouncer.imageCatalogRef");
    if !matches!(
        reference.kind.as_str(),
        "ImageCatalog" | "ClusterImageCatalog"
    ) {
        out.push(Diagnostic::error(
            path.key("kind").as_str(),
            "must be ImageCatalog or ClusterImageCatalog",
        ));
        return;
    }
    match ctx.catalog(&reference.kind, &reference.name) {
        None => out.push(missing_catalog(&path, &reference.kind, &reference.name)),
        Some(catalog) if !catalog.components.contains(&reference.key) => out.push(
            Diagnostic::error(
                path.key("key").as_str(),
                format!(
                    "{} {:?} has no component image {:?}",
                    reference.kind, reference.name, reference.key
                ),
            )
            .with_hint("add it to the catalog's spec.componentImages"),
        ),
        Some(_) => {}
    }
}
