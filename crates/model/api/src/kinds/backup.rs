//! `Backup` (`postgresql.cnpg.io/v1`): one base backup of a cluster.
// kube's `printcolumn(...)` repeats `type_ =` per column; clippy sees duplicated attributes.
#![allow(clippy::duplicated_attributes)]

use crate::cluster::{BackupTarget, OnlineConfiguration};
use crate::common::{ClusterReference, SecretKeySelector};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_with::skip_serializing_none;
use std::collections::BTreeMap;

/// How a backup is taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum BackupMethod {
    /// To the object store configured in the cluster (`spec.backup.barmanObjectStore`).
    #[default]
    BarmanObjectStore,
    /// Volume snapshots.
    VolumeSnapshot,
    /// Through a CNPG-I plugin (e.g. barman-cloud with an `ObjectStore`).
    Plugin,
}

/// Which plugin takes the backup.
#[skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
pub struct BackupPluginConfiguration {
    /// Plugin name.
    pub name: String,
    /// Plugin parameters.
    pub parameters: Option<BTreeMap<String, String>>,
}

/// A request for one backup of a cluster.
#[skip_serializing_none]
#[derive(CustomResource, Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "postgresql.cnpg.io",
    version = "v1",
    kind = "Backup",
    namespaced,
    status = "BackupStatus",
    derive = "PartialEq",
    derive = "Default",
    doc = "Backup is a request for one base backup of a Cluster.",
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    ),
    printcolumn(name = "Cluster", type_ = "string", json_path = ".spec.cluster.name"),
    printcolumn(name = "Method", type_ = "string", json_path = ".spec.method"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Error", type_ = "string", json_path = ".status.error")
)]
#[serde(rename_all = "camelCase")]
pub struct BackupSpec {
    /// The cluster to back up.
    pub cluster: ClusterReference,
    /// Which instance takes it; empty means the cluster's `spec.backup.target`.
    pub target: Option<BackupTarget>,
    /// How it is taken.
    pub method: Option<BackupMethod>,
    /// The plugin, for `method: plugin`.
    pub plugin_configuration: Option<BackupPluginConfiguration>,
    /// Online (hot) backup; volume snapshots only.
    pub online: Option<bool>,
    /// Options of online backups; volume snapshots only.
    pub online_configuration: Option<OnlineConfiguration>,
}

/// Observed state of a backup.
#[skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackupStatus {
    /// `pending`, `started`, `running`, `finalizing`, `completed`, `failed`, ...
    pub phase: Option<String>,
    /// Backup ID (`YYYYMMDDTHHMMSS`).
    #[serde(rename = "backupId")]
    pub backup_id: Option<String>,
    /// Backup name in the catalog.
    pub backup_name: Option<String>,
    /// When it started.
    pub started_at: Option<String>,
    /// When it stopped.
    pub stopped_at: Option<String>,
    /// First WAL file needed.
    pub begin_wal: Option<String>,
    /// Last WAL file needed.
    pub end_wal: Option<String>,
    /// Starting LSN.
    #[serde(rename = "beginLSN")]
    pub begin_lsn: Option<String>,
    /// Ending LSN.
    #[serde(rename = "endLSN")]
    pub end_lsn: Option<String>,
    /// Error message.
    pub error: Option<String>,
    /// Output of the failed command.
    pub command_error: Option<String>,
    /// Destination path.
    pub destination_path: Option<String>,
    /// Endpoint URL.
    #[serde(rename = "endpointURL")]
    pub endpoint_url: Option<String>,
    /// Endpoint CA.
    #[serde(rename = "endpointCA")]
    pub endpoint_ca: Option<SecretKeySelector>,
    /// Server name.
    pub server_name: Option<String>,
    /// Encryption used.
    pub encryption: Option<String>,
    /// Method used.
    pub method: Option<String>,
    /// Whether it was online.
    pub online: Option<bool>,
    /// PostgreSQL major version.
    pub major_version: Option<i64>,
    /// Which instance took it.
    #[serde(rename = "instanceID")]
    pub instance_id: Option<InstanceId>,
    /// Plugin metadata.
    pub plugin_metadata: Option<BTreeMap<String, String>>,
    /// S3 credentials used (copied so a restore can reuse them).
    pub s3_credentials: Option<crate::barman::S3Credentials>,
    /// Azure credentials used.
    pub azure_credentials: Option<crate::barman::AzureCredentials>,
    /// Google credentials used.
    pub google_credentials: Option<crate::barman::GoogleCredentials>,
    /// Output of the backup command.
    pub command_output: Option<String>,
    /// `backup_label` of an online snapshot backup (base64).
    pub backup_label_file: Option<String>,
    /// `tablespace_map` of an online snapshot backup (base64).
    pub tablespace_map_file: Option<String>,
    /// Snapshots taken.
    pub snapshot_backup_status: Option<SnapshotBackupStatus>,
    /// When reconciliation of the backup started.
    pub reconciliation_started_at: Option<String>,
    /// When reconciliation of the backup ended.
    pub reconciliation_terminated_at: Option<String>,
}

/// Snapshots of a volume snapshot backup.
#[skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
pub struct SnapshotBackupStatus {
    /// One entry per snapshot.
    pub elements: Option<Vec<BackupSnapshotElement>>,
}

/// One snapshot of a backup.
#[skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackupSnapshotElement {
    /// Snapshot name.
    pub name: String,
    /// `PG_DATA`, `PG_WAL` or `PG_TABLESPACE`.
    #[serde(rename = "type")]
    pub element_type: String,
    /// Tablespace, for `PG_TABLESPACE`.
    pub tablespace_name: Option<String>,
}

/// The instance that took a backup.
#[skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct InstanceId {
    /// Instance name.
    pub pod_name: Option<String>,
    /// Container or process id.
    #[serde(rename = "ContainerID")]
    pub container_id: Option<String>,
    /// Instance manager session.
    #[serde(rename = "sessionID")]
    pub session_id: Option<String>,
}
