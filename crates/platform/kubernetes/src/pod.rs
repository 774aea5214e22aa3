//! The instance Pod `NAME-N`.
//!
//! CloudNativePG's shape, so its PostgreSQL images work unchanged: an init container
//! (`bootstrap-controller`, the operator image) copies pgherd's binary into the shared
//! `scratch-data` emptyDir as `/controller/manager`; the `postgres` container (the PostgreSQL
//! image) runs it as its first process:
//!
//! ```text
//! /controller/manager instance run --spec /controller/instance.json \
//!     --pushed-with-certificates /controller/certificates
//! ```
//!
//! which is `pgherd instance run`, the command the local platform runs, in pushed mode: the
//! manager serves the instance protocol on `$POD_IP` with the cluster's certificates (projected
//! from the `-ca`, `-server` and `-replication` Secrets) and the operator sends it its spec
//! (`PUT /pg/spec`, from the operator's certificate only), kept in the pod's scratch directory;
//! a spec change never restarts the pod. The application owner's and the superuser's passwords
//! are projected into `/controller/secrets`.
//! Logging follows the cluster's `logLevel` through `PGHERD_LOG`, in JSON (`PGHERD_LOG_FORMAT`).

use crate::affinity::instance_affinity;
use crate::error::{BuildError, Result};
use crate::labels::{self, map, Base, InstanceRole};
use crate::probes::instance_probes;
use crate::security::{container_security, pod_security, seccomp};
use crate::{names, pvc, OperatorSettings};
use k8s_openapi::api::core::v1::ObjectFieldSelector;
use k8s_openapi::api::core::v1::{
    Container, ContainerPort, EnvVar, EnvVarSource, Pod, PodSpec, VolumeMount,
};
use pgherd_api::cluster::LogLevel;
use pgherd_api::defaults::DEFAULT_IMAGE_NAME;
use pgherd_api::Cluster;
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// Name of the PostgreSQL container.
pub const POSTGRES_CONTAINER: &str = "postgres";
/// Name of the init container copying the manager.
pub const BOOTSTRAP_CONTAINER: &str = "bootstrap-controller";
/// Where the operator image holds pgherd's binary.
pub const OPERATOR_BINARY: &str = "/manager";
/// Where the init container puts it, and what the `postgres` container runs.
pub const MANAGER_PATH: &str = "/controller/manager";
/// The instance spec file `pgherd instance run --spec` reads.
pub const INSTANCE_SPEC_PATH: &str = "/controller/instance.json";
/// Where the cluster's certificates are projected: `ca.crt` (the operator's CA), `server.crt`,
/// `server.key`, `streaming_replica.crt`, `streaming_replica.key`, and `server-ca.crt` and
/// `client-ca.crt` for the CAs a user provides.
pub const CERTIFICATES_MOUNT: &str = "/controller/certificates";
/// The user's server and client CAs in [`CERTIFICATES_MOUNT`] (when `spec.certificates` names
/// them).
const SERVER_CA_FILE: &str = "server-ca.crt";
const CLIENT_CA_FILE: &str = "client-ca.crt";

