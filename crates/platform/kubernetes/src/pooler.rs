//! A Pooler's Deployment `P` and Service `P` (its ServiceAccount, Role and RoleBinding are in
//! [`crate::rbac`], its PodMonitor in [`crate::monitor`]).
//!
//! The pods run the PgBouncer image with pgherd's binary copied in by the same init container
//! as instances, as their first process: `/controller/manager pooler run` (see
//! [`crate::pooler_pod`]: it reads its Pooler and the cluster's Secrets with the pod's
//! ServiceAccount, renders PgBouncer's files and runs PgBouncer and its exporter). The user's `template` is merged over the generated pod: its
//! fields replace the generated ones, its `pgbouncer` container's fields replace the generated
//! container's, other containers and volumes are added.

use crate::error::{BuildError, Result};
use crate::labels::{self, map, Base};
use crate::pod::{spec_hash, CONTROLLER_MOUNT, MANAGER_PATH, SCRATCH_VOLUME};
use crate::secret::CertificateSecrets;
use crate::security::{container_security, overlay};
use crate::OperatorSettings;
use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::{
    Container, ContainerPort, EmptyDirVolumeSource, EnvVar, PodSecurityContext, PodSpec,
    PodTemplateSpec, Probe, SeccompProfile, Service, ServicePort, ServiceSpec, TCPSocketAction,
    Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use pgherd_api::Pooler;
use std::collections::{BTreeMap, BTreeSet};

/// Name of the PgBouncer container.
pub const PGBOUNCER_CONTAINER: &str = "pgbouncer";
/// PgBouncer's port and its name.
pub const PGBOUNCER_PORT: i32 = 5432;
pub const PGBOUNCER_PORT_NAME: &str = "pgbouncer";
/// The PgBouncer exporter's port.
pub const POOLER_METRICS_PORT: i32 = 9127;
/// User and group of the PgBouncer images.
pub const PGBOUNCER_UID: i64 = 998;
pub const PGBOUNCER_GID: i64 = 996;

fn pooler_name(pooler: &Pooler) -> &str {
    pooler.metadata.name.as_deref().unwrap_or_default()
}

/// Labels of a pooler's objects.
pub fn pooler_labels(pooler: &Pooler) -> BTreeMap<String, String> {
    let name = pooler_name(pooler);
    map([
        (labels::POOLER_NAME, name),
        (labels::CLUSTER, &pooler.spec.cluster.name),
        ("app.kubernetes.io/name", "pgbouncer"),
        ("app.kubernetes.io/instance", name),
        ("app.kubernetes.io/component", "pooler"),
        ("app.kubernetes.io/managed-by", labels::MANAGED_BY),
    ])
}

/// Secrets a pooler's pods read: the auth query credentials (`CLUSTER-pooler` unless
/// `authQuerySecret`) and the TLS material (the cluster's, `certificates`, unless the pooler
/// names its own).
pub fn pooler_secret_names(pooler: &Pooler, certificates: &CertificateSecrets) -> Vec<String> {
    let cluster = &pooler.spec.cluster.name;
    let p = &pooler.spec.pgbouncer;
    let pick = |own: &Option<pgherd_api::common::LocalObjectReference>, default: &String| {
        own.as_ref()
            .map(|s| s.name.clone())
            .unwrap_or_else(|| default.clone())
    };
    let mut out = BTreeSet::from([
        pick(&p.auth_query_secret, &format!("{cluster}-pooler")),
        pick(&p.server_ca_secret, &certificates.server_ca),
        pick(&p.client_ca_secret, &certificates.client_ca),
        pick(&p.server_tls_secret, &certificates.server_tls),
    ]);
    if let Some(s) = &p.client_tls_secret {
        out.insert(s.name.clone());
    }
    out.into_iter().collect()
}

fn env(name: &str, value: &str) -> EnvVar {
    EnvVar {
        name: name.to_string(),
        value: Some(value.to_string()),
        value_from: None,
    }
}

fn merge_err<'a>(
    base: &'a Base,
    what: &'static str,
) -> impl Fn(serde_json::Error) -> BuildError + 'a {
    move |source| BuildError::Merge {
        kind: base.kind,
        owner: base.name.clone(),
        what,
        source,
    }
}

