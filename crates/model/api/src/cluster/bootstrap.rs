//! `spec.bootstrap`: how a new cluster gets its data.

use crate::common::{LocalObjectReference, SqlRefs};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_with::skip_serializing_none;
use std::collections::BTreeMap;

/// Exactly one bootstrap method.
#[skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
pub struct BootstrapConfiguration {
    /// Create an empty cluster with `initdb`.
    pub initdb: Option<BootstrapInitDb>,
    /// Restore from a backup (and replay WAL).
    pub recovery: Option<BootstrapRecovery>,
    /// Clone a running cluster over streaming replication.
    #[serde(rename = "pg_basebackup")]
    pub pg_basebackup: Option<BootstrapPgBaseBackup>,
}

/// `bootstrap.initdb`.
#[skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BootstrapInitDb {
    /// Application database to create.
    pub database: Option<String>,
    /// Owner of the application database.
    pub owner: Option<String>,
    /// Secret with the owner's credentials.
    pub secret: Option<LocalObjectReference>,
    /// Raw `initdb` options (deprecated).
    pub options: Option<Vec<String>>,
    /// Enable data checksums.
    pub data_checksums: Option<bool>,
    /// Database encoding.
    pub encoding: Option<String>,
    /// `LC_COLLATE`.
    pub locale_collate: Option<String>,
    /// `LC_CTYPE`.
    #[serde(rename = "localeCType")]
    pub locale_ctype: Option<String>,
    /// Locale.
    pub locale: Option<String>,
    /// Locale provider: `libc`, `icu` or `builtin`.
    pub locale_provider: Option<String>,
    /// ICU locale.
    pub icu_locale: Option<String>,
    /// ICU rules.
    pub icu_rules: Option<String>,
    /// Builtin locale.
    pub builtin_locale: Option<String>,
    /// WAL segment size in MB (a power of two, 1..1024).
    #[schemars(range(min = 1, max = 1024))]
    pub wal_segment_size: Option<i64>,
    /// SQL run in the `postgres` database.
    #[serde(rename = "postInitSQL")]
    pub post_init_sql: Option<Vec<String>>,
    /// SQL run in the application database.
    #[serde(rename = "postInitApplicationSQL")]
    pub post_init_application_sql: Option<Vec<String>>,
    /// SQL run in `template1`.
    #[serde(rename = "postInitTemplateSQL")]
    pub post_init_template_sql: Option<Vec<String>>,
    /// SQL from secrets and config maps run in `postgres`.
    #[serde(rename = "postInitSQLRefs")]
    pub post_init_sql_refs: Option<SqlRefs>,
    /// SQL from secrets and config maps run in the application database.
    #[serde(rename = "postInitApplicationSQLRefs")]
    pub post_init_application_sql_refs: Option<SqlRefs>,
    /// SQL from secrets and config maps run in `template1`.
    #[serde(rename = "postInitTemplateSQLRefs")]
    pub post_init_template_sql_refs: Option<SqlRefs>,
    /// Import databases from another cluster.
    pub import: Option<Import>,
}

impl BootstrapInitDb {
    /// `postInitSQLRefs`, `postInitTemplateSQLRefs` and `postInitApplicationSQLRefs` with their
    /// paths, in that order (the order of [`Self::post_init_sql`], `post_init_template_sql` and
    /// `post_init_application_sql`).
    pub fn post_init_refs(&self) -> [(&'static str, Option<&SqlRefs>); 3] {
        [
            (
                "spec.bootstrap.initdb.postInitSQLRefs",
                self.post_init_sql_refs.as_ref(),
            ),
            (
                "spec.bootstrap.initdb.postInitTemplateSQLRefs",
                self.post_init_template_sql_refs.as_ref(),
            ),
            (
                "spec.bootstrap.initdb.postInitApplicationSQLRefs",
                self.post_init_application_sql_refs.as_ref(),
            ),
        ]
    }
}
/// Kind of logical import.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ImportType {
    Microservice,
    Monolith,
}

