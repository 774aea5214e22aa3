//! From the API's `BarmanObjectStoreConfiguration` (with the Secrets it names resolved by the
//! caller) to a [`StoreConfig`] and the server folder.

use super::cloud::{AzureKeys, S3Keys, StoreConfig};
use super::location::Destination;
use super::StoreError;
use crate::layout::ServerPrefix;
use pgherd_api::barman::BarmanObjectStoreConfiguration;
use pgherd_api::common::SecretKeySelector;

/// Resolves a Secret key to its value; the error says what is missing (never the value).
pub type SecretResolver<'a> = dyn Fn(&SecretKeySelector) -> Result<String, String> + 'a;

fn secret(
    resolve: &SecretResolver<'_>,
    s: &SecretKeySelector,
    field: &str,
) -> Result<String, StoreError> {
    resolve(s).map_err(|e| {
        StoreError::Config(format!(
            "{field}: cannot read key {:?} of Secret {:?}: {e}",
            s.key, s.name
        ))
    })
}

impl StoreConfig {
    /// The store a barman object-store configuration describes. WAL encryption is taken from
    /// `wal.encryption`; a base backup may override `encryption` with `data.encryption`.
    pub fn from_barman(
        cfg: &BarmanObjectStoreConfiguration,
        resolve: &SecretResolver<'_>,
    ) -> Result<StoreConfig, StoreError> {
        let destination = Destination::parse(&cfg.destination_path)
            .map_err(|e| StoreError::Config(e.to_string()))?;
        let mut config = StoreConfig::new(destination);
        config.endpoint_url = cfg.endpoint_url.clone();
        if let Some(ca) = &cfg.endpoint_ca {
            config.endpoint_ca_pem = Some(secret(resolve, ca, "endpointCA")?.into_bytes());
        }
        if let Some(s3) = &cfg.s3_credentials {
            if let Some(region) = &s3.region {
                config.region = Some(secret(resolve, region, "s3Credentials.region")?);
            }
            if s3.inherit_from_iam_role != Some(true) {
                match (&s3.access_key_id, &s3.secret_access_key) {
                    (Some(id), Some(key)) => {
                        let session_token = match &s3.session_token {
                            Some(t) => Some(secret(resolve, t, "s3Credentials.sessionToken")?),
                            None => None,
                        };
                        config.s3_keys = Some(S3Keys {
                            access_key_id: secret(resolve, id, "s3Credentials.accessKeyId")?,
                            secret_access_key: secret(resolve, key, "s3Credentials.secretAccessKey")?,
                            session_token,
                        });
                    }
                    (None, None) => {}
                    _ => {
                        return Err(StoreError::Config(
                            "s3Credentials needs both accessKeyId and secretAccessKey, or inheritFromIAMRole: true".into(),
                        ))
                    }
                }
            }
        }
        if let Some(az) = &cfg.azure_credentials {
            if let Some(cs) = &az.connection_string {
                let text = secret(resolve, cs, "azureCredentials.connectionString")?;
                let fields = connection_string(&text);
                let field = |k: &str| fields.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
                config.azure_keys = match (field("AccountKey"), field("SharedAccessSignature")) {
                    (Some(key), _) => Some(AzureKeys::AccountKey(key)),
                    (None, Some(sas)) => Some(AzureKeys::SasToken(sas)),
                    (None, None) => {
                        return Err(StoreError::Config(format!(
                            "azureCredentials.connectionString (key {:?} of Secret {:?}) has neither AccountKey nor SharedAccessSignature",
                            cs.key, cs.name
                        )))
                    }
                };
                config.azure_blob_endpoint = field("BlobEndpoint");
            } else if let Some(key) = &az.storage_key {
                config.azure_keys = Some(AzureKeys::AccountKey(secret(
                    resolve,
                    key,
                    "azureCredentials.storageKey",
                )?));
            } else if let Some(sas) = &az.storage_sas_token {
                config.azure_keys = Some(AzureKeys::SasToken(secret(
                    resolve,
                    sas,
                    "azureCredentials.storageSasToken",
                )?));
            }
        }
        if let Some(google) = &cfg.google_credentials {
            if let Some(creds) = &google.application_credentials {
                config.google_service_account_json = Some(secret(
                    resolve,
                    creds,
                    "googleCredentials.applicationCredentials",
                )?);
            }
        }
        config.encryption = cfg.wal.as_ref().and_then(|w| w.encryption);
        let pairs = |m: &Option<std::collections::BTreeMap<String, String>>| {
            m.iter()
                .flatten()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        };
        config.tags = pairs(&cfg.tags);
        config.history_tags = pairs(&cfg.history_tags);
        Ok(config)
    }
}

