//! The operator's release manifest (`pgherd manifests`), under CloudNativePG's names so the
//! seeds' runbooks keep working (`kubectl logs -n cnpg-system deployment/cnpg-controller-manager`,
//! `-l app.kubernetes.io/name=cloudnative-pg`): Namespace `cnpg-system`, the CRDs, ServiceAccount
//! and ClusterRole `cnpg-manager` with its binding, Service `cnpg-webhook-service`, Deployment
//! `cnpg-controller-manager` running `pgherd operator`, and the Mutating/Validating webhook
//! configurations (see [`crate::webhook`]). Applied with `kubectl apply --server-side` (the CRDs are too large
//! for client-side apply's annotation).

use crate::pod::field_env;
use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec, DeploymentStrategy};
use k8s_openapi::api::core::v1::{
    Container, ContainerPort, EmptyDirVolumeSource, EnvVar, Namespace, PodSecurityContext, PodSpec,
    PodTemplateSpec, ResourceRequirements, ServiceAccount, Volume, VolumeMount,
};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use std::collections::BTreeMap;

/// The operator's namespace.
pub const NAMESPACE: &str = "cnpg-system";
/// Its Deployment.
pub const DEPLOYMENT: &str = "cnpg-controller-manager";
/// Its ServiceAccount and ClusterRole.
pub const SERVICE_ACCOUNT: &str = "cnpg-manager";

/// The operator pods' labels (the Deployment's selector, the webhook Service's).
pub(crate) fn pod_labels() -> BTreeMap<String, String> {
    BTreeMap::from([(
        "app.kubernetes.io/name".to_string(),
        "cloudnative-pg".to_string(),
    )])
}

pub(crate) fn meta(name: &str, namespace: Option<&str>) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_string()),
        namespace: namespace.map(str::to_string),
        labels: Some(pod_labels()),
        ..ObjectMeta::default()
    }
}

fn rule(groups: &[&str], resources: &[&str], verbs: &[&str]) -> PolicyRule {
    let strings = |v: &[&str]| v.iter().map(|s| (*s).to_string()).collect::<Vec<_>>();
    PolicyRule {
        api_groups: Some(strings(groups)),
        resources: Some(strings(resources)),
        verbs: strings(verbs),
        ..PolicyRule::default()
    }
}

const ALL: &[&str] = &[
    "create", "delete", "get", "list", "patch", "update", "watch",
];
const STATUS: &[&str] = &["get", "patch", "update"];

/// What the operator does, and no more: every rule is used by the operator or granted by it to
/// the per-cluster Roles (Kubernetes' escalation rule requires the operator to hold those).
pub fn cluster_role() -> ClusterRole {
    ClusterRole {
        metadata: meta(SERVICE_ACCOUNT, None),
        rules: Some(vec![
            rule(&[""], &["configmaps", "secrets", "services"], ALL),
            rule(&[""], &["events"], &["create", "patch"]),
            rule(&["events.k8s.io"], &["events"], &["create", "patch"]),
            rule(&[""], &["nodes"], &["get", "list", "watch"]),
            rule(
                &[""],
                &["persistentvolumeclaims", "pods"],
                &["create", "delete", "get", "list", "patch", "watch"],
            ),
            rule(&[""], &["pods/status"], &["get"]),
            rule(
                &[""],
                &["serviceaccounts"],
                &["create", "get", "list", "patch", "update", "watch"],
            ),
            rule(&["apps"], &["deployments"], ALL),
            // The major-upgrade Job (operator/major_upgrade.rs).
            rule(
                &["batch"],
                &["jobs"],
                &["create", "delete", "get", "list", "watch"],
            ),
            rule(&["coordination.k8s.io"], &["leases"], ALL),
            rule(&["policy"], &["poddisruptionbudgets"], ALL),
            rule(&["monitoring.coreos.com"], &["podmonitors"], ALL),
            rule(
                &["rbac.authorization.k8s.io"],
                &["roles", "rolebindings"],
                &["create", "get", "list", "patch", "update", "watch"],
            ),
            rule(
                &["postgresql.cnpg.io"],
                &[
                    "backups",
                    "clusters",
                    "databaseroles",
                    "databases",
                    "poolers",
                    "publications",
                    "scheduledbackups",
                    "subscriptions",
                ],
                ALL,
            ),
            rule(
                &["postgresql.cnpg.io"],
                &[
                    "backups/status",
                    "clusters/status",
                    "databaseroles/status",
                    "databases/status",
                    "poolers/status",
                    "publications/status",
                    "scheduledbackups/status",
                    "subscriptions/status",
                ],
                STATUS,
            ),
            rule(
                &["postgresql.cnpg.io"],
                &["clusters/finalizers", "poolers/finalizers"],
                &["update"],
            ),
            rule(
                &["postgresql.cnpg.io"],
                &["imagecatalogs", "clusterimagecatalogs"],
                &["get", "list", "watch"],
            ),
            rule(
                &["barmancloud.cnpg.io"],
                &["objectstores"],
                &["get", "list", "watch"],
            ),
            // The webhook configurations' caBundle (patched, never created: they come with
            // the release).
            rule(
                &["admissionregistration.k8s.io"],
                &[
                    "mutatingwebhookconfigurations",
                    "validatingwebhookconfigurations",
                ],
                &["get", "patch"],
            ),
        ]),
        ..ClusterRole::default()
    }
}

