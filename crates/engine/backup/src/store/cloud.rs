//! [`CloudStore`]: the [`ObjectStore`] trait over the `object_store` crate, and [`open`], which
//! builds one from a parsed `destinationPath` and resolved credentials.

use super::location::Destination;
use super::{ByteStream, DirListing, ObjectInfo, ObjectStore, Op, StoreError};
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::azure::MicrosoftAzureBuilder;
use object_store::gcp::GoogleCloudStorageBuilder;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{
    BackoffConfig, Certificate, ClientOptions, ObjectStoreExt, PutPayload, RetryConfig,
    WriteMultipart,
};
use pgherd_api::barman::Encryption;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// Size of one part of a multipart upload (S3 needs at least 5 MiB).
const PART_SIZE: usize = 8 * 1024 * 1024;
/// Parts uploaded concurrently by one multipart upload.
const PART_CONCURRENCY: usize = 4;

/// S3 access keys, resolved from their Secrets by the caller.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct S3Keys {
    /// `AWS_ACCESS_KEY_ID`
    pub access_key_id: String,
    /// `AWS_SECRET_ACCESS_KEY`
    pub secret_access_key: String,
    /// `AWS_SESSION_TOKEN`
    pub session_token: Option<String>,
}

impl fmt::Debug for S3Keys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Keys")
            .field("access_key_id", &"<redacted>")
            .field("secret_access_key", &"<redacted>")
            .field(
                "session_token",
                &self.session_token.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

/// Azure credentials, resolved by the caller.
#[derive(Clone, PartialEq, Eq)]
pub enum AzureKeys {
    /// Storage account key.
    AccountKey(String),
    /// SAS token (query string).
    SasToken(String),
}

impl fmt::Debug for AzureKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AzureKeys(<redacted>)")
    }
}

/// Everything needed to open a store, with secrets already resolved.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// The parsed `destinationPath`.
    pub destination: Destination,
    /// `endpointURL`: an S3-compatible service (MinIO, moto, ...); path-style addressing.
    pub endpoint_url: Option<String>,
    /// `endpointCA`: PEM bundle trusted for the endpoint.
    pub endpoint_ca_pem: Option<Vec<u8>>,
    /// S3 region (else `AWS_REGION`/`AWS_DEFAULT_REGION`, else `us-east-1`).
    pub region: Option<String>,
    /// S3 keys; `None` uses the environment / instance role (`inheritFromIAMRole`).
    pub s3_keys: Option<S3Keys>,
    /// Azure credentials; `None` uses the environment.
    pub azure_keys: Option<AzureKeys>,
    /// Azure blob endpoint (a connection string's `BlobEndpoint`), instead of the account's.
    pub azure_blob_endpoint: Option<String>,
    /// Google service-account JSON; `None` uses the environment (`gkeEnvironment`).
    pub google_service_account_json: Option<String>,
    /// Server-side encryption of uploads (S3).
    pub encryption: Option<Encryption>,
    /// Tags of every uploaded object (`tags`; S3 object tagging, Azure blob index tags).
    pub tags: Vec<(String, String)>,
    /// Tags of timeline history files (`historyTags`), instead of `tags`.
    pub history_tags: Vec<(String, String)>,
    /// Timeout of one HTTP request.
    pub request_timeout: Duration,
    /// Timeout to connect.
    pub connect_timeout: Duration,
}

impl StoreConfig {
    /// A configuration with default timeouts and no credentials.
    pub fn new(destination: Destination) -> Self {
        StoreConfig {
            destination,
            endpoint_url: None,
            endpoint_ca_pem: None,
            region: None,
            s3_keys: None,
            azure_keys: None,
            azure_blob_endpoint: None,
            google_service_account_json: None,
            encryption: None,
            tags: Vec::new(),
            history_tags: Vec::new(),
            request_timeout: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(10),
        }
    }
}

/// An [`ObjectStore`] backed by the `object_store` crate.
#[derive(Debug, Clone)]
pub struct CloudStore {
    inner: Arc<dyn object_store::ObjectStore>,
    /// `tags`: put on every object uploaded.
    tags: Vec<(String, String)>,
    /// `historyTags`: put on timeline history files instead.
    history_tags: Vec<(String, String)>,
}

fn config_error(what: &str, e: impl fmt::Display) -> StoreError {
    StoreError::Config(format!("{what}: {e}"))
}