/// The server and client CAs of `cluster` with a file of their own in [`CERTIFICATES_MOUNT`]:
/// `(Secret, file)` of each the user provides (the operator's is `ca.crt`), server CA first.
pub(crate) fn user_cas(cluster: &Cluster) -> [Option<(String, &'static str)>; 2] {
    let secrets = crate::secret::CertificateSecrets::of(cluster);
    let operators_ca = names::ca_secret(cluster.metadata.name.as_deref().unwrap_or_default());
    let own = |secret: String, file| (secret != operators_ca).then_some((secret, file));
    [
        own(secrets.server_ca, SERVER_CA_FILE),
        own(secrets.client_ca, CLIENT_CA_FILE),
    ]
}

/// The certificate files of `cluster`'s instances, as [`CERTIFICATES_MOUNT`] holds them.
pub fn certificate_paths(cluster: &Cluster) -> pgherd_instance_protocol::CertificatePaths {
    let dir = std::path::Path::new(CERTIFICATES_MOUNT);
    let [server_ca, client_ca] = user_cas(cluster).map(|ca| ca.map(|(_, file)| dir.join(file)));
    pgherd_instance_protocol::CertificatePaths {
        server_ca,
        client_ca,
        ..pgherd_instance_protocol::CertificatePaths::in_dir(dir)
    }
}

/// Where the passwords the instance manager sets are projected (`app.password`,
/// `superuser.password`).
pub const PASSWORDS_MOUNT: &str = "/controller/secrets";
/// The application owner's password file (from the `-app` Secret, or `bootstrap.*.secret`).
pub const APP_PASSWORD_FILE: &str = "/controller/secrets/app.password";
/// The `postgres` role's password file (from the superuser Secret).
pub const SUPERUSER_PASSWORD_FILE: &str = "/controller/secrets/superuser.password";

/// PostgreSQL's port and its container port name.
pub const POSTGRES_PORT: i32 = 5432;
pub const POSTGRES_PORT_NAME: &str = "postgresql";
/// The metrics exporter's port and name.
pub const METRICS_PORT: i32 = 9187;
pub const METRICS_PORT_NAME: &str = "metrics";
/// The instance manager's status port (probes, instance protocol) and name.
pub const STATUS_PORT: i32 = 8000;
pub const STATUS_PORT_NAME: &str = "status";

/// Mount points.
pub const PGDATA_MOUNT: &str = "/var/lib/postgresql/data";
pub const PGDATA: &str = "/var/lib/postgresql/data/pgdata";
pub const WAL_MOUNT: &str = "/var/lib/postgresql/wal";
pub const TABLESPACES_MOUNT: &str = "/var/lib/postgresql/tablespaces";
pub const CONTROLLER_MOUNT: &str = "/controller";
pub const RUN_MOUNT: &str = "/run";
pub const SHM_MOUNT: &str = "/dev/shm";
pub const PROJECTED_MOUNT: &str = "/projected";
pub const EXTENSIONS_MOUNT: &str = "/extensions";
pub const SERVICE_ACCOUNT_MOUNT: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// Volume names.
pub const PGDATA_VOLUME: &str = "pgdata";
pub const WAL_VOLUME: &str = "pg-wal";
pub const SCRATCH_VOLUME: &str = "scratch-data";
pub const SHM_VOLUME: &str = "shm";
pub const PROJECTED_VOLUME: &str = "projected";
pub const API_ACCESS_VOLUME: &str = "kube-api-access";
pub const CERTIFICATES_VOLUME: &str = "certificates";
pub const PASSWORDS_VOLUME: &str = "passwords";

/// The PostgreSQL image of `cluster`: `imageName`, the catalog's image as resolved into
/// `status.image`, or the default image.
pub fn postgres_image(cluster: &Cluster) -> Result<String> {
    if let Some(image) = &cluster.spec.image_name {
        return Ok(image.clone());
    }
    if cluster.spec.image_catalog_ref.is_some() {
        return cluster
            .status
            .as_ref()
            .and_then(|s| s.image.clone())
            .ok_or_else(|| BuildError::Spec {
                kind: "Cluster",
                owner: cluster.metadata.name.clone().unwrap_or_default(),
                message: "imageCatalogRef is not resolved yet (status.image is empty)".into(),
            });
    }
    Ok(DEFAULT_IMAGE_NAME.to_string())
}

/// Hex SHA-256 of `value`'s JSON.
pub(crate) fn spec_hash<T: Serialize>(base: &Base, value: &T) -> Result<String> {
    let json = serde_json::to_vec(value).map_err(|source| BuildError::Merge {
        kind: base.kind,
        owner: base.name.clone(),
        what: "the spec hash",
        source,
    })?;
    Ok(Sha256::digest(json)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

pub(crate) fn mount(name: &str, path: &str) -> VolumeMount {
    VolumeMount {
        name: name.to_string(),
        mount_path: path.to_string(),
        ..VolumeMount::default()
    }
}

fn env(name: &str, value: &str) -> EnvVar {
    EnvVar {
        name: name.to_string(),
        value: Some(value.to_string()),
        value_from: None,
    }
}

/// An environment variable from the downward API (`fieldRef`).
pub(crate) fn field_env(name: &str, field_path: &str) -> EnvVar {
    EnvVar {
        name: name.to_string(),
        value: None,
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                api_version: Some("v1".to_string()),
                field_path: field_path.to_string(),
            }),
            ..EnvVarSource::default()
        }),
    }
}

