//! [`StoreTarget`]: one server folder of one object store, as a platform hands it to the
//! commands PostgreSQL runs (`archive_command`, `restore_command`) and to backups: the
//! manifest's configuration, the server name, and the values of the Secret keys the
//! configuration names — in a file only the PostgreSQL user can read (mode 0600).

use super::cloud::{open, CloudStore, StoreConfig};
use super::resilient::{Resilient, RetryPolicy};
use super::StoreError;
use crate::compression::Compression;
use crate::layout::ServerPrefix;
use pgherd_api::barman::BarmanObjectStoreConfiguration;
use pgherd_api::common::SecretKeySelector;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use tokio_util::sync::CancellationToken;

/// barman-cloud's default number of parallel WAL uploads/downloads.
pub const DEFAULT_WAL_MAX_PARALLEL: usize = 1;

/// A server folder in an object store, with the secrets needed to reach it.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoreTarget {
    /// The store as configured (`spec.backup.barmanObjectStore`, an `ObjectStore`'s
    /// `configuration`, or an external cluster's `barmanObjectStore`).
    pub configuration: BarmanObjectStoreConfiguration,
    /// The server folder (`serverName`, else the cluster's or external cluster's name).
    pub server_name: String,
    /// Values of the Secret keys the configuration names, by [`StoreTarget::secret_key`].
    #[serde(default)]
    pub secrets: BTreeMap<String, String>,
}

