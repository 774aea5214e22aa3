//! Archiving WAL files the way `barman-cloud-wal-archive` does: check the name, compress,
//! upload to `<server>/wals/<timeline+log>/<name><ext>` (history files directly under
//! `wals/`); and `barman-cloud-check-wal-archive`'s safety check.

use crate::compression::Compression;
use crate::layout::{parse_archived_wal, ServerPrefix, WalFileName, WalNameError};
use crate::store::{ObjectStore, StoreError};
use bytes::Bytes;
use futures::StreamExt;
use std::path::{Path, PathBuf};

/// A failed WAL archive or restore.
#[derive(Debug, thiserror::Error)]
pub enum WalError {
    /// The file name is not a WAL file name.
    #[error("{path:?}: {source}")]
    BadName {
        /// The path given.
        path: PathBuf,
        /// Why.
        source: WalNameError,
    },
    /// The local file could not be read or written.
    #[error("cannot {what} {path:?}: {source}")]
    Local {
        /// `read` / `write` ...
        what: &'static str,
        /// The local path.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// (De)compression failed: the archived object is corrupt or not in the format its
    /// extension says.
    #[error("cannot {what} {key:?} with {compression}: {source} (the archived file is corrupt; check the object store)")]
    Codec {
        /// `compress` / `decompress`.
        what: &'static str,
        /// The object key (or local file).
        key: String,
        /// Algorithm.
        compression: &'static str,
        /// The error.
        source: std::io::Error,
    },
    /// The object store call failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The WAL file is not in the archive (the normal end of recovery from an archive).
    #[error("WAL file {name} is not in the archive under {dir:?}")]
    NotInArchive {
        /// The name asked for.
        name: String,
        /// The directory searched.
        dir: String,
    },
    /// A new cluster would archive into a folder that already holds WAL of another cluster.
    #[error("Expected empty archive: {root:?} already holds {count} WAL file(s) (e.g. {example:?}); use another serverName or destinationPath, or empty the folder if the old cluster is gone")]
    ArchiveNotEmpty {
        /// The server folder.
        root: String,
        /// How many WAL files were found.
        count: usize,
        /// One of them.
        example: String,
    },
    /// A background task failed.
    #[error("WAL task failed: {0}")]
    Task(String),
}

impl WalError {
    /// A stable label for metrics and events.
    pub fn category(&self) -> &'static str {
        match self {
            WalError::BadName { .. } => "bad_name",
            WalError::Local { .. } => "local_io",
            WalError::Codec { .. } => "corrupt",
            WalError::Store(e) => e.category(),
            WalError::NotInArchive { .. } => "not_in_archive",
            WalError::ArchiveNotEmpty { .. } => "archive_not_empty",
            WalError::Task(_) => "task",
        }
    }
}

/// One archived WAL file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchivedWal {
    /// Its name.
    pub name: WalFileName,
    /// The object key it was stored under.
    pub key: String,
    /// Bytes read from disk.
    pub size: u64,
    /// Bytes uploaded.
    pub stored_size: u64,
}

pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, WalError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| WalError::Task(e.to_string()))
}

/// Archives the WAL file at `path` (PostgreSQL's `%p`) under `server`, compressed with
/// `compression`. Re-archiving the same file replaces the object (as barman-cloud does), so a
/// retry after a crash succeeds.
pub async fn archive_wal(
    store: &dyn ObjectStore,
    server: &ServerPrefix,
    path: &Path,
    compression: Option<Compression>,
) -> Result<ArchivedWal, WalError> {
    let file_name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    let name: WalFileName = file_name.parse().map_err(|source| WalError::BadName {
        path: path.to_path_buf(),
        source,
    })?;
    let data = tokio::fs::read(path)
        .await
        .map_err(|source| WalError::Local {
            what: "read WAL file",
            path: path.to_path_buf(),
            source,
        })?;
    let size = data.len() as u64;
    let body = match compression {
        None => Bytes::from(data),
        Some(c) => {
            let packed = blocking(move || c.compress(&data)).await?;
            Bytes::from(packed.map_err(|source| WalError::Codec {
                what: "compress",
                key: path.display().to_string(),
                compression: c.name(),
                source,
            })?)
        }
    };
    let key = server.wal_key(&name, compression);
    let stored_size = body.len() as u64;
    store.put(&key, body).await?;
    tracing::debug!(wal = %name, key, size, stored_size, "archived WAL file");
    Ok(ArchivedWal {
        name,
        key,
        size,
        stored_size,
    })
}

/// Archives several WAL files with at most `max_parallel` uploads at a time (`wal.maxParallel`).
/// Results are in the order of `paths`; one failure does not stop the others.
pub async fn archive_many(
    store: &dyn ObjectStore,
    server: &ServerPrefix,
    paths: &[PathBuf],
    compression: Option<Compression>,
    max_parallel: usize,
) -> Vec<Result<ArchivedWal, WalError>> {
    futures::stream::iter(paths)
        .map(|p| archive_wal(store, server, p, compression))
        .buffered(max_parallel.max(1))
        .collect()
        .await
}