/// The user's pod spec over the generated one (see the module's documentation).
fn merge_template(base: &Base, generated: PodSpec, user: Option<&PodSpec>) -> Result<PodSpec> {
    let Some(user) = user else {
        return Ok(generated);
    };
    let mut containers = generated.containers.clone();
    for theirs in &user.containers {
        match containers.iter_mut().find(|c| c.name == theirs.name) {
            Some(ours) => {
                *ours = overlay(
                    base,
                    "spec.template.spec.containers",
                    ours.clone(),
                    Some(theirs),
                )?
            }
            None => containers.push(theirs.clone()),
        }
    }
    let mut volumes = generated.volumes.clone().unwrap_or_default();
    volumes.extend(user.volumes.iter().flatten().cloned());
    let mut init = generated.init_containers.clone().unwrap_or_default();
    init.extend(user.init_containers.iter().flatten().cloned());
    let err = merge_err(base, "spec.template.spec");
    let mut out = serde_json::to_value(&generated).map_err(&err)?;
    let over = serde_json::to_value(user).map_err(&err)?;
    if let (Some(out), serde_json::Value::Object(over)) = (out.as_object_mut(), over) {
        for (k, v) in over {
            if !matches!(k.as_str(), "containers" | "volumes" | "initContainers") {
                out.insert(k, v);
            }
        }
    }
    let mut spec: PodSpec = serde_json::from_value(out).map_err(&err)?;
    spec.containers = containers;
    spec.volumes = Some(volumes);
    spec.init_containers = Some(init);
    Ok(spec)
}

