//! `Pooler` (`postgresql.cnpg.io/v1`): PgBouncer in front of a cluster.
// kube's `printcolumn(...)` repeats `type_ =` per column; clippy sees duplicated attributes.
#![allow(clippy::duplicated_attributes)]

use crate::cluster::{RelabelConfig, ServiceTemplateSpec};
use crate::common::{ClusterReference, LocalObjectReference, TemplateMetadata};
use k8s_openapi::api::apps::v1 as apps;
use k8s_openapi::api::core::v1 as core;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_with::skip_serializing_none;
use std::collections::BTreeMap;

/// Which instances the pooler sends connections to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum PoolerType {
    /// The primary (`<cluster>-rw`).
    #[default]
    Rw,
    /// The replicas (`<cluster>-ro`).
    Ro,
    /// Any instance (`<cluster>-r`).
    R,
}

/// PgBouncer pooling mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum PgBouncerPoolMode {
    /// A server connection per client session.
    #[default]
    Session,
    /// A server connection per transaction.
    Transaction,
}

/// A connection pooler for a cluster.
#[skip_serializing_none]
#[derive(CustomResource, Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "postgresql.cnpg.io",
    version = "v1",
    kind = "Pooler",
    namespaced,
    status = "PoolerStatus",
    derive = "PartialEq",
    derive = "Default",
    doc = "Pooler runs PgBouncer in front of a Cluster.",
    scale(
        spec_replicas_path = ".spec.instances",
        status_replicas_path = ".status.instances"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    ),
    printcolumn(name = "Cluster", type_ = "string", json_path = ".spec.cluster.name"),
    printcolumn(name = "Type", type_ = "string", json_path = ".spec.type")
)]
#[serde(rename_all = "camelCase")]
pub struct PoolerSpec {
    /// The cluster behind the pooler.
    pub cluster: ClusterReference,
    /// `rw`, `ro` or `r`.
    #[serde(rename = "type")]
    pub pooler_type: Option<PoolerType>,
    /// Number of PgBouncer instances.
    #[schemars(range(min = 0))]
    pub instances: Option<i32>,
    /// Pod template for the PgBouncer pods.
    pub template: Option<PodTemplateSpec>,
    /// PgBouncer configuration.
    pub pgbouncer: PgBouncerSpec,
    /// Deployment strategy.
    pub deployment_strategy: Option<apps::DeploymentStrategy>,
    /// Monitoring.
    pub monitoring: Option<PoolerMonitoringConfiguration>,
    /// Service template.
    pub service_template: Option<ServiceTemplateSpec>,
    /// Use an existing ServiceAccount.
    pub service_account_name: Option<String>,
}

/// A pod template: metadata to add and the pod spec to merge into the generated one.
#[skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
pub struct PodTemplateSpec {
    /// Labels, annotations and name.
    pub metadata: Option<TemplateMetadata>,
    /// Pod spec.
    pub spec: Option<core::PodSpec>,
}

/// A PgBouncer image chosen from an image catalog.
#[skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PoolerImageCatalogRef {
    /// API group of the catalog (`postgresql.cnpg.io`).
    pub api_group: Option<String>,
    /// `ImageCatalog` or `ClusterImageCatalog`.
    pub kind: String,
    /// Name of the catalog.
    pub name: String,
    /// Key of the catalog entry.
    #[schemars(regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"), length(max = 63))]
    pub key: String,
}

/// `spec.pgbouncer`.
#[skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PgBouncerSpec {
    /// `session` or `transaction`.
    pub pool_mode: Option<PgBouncerPoolMode>,
    /// Secret with the auth query user's credentials (deprecated).
    pub auth_query_secret: Option<LocalObjectReference>,
    /// Query used to look up passwords.
    pub auth_query: Option<String>,
    /// Server TLS certificate.
    #[serde(rename = "serverTLSSecret")]
    pub server_tls_secret: Option<LocalObjectReference>,
    /// Server CA.
    #[serde(rename = "serverCASecret")]
    pub server_ca_secret: Option<LocalObjectReference>,
    /// Client CA.
    #[serde(rename = "clientCASecret")]
    pub client_ca_secret: Option<LocalObjectReference>,
    /// Client TLS certificate.
    #[serde(rename = "clientTLSSecret")]
    pub client_tls_secret: Option<LocalObjectReference>,
    /// PgBouncer parameters (allow-listed).
    pub parameters: Option<BTreeMap<String, String>>,
    /// PgBouncer HBA lines.
    #[serde(rename = "pg_hba")]
    pub pg_hba: Option<Vec<String>>,
    /// Pause PgBouncer (`PAUSE`).
    pub paused: Option<bool>,
    /// PgBouncer image.
    pub image: Option<String>,
    /// PgBouncer image from an image catalog.
    pub image_catalog_ref: Option<PoolerImageCatalogRef>,
}