/// Every WAL-archive file (any kind, any compression) stored under `server`'s `wals/`.
pub async fn list_archived_wal(
    store: &dyn ObjectStore,
    server: &ServerPrefix,
) -> Result<Vec<(WalFileName, String)>, WalError> {
    let objects = store.list(&server.wals_dir()).await?;
    Ok(objects
        .into_iter()
        .filter_map(|o| {
            let file = o.key.rsplit('/').next().unwrap_or("");
            parse_archived_wal(file).map(|(name, _)| (name, o.key.clone()))
        })
        .collect())
}

/// `barman-cloud-check-wal-archive` without a timeline: a new cluster may only archive into a
/// folder holding no WAL files at all ("Expected empty archive").
pub async fn check_empty_archive(
    store: &dyn ObjectStore,
    server: &ServerPrefix,
) -> Result<(), WalError> {
    check_archive_usable(store, server, None).await
}

/// `barman-cloud-check-wal-archive [--timeline T]`: with a timeline, WAL files of earlier
/// timelines are allowed (a cluster restored from this archive continuing on a new timeline);
/// files of timeline `T` or later are not.
pub async fn check_archive_usable(
    store: &dyn ObjectStore,
    server: &ServerPrefix,
    timeline: Option<u32>,
) -> Result<(), WalError> {
    let found: Vec<String> = list_archived_wal(store, server)
        .await?
        .into_iter()
        .filter(|(name, _)| timeline.is_none_or(|t| name.timeline() >= t))
        .map(|(_, key)| key)
        .collect();
    match found.first() {
        None => Ok(()),
        Some(example) => Err(WalError::ArchiveNotEmpty {
            root: server.root().to_string(),
            count: found.len(),
            example: example.clone(),
        }),
    }
}

/// The WAL files PostgreSQL marked ready in `status_dir` (`pg_wal/archive_status`) that are not
/// uploaded yet (no marker in `spool`), oldest first.
pub fn ready_wal_files(status_dir: &Path, spool: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(status_dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter_map(|f| f.strip_suffix(".ready").map(str::to_string))
                .filter(|f| f.parse::<WalFileName>().is_ok())
                // Uploaded already (by an earlier call or a shipper running ahead).
                .filter(|f| !spool.join(f).exists())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// What [`archive_with_ready`] did for the requested file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArchiveOutcome {
    /// Uploaded now.
    Archived(ArchivedWal),
    /// Uploaded by an earlier call, in parallel with the file that call was asked for.
    PreArchived,
}

/// PostgreSQL's `archive_command` the way CNPG runs barman-cloud: if `wal_path` was already
/// uploaded by an earlier call (a marker in `spool`), succeed at once; otherwise upload it
/// together with up to `max_parallel - 1` other files PostgreSQL has marked ready
/// (`archive_status/*.ready` next to it), remembering those in `spool`. Only the requested
/// file's failure is an error.
pub async fn archive_with_ready(
    store: &dyn ObjectStore,
    server: &ServerPrefix,
    wal_path: &Path,
    compression: Option<Compression>,
    max_parallel: usize,
    spool: &Path,
) -> Result<ArchiveOutcome, WalError> {
    let name = wal_path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("")
        .to_string();
    let marker = spool.join(&name);
    if marker.is_file() {
        std::fs::remove_file(&marker).map_err(|source| WalError::Local {
            what: "remove the archived marker",
            path: marker.clone(),
            source,
        })?;
        return Ok(ArchiveOutcome::PreArchived);
    }
    let wal_dir = wal_path.parent().unwrap_or(Path::new("."));
    let mut ready: Vec<String> = ready_wal_files(&wal_dir.join("archive_status"), spool)
        .into_iter()
        .filter(|f| *f != name)
        .collect();
    ready.truncate(max_parallel.saturating_sub(1));
    let mut paths = vec![wal_path.to_path_buf()];
    paths.extend(ready.iter().map(|f| wal_dir.join(f)));
    let mut results = archive_many(store, server, &paths, compression, max_parallel)
        .await
        .into_iter();
    let requested = results.next().unwrap_or_else(|| {
        Err(WalError::Task(
            "no result for the requested WAL file".into(),
        ))
    });
    if !ready.is_empty() {
        std::fs::create_dir_all(spool).map_err(|source| WalError::Local {
            what: "create the WAL archive spool",
            path: spool.to_path_buf(),
            source,
        })?;
    }
    for (file, result) in ready.iter().zip(results) {
        match result {
            Ok(_) => {
                let path = spool.join(file);
                std::fs::write(&path, b"").map_err(|source| WalError::Local {
                    what: "write the archived marker",
                    path,
                    source,
                })?;
            }
            Err(e) => tracing::debug!(wal = %file, error = %e, "parallel WAL archive failed"),
        }
    }
    requested.map(ArchiveOutcome::Archived)
}