fn port(name: &str, number: i32) -> ContainerPort {
    ContainerPort {
        name: Some(name.to_string()),
        container_port: number,
        protocol: Some("TCP".to_string()),
        ..ContainerPort::default()
    }
}

fn log_filter(level: Option<LogLevel>) -> &'static str {
    match level.unwrap_or_default() {
        LogLevel::Error => "error",
        LogLevel::Warning => "warn",
        LogLevel::Info => "info",
        LogLevel::Debug => "debug",
        LogLevel::Trace => "trace",
    }
}

/// The `postgres` container's environment: CloudNativePG's variables, pgherd's logging, then
/// the user's `env`.
pub(crate) fn instance_env(base: &Base, cluster: &Cluster, instance: &str) -> Vec<EnvVar> {
    let mut out = vec![
        env("PGDATA", PGDATA),
        env("POD_NAME", instance),
        field_env("POD_IP", "status.podIP"),
        env("NAMESPACE", base.namespace_or_default()),
        env("CLUSTER_NAME", &base.name),
        env("PSQL_HISTORY", "/controller/tmp/.psql_history"),
        env("PGPORT", &POSTGRES_PORT.to_string()),
        env("PGHOST", "/controller/run"),
        env("TMPDIR", "/controller/tmp"),
        env("PGHERD_LOG", log_filter(cluster.spec.log_level)),
        env("PGHERD_LOG_FORMAT", "json"),
    ];
    out.extend(cluster.spec.env.iter().flatten().cloned());
    out
}

/// The init container copying the manager into the scratch volume (the operator image).
pub(crate) fn bootstrap_container(
    operator: &OperatorSettings,
    resources: Option<k8s_openapi::api::core::v1::ResourceRequirements>,
    security: &k8s_openapi::api::core::v1::SecurityContext,
) -> Container {
    Container {
        name: BOOTSTRAP_CONTAINER.to_string(),
        image: Some(operator.image.clone()),
        image_pull_policy: operator.image_pull_policy.clone(),
        command: Some(
            [OPERATOR_BINARY, "bootstrap", MANAGER_PATH]
                .map(String::from)
                .to_vec(),
        ),
        volume_mounts: Some(vec![mount(SCRATCH_VOLUME, CONTROLLER_MOUNT)]),
        resources,
        security_context: Some(security.clone()),
        ..Container::default()
    }
}

/// The Cluster's `imagePullSecrets` for its pods.
pub(crate) fn image_pull_secrets(
    cluster: &Cluster,
) -> Option<Vec<k8s_openapi::api::core::v1::LocalObjectReference>> {
    cluster.spec.image_pull_secrets.as_ref().map(|secrets| {
        secrets
            .iter()
            .map(|s| k8s_openapi::api::core::v1::LocalObjectReference {
                name: s.name.clone(),
            })
            .collect()
    })
}