/// `bootstrap.initdb.import`.
#[skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Import {
    /// `microservice` or `monolith`.
    #[serde(rename = "type")]
    pub import_type: ImportType,
    /// Databases to import.
    pub databases: Vec<String>,
    /// Roles to import (monolith).
    pub roles: Option<Vec<String>>,
    /// Where to import from.
    pub source: ImportSource,
    /// SQL run after the import (microservice).
    #[serde(rename = "postImportApplicationSQL")]
    pub post_import_application_sql: Option<Vec<String>>,
    /// Import the schema only.
    pub schema_only: Option<bool>,
    /// Extra `pg_dump` options.
    pub pg_dump_extra_options: Option<Vec<String>>,
    /// Extra `pg_restore` options.
    pub pg_restore_extra_options: Option<Vec<String>>,
    /// Extra `pg_restore` options for the pre-data section.
    pub pg_restore_predata_options: Option<Vec<String>>,
    /// Extra `pg_restore` options for the data section.
    pub pg_restore_data_options: Option<Vec<String>>,
    /// Extra `pg_restore` options for the post-data section.
    pub pg_restore_postdata_options: Option<Vec<String>>,
}

/// The external cluster an import reads from.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ImportSource {
    /// Name in `spec.externalClusters`.
    pub external_cluster: String,
}

/// `bootstrap.recovery`.
#[skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BootstrapRecovery {
    /// A Backup object to restore.
    pub backup: Option<BackupSource>,
    /// An external cluster to restore from (its object store).
    pub source: Option<String>,
    /// Volume snapshots to restore.
    pub volume_snapshots: Option<DataSource>,
    /// Where to stop replaying WAL.
    pub recovery_target: Option<RecoveryTarget>,
    /// Application database name.
    pub database: Option<String>,
    /// Application database owner.
    pub owner: Option<String>,
    /// Secret with the owner's credentials.
    pub secret: Option<LocalObjectReference>,
}

/// A Backup object to restore, and the CA to reach its store.
#[skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackupSource {
    /// Name of the Backup.
    pub name: String,
    /// CA of the object store endpoint.
    #[serde(rename = "endpointCA")]
    pub endpoint_ca: Option<crate::common::SecretKeySelector>,
}

/// Volume snapshots (or PVCs) to restore from.
#[skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DataSource {
    /// Snapshot of PGDATA.
    pub storage: TypedLocalObjectReference,
    /// Snapshot of the WAL volume.
    pub wal_storage: Option<TypedLocalObjectReference>,
    /// Snapshots of tablespaces, by tablespace name.
    pub tablespace_storage: Option<BTreeMap<String, TypedLocalObjectReference>>,
}

/// A typed reference (`apiGroup`, `kind`, `name`).
#[skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TypedLocalObjectReference {
    /// API group.
    pub api_group: Option<String>,
    /// Kind.
    pub kind: String,
    /// Name.
    pub name: String,
}

/// Where a point-in-time recovery stops.
#[skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RecoveryTarget {
    /// Restore this backup (by ID).
    #[serde(rename = "backupID")]
    pub backup_id: Option<String>,
    /// Timeline: `latest` or a number.
    #[serde(rename = "targetTLI")]
    pub target_tli: Option<String>,
    /// Stop at this transaction id.
    #[serde(rename = "targetXID")]
    pub target_xid: Option<String>,
    /// Stop at this named restore point.
    pub target_name: Option<String>,
    /// Stop at this LSN.
    #[serde(rename = "targetLSN")]
    pub target_lsn: Option<String>,
    /// Stop at this time (RFC 3339 or PostgreSQL timestamp; no zone means UTC).
    pub target_time: Option<String>,
    /// Stop as soon as the backup is consistent.
    pub target_immediate: Option<bool>,
    /// Stop just before the target instead of just after.
    pub exclusive: Option<bool>,
}

/// `bootstrap.pg_basebackup`.
#[skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
pub struct BootstrapPgBaseBackup {
    /// External cluster to clone.
    pub source: String,
    /// Application database name.
    pub database: Option<String>,
    /// Application database owner.
    pub owner: Option<String>,
    /// Secret with the owner's credentials.
    pub secret: Option<LocalObjectReference>,
}