fn env_value(name: &str, value: &str) -> EnvVar {
    EnvVar {
        name: name.to_string(),
        value: Some(value.to_string()),
        value_from: None,
    }
}

/// The operator's Deployment, running `image`'s `/manager operator`.
pub fn deployment(image: &str) -> Deployment {
    let selector = pod_labels();
    let container = Container {
        name: "manager".to_string(),
        image: Some(image.to_string()),
        // The webhook server listens on the pod's address (not every address: a test cluster
        // whose pods share one network, as kube-sim's, runs both replicas side by side).
        command: Some(vec![
            "/manager".to_string(),
            "operator".to_string(),
            "--webhook-address=$(POD_IP)".to_string(),
            "--metrics-bind-address=$(POD_IP):8080".to_string(),
        ]),
        env: Some(vec![
            env_value("OPERATOR_IMAGE_NAME", image),
            field_env("OPERATOR_NAMESPACE", "metadata.namespace"),
            field_env("POD_NAME", "metadata.name"),
            field_env("POD_IP", "status.podIP"),
            env_value("PGHERD_LOG_FORMAT", "json"),
        ]),
        ports: Some(vec![
            ContainerPort {
                name: Some("metrics".to_string()),
                container_port: 8080,
                protocol: Some("TCP".to_string()),
                ..ContainerPort::default()
            },
            ContainerPort {
                name: Some(crate::webhook::config::PORT_NAME.to_string()),
                container_port: i32::from(crate::webhook::config::DEFAULT_PORT),
                protocol: Some("TCP".to_string()),
                ..ContainerPort::default()
            },
        ]),
        resources: Some(ResourceRequirements {
            requests: Some(BTreeMap::from([
                ("cpu".to_string(), Quantity("100m".to_string())),
                ("memory".to_string(), Quantity("50Mi".to_string())),
            ])),
            limits: Some(BTreeMap::from([(
                "memory".to_string(),
                Quantity("200Mi".to_string()),
            )])),
            ..ResourceRequirements::default()
        }),
        security_context: Some(crate::security::restricted(
            crate::security::runtime_default_seccomp(),
        )),
        volume_mounts: Some(vec![VolumeMount {
            name: "scratch-data".to_string(),
            mount_path: "/controller".to_string(),
            ..VolumeMount::default()
        }]),
        ..Container::default()
    };
    Deployment {
        metadata: meta(DEPLOYMENT, Some(NAMESPACE)),
        spec: Some(DeploymentSpec {
            // Two, one leading (Lease `pgherd-operator`): one node's loss does not stop
            // failovers for longer than the Lease takes to pass.
            replicas: Some(2),
            selector: LabelSelector {
                match_labels: Some(selector.clone()),
                ..LabelSelector::default()
            },
            strategy: Some(DeploymentStrategy {
                type_: Some("RollingUpdate".to_string()),
                ..DeploymentStrategy::default()
            }),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(selector),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    service_account_name: Some(SERVICE_ACCOUNT.to_string()),
                    termination_grace_period_seconds: Some(10),
                    security_context: Some(PodSecurityContext {
                        run_as_non_root: Some(true),
                        run_as_user: Some(10001),
                        run_as_group: Some(10001),
                        seccomp_profile: Some(crate::security::runtime_default_seccomp()),
                        ..PodSecurityContext::default()
                    }),
                    containers: vec![container],
                    volumes: Some(vec![Volume {
                        name: "scratch-data".to_string(),
                        empty_dir: Some(EmptyDirVolumeSource::default()),
                        ..Volume::default()
                    }]),
                    ..PodSpec::default()
                }),
            },
            ..DeploymentSpec::default()
        }),
        ..Deployment::default()
    }
}

/// Every object of the release, in the order they can be applied.
pub fn release(image: &str) -> Vec<serde_json::Value> {
    let mut out = vec![serde_json::to_value(Namespace {
        metadata: meta(NAMESPACE, None),
        ..Namespace::default()
    })];
    out.extend(pgherd_api::crd::all().into_iter().map(serde_json::to_value));
    out.push(serde_json::to_value(ServiceAccount {
        metadata: meta(SERVICE_ACCOUNT, Some(NAMESPACE)),
        ..ServiceAccount::default()
    }));
    out.push(serde_json::to_value(cluster_role()));
    out.push(serde_json::to_value(ClusterRoleBinding {
        metadata: meta(SERVICE_ACCOUNT, None),
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".to_string(),
            kind: "ClusterRole".to_string(),
            name: SERVICE_ACCOUNT.to_string(),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".to_string(),
            name: SERVICE_ACCOUNT.to_string(),
            namespace: Some(NAMESPACE.to_string()),
            ..Subject::default()
        }]),
    }));
    out.push(serde_json::to_value(crate::webhook::config::service(
        NAMESPACE,
    )));
    out.push(serde_json::to_value(deployment(image)));
    let endpoint = crate::webhook::config::Endpoint::Service {
        namespace: NAMESPACE,
    };
    // Without caBundle: the operator patches in the CA of the certificate it makes.
    out.push(serde_json::to_value(crate::webhook::config::mutating(
        endpoint, None,
    )));
    out.push(serde_json::to_value(crate::webhook::config::validating(
        endpoint, None,
    )));
    out.into_iter().filter_map(Result::ok).collect()
}