/// Opens the store `config` describes. Nothing is contacted yet.
pub fn open(config: &StoreConfig) -> Result<CloudStore, StoreError> {
    let mut client = ClientOptions::new()
        .with_timeout(config.request_timeout)
        .with_connect_timeout(config.connect_timeout);
    if let Some(pem) = &config.endpoint_ca_pem {
        let certs = Certificate::from_pem_bundle(pem)
            .map_err(|e| config_error("endpointCA is not a PEM certificate bundle", e))?;
        if certs.is_empty() {
            return Err(StoreError::Config(
                "endpointCA holds no PEM certificate (expected -----BEGIN CERTIFICATE-----)".into(),
            ));
        }
        for cert in certs {
            client = client.with_root_certificate(cert);
        }
    }
    if let Some(url) = &config.endpoint_url {
        if url.starts_with("http://") {
            client = client.with_allow_http(true);
        }
    }
    // Few quick retries inside a call; `Resilient` retries whole calls with its own policy.
    let retry = RetryConfig {
        backoff: BackoffConfig {
            init_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(2),
            base: 2.0,
        },
        max_retries: 2,
        retry_timeout: config.request_timeout,
    };
    let inner: Arc<dyn object_store::ObjectStore> = match &config.destination {
        Destination::S3 { bucket, .. } => {
            // from_env: AWS_* variables and the instance's role when no keys are given
            // (inheritFromIAMRole); explicit settings below override them.
            let mut b = AmazonS3Builder::from_env()
                .with_bucket_name(bucket)
                .with_client_options(client)
                .with_retry(retry);
            if let Some(region) = &config.region {
                b = b.with_region(region);
            }
            if let Some(url) = &config.endpoint_url {
                b = b
                    .with_endpoint(url)
                    .with_virtual_hosted_style_request(false);
            }
            if let Some(keys) = &config.s3_keys {
                b = b
                    .with_access_key_id(&keys.access_key_id)
                    .with_secret_access_key(&keys.secret_access_key);
                if let Some(token) = &keys.session_token {
                    b = b.with_token(token);
                }
            }
            let sse = match config.encryption {
                Some(Encryption::Aes256) => Some("AES256"),
                Some(Encryption::AwsKms) => Some("aws:kms"),
                None => None,
            };
            if let Some(sse) = sse {
                let key: AmazonS3ConfigKey = "aws_server_side_encryption"
                    .parse()
                    .map_err(|e| config_error("server-side encryption", e))?;
                b = b.with_config(key, sse);
            }
            Arc::new(b.build().map_err(|e| config_error("S3", e))?)
        }
        Destination::Gcs { bucket, .. } => {
            let mut b = GoogleCloudStorageBuilder::from_env()
                .with_bucket_name(bucket)
                .with_client_options(client)
                .with_retry(retry);
            if let Some(json) = &config.google_service_account_json {
                b = b.with_service_account_key(json);
            }
            Arc::new(
                b.build()
                    .map_err(|e| config_error("Google Cloud Storage", e))?,
            )
        }
        Destination::Azure {
            account,
            container,
            emulator,
            ..
        } => {
            let mut b = MicrosoftAzureBuilder::from_env()
                .with_account(account)
                .with_container_name(container)
                .with_client_options(client)
                .with_retry(retry);
            // Emulated storage (Azurite) or an explicit blob endpoint: requests go there,
            // account and container in the path.
            if let Some(url) = config.azure_blob_endpoint.as_ref().or(emulator.as_ref()) {
                b = b
                    .with_endpoint(url.trim_end_matches('/').to_string())
                    .with_allow_http(url.starts_with("http://"));
            }
            match &config.azure_keys {
                Some(AzureKeys::AccountKey(k)) => b = b.with_access_key(k),
                Some(AzureKeys::SasToken(t)) => {
                    let pairs: Vec<(String, String)> = t
                        .trim_start_matches('?')
                        .split('&')
                        .filter_map(|kv| kv.split_once('='))
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect();
                    b = b.with_sas_authorization(pairs);
                }
                None => {}
            }
            Arc::new(
                b.build()
                    .map_err(|e| config_error("Azure Blob Storage", e))?,
            )
        }
        Destination::File { root } => {
            std::fs::create_dir_all(root).map_err(|source| StoreError::Local {
                what: "cannot create the backup directory",
                path: root.clone(),
                source,
            })?;
            Arc::new(
                LocalFileSystem::new_with_prefix(root)
                    .map_err(|e| config_error("local directory", e))?
                    .with_automatic_cleanup(true),
            )
        }
    };
    Ok(CloudStore {
        inner,
        tags: config.tags.clone(),
        history_tags: config.history_tags.clone(),
    })
}

impl CloudStore {
    /// Wraps any `object_store` implementation (e.g. `InMemory` in tests).
    pub fn from_object_store(inner: Arc<dyn object_store::ObjectStore>) -> Self {
        CloudStore {
            inner,
            tags: Vec::new(),
            history_tags: Vec::new(),
        }
    }

    /// The tags of the object at `key` (`historyTags` for a timeline history file, when set).
    fn tags_for(&self, key: &str) -> object_store::TagSet {
        let file = key.rsplit('/').next().unwrap_or(key);
        let history = file.split('.').nth(1) == Some("history");
        let tags = if history && !self.history_tags.is_empty() {
            &self.history_tags
        } else {
            &self.tags
        };
        let mut set = object_store::TagSet::default();
        for (k, v) in tags {
            set.push(k, v);
        }
        set
    }
}

fn path(op: Op, key: &str) -> Result<Path, StoreError> {
    Path::parse(key.trim_end_matches('/')).map_err(|e| StoreError::Permanent {
        op,
        key: key.to_string(),
        message: format!("not a valid object key: {e}"),
    })
}