/// The instance pod `NAME-<serial>`. `current_primary` (the cluster's `status.currentPrimary`)
/// sets the `cnpg.io/instanceRole` and `role` labels; without one the pod has no role label
/// yet and no Service selects it.
pub fn instance_pod(
    cluster: &Cluster,
    operator: &OperatorSettings,
    serial: u32,
    current_primary: Option<&str>,
) -> Result<Pod> {
    let base = Base::of_cluster(cluster)?;
    let instance = names::instance_name(&base.name, serial);
    base.owner().check_name("pod name", &instance)?;
    let spec = &cluster.spec;
    let security = container_security(&base, seccomp(cluster), spec.security_context.as_ref())?;
    let (volumes, mounts) = volumes(&base, cluster, &instance)?;
    let (startup, readiness, liveness) = instance_probes(cluster);

    let bootstrap = bootstrap_container(operator, spec.resources.clone(), &security);
    let postgres = Container {
        name: POSTGRES_CONTAINER.to_string(),
        image: Some(postgres_image(cluster)?),
        image_pull_policy: spec.image_pull_policy.clone(),
        command: Some(
            [
                MANAGER_PATH,
                "instance",
                "run",
                "--spec",
                INSTANCE_SPEC_PATH,
                "--pushed-with-certificates",
                CERTIFICATES_MOUNT,
            ]
            .map(String::from)
            .to_vec(),
        ),
        env: Some(instance_env(&base, cluster, &instance)),
        env_from: spec.env_from.clone(),
        ports: Some(vec![
            port(POSTGRES_PORT_NAME, POSTGRES_PORT),
            port(METRICS_PORT_NAME, METRICS_PORT),
            port(STATUS_PORT_NAME, STATUS_PORT),
        ]),
        startup_probe: Some(startup),
        readiness_probe: Some(readiness),
        liveness_probe: Some(liveness),
        resources: spec.resources.clone(),
        security_context: Some(security),
        volume_mounts: Some(mounts),
        ..Container::default()
    };
    let affinity_config = spec.affinity.as_ref();
    let pod_spec = PodSpec {
        hostname: Some(instance.clone()),
        service_account_name: Some(crate::rbac::cluster_service_account_name(cluster)),
        automount_service_account_token: Some(false),
        termination_grace_period_seconds: Some(i64::from(spec.stop_delay.unwrap_or(1800))),
        scheduler_name: spec.scheduler_name.clone(),
        priority_class_name: spec.priority_class_name.clone(),
        node_selector: affinity_config.and_then(|a| a.node_selector.clone()),
        tolerations: affinity_config.and_then(|a| a.tolerations.clone()),
        affinity: instance_affinity(cluster),
        topology_spread_constraints: spec.topology_spread_constraints.clone(),
        image_pull_secrets: image_pull_secrets(cluster),
        security_context: Some(pod_security(&base, cluster)?),
        init_containers: Some(vec![bootstrap]),
        containers: vec![postgres],
        volumes: Some(volumes),
        ..PodSpec::default()
    };

    let mut pod_labels = labels::cluster_labels(cluster, "database");
    pod_labels.extend(map([
        (labels::INSTANCE_NAME, &instance),
        (labels::POD_ROLE, "instance"),
    ]));
    if let Some(role) = InstanceRole::of(&instance, current_primary) {
        pod_labels.insert(labels::INSTANCE_ROLE.into(), role.as_str().into());
        pod_labels.insert(labels::LEGACY_ROLE.into(), role.as_str().into());
    }
    let mut annotations = map([
        (labels::NODE_SERIAL, &serial.to_string()),
        (labels::POD_SPEC_HASH, &spec_hash(&base, &pod_spec)?),
    ]);
    if let Some(restarted) = cluster
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(RESTARTED_AT))
    {
        annotations.insert(RESTARTED_AT.to_string(), restarted.clone());
    }
    Ok(Pod {
        metadata: base.meta(&instance, pod_labels, annotations)?,
        spec: Some(pod_spec),
        status: None,
    })
}

pub(crate) use crate::pod_volumes::volumes;
pub use pgherd_controller::operations::RESTARTED_AT_ANNOTATION as RESTARTED_AT;

/// The labels a pod of `instance` must carry for `role` (what the operator patches when the
/// primary changes): `cnpg.io/instanceRole` and the legacy `role`.
pub fn role_labels(role: InstanceRole) -> BTreeMap<String, String> {
    map([
        (labels::INSTANCE_ROLE, role.as_str()),
        (labels::LEGACY_ROLE, role.as_str()),
    ])
}

