//! A Cluster's `spec.imageCatalogRef` resolved against the stored ImageCatalog or
//! ClusterImageCatalog into `status.image`, as CloudNativePG's operator resolves it: the image
//! the cluster runs. A change of the catalog's entry for the cluster's major changes that
//! image, and a changed image rolls the cluster (see `observation::observe`).

use crate::error::LocalError;
use crate::state::StateDir;
use pgherd_api::{Cluster, ClusterImageCatalog, ImageCatalog, ImageCatalogSpec};

/// Set `cluster.status.image` from its catalog; a cluster without a catalog is left as it is.
/// A missing catalog or major is an error naming the field and what to do.
pub fn resolve(state: &StateDir, namespace: &str, cluster: &mut Cluster) -> Result<(), LocalError> {
    let Some(reference) = cluster.spec.image_catalog_ref.clone() else {
        return Ok(());
    };
    let spec: Option<ImageCatalogSpec> = match reference.kind.as_str() {
        "ClusterImageCatalog" => state
            .list_objects::<ClusterImageCatalog>("ClusterImageCatalog")?
            .into_iter()
            .find(|(_, name, _)| *name == reference.name)
            .map(|(_, _, c)| c.spec.0),
        _ => crate::state::read_json::<ImageCatalog>(&state.object_path(
            "ImageCatalog",
            namespace,
            &reference.name,
        ))?
        .map(|c| c.spec),
    };
    let image = pgherd_api::kinds::image_catalog::resolve_image(&reference, spec.as_ref())
        .map_err(LocalError::Invalid)?;
    cluster.status.get_or_insert_with(Default::default).image = Some(image);
    Ok(())
}
