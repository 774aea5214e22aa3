//! The instance pod's volumes and the `postgres` container's mounts: the data, WAL and
//! tablespace claims, the scratch and shared-memory directories, the user's projected volume
//! and extension images, the certificates and passwords projected from the cluster's Secrets,
//! and the manager's own service-account token.

use crate::error::Result;
use crate::labels::Base;
use crate::names;
use crate::pod::{
    mount, user_cas, API_ACCESS_VOLUME, CERTIFICATES_MOUNT, CERTIFICATES_VOLUME, CONTROLLER_MOUNT,
    EXTENSIONS_MOUNT, PASSWORDS_MOUNT, PASSWORDS_VOLUME, PGDATA_MOUNT, PGDATA_VOLUME,
    PROJECTED_MOUNT, PROJECTED_VOLUME, RUN_MOUNT, SCRATCH_VOLUME, SERVICE_ACCOUNT_MOUNT, SHM_MOUNT,
    SHM_VOLUME, TABLESPACES_MOUNT, WAL_MOUNT, WAL_VOLUME,
};
use k8s_openapi::api::core::v1::{ConfigMapProjection, DownwardAPIProjection};
use k8s_openapi::api::core::v1::{DownwardAPIVolumeFile, ObjectFieldSelector};
use k8s_openapi::api::core::v1::{
    EmptyDirVolumeSource, KeyToPath, PersistentVolumeClaimVolumeSource, ProjectedVolumeSource,
    SecretProjection, ServiceAccountTokenProjection, Volume, VolumeMount, VolumeProjection,
};
use pgherd_api::Cluster;

/// Lifetime of the projected service-account token (as kubelet's own projection).
const TOKEN_EXPIRATION_SECONDS: i64 = 3607;

fn claim_volume(name: &str, claim: &str) -> Volume {
    Volume {
        name: name.to_string(),
        persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
            claim_name: claim.to_string(),
            read_only: None,
        }),
        ..Volume::default()
    }
}

/// The service-account token, CA and namespace, projected for the instance manager only (it
/// holds the primary Lease); the pod itself does not automount a token.
fn api_access_volume() -> Volume {
    Volume {
        name: API_ACCESS_VOLUME.to_string(),
        projected: Some(ProjectedVolumeSource {
            default_mode: None,
            sources: Some(vec![
                VolumeProjection {
                    service_account_token: Some(ServiceAccountTokenProjection {
                        path: "token".to_string(),
                        expiration_seconds: Some(TOKEN_EXPIRATION_SECONDS),
                        audience: None,
                    }),
                    ..VolumeProjection::default()
                },
                VolumeProjection {
                    config_map: Some(ConfigMapProjection {
                        name: "kube-root-ca.crt".to_string(),
                        items: Some(vec![KeyToPath {
                            key: "ca.crt".to_string(),
                            path: "ca.crt".to_string(),
                            mode: None,
                        }]),
                        optional: None,
                    }),
                    ..VolumeProjection::default()
                },
                VolumeProjection {
                    downward_api: Some(DownwardAPIProjection {
                        items: Some(vec![DownwardAPIVolumeFile {
                            path: "namespace".to_string(),
                            field_ref: Some(ObjectFieldSelector {
                                api_version: Some("v1".to_string()),
                                field_path: "metadata.namespace".to_string(),
                            }),
                            ..DownwardAPIVolumeFile::default()
                        }]),
                    }),
                    ..VolumeProjection::default()
                },
            ]),
        }),
        ..Volume::default()
    }
}

/// One projected Secret: `(key, path)` pairs.
fn secret_projection(secret: &str, items: &[(&str, &str)], optional: bool) -> VolumeProjection {
    VolumeProjection {
        secret: Some(SecretProjection {
            name: secret.to_string(),
            items: Some(
                items
                    .iter()
                    .map(|(key, path)| KeyToPath {
                        key: (*key).to_string(),
                        path: (*path).to_string(),
                        mode: None,
                    })
                    .collect(),
            ),
            optional: optional.then_some(true),
        }),
        ..VolumeProjection::default()
    }
}

/// A projected volume readable by the pod's group only (files owned by root, group
/// `fsGroup`, mode 0640: what PostgreSQL accepts for a key owned by root).
fn projected(name: &str, sources: Vec<VolumeProjection>) -> Volume {
    Volume {
        name: name.to_string(),
        projected: Some(ProjectedVolumeSource {
            default_mode: Some(0o640),
            sources: Some(sources),
        }),
        ..Volume::default()
    }
}