/// The PVC names instance `serial` mounts (for the operator's bookkeeping).
pub fn instance_claims(cluster: &Cluster, serial: u32) -> Result<Vec<String>> {
    Ok(pvc::instance_pvcs(cluster, serial, pvc::PvcStatus::Ready)?
        .into_iter()
        .filter_map(|p| p.metadata.name)
        .collect())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use k8s_openapi::api::core::v1::SecurityContext;
    use pgherd_api::cluster::{ImageCatalogRef, StorageConfiguration, TablespaceConfiguration};

    fn cluster() -> Cluster {
        let mut c = Cluster::new("pg", Default::default());
        c.metadata.uid = Some("u".into());
        c.metadata.namespace = Some("ns".into());
        c.spec.storage = Some(StorageConfiguration {
            size: Some("1Gi".into()),
            ..Default::default()
        });
        c
    }

    fn operator() -> OperatorSettings {
        OperatorSettings::new("op:1")
    }

    #[test]
    fn the_manager_is_copied_and_runs_first() {
        let pod = instance_pod(&cluster(), &operator(), 2, Some("pg-1")).unwrap();
        let spec = pod.spec.unwrap();
        let init = &spec.init_containers.as_ref().unwrap()[0];
        assert_eq!(init.image.as_deref(), Some("op:1"));
        assert_eq!(
            init.command.as_deref().unwrap(),
            ["/manager", "bootstrap", "/controller/manager"]
        );
        let postgres = &spec.containers[0];
        assert_eq!(postgres.name, "postgres");
        assert_eq!(
            postgres.command.as_deref().unwrap()[..3],
            ["/controller/manager", "instance", "run"]
        );
        assert_eq!(spec.hostname.as_deref(), Some("pg-2"));
        assert_eq!(spec.automount_service_account_token, Some(false));
        let labels = pod.metadata.labels.unwrap();
        assert_eq!(labels["cnpg.io/instanceName"], "pg-2");
        assert_eq!(labels["role"], "replica");
        assert_eq!(pod.metadata.annotations.unwrap()["cnpg.io/nodeSerial"], "2");
    }

    #[test]
    fn the_spec_hash_changes_with_the_spec_and_not_with_the_role() {
        let hash = |c: &Cluster, primary| {
            instance_pod(c, &operator(), 1, primary)
                .unwrap()
                .metadata
                .annotations
                .unwrap()[labels::POD_SPEC_HASH]
                .clone()
        };
        let mut c = cluster();
        let before = hash(&c, Some("pg-1"));
        assert_eq!(before, hash(&c, Some("pg-2")), "a role change is a relabel");
        c.spec.image_name = Some("ghcr.io/cloudnative-pg/postgresql:17.5".into());
        assert_ne!(before, hash(&c, Some("pg-1")));
    }

    #[test]
    fn user_security_fields_override_one_by_one() {
        let mut c = cluster();
        c.spec.postgres_uid = Some(1000);
        c.spec.security_context = Some(SecurityContext {
            read_only_root_filesystem: Some(false),
            ..Default::default()
        });
        let spec = instance_pod(&c, &operator(), 1, None)
            .unwrap()
            .spec
            .unwrap();
        let pod = spec.security_context.unwrap();
        assert_eq!((pod.run_as_user, pod.run_as_group), (Some(1000), Some(26)));
        let container = spec.containers[0].security_context.clone().unwrap();
        assert_eq!(container.read_only_root_filesystem, Some(false));
        assert_eq!(container.allow_privilege_escalation, Some(false));
    }

    #[test]
    fn an_unresolved_image_catalog_is_an_error() {
        let mut c = cluster();
        c.spec.image_catalog_ref = Some(ImageCatalogRef {
            kind: "ClusterImageCatalog".into(),
            name: "postgresql".into(),
            major: 17,
            ..Default::default()
        });
        let err = instance_pod(&c, &operator(), 1, None).unwrap_err();
        assert!(err.to_string().contains("status.image"), "{err}");
    }

    #[test]
    fn a_tablespace_name_that_overflows_is_refused_with_the_cluster_named() {
        let mut c = cluster();
        c.spec.tablespaces = Some(vec![TablespaceConfiguration {
            name: "t".repeat(60),
            storage: c.spec.storage.clone().unwrap(),
            ..Default::default()
        }]);
        let err = instance_pod(&c, &operator(), 1, None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("Cluster \"pg\""), "{err}");
        assert!(err.contains("limit of 63"), "{err}");
    }
}
