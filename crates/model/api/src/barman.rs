//! `BarmanObjectStoreConfiguration`: where and how backups and WAL go to an object store.
//! The same shape is used by `Cluster.spec.backup.barmanObjectStore`,
//! `externalClusters[].barmanObjectStore` and `ObjectStore.spec.configuration`.

use crate::common::SecretKeySelector;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_with::skip_serializing_none;
use std::collections::BTreeMap;

/// Object-store coordinates, credentials and tuning for barman-cloud compatible backups.
#[skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BarmanObjectStoreConfiguration {
    /// Where to store: `s3://bucket/prefix`, `gs://bucket/prefix`,
    /// `https://ACCOUNT.blob.core.windows.net/CONTAINER/prefix`, or (local platform) `file:///dir`.
    #[schemars(length(min = 1))]
    pub destination_path: String,
    /// Endpoint of an S3-compatible service (MinIO, Backblaze B2, ...).
    #[serde(rename = "endpointURL")]
    pub endpoint_url: Option<String>,
    /// CA bundle to verify the endpoint's certificate.
    #[serde(rename = "endpointCA")]
    pub endpoint_ca: Option<SecretKeySelector>,
    /// Folder under `destinationPath`; defaults to the cluster name.
    pub server_name: Option<String>,
    /// AWS S3 (or compatible) credentials.
    pub s3_credentials: Option<S3Credentials>,
    /// Azure Blob Storage credentials.
    pub azure_credentials: Option<AzureCredentials>,
    /// Google Cloud Storage credentials.
    pub google_credentials: Option<GoogleCredentials>,
    /// WAL archiving options.
    pub wal: Option<WalBackupConfiguration>,
    /// Base backup options.
    pub data: Option<DataBackupConfiguration>,
    /// Tags added to every object.
    pub tags: Option<BTreeMap<String, String>>,
    /// Tags added to history files.
    pub history_tags: Option<BTreeMap<String, String>>,
}

/// S3 credentials: an access key pair (and optional region and session token), or the
/// workload's IAM role.
#[skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct S3Credentials {
    /// Access key id.
    pub access_key_id: Option<SecretKeySelector>,
    /// Secret access key.
    pub secret_access_key: Option<SecretKeySelector>,
    /// Region.
    pub region: Option<SecretKeySelector>,
    /// Session token.
    pub session_token: Option<SecretKeySelector>,
    /// Use the IAM role of the workload instead of keys.
    #[serde(rename = "inheritFromIAMRole")]
    pub inherit_from_iam_role: Option<bool>,
}

/// Azure credentials.
#[skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AzureCredentials {
    /// Connection string.
    pub connection_string: Option<SecretKeySelector>,
    /// Storage account name.
    pub storage_account: Option<SecretKeySelector>,
    /// Storage account key.
    pub storage_key: Option<SecretKeySelector>,
    /// SAS token.
    pub storage_sas_token: Option<SecretKeySelector>,
    /// Use Azure AD workload identity.
    #[serde(rename = "inheritFromAzureAD")]
    pub inherit_from_azure_ad: Option<bool>,
    /// Use the default Azure credential chain.
    pub use_default_azure_credentials: Option<bool>,
}

/// Google Cloud Storage credentials.
#[skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GoogleCredentials {
    /// Service account JSON.
    pub application_credentials: Option<SecretKeySelector>,
    /// Use GKE workload identity.
    pub gke_environment: Option<bool>,
}

/// Compression of WAL files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum WalCompression {
    Bzip2,
    Gzip,
    Lz4,
    Snappy,
    Xz,
    Zstd,
}

/// Compression of base backup tarballs (the API accepts fewer algorithms than for WAL).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum DataCompression {
    Bzip2,
    Gzip,
    Lz4,
    Snappy,
}

/// Server-side encryption of uploaded objects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum Encryption {
    #[serde(rename = "AES256")]
    Aes256,
    #[serde(rename = "aws:kms")]
    AwsKms,
}

/// WAL archiving options.
#[skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WalBackupConfiguration {
    /// Compression algorithm.
    pub compression: Option<WalCompression>,
    /// Server-side encryption.
    pub encryption: Option<Encryption>,
    /// How many WAL files to archive or prefetch in parallel.
    #[schemars(range(min = 1))]
    pub max_parallel: Option<i32>,
    /// Extra arguments for the archive command.
    pub archive_additional_command_args: Option<Vec<String>>,
    /// Extra arguments for the restore command.
    pub restore_additional_command_args: Option<Vec<String>>,
}

/// Base backup options.
#[skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DataBackupConfiguration {
    /// Compression algorithm.
    pub compression: Option<DataCompression>,
    /// Server-side encryption.
    pub encryption: Option<Encryption>,
    /// Parallel upload jobs.
    #[schemars(range(min = 1))]
    pub jobs: Option<i32>,
    /// Ask for an immediate checkpoint when starting the backup.
    pub immediate_checkpoint: Option<bool>,
    /// Extra arguments for the backup command.
    pub additional_command_args: Option<Vec<String>>,
    /// Extra arguments for the restore command.
    pub restore_additional_command_args: Option<Vec<String>>,
}