/// Pooler monitoring.
#[skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PoolerMonitoringConfiguration {
    /// Create a PodMonitor.
    pub enable_pod_monitor: Option<bool>,
    /// Metric relabelings.
    pub pod_monitor_metric_relabelings: Option<Vec<RelabelConfig>>,
    /// Relabelings.
    pub pod_monitor_relabelings: Option<Vec<RelabelConfig>>,
    /// TLS for the metrics endpoint.
    pub tls: Option<crate::cluster::ClusterMonitoringTls>,
}

/// Observed state of a pooler.
#[skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PoolerStatus {
    /// Number of PgBouncer instances running.
    pub instances: Option<i32>,
    /// `active`, `paused`, `inactive` or `failed`.
    pub phase: Option<String>,
    /// Why.
    pub phase_reason: Option<String>,
    /// Last error.
    pub error: Option<String>,
    /// PgBouncer image in use.
    pub image: Option<String>,
    /// Secrets in use and their versions.
    pub secrets: Option<PoolerSecrets>,
}

/// A secret and the version of it in use.
#[skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
pub struct SecretVersion {
    /// Secret name.
    pub name: Option<String>,
    /// Resource version in use.
    pub version: Option<String>,
}

/// Secrets a pooler uses.
#[skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PoolerSecrets {
    /// Server TLS certificate.
    #[serde(rename = "serverTLS")]
    pub server_tls: Option<SecretVersion>,
    /// Server CA.
    #[serde(rename = "serverCA")]
    pub server_ca: Option<SecretVersion>,
    /// Client CA.
    #[serde(rename = "clientCA")]
    pub client_ca: Option<SecretVersion>,
    /// Client TLS certificate.
    #[serde(rename = "clientTLS")]
    pub client_tls: Option<SecretVersion>,
    /// PgBouncer's own secrets.
    pub pg_bouncer_secrets: Option<PgBouncerSecrets>,
}

/// PgBouncer's own secrets.
#[skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PgBouncerSecrets {
    /// Auth query credentials.
    pub auth_query: Option<SecretVersion>,
}

/// PgBouncer parameters a Pooler may set.
pub const ALLOWED_PGBOUNCER_PARAMETERS: &[&str] = &[
    "application_name_add_host",
    "auth_type",
    "auth_user",
    "autodb_idle_timeout",
    "cancel_wait_timeout",
    "client_idle_timeout",
    "client_login_timeout",
    "client_tls13_ciphers",
    "client_tls_ciphers",
    "client_tls_sslmode",
    "default_pool_size",
    "disable_pqexec",
    "dns_max_ttl",
    "dns_nxdomain_ttl",
    "idle_transaction_timeout",
    "ignore_startup_parameters",
    "listen_backlog",
    "log_connections",
    "log_disconnections",
    "log_pooler_errors",
    "log_stats",
    "max_client_conn",
    "max_db_connections",
    "max_packet_size",
    "max_prepared_statements",
    "max_user_connections",
    "min_pool_size",
    "pkt_buf",
    "query_timeout",
    "query_wait_timeout",
    "reserve_pool_size",
    "reserve_pool_timeout",
    "sbuf_loopcnt",
    "server_check_delay",
    "server_check_query",
    "server_connect_timeout",
    "server_fast_close",
    "server_idle_timeout",
    "server_lifetime",
    "server_login_retry",
    "server_reset_query",
    "server_reset_query_always",
    "server_round_robin",
    "server_tls13_ciphers",
    "server_tls_ciphers",
    "server_tls_protocols",
    "server_tls_sslmode",
    "stats_period",
    "suspend_timeout",
    "tcp_defer_accept",
    "tcp_keepalive",
    "tcp_keepcnt",
    "tcp_keepidle",
    "tcp_keepintvl",
    "tcp_socket_buffer",
    "tcp_user_timeout",
    "track_extra_parameters",
    "verbose",
];
