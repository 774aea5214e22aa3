//! `ImageCatalog` (namespaced) and `ClusterImageCatalog` (cluster-wide): the PostgreSQL image
//! for each major version, which a Cluster picks with `spec.imageCatalogRef`, and named images
//! of other components (PgBouncer) that a Pooler picks by key.

use crate::cluster::ExtensionConfiguration;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_with::skip_serializing_none;

/// Images by major version, in a namespace.
#[skip_serializing_none]
#[derive(CustomResource, Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "postgresql.cnpg.io",
    version = "v1",
    kind = "ImageCatalog",
    namespaced,
    derive = "PartialEq",
    derive = "Default",
    doc = "ImageCatalog lists the PostgreSQL image of each major version.",
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct ImageCatalogSpec {
    /// One image per major version (unique majors).
    #[schemars(length(min = 1, max = 8))]
    pub images: Vec<CatalogImage>,
    /// Named images of other components (e.g. `pgbouncer`), unique keys.
    #[schemars(length(max = 32))]
    pub component_images: Option<Vec<CatalogComponentImage>>,
}

/// The same, for every namespace.
#[derive(CustomResource, Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "postgresql.cnpg.io",
    version = "v1",
    kind = "ClusterImageCatalog",
    derive = "PartialEq",
    derive = "Default",
    doc = "ClusterImageCatalog lists the PostgreSQL image of each major version, for every namespace.",
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(transparent)]
#[schemars(transparent)]
pub struct ClusterImageCatalogSpec(pub ImageCatalogSpec);

/// The image of one major version.
#[skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
pub struct CatalogImage {
    /// Image reference.
    pub image: String,
    /// PostgreSQL major version of the image.
    #[schemars(range(min = 10))]
    pub major: i64,
    /// Extension images added to clusters using this entry.
    pub extensions: Option<Vec<ExtensionConfiguration>>,
}

/// A named image of a component other than PostgreSQL.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
pub struct CatalogComponentImage {
    /// Unique key in the catalog.
    #[schemars(regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"), length(max = 63))]
    pub key: String,
    /// Image reference.
    pub image: String,
}

impl ImageCatalogSpec {
    /// The image of `major`, if the catalog has one.
    pub fn image_for(&self, major: i64) -> Option<&CatalogImage> {
        self.images.iter().find(|i| i.major == major)
    }
}

/// The image `reference` picks from `catalog` (the catalog it names, if it could be found): as
/// CloudNativePG resolves `spec.imageCatalogRef`. A missing catalog or major is an error naming
/// the field and what to do; both platforms say the same.
pub fn resolve_image(
    reference: &crate::cluster::ImageCatalogRef,
    catalog: Option<&ImageCatalogSpec>,
) -> Result<String, String> {
    let Some(catalog) = catalog else {
        return Err(format!(
            "spec.imageCatalogRef: {} {:?} does not exist: create it, or name an existing one",
            reference.kind, reference.name
        ));
    };
    catalog
        .images
        .iter()
        .find(|i| i.major == reference.major)
        .map(|i| i.image.clone())
        .ok_or_else(|| {
            format!(
                "spec.imageCatalogRef.major: {} {:?} has no image for major version {}: add one to the catalog",
                reference.kind, reference.name, reference.major
            )
        })
}
