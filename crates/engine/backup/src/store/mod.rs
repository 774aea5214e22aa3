//! Object stores: the small [`ObjectStore`] trait the backup engine needs, implemented over the
//! `object_store` crate for S3 (and S3-compatible services), GCS, Azure and the local
//! filesystem ([`cloud`]), wrapped by [`Resilient`] (timeouts, retries with backoff,
//! cancellation) and, in tests, by [`Faulty`] (injected failures and delays).
//!
//! Keys are bucket-relative strings separated by `/`, without a leading `/`; "directories"
//! end with `/`.

pub mod archive_source;
pub mod barman_config;
pub mod cloud;
pub mod fault;
pub mod location;
pub mod resilient;
pub mod target;

pub use archive_source::{archive_source, ArchiveSource};
pub use barman_config::{server_prefix, SecretResolver};
pub use cloud::{open, AzureKeys, CloudStore, S3Keys, StoreConfig};
pub use fault::{FaultPlan, Faulty};
pub use location::{Destination, DestinationError};
pub use resilient::{Resilient, RetryPolicy};
pub use target::{StoreTarget, TargetError};

use bytes::Bytes;
use futures::stream::BoxStream;
use std::fmt;
use std::time::Duration;

/// One stored object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    /// Its key.
    pub key: String,
    /// Its size in bytes.
    pub size: u64,
}

/// A directory listing: objects directly in it and its sub-directories (each ending in `/`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DirListing {
    /// Objects directly in the directory.
    pub objects: Vec<ObjectInfo>,
    /// Sub-directories, as full keys ending in `/`.
    pub dirs: Vec<String>,
}

/// A stream of chunks of an object, or of a body to upload.
pub type ByteStream = BoxStream<'static, Result<Bytes, StoreError>>;

/// The operation that failed, for messages and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// Upload.
    Put,
    /// Download.
    Get,
    /// Metadata lookup.
    Head,
    /// Listing.
    List,
    /// Deletion.
    Delete,
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Op::Put => "upload",
            Op::Get => "download",
            Op::Head => "look up",
            Op::List => "list",
            Op::Delete => "delete",
        })
    }
}

/// A failed object-store call. Messages never contain credentials.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The object does not exist.
    #[error("object {key:?} does not exist")]
    NotFound {
        /// The key.
        key: String,
    },
    /// A failure worth retrying (network, throttling, server error).
    #[error("could not {op} {key:?}: {message} (transient; retried calls may succeed: check the object store's availability)")]
    Transient {
        /// What was attempted.
        op: Op,
        /// The key or prefix.
        key: String,
        /// What the store said.
        message: String,
    },
    /// A failure retrying will not fix (permissions, bad request, bad configuration).
    #[error(
        "could not {op} {key:?}: {message} (check the credentials, the bucket and its permissions)"
    )]
    Permanent {
        /// What was attempted.
        op: Op,
        /// The key or prefix.
        key: String,
        /// What the store said.
        message: String,
    },
    /// The call took longer than its timeout (every attempt when retried).
    #[error("could not {op} {key:?}: no answer within {after:?}")]
    Timeout {
        /// What was attempted.
        op: Op,
        /// The key or prefix.
        key: String,
        /// The timeout.
        after: Duration,
    },
    /// The caller cancelled the call.
    #[error("{op} of {key:?} cancelled")]
    Cancelled {
        /// What was attempted.
        op: Op,
        /// The key or prefix.
        key: String,
    },
    /// The store could not be configured.
    #[error("object store configuration: {0}")]
    Config(String),
    /// A local file could not be read or written.
    #[error("{what} {path:?}: {source}")]
    Local {
        /// What was being done.
        what: &'static str,
        /// The local path.
        path: std::path::PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

impl StoreError {
    /// Whether retrying the same call may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            StoreError::Transient { .. } | StoreError::Timeout { .. }
        )
    }

    /// A stable label for metrics and events.
    pub fn category(&self) -> &'static str {
        match self {
            StoreError::NotFound { .. } => "not_found",
            StoreError::Transient { .. } => "transient",
            StoreError::Permanent { .. } => "permanent",
            StoreError::Timeout { .. } => "timeout",
            StoreError::Cancelled { .. } => "cancelled",
            StoreError::Config(_) => "config",
            StoreError::Local { .. } => "local_io",
        }
    }
}

/// What the backup engine needs from an object store. Implementations make an uploaded object
/// visible only once it is complete (S3 PUT and multipart completion, a rename on filesystems),
/// so a reader never sees half an object.
#[async_trait::async_trait]
pub trait ObjectStore: Send + Sync + fmt::Debug {
    /// Uploads a whole object (replacing any object with that key).
    async fn put(&self, key: &str, data: Bytes) -> Result<(), StoreError>;

    /// Uploads a stream of unknown length in parts (multipart upload); returns the size. If the
    /// body fails or the upload is interrupted, no object is created.
    async fn put_stream(&self, key: &str, body: ByteStream) -> Result<u64, StoreError>;

    /// Downloads a whole object.
    async fn get(&self, key: &str) -> Result<Bytes, StoreError>;

    /// Downloads an object as a stream (for objects too large for memory).
    async fn get_stream(&self, key: &str) -> Result<ByteStream, StoreError>;

    /// Size of an object, `None` when absent.
    async fn head(&self, key: &str) -> Result<Option<ObjectInfo>, StoreError>;

    /// Every object under the directory `dir` (ending in `/`), recursively, sorted by key.
    async fn list(&self, dir: &str) -> Result<Vec<ObjectInfo>, StoreError>;

    /// The objects and sub-directories directly in the directory `dir` (ending in `/`).
    async fn list_dir(&self, dir: &str) -> Result<DirListing, StoreError>;

    /// Deletes an object; deleting an absent object succeeds.
    async fn delete(&self, key: &str) -> Result<(), StoreError>;
}
