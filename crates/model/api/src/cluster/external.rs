//! `spec.externalClusters`, `spec.replica` and `spec.certificates`.

use crate::barman::BarmanObjectStoreConfiguration;
use crate::cluster::PluginConfiguration;
use crate::common::CoreSecretKeySelector;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_with::skip_serializing_none;
use std::collections::BTreeMap;

/// Another cluster: a source to bootstrap or replicate from.
#[skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExternalCluster {
    /// Name used by `bootstrap.*.source` and `replica.source`.
    pub name: String,
    /// libpq connection parameters.
    pub connection_parameters: Option<BTreeMap<String, String>>,
    /// Client certificate.
    pub ssl_cert: Option<CoreSecretKeySelector>,
    /// Client key.
    pub ssl_key: Option<CoreSecretKeySelector>,
    /// Root certificate.
    pub ssl_root_cert: Option<CoreSecretKeySelector>,
    /// Password.
    pub password: Option<CoreSecretKeySelector>,
    /// Its object store (backups and WAL).
    pub barman_object_store: Option<BarmanObjectStoreConfiguration>,
    /// A plugin that reads its backups and WAL.
    pub plugin: Option<PluginConfiguration>,
}

/// `spec.replica`: run this cluster as a replica of another.
#[skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReplicaClusterConfiguration {
    /// Replica mode on (standalone topology).
    pub enabled: Option<bool>,
    /// External cluster to replicate from.
    pub source: String,
    /// This cluster's name in a distributed topology.
    #[serde(rename = "self")]
    pub self_name: Option<String>,
    /// The primary cluster in a distributed topology.
    pub primary: Option<String>,
    /// Demotion token of the former primary cluster.
    pub promotion_token: Option<String>,
    /// Delay applying WAL (a duration such as `1h`).
    pub min_apply_delay: Option<String>,
}

/// `spec.certificates`.
#[skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CertificatesConfiguration {
    /// CA of the server certificate.
    #[serde(rename = "serverCASecret")]
    pub server_ca_secret: Option<String>,
    /// Server certificate.
    #[serde(rename = "serverTLSSecret")]
    pub server_tls_secret: Option<String>,
    /// Client certificate of `streaming_replica`.
    #[serde(rename = "replicationTLSSecret")]
    pub replication_tls_secret: Option<String>,
    /// CA of client certificates.
    #[serde(rename = "clientCASecret")]
    pub client_ca_secret: Option<String>,
    /// Extra DNS names of the server certificate.
    #[serde(rename = "serverAltDNSNames")]
    pub server_alt_dns_names: Option<Vec<String>>,
}

impl CertificatesConfiguration {
    /// Whether it names any certificate or CA Secret of the user's own (rather than only
    /// extra names for the certificates the operator issues).
    pub fn user_provided(&self) -> bool {
        self.server_tls_secret.is_some()
            || self.server_ca_secret.is_some()
            || self.client_ca_secret.is_some()
            || self.replication_tls_secret.is_some()
    }
}