fn map_err(op: Op, key: &str, e: object_store::Error) -> StoreError {
    use object_store::Error as E;
    let key = key.to_string();
    match e {
        // Writing never finds a missing object: what is missing is the bucket (S3 answers
        // 404 NoSuchBucket).
        E::NotFound { .. } if op == Op::Put || e.to_string().contains("NoSuchBucket") => {
            StoreError::Permanent {
                op,
                key,
                message: "the bucket does not exist (NoSuchBucket); create it, or fix the bucket in destinationPath".into(),
            }
        }
        E::NotFound { .. } => StoreError::NotFound { key },
        E::Generic { .. } | E::JoinError { .. } => StoreError::Transient {
            op,
            key,
            message: e.to_string(),
        },
        other => StoreError::Permanent {
            op,
            key,
            message: other.to_string(),
        },
    }
}

fn info(meta: object_store::ObjectMeta) -> ObjectInfo {
    ObjectInfo {
        key: meta.location.to_string(),
        size: meta.size,
    }
}

#[async_trait::async_trait]
impl ObjectStore for CloudStore {
    async fn put(&self, key: &str, data: Bytes) -> Result<(), StoreError> {
        let p = path(Op::Put, key)?;
        let options = object_store::PutOptions {
            tags: self.tags_for(key),
            ..Default::default()
        };
        self.inner
            .put_opts(&p, PutPayload::from_bytes(data), options)
            .await
            .map_err(|e| map_err(Op::Put, key, e))?;
        Ok(())
    }

    async fn put_stream(&self, key: &str, mut body: ByteStream) -> Result<u64, StoreError> {
        let p = path(Op::Put, key)?;
        let options = object_store::PutMultipartOptions {
            tags: self.tags_for(key),
            ..Default::default()
        };
        let upload = self
            .inner
            .put_multipart_opts(&p, options)
            .await
            .map_err(|e| map_err(Op::Put, key, e))?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, PART_SIZE);
        let mut size = 0u64;
        while let Some(chunk) = body.next().await {
            let chunk = match chunk {
                Ok(c) => c,
                Err(e) => {
                    // Nothing becomes visible: the incomplete upload is discarded.
                    let _ = writer.abort().await;
                    return Err(e);
                }
            };
            if let Err(e) = writer.wait_for_capacity(PART_CONCURRENCY).await {
                let _ = writer.abort().await;
                return Err(map_err(Op::Put, key, e));
            }
            size += chunk.len() as u64;
            writer.put(chunk);
        }
        writer
            .finish()
            .await
            .map_err(|e| map_err(Op::Put, key, e))?;
        Ok(size)
    }

    async fn get(&self, key: &str) -> Result<Bytes, StoreError> {
        let p = path(Op::Get, key)?;
        let result = self
            .inner
            .get(&p)
            .await
            .map_err(|e| map_err(Op::Get, key, e))?;
        result.bytes().await.map_err(|e| map_err(Op::Get, key, e))
    }

    async fn get_stream(&self, key: &str) -> Result<ByteStream, StoreError> {
        let p = path(Op::Get, key)?;
        let result = self
            .inner
            .get(&p)
            .await
            .map_err(|e| map_err(Op::Get, key, e))?;
        let key = key.to_string();
        Ok(result
            .into_stream()
            .map_err(move |e| map_err(Op::Get, &key, e))
            .boxed())
    }

    async fn head(&self, key: &str) -> Result<Option<ObjectInfo>, StoreError> {
        let p = path(Op::Head, key)?;
        match self.inner.head(&p).await {
            Ok(meta) => Ok(Some(info(meta))),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(map_err(Op::Head, key, e)),
        }
    }

    async fn list(&self, dir: &str) -> Result<Vec<ObjectInfo>, StoreError> {
        let p = path(Op::List, dir)?;
        let mut out: Vec<ObjectInfo> = self
            .inner
            .list(Some(&p))
            .map_ok(info)
            .try_collect()
            .await
            .map_err(|e| map_err(Op::List, dir, e))?;
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    async fn list_dir(&self, dir: &str) -> Result<DirListing, StoreError> {
        let p = path(Op::List, dir)?;
        let result = match self.inner.list_with_delimiter(Some(&p)).await {
            Ok(r) => r,
            Err(object_store::Error::NotFound { .. }) => return Ok(DirListing::default()),
            Err(e) => return Err(map_err(Op::List, dir, e)),
        };
        let mut objects: Vec<ObjectInfo> = result.objects.into_iter().map(info).collect();
        objects.sort_by(|a, b| a.key.cmp(&b.key));
        let mut dirs: Vec<String> = result
            .common_prefixes
            .into_iter()
            .map(|p| format!("{p}/"))
            .collect();
        dirs.sort();
        Ok(DirListing { objects, dirs })
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        let p = path(Op::Delete, key)?;
        match self.inner.delete(&p).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(map_err(Op::Delete, key, e)),
        }
    }
}
