//! `spec.backup`: where and how the cluster is backed up.

use crate::barman::BarmanObjectStoreConfiguration;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_with::skip_serializing_none;
use std::collections::BTreeMap;

/// Which instance takes backups.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum BackupTarget {
    /// Always the primary.
    Primary,
    /// A ready standby if there is one, else the primary.
    #[default]
    PreferStandby,
}

/// `spec.backup`.
#[skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackupConfiguration {
    /// Volume snapshot backups.
    pub volume_snapshot: Option<VolumeSnapshotConfiguration>,
    /// Object store backups (in-tree barman-cloud).
    pub barman_object_store: Option<BarmanObjectStoreConfiguration>,
    /// Recovery window: `30d`, `4w`, `6m`.
    #[schemars(regex(pattern = r"^[1-9][0-9]*[dwm]$"))]
    pub retention_policy: Option<String>,
    /// Which instance takes backups.
    pub target: Option<BackupTarget>,
}

/// Who owns created volume snapshots.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum SnapshotOwnerReference {
    #[default]
    None,
    Cluster,
    Backup,
}

/// `spec.backup.volumeSnapshot`.
#[skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VolumeSnapshotConfiguration {
    /// Snapshot class for PGDATA.
    pub class_name: Option<String>,
    /// Snapshot class for WAL.
    pub wal_class_name: Option<String>,
    /// Snapshot class per tablespace.
    pub tablespace_class_name: Option<BTreeMap<String, String>>,
    /// Labels of created snapshots.
    pub labels: Option<BTreeMap<String, String>>,
    /// Annotations of created snapshots.
    pub annotations: Option<BTreeMap<String, String>>,
    /// Who owns created snapshots.
    pub snapshot_owner_reference: Option<SnapshotOwnerReference>,
    /// Take snapshots online.
    pub online: Option<bool>,
    /// Options of online snapshots.
    pub online_configuration: Option<OnlineConfiguration>,
}

/// Options of online snapshot backups.
#[skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OnlineConfiguration {
    /// Wait for the WAL to be archived before the backup is complete.
    pub wait_for_archive: Option<bool>,
    /// Request an immediate checkpoint.
    pub immediate_checkpoint: Option<bool>,
}