/// The Deployment `P` running PgBouncer.
pub fn pooler_deployment(pooler: &Pooler, operator: &OperatorSettings) -> Result<Deployment> {
    let base = Base::new(pooler, "Pooler", None)?;
    let seccomp = SeccompProfile {
        type_: "RuntimeDefault".to_string(),
        localhost_profile: None,
    };
    let security = container_security(&base, seccomp.clone(), None)?;
    let scratch = VolumeMount {
        name: SCRATCH_VOLUME.to_string(),
        mount_path: CONTROLLER_MOUNT.to_string(),
        ..VolumeMount::default()
    };
    let bootstrap = crate::pod::bootstrap_container(operator, None, &security);
    let image = pooler
        .spec
        .pgbouncer
        .image
        .clone()
        .unwrap_or_else(|| operator.pgbouncer_image.clone());
    let pgbouncer = Container {
        name: PGBOUNCER_CONTAINER.to_string(),
        image: Some(image),
        command: Some([MANAGER_PATH, "pooler", "run"].map(String::from).to_vec()),
        env: Some(vec![
            env("NAMESPACE", base.namespace_or_default()),
            env("POOLER_NAME", &base.name),
            env("PGUSER", "pgbouncer"),
            env("PGDATABASE", "pgbouncer"),
            env("PGHOST", "/controller/run"),
            env("PGHERD_LOG_FORMAT", "json"),
            // PgBouncer and its exporter listen on the pod's address (as instances do).
            crate::pod::field_env("POD_IP", "status.podIP"),
        ]),
        ports: Some(vec![
            ContainerPort {
                name: Some(PGBOUNCER_PORT_NAME.to_string()),
                container_port: PGBOUNCER_PORT,
                protocol: Some("TCP".to_string()),
                ..ContainerPort::default()
            },
            ContainerPort {
                name: Some("metrics".to_string()),
                container_port: POOLER_METRICS_PORT,
                protocol: Some("TCP".to_string()),
                ..ContainerPort::default()
            },
        ]),
        readiness_probe: Some(Probe {
            tcp_socket: Some(TCPSocketAction {
                port: IntOrString::Int(PGBOUNCER_PORT),
                host: None,
            }),
            timeout_seconds: Some(5),
            ..Probe::default()
        }),
        security_context: Some(security),
        volume_mounts: Some(vec![scratch]),
        ..Container::default()
    };
    let generated = PodSpec {
        service_account_name: Some(crate::rbac::pooler_service_account_name(pooler)),
        security_context: Some(PodSecurityContext {
            run_as_user: Some(PGBOUNCER_UID),
            run_as_group: Some(PGBOUNCER_GID),
            run_as_non_root: Some(true),
            seccomp_profile: Some(seccomp),
            ..PodSecurityContext::default()
        }),
        init_containers: Some(vec![bootstrap]),
        containers: vec![pgbouncer],
        volumes: Some(vec![Volume {
            name: SCRATCH_VOLUME.to_string(),
            empty_dir: Some(EmptyDirVolumeSource::default()),
            ..Volume::default()
        }]),
        ..PodSpec::default()
    };
    let template = pooler.spec.template.clone().unwrap_or_default();
    let pod_spec = merge_template(&base, generated, template.spec.as_ref())?;
    let template_meta = template.metadata.unwrap_or_default();
    let mut pod_labels = template_meta.labels.unwrap_or_default();
    pod_labels.extend(pooler_labels(pooler));
    pod_labels.insert(labels::POD_ROLE.to_string(), "pooler".to_string());
    for (k, v) in &pod_labels {
        base.owner().check_label_value(k, v)?;
    }
    let mut pod_annotations = template_meta.annotations.unwrap_or_default();
    let hash = spec_hash(&base, &(&pod_spec, &pod_labels, &pod_annotations))?;
    pod_annotations.insert(labels::POOLER_SPEC_HASH.to_string(), hash);
    Ok(Deployment {
        metadata: base.meta(&base.name, pooler_labels(pooler), BTreeMap::new())?,
        spec: Some(DeploymentSpec {
            replicas: Some(pooler.spec.instances.unwrap_or(1)),
            selector: LabelSelector {
                match_labels: Some(map([(labels::POOLER_NAME, &base.name)])),
                match_expressions: None,
            },
            strategy: pooler.spec.deployment_strategy.clone(),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(pod_labels),
                    annotations: Some(pod_annotations),
                    ..ObjectMeta::default()
                }),
                spec: Some(pod_spec),
            },
            ..DeploymentSpec::default()
        }),
        status: None,
    })
}

/// The Service `P`: ClusterIP unless the `serviceTemplate` says otherwise, port `pgbouncer`,
/// the operator's selector.
pub fn pooler_service(pooler: &Pooler) -> Result<Service> {
    let base = Base::new(pooler, "Pooler", None)?;
    let template = pooler.spec.service_template.clone().unwrap_or_default();
    let metadata = template.metadata.unwrap_or_default();
    let mut service_labels = metadata.labels.unwrap_or_default();
    service_labels.extend(pooler_labels(pooler));
    let generated = ServiceSpec {
        type_: Some("ClusterIP".to_string()),
        ports: Some(vec![ServicePort {
            name: Some(PGBOUNCER_PORT_NAME.to_string()),
            port: PGBOUNCER_PORT,
            target_port: Some(IntOrString::String(PGBOUNCER_PORT_NAME.to_string())),
            protocol: Some("TCP".to_string()),
            ..ServicePort::default()
        }]),
        ..ServiceSpec::default()
    };
    let mut spec = overlay(
        &base,
        "spec.serviceTemplate.spec",
        generated,
        template.spec.as_ref(),
    )?;
    spec.selector = Some(map([(labels::POOLER_NAME, &base.name)]));
    Ok(Service {
        metadata: base.meta(
            &base.name,
            service_labels,
            metadata.annotations.unwrap_or_default(),
        )?,
        spec: Some(spec),
        status: None,
    })
}
