//! The data's PostgreSQL major on Kubernetes (`status.pgDataImageInfo`, as CloudNativePG
//! records it): set from the running image once the cluster has a primary and following the
//! Cluster's image within that major, then compared with the image each pass asks for. PostgreSQL cannot start on data of another major, so an image
//! of another major never reaches the pods: they keep the data's image, the pass goes on
//! (failover included), and a downgrade's refusal is said in `status.phaseReason` and a
//! Warning event, naming the field, as CloudNativePG refuses it. A higher major is an in-place
//! upgrade, which [`super::major_upgrade`] carries out. Pure.

use pgherd_api::cluster::ImageInfo;
use pgherd_api::Cluster;
use pgherd_controller::major_upgrade::{image_change_errors, image_field};

/// The Cluster a pass works with, and what it must say.
#[derive(Debug, Clone)]
pub(crate) struct Held {
    /// The Cluster, with the data's image in place of one of another major.
    pub cluster: Cluster,
    /// `status.pgDataImageInfo` to write (`None`: no data yet).
    pub data: Option<ImageInfo>,
    /// Why the image the Cluster asks for does not run.
    pub refusal: Option<String>,
    /// The image of a higher major the Cluster asks for: an in-place upgrade to carry out.
    pub upgrade: Option<ImageInfo>,
}

/// Hold `cluster` (its image resolved) to its data's major.
pub(crate) fn hold(cluster: &Cluster) -> Held {
    let status = cluster.status.as_ref();
    let image = cluster.image_name();
    let wanted = cluster.major_version().map(|m| i64::from(m.0));
    let recorded = status.and_then(|s| s.pg_data_image_info.clone());
    let has_data = status.is_some_and(|s| s.current_primary.is_some());
    // The image follows the Cluster's within the data's major (a new minor rolls the pods),
    // so the one held is always the last that ran.
    let data = match (recorded, wanted) {
        (Some(d), Some(major)) if d.major_version == major => Some(ImageInfo {
            image: image.clone(),
            major_version: major,
        }),
        (Some(d), _) => Some(d),
        (None, Some(major)) if has_data => Some(ImageInfo {
            image: image.clone(),
            major_version: major,
        }),
        _ => None,
    };
    let (Some(d), Some(wanted)) = (&data, wanted) else {
        return Held {
            cluster: cluster.clone(),
            data,
            refusal: None,
            upgrade: None,
        };
    };
    if d.major_version == wanted {
        return Held {
            cluster: cluster.clone(),
            data,
            refusal: None,
            upgrade: None,
        };
    }
    let field = image_field(cluster.spec.image_catalog_ref.is_some());
    let (refusal, upgrade) = match image_change_errors(Some(d), wanted).into_iter().next() {
        Some(why) => (
            Some(format!(
                "{field}: {image}: {why}; the instances keep running {} until {field} names a major {} image again",
                d.image, d.major_version
            )),
            None,
        ),
        None => (
            None,
            Some(ImageInfo {
                image: image.clone(),
                major_version: wanted,
            }),
        ),
    };
    let mut held = cluster.clone();
    held.spec.image_name = Some(d.image.clone());
    held.spec.image_catalog_ref = None;
    Held {
        cluster: held,
        data,
        refusal,
        upgrade,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster(image: &str, data: Option<(&str, i64)>, primary: bool) -> Cluster {
        let mut c = Cluster::new("pg", Default::default());
        c.spec.image_name = Some(image.to_string());
        let status = c.status.get_or_insert_with(Default::default);
        status.pg_data_image_info = data.map(|(image, major)| ImageInfo {
            image: image.into(),
            major_version: major,
        });
        status.current_primary = primary.then(|| "pg-1".to_string());
        c
    }

    #[test]
    fn recorded_once_the_cluster_has_a_primary() {
        let none = hold(&cluster(
            "ghcr.io/cloudnative-pg/postgresql:15.14",
            None,
            false,
        ));
        assert_eq!(none.data, None);
        let held = hold(&cluster(
            "ghcr.io/cloudnative-pg/postgresql:15.14",
            None,
            true,
        ));
        assert_eq!(
            held.data,
            Some(ImageInfo {
                image: "ghcr.io/cloudnative-pg/postgresql:15.14".into(),
                major_version: 15
            })
        );
        assert_eq!(held.refusal, None);
    }

    #[test]
    fn a_new_minor_runs() {
        let data = Some(("ghcr.io/cloudnative-pg/postgresql:15.14", 15));
        let held = hold(&cluster(
            "ghcr.io/cloudnative-pg/postgresql:15.15",
            data,
            true,
        ));
        assert_eq!(held.refusal, None);
        assert_eq!(
            held.cluster.image_name(),
            "ghcr.io/cloudnative-pg/postgresql:15.15"
        );
        assert_eq!(
            held.data.map(|d| d.image).as_deref(),
            Some("ghcr.io/cloudnative-pg/postgresql:15.15"),
            "the recorded image follows the minor"
        );
    }

    #[test]
    fn another_major_keeps_the_datas_image_until_upgraded_and_a_downgrade_says_why() {
        let data = Some(("ghcr.io/cloudnative-pg/postgresql:16.4", 16));
        let up = hold(&cluster(
            "ghcr.io/cloudnative-pg/postgresql:17.2",
            data,
            true,
        ));
        assert_eq!(
            up.cluster.image_name(),
            "ghcr.io/cloudnative-pg/postgresql:16.4"
        );
        assert_eq!(up.refusal, None);
        assert_eq!(
            up.upgrade.map(|u| (u.image, u.major_version)),
            Some(("ghcr.io/cloudnative-pg/postgresql:17.2".to_string(), 17))
        );
        let down = hold(&cluster(
            "ghcr.io/cloudnative-pg/postgresql:15.14",
            data,
            true,
        ));
        assert_eq!(
            down.cluster.image_name(),
            "ghcr.io/cloudnative-pg/postgresql:16.4"
        );
        assert_eq!(down.upgrade, None);
        let why = down.refusal.unwrap();
        assert!(why.contains("can't downgrade from major 16 to 15"), "{why}");
        assert!(
            why.contains("keep running ghcr.io/cloudnative-pg/postgresql:16.4"),
            "{why}"
        );
    }
}