impl fmt::Debug for StoreTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoreTarget")
            .field("destination", &self.configuration.destination_path)
            .field("server_name", &self.server_name)
            .field("secrets", &self.secrets.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// Why a store target file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error("cannot read the object store file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("the object store file {path} is not valid: {source}")]
    Parse {
        path: String,
        source: serde_json::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl StoreTarget {
    /// The key of `selector`'s value in [`StoreTarget::secrets`].
    pub fn secret_key(selector: &SecretKeySelector) -> String {
        format!("{}/{}", selector.name, selector.key)
    }

    /// Every Secret key the configuration names (what a platform must resolve).
    pub fn referenced_secrets(cfg: &BarmanObjectStoreConfiguration) -> Vec<SecretKeySelector> {
        let mut out: Vec<SecretKeySelector> = Vec::new();
        let mut add = |s: &Option<SecretKeySelector>| {
            if let Some(s) = s {
                out.push(s.clone());
            }
        };
        add(&cfg.endpoint_ca);
        if let Some(s3) = &cfg.s3_credentials {
            add(&s3.access_key_id);
            add(&s3.secret_access_key);
            add(&s3.region);
            add(&s3.session_token);
        }
        if let Some(az) = &cfg.azure_credentials {
            add(&az.connection_string);
            add(&az.storage_account);
            add(&az.storage_key);
            add(&az.storage_sas_token);
        }
        if let Some(g) = &cfg.google_credentials {
            add(&g.application_credentials);
        }
        out
    }

    /// Reads a target file.
    pub fn read(path: &Path) -> Result<StoreTarget, TargetError> {
        let text = std::fs::read(path).map_err(|source| TargetError::Read {
            path: path.display().to_string(),
            source,
        })?;
        serde_json::from_slice(&text).map_err(|source| TargetError::Parse {
            path: path.display().to_string(),
            source,
        })
    }

    /// The store's connection settings, secrets resolved from [`StoreTarget::secrets`].
    pub fn store_config(&self) -> Result<StoreConfig, StoreError> {
        let resolve = |s: &SecretKeySelector| -> Result<String, String> {
            self.secrets
                .get(&Self::secret_key(s))
                .cloned()
                .ok_or_else(|| "not provided".to_string())
        };
        StoreConfig::from_barman(&self.configuration, &resolve)
    }

    /// The server folder.
    pub fn server(&self) -> Result<ServerPrefix, StoreError> {
        let config = self.store_config()?;
        ServerPrefix::new(config.destination.prefix(), &self.server_name)
            .map_err(|e| StoreError::Config(e.to_string()))
    }

    /// Opens the store (retrying, timing out, cancellable) and the server folder.
    pub fn open(
        &self,
        policy: RetryPolicy,
        cancel: CancellationToken,
    ) -> Result<(Resilient<CloudStore>, ServerPrefix), StoreError> {
        let config = self.store_config()?;
        let server = ServerPrefix::new(config.destination.prefix(), &self.server_name)
            .map_err(|e| StoreError::Config(e.to_string()))?;
        Ok((Resilient::new(open(&config)?, policy, cancel), server))
    }

    /// `wal.compression`.
    pub fn wal_compression(&self) -> Option<Compression> {
        self.configuration
            .wal
            .as_ref()
            .and_then(|w| w.compression)
            .map(Compression::from)
    }

    /// `wal.maxParallel` (at least 1).
    pub fn wal_max_parallel(&self) -> usize {
        self.configuration
            .wal
            .as_ref()
            .and_then(|w| w.max_parallel)
            .and_then(|n| usize::try_from(n).ok())
            .filter(|&n| n > 0)
            .unwrap_or(DEFAULT_WAL_MAX_PARALLEL)
    }

    /// `data.compression`.
    pub fn data_compression(&self) -> Option<Compression> {
        self.configuration
            .data
            .as_ref()
            .and_then(|d| d.compression)
            .map(Compression::from)
    }

    /// `data.jobs` (at least 1).
    pub fn data_jobs(&self) -> usize {
        self.configuration
            .data
            .as_ref()
            .and_then(|d| d.jobs)
            .and_then(|n| usize::try_from(n).ok())
            .filter(|&n| n > 0)
            .unwrap_or(2)
    }

    /// `data.immediateCheckpoint`.
    pub fn immediate_checkpoint(&self) -> bool {
        self.configuration
            .data
            .as_ref()
            .and_then(|d| d.immediate_checkpoint)
            .unwrap_or(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pgherd_api::barman::{S3Credentials, WalBackupConfiguration, WalCompression};

    fn sel(name: &str, key: &str) -> SecretKeySelector {
        SecretKeySelector {
            name: name.into(),
            key: key.into(),
        }
    }

    fn target() -> StoreTarget {
        let configuration = BarmanObjectStoreConfiguration {
            destination_path: "s3://backups/prod".into(),
            endpoint_url: Some("http://127.0.0.1:9000".into()),
            s3_credentials: Some(S3Credentials {
                access_key_id: Some(sel("minio", "ACCESS_KEY_ID")),
                secret_access_key: Some(sel("minio", "ACCESS_SECRET_KEY")),
                ..Default::default()
            }),
            wal: Some(WalBackupConfiguration {
                compression: Some(WalCompression::Zstd),
                max_parallel: Some(8),
                ..Default::default()
            }),
            ..Default::default()
        };
        let secrets = StoreTarget::referenced_secrets(&configuration)
            .iter()
            .map(|s| (StoreTarget::secret_key(s), format!("value-of-{}", s.key)))
            .collect();
        StoreTarget {
            configuration,
            server_name: "cluster-example".into(),
            secrets,
        }
    }

    #[test]
    fn round_trips_and_resolves_its_secrets() {
        let t = target();
        let text = serde_json::to_string(&t).unwrap();
        let back: StoreTarget = serde_json::from_str(&text).unwrap();
        assert_eq!(back, t);
        let config = back.store_config().unwrap();
        assert_eq!(
            config.s3_keys.unwrap().secret_access_key,
            "value-of-ACCESS_SECRET_KEY"
        );
        assert_eq!(back.server().unwrap().root(), "prod/cluster-example");
        assert_eq!(back.wal_compression(), Some(Compression::Zstd));
        assert_eq!(back.wal_max_parallel(), 8);
        assert!(
            !format!("{back:?}").contains("value-of"),
            "no secrets in Debug"
        );
    }

    #[test]
    fn a_missing_secret_is_named_without_values() {
        let mut t = target();
        t.secrets.remove("minio/ACCESS_SECRET_KEY");
        let e = t.store_config().unwrap_err().to_string();
        assert!(
            e.contains("ACCESS_SECRET_KEY") && e.contains("minio"),
            "{e}"
        );
        assert!(!e.contains("value-of"), "{e}");
    }
}
