//! Restoring WAL files the way `barman-cloud-wal-restore` does: find the file whatever its
//! compression extension, decompress it, and write it atomically (temporary file, fsync,
//! rename) so PostgreSQL never reads half a segment.

use crate::compression::Compression;
use crate::layout::{parse_archived_wal, ServerPrefix, WalFileKind, WalFileName};
use crate::store::ObjectStore;
use crate::wal_archive::{blocking, WalError};
use std::io::Write;
use std::path::{Path, PathBuf};

/// One restored WAL file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoredWal {
    /// The object that was restored.
    pub key: String,
    /// Its compression.
    pub compression: Option<Compression>,
    /// Whether it was a `.partial` file standing in for the segment asked for.
    pub partial: bool,
    /// Bytes written.
    pub size: u64,
}

/// Finds the object holding `name`: the full file in any compression first, else (when
/// `allow_partial`) its `.partial`. Backup history files are never returned for a segment.
pub async fn find_wal(
    store: &dyn ObjectStore,
    server: &ServerPrefix,
    name: &WalFileName,
    allow_partial: bool,
) -> Result<Option<(String, Option<Compression>, bool)>, WalError> {
    let dir = server.wal_dir(name);
    let listing = store.list_dir(&dir).await?;
    let mut partial = None;
    for object in listing.objects {
        let file = object.key.rsplit('/').next().unwrap_or("");
        if !file.starts_with(name.as_str()) {
            continue;
        }
        let Some((found, compression)) = parse_archived_wal(file) else {
            continue;
        };
        if &found == name {
            return Ok(Some((object.key, compression, false)));
        }
        if allow_partial
            && name.kind() == WalFileKind::Segment
            && found.kind() == WalFileKind::Partial
            && found.segment() == name.segment()
            && partial.is_none()
        {
            partial = Some((object.key, compression, true));
        }
    }
    Ok(partial)
}

/// Restores the WAL file `name` (PostgreSQL's `%f`) to `dest` (`%p`).
/// [`WalError::NotInArchive`] means the archive has no such file.
pub async fn restore_wal(
    store: &dyn ObjectStore,
    server: &ServerPrefix,
    name: &str,
    dest: &Path,
    allow_partial: bool,
) -> Result<RestoredWal, WalError> {
    let wal: WalFileName = name.parse().map_err(|source| WalError::BadName {
        path: PathBuf::from(name),
        source,
    })?;
    let Some((key, compression, partial)) = find_wal(store, server, &wal, allow_partial).await?
    else {
        return Err(WalError::NotInArchive {
            name: name.to_string(),
            dir: server.wal_dir(&wal),
        });
    };
    let body = store.get(&key).await?;
    let dest = dest.to_path_buf();
    let key_for_task = key.clone();
    let size = blocking(move || -> Result<u64, WalError> {
        let data = match compression {
            None => body.to_vec(),
            Some(c) => c.decompress(&body).map_err(|source| WalError::Codec {
                what: "decompress",
                key: key_for_task,
                compression: c.name(),
                source,
            })?,
        };
        write_atomically(&dest, &data)?;
        Ok(data.len() as u64)
    })
    .await??;
    tracing::debug!(wal = name, key, size, "restored WAL file");
    Ok(RestoredWal {
        key,
        compression,
        partial,
        size,
    })
}

/// Writes `data` to a temporary file next to `dest`, syncs it, renames it over `dest` and
/// syncs the directory.
pub fn write_atomically(dest: &Path, data: &[u8]) -> Result<(), WalError> {
    let local = |what: &'static str, path: &Path| {
        let path = path.to_path_buf();
        move |source| WalError::Local { what, path, source }
    };
    let dir = dest
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let file_name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{file_name}.pgherd-tmp"));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp).map_err(local("create", &tmp))?;
        f.write_all(data).map_err(local("write", &tmp))?;
        f.sync_all().map_err(local("sync", &tmp))?;
        std::fs::rename(&tmp, dest).map_err(local("rename into place", dest))?;
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(local("sync directory", dir))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Restores `name` to `dest` like [`restore_wal`], prefetching the next `max_parallel - 1`
/// segments into `spool` in parallel (CNPG's `wal.maxParallel` for restore): a later call for
/// a prefetched segment is served from the spool without contacting the store. Segments
/// missing from the archive are simply not prefetched.
pub async fn restore_wal_prefetching(
    store: &dyn ObjectStore,
    server: &ServerPrefix,
    name: &str,
    dest: &Path,
    spool: &Path,
    max_parallel: usize,
    segment_size: u64,
) -> Result<RestoredWal, WalError> {
    let wal: WalFileName = name.parse().map_err(|source| WalError::BadName {
        path: PathBuf::from(name),
        source,
    })?;
    let spooled = spool.join(name);
    if spooled.is_file() {
        let size = std::fs::metadata(&spooled).map_or(0, |m| m.len());
        std::fs::rename(&spooled, dest).map_err(|source| WalError::Local {
            what: "move the prefetched WAL file into place",
            path: dest.to_path_buf(),
            source,
        })?;
        return Ok(RestoredWal {
            key: spooled.display().to_string(),
            compression: None,
            partial: false,
            size,
        });
    }
    std::fs::create_dir_all(spool).map_err(|source| WalError::Local {
        what: "create the WAL spool",
        path: spool.to_path_buf(),
        source,
    })?;
    let next = wal.next_segments(segment_size, max_parallel.saturating_sub(1));
    let prefetch = futures::future::join_all(next.iter().map(|n| async move {
        let target = spool.join(n.as_str());
        if target.is_file() {
            return;
        }
        match restore_wal(store, server, n.as_str(), &target, false).await {
            Ok(_) | Err(WalError::NotInArchive { .. }) => {}
            Err(e) => tracing::debug!(wal = %n, error = %e, "WAL prefetch failed"),
        }
    }));
    let (requested, _) = tokio::join!(restore_wal(store, server, name, dest, true), prefetch);
    requested
}
