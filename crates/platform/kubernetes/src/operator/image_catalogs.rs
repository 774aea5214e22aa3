//! `spec.imageCatalogRef` on Kubernetes: the ImageCatalog (the Cluster's namespace) or
//! ClusterImageCatalog it names, read on every pass and resolved into `status.image`, as
//! CloudNativePG's operator does; the pods are built from that image, so a changed catalog entry
//! changes the pod template and the instances roll (`template_roll`).

use super::OperatorError;
use kube::{Api, Client};
use pgherd_api::kinds::image_catalog::resolve_image;
use pgherd_api::{Cluster, ClusterImageCatalog, ImageCatalog, ImageCatalogSpec};

/// `cluster` with `status.image` set from its catalog (unchanged without one).
pub(crate) async fn resolve(client: &Client, cluster: &Cluster) -> Result<Cluster, OperatorError> {
    let Some(reference) = cluster.spec.image_catalog_ref.clone() else {
        return Ok(cluster.clone());
    };
    let spec: Option<ImageCatalogSpec> = if reference.kind == "ClusterImageCatalog" {
        Api::<ClusterImageCatalog>::all(client.clone())
            .get_opt(&reference.name)
            .await?
            .map(|c| c.spec.0)
    } else {
        let namespace = cluster.metadata.namespace.as_deref().unwrap_or("default");
        Api::<ImageCatalog>::namespaced(client.clone(), namespace)
            .get_opt(&reference.name)
            .await?
            .map(|c| c.spec)
    };
    let image = resolve_image(&reference, spec.as_ref()).map_err(OperatorError::Invalid)?;
    let mut resolved = cluster.clone();
    resolved.status.get_or_insert_with(Default::default).image = Some(image);
    Ok(resolved)
}