/// The `Name=value;...` pairs of an Azure storage connection string (values may hold `=`).
fn connection_string(text: &str) -> Vec<(String, String)> {
    text.split(';')
        .filter_map(|part| part.trim().split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

/// The server folder: `serverName`, else `default_server` (the cluster name, or the external
/// cluster's name for a recovery source).
pub fn server_prefix(
    cfg: &BarmanObjectStoreConfiguration,
    destination: &Destination,
    default_server: &str,
) -> Result<ServerPrefix, StoreError> {
    let server = cfg.server_name.as_deref().unwrap_or(default_server);
    ServerPrefix::new(destination.prefix(), server).map_err(|e| StoreError::Config(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use pgherd_api::barman::{Encryption, S3Credentials, WalBackupConfiguration};

    fn sel(name: &str, key: &str) -> SecretKeySelector {
        SecretKeySelector {
            name: name.into(),
            key: key.into(),
        }
    }

    #[test]
    fn s3_with_keys_and_a_server_name() {
        let cfg = BarmanObjectStoreConfiguration {
            destination_path: "s3://bucket/some/prefix".into(),
            endpoint_url: Some("http://minio:9000".into()),
            server_name: Some("old-cluster".into()),
            s3_credentials: Some(S3Credentials {
                access_key_id: Some(sel("minio", "ACCESS_KEY_ID")),
                secret_access_key: Some(sel("minio", "ACCESS_SECRET_KEY")),
                region: Some(sel("minio", "REGION")),
                ..Default::default()
            }),
            wal: Some(WalBackupConfiguration {
                encryption: Some(Encryption::Aes256),
                ..Default::default()
            }),
            ..Default::default()
        };
        let resolve = |s: &SecretKeySelector| -> Result<String, String> {
            Ok(format!("{}-{}", s.name, s.key))
        };
        let config = StoreConfig::from_barman(&cfg, &resolve).unwrap();
        let keys = config.s3_keys.clone().unwrap();
        assert_eq!(keys.access_key_id, "minio-ACCESS_KEY_ID");
        assert_eq!(config.region.as_deref(), Some("minio-REGION"));
        assert_eq!(config.encryption, Some(Encryption::Aes256));
        assert!(
            !format!("{config:?}").contains("ACCESS_SECRET_KEY"),
            "no secrets in Debug"
        );
        let prefix = server_prefix(&cfg, &config.destination, "cluster-example").unwrap();
        assert_eq!(prefix.root(), "some/prefix/old-cluster");
        let mut unnamed = cfg.clone();
        unnamed.server_name = None;
        let prefix = server_prefix(&unnamed, &config.destination, "cluster-example").unwrap();
        assert_eq!(prefix.root(), "some/prefix/cluster-example");
    }

    #[test]
    fn errors_name_the_field_and_secret_but_no_value() {
        let cfg = BarmanObjectStoreConfiguration {
            destination_path: "s3://bucket".into(),
            s3_credentials: Some(S3Credentials {
                access_key_id: Some(sel("creds", "ID")),
                secret_access_key: Some(sel("creds", "SECRET")),
                ..Default::default()
            }),
            ..Default::default()
        };
        let missing = |s: &SecretKeySelector| -> Result<String, String> {
            if s.key == "SECRET" {
                Err("no such key".into())
            } else {
                Ok("value".into())
            }
        };
        let e = StoreConfig::from_barman(&cfg, &missing)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("secretAccessKey") && e.contains("\"creds\"") && e.contains("\"SECRET\""),
            "{e}"
        );
        let mut half = cfg.clone();
        if let Some(s3) = half.s3_credentials.as_mut() {
            s3.secret_access_key = None;
        }
        assert!(StoreConfig::from_barman(&half, &missing).is_err());
        let mut bad = cfg;
        bad.destination_path = "bucket/prefix".into();
        assert!(StoreConfig::from_barman(&bad, &missing)
            .unwrap_err()
            .to_string()
            .contains("no scheme"));
    }
}