/// The cluster's certificates and the passwords the manager sets, as the instance spec names
/// them.
fn credential_volumes(cluster: &Cluster, base: &Base) -> [Volume; 2] {
    let secrets = crate::secret::CertificateSecrets::of(cluster);
    let certificates = projected(
        CERTIFICATES_VOLUME,
        std::iter::once(secret_projection(
            &names::ca_secret(&base.name),
            &[("ca.crt", "ca.crt")],
            false,
        ))
        .chain(
            user_cas(cluster)
                .into_iter()
                .flatten()
                .map(|(secret, file)| secret_projection(&secret, &[("ca.crt", file)], false)),
        )
        .chain([
            secret_projection(
                &secrets.server_tls,
                &[("tls.crt", "server.crt"), ("tls.key", "server.key")],
                false,
            ),
            secret_projection(
                &secrets.replication_tls,
                &[
                    ("tls.crt", "streaming_replica.crt"),
                    ("tls.key", "streaming_replica.key"),
                ],
                false,
            ),
        ])
        .collect(),
    );
    let app_secret = crate::secret::app_secret_name(cluster);
    let superuser_secret = crate::secret::superuser_secret_name(cluster);
    let passwords = projected(
        PASSWORDS_VOLUME,
        vec![
            secret_projection(&app_secret, &[("password", "app.password")], true),
            secret_projection(
                &superuser_secret,
                &[("password", "superuser.password")],
                true,
            ),
        ],
    );
    [certificates, passwords]
}

/// Volumes of the pod and mounts of the `postgres` container.
pub(crate) fn volumes(
    base: &Base,
    cluster: &Cluster,
    instance: &str,
) -> Result<(Vec<Volume>, Vec<VolumeMount>)> {
    let spec = &cluster.spec;
    let limits = spec.ephemeral_volumes_size_limit.as_ref();
    let mut volumes = vec![claim_volume(PGDATA_VOLUME, instance)];
    let mut mounts = vec![mount(PGDATA_VOLUME, PGDATA_MOUNT)];
    volumes.push(match &spec.ephemeral_volume_source {
        Some(source) => Volume {
            name: SCRATCH_VOLUME.to_string(),
            ephemeral: Some(k8s_openapi::api::core::v1::EphemeralVolumeSource {
                volume_claim_template: source.volume_claim_template.clone(),
            }),
            ..Volume::default()
        },
        None => Volume {
            name: SCRATCH_VOLUME.to_string(),
            empty_dir: Some(EmptyDirVolumeSource {
                medium: None,
                size_limit: limits.and_then(|l| l.temporary_data.clone()),
            }),
            ..Volume::default()
        },
    });
    mounts.push(mount(SCRATCH_VOLUME, CONTROLLER_MOUNT));
    mounts.push(mount(SCRATCH_VOLUME, RUN_MOUNT));
    volumes.push(Volume {
        name: SHM_VOLUME.to_string(),
        empty_dir: Some(EmptyDirVolumeSource {
            medium: Some("Memory".to_string()),
            size_limit: limits.and_then(|l| l.shm.clone()),
        }),
        ..Volume::default()
    });
    mounts.push(mount(SHM_VOLUME, SHM_MOUNT));
    if spec.wal_storage.is_some() {
        volumes.push(claim_volume(WAL_VOLUME, &names::wal_pvc_name(instance)));
        mounts.push(mount(WAL_VOLUME, WAL_MOUNT));
    }
    for tablespace in spec.tablespaces.iter().flatten() {
        let volume = format!("tbs-{}", names::tablespace_slug(&tablespace.name));
        base.owner().check_name("volume name", &volume)?;
        let claim = names::tablespace_pvc_name(instance, &tablespace.name);
        volumes.push(claim_volume(&volume, &claim));
        mounts.push(mount(
            &volume,
            &format!("{TABLESPACES_MOUNT}/{}", tablespace.name),
        ));
    }
    if let Some(projected) = &spec.projected_volume_template {
        volumes.push(Volume {
            name: PROJECTED_VOLUME.to_string(),
            projected: Some(projected.clone()),
            ..Volume::default()
        });
        mounts.push(mount(PROJECTED_VOLUME, PROJECTED_MOUNT));
    }
    for extension in cluster
        .spec
        .postgresql
        .iter()
        .flat_map(|p| p.extensions.iter().flatten())
    {
        // The volume is named after the extension, as CloudNativePG does; `_` (allowed in
        // extension names) is not allowed in volume names.
        let volume = extension.name.replace('_', "-");
        base.owner().check_name("volume name", &volume)?;
        volumes.push(Volume {
            name: volume.clone(),
            image: Some(extension.image.clone()),
            ..Volume::default()
        });
        mounts.push(VolumeMount {
            read_only: Some(true),
            ..mount(&volume, &format!("{EXTENSIONS_MOUNT}/{}", extension.name))
        });
    }
    for volume in credential_volumes(cluster, base) {
        let path = if volume.name == CERTIFICATES_VOLUME {
            CERTIFICATES_MOUNT
        } else {
            PASSWORDS_MOUNT
        };
        mounts.push(VolumeMount {
            read_only: Some(true),
            ..mount(&volume.name, path)
        });
        volumes.push(volume);
    }
    volumes.push(api_access_volume());
    mounts.push(VolumeMount {
        read_only: Some(true),
        ..mount(API_ACCESS_VOLUME, SERVICE_ACCOUNT_MOUNT)
    });
    Ok((volumes, mounts))
}
