//! `ScheduledBackup` (`postgresql.cnpg.io/v1`): backups on a cron schedule.
// kube's `printcolumn(...)` repeats `type_ =` per column; clippy sees duplicated attributes.
#![allow(clippy::duplicated_attributes)]

use crate::cluster::{BackupTarget, OnlineConfiguration};
use crate::common::ClusterReference;
use crate::kinds::backup::{BackupMethod, BackupPluginConfiguration};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_with::skip_serializing_none;

/// Which object owns the Backups a schedule creates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum BackupOwnerReference {
    /// Nobody: Backups outlive the schedule and the cluster.
    #[default]
    None,
    /// The ScheduledBackup.
    #[serde(rename = "self")]
    SelfRef,
    /// The Cluster.
    Cluster,
}

/// Backups of a cluster on a schedule.
#[skip_serializing_none]
#[derive(CustomResource, Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "postgresql.cnpg.io",
    version = "v1",
    kind = "ScheduledBackup",
    namespaced,
    status = "ScheduledBackupStatus",
    derive = "PartialEq",
    derive = "Default",
    doc = "ScheduledBackup creates Backups of a Cluster on a cron schedule.",
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    ),
    printcolumn(name = "Cluster", type_ = "string", json_path = ".spec.cluster.name"),
    printcolumn(
        name = "Last Backup",
        type_ = "date",
        json_path = ".status.lastScheduleTime"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct ScheduledBackupSpec {
    /// Cron schedule, seconds first: `sec min hour day-of-month month day-of-week`.
    pub schedule: String,
    /// The cluster to back up.
    pub cluster: ClusterReference,
    /// Pause the schedule.
    pub suspend: Option<bool>,
    /// Take a backup as soon as the schedule is created.
    pub immediate: Option<bool>,
    /// Owner of created Backups: `none`, `self` or `cluster`.
    pub backup_owner_reference: Option<BackupOwnerReference>,
    /// Which instance takes the backups.
    pub target: Option<BackupTarget>,
    /// How backups are taken.
    pub method: Option<BackupMethod>,
    /// The plugin, for `method: plugin`.
    pub plugin_configuration: Option<BackupPluginConfiguration>,
    /// Online backups; volume snapshots only.
    pub online: Option<bool>,
    /// Options of online backups; volume snapshots only.
    pub online_configuration: Option<OnlineConfiguration>,
}

/// Observed state of a schedule.
#[skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScheduledBackupStatus {
    /// Last time the schedule was checked.
    pub last_check_time: Option<String>,
    /// Last time a backup was created.
    pub last_schedule_time: Option<String>,
    /// Next time a backup is due.
    pub next_schedule_time: Option<String>,
    /// Last error.
    pub error: Option<String>,
}
