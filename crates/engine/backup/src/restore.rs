//! Restoring a base backup as `barman-cloud-restore` does: download `data.tar[.ext]` (and each
//! tablespace's `<oid>.tar[.ext]`) of a backup and unpack it into an empty directory.

use crate::backup_info::BackupInfo;
use crate::catalog::{BackupCatalog, CatalogError};
use crate::compression::Compression;
use crate::layout::ServerPrefix;
use crate::store::{ObjectStore, StoreError};
use futures::StreamExt;
use std::collections::BTreeMap;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use tokio::sync::mpsc;

/// A failed restore.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    /// The catalog could not be read or the backup is not in it.
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    /// The backup has no `data.tar`.
    #[error("backup {id} under {root:?} has no data.tar (incomplete backup; choose another)")]
    NoData {
        /// The backup id.
        id: String,
        /// The server folder.
        root: String,
    },
    /// The destination is not an empty directory.
    #[error("cannot restore into {0:?}: it exists and is not empty")]
    NotEmpty(PathBuf),
    /// A download failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Unpacking failed.
    #[error("cannot unpack {key:?} into {dest:?}: {source}")]
    Unpack {
        /// The tarball.
        key: String,
        /// Where to.
        dest: PathBuf,
        /// Why.
        source: io::Error,
    },
}

impl RestoreError {
    /// A stable label for metrics and events.
    pub fn category(&self) -> &'static str {
        match self {
            RestoreError::Catalog(e) => e.category(),
            RestoreError::NoData { .. } => "incomplete_backup",
            RestoreError::NotEmpty(_) => "destination_not_empty",
            RestoreError::Store(e) => e.category(),
            RestoreError::Unpack { .. } => "local_io",
        }
    }
}

/// Reads chunks from a channel (fed by the download) as a blocking `Read`.
struct ChannelReader {
    rx: mpsc::Receiver<Result<bytes::Bytes, StoreError>>,
    current: bytes::Bytes,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                Some(Ok(chunk)) => self.current = chunk,
                Some(Err(e)) => return Err(io::Error::other(e.to_string())),
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        self.current = self.current.slice(n..);
        Ok(n)
    }
}

/// Reads `inner` on a thread of its own, 1 MiB at a time, a few chunks ahead: decompression
/// then runs on one core while the tar is unpacked (files created and written) on another.
struct ReadAhead {
    rx: std::sync::mpsc::Receiver<io::Result<Vec<u8>>>,
    current: Vec<u8>,
    at: usize,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl ReadAhead {
    fn new(mut inner: Box<dyn Read + Send>) -> io::Result<Self> {
        let (tx, rx) = std::sync::mpsc::sync_channel(4);
        let reader = std::thread::Builder::new()
            .name("restore-read".into())
            .spawn(move || loop {
                let mut chunk = vec![0; CHUNK];
                let mut filled = 0;
                let result = loop {
                    match inner.read(&mut chunk[filled..]) {
                        Ok(0) => break Ok(()),
                        Ok(n) => {
                            filled += n;
                            if filled == chunk.len() {
                                break Ok(());
                            }
                        }
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => break Err(e),
                    }
                };
                chunk.truncate(filled);
                let end = filled == 0;
                let failed = result.is_err();
                let item = result.map(|()| chunk);
                if tx.send(item).is_err() || end || failed {
                    return;
                }
            })?;
        Ok(ReadAhead {
            rx,
            current: Vec::new(),
            at: 0,
            reader: Some(reader),
        })
    }
}

const CHUNK: usize = 1024 * 1024;

impl Read for ReadAhead {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.at == self.current.len() {
            match self.rx.recv() {
                Ok(Ok(chunk)) => {
                    self.current = chunk;
                    self.at = 0;
                }
                Ok(Err(e)) => return Err(e),
                // The reader ended (after an empty chunk, or it panicked).
                Err(_) => {
                    if let Some(reader) = self.reader.take() {
                        reader
                            .join()
                            .map_err(|_| io::Error::other("the restore's reader thread failed"))?;
                    }
                    return Ok(0);
                }
            }
        }
        let n = buf.len().min(self.current.len() - self.at);
        buf[..n].copy_from_slice(&self.current[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

/// Downloads `key` and unpacks it into `dest` while it streams (decompressing on a thread of
/// its own).
pub async fn unpack_tar(
    store: &dyn ObjectStore,
    key: &str,
    compression: Option<Compression>,
    dest: &Path,
) -> Result<(), RestoreError> {
    let mut stream = store.get_stream(key).await?;
    let (tx, rx) = mpsc::channel(8);
    let dest_owned = dest.to_path_buf();
    let key_owned = key.to_string();
    let unpacker = tokio::task::spawn_blocking(move || -> Result<(), RestoreError> {
        let unpack_err = |source| RestoreError::Unpack {
            key: key_owned.clone(),
            dest: dest_owned.clone(),
            source,
        };
        let reader = ChannelReader {
            rx,
            current: bytes::Bytes::new(),
        };
        let reader: Box<dyn Read + Send> = match compression {
            Some(c) => c.decoder(reader).map_err(unpack_err)?,
            None => Box::new(reader),
        };
        let reader = ReadAhead::new(reader).map_err(unpack_err)?;
        let mut archive = tar::Archive::new(reader);
        archive.set_preserve_permissions(true);
        archive.set_overwrite(true);
        archive.unpack(&dest_owned).map_err(unpack_err)
    });
    while let Some(chunk) = stream.next().await {
        let failed = chunk.is_err();
        if tx.send(chunk).await.is_err() || failed {
            break;
        }
    }
    drop(tx);
    unpacker.await.map_err(|e| RestoreError::Unpack {
        key: key.to_string(),
        dest: dest.to_path_buf(),
        source: io::Error::other(e.to_string()),
    })?
}

/// Restores the backup `selector` (an id, a name, `latest`, ...) into `dest` (absent or
/// empty). Tablespaces go to `tablespace_locations[name]`, else to their original location.
/// Returns the backup's info. WAL replay (restore_command, recovery.signal) is the caller's.
pub async fn restore_backup(
    store: &dyn ObjectStore,
    server: &ServerPrefix,
    selector: &str,
    dest: &Path,
    tablespace_locations: &BTreeMap<String, PathBuf>,
) -> Result<BackupInfo, RestoreError> {
    if dest.exists()
        && std::fs::read_dir(dest)
            .map(|mut d| d.next().is_some())
            .unwrap_or(true)
    {
        return Err(RestoreError::NotEmpty(dest.to_path_buf()));
    }
    let catalog = BackupCatalog::load(store, server).await?;
    let entry = catalog
        .find(selector)
        .ok_or_else(|| CatalogError::NoSuchBackup {
            selector: selector.to_string(),
            root: server.root().to_string(),
        })?;
    let objects = store.list(&server.backup_dir(&entry.id)).await?;
    let find = |stem: &str| {
        objects.iter().find_map(|o| {
            let file = o.key.rsplit('/').next().unwrap_or("");
            let rest = file.strip_prefix(stem)?;
            if rest.is_empty() {
                return Some((o.key.clone(), None));
            }
            Compression::ALL
                .into_iter()
                .find(|c| c.extension() == rest)
                .map(|c| (o.key.clone(), Some(c)))
        })
    };
    let (data_key, data_compression) = find("data.tar").ok_or_else(|| RestoreError::NoData {
        id: entry.id.to_string(),
        root: server.root().to_string(),
    })?;
    let unpack_dir = |d: &Path| {
        std::fs::create_dir_all(d).map_err(|source| RestoreError::Unpack {
            key: String::new(),
            dest: d.to_path_buf(),
            source,
        })
    };
    unpack_dir(dest)?;
    unpack_tar(store, &data_key, data_compression, dest).await?;
    // A backup of data whose `pg_wal` was a link (WAL on its own volume, taken by a tool that
    // kept the link) restores with a directory: the link's target is not here.
    let wal = dest.join("pg_wal");
    if std::fs::symlink_metadata(&wal).is_ok_and(|m| m.file_type().is_symlink()) {
        let _ = std::fs::remove_file(&wal);
    }
    unpack_dir(&wal.join("archive_status"))?;
    let tablespaces = entry.info.tablespaces().unwrap_or_default();
    for ts in tablespaces {
        let Some((key, compression)) = find(&format!("{}.tar", ts.oid)) else {
            continue;
        };
        let location = tablespace_locations
            .get(&ts.name)
            .cloned()
            .unwrap_or_else(|| PathBuf::from(&ts.location));
        unpack_dir(&location)?;
        unpack_tar(store, &key, compression, &location).await?;
        let link = dest.join("pg_tblspc").join(ts.oid.to_string());
        let _ = std::fs::remove_file(&link);
        unpack_dir(&dest.join("pg_tblspc"))?;
        std::os::unix::fs::symlink(&location, &link).map_err(|source| RestoreError::Unpack {
            key,
            dest: link.clone(),
            source,
        })?;
    }
    Ok(entry.info.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_ahead_passes_every_byte_on_and_then_the_end() {
        for size in [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK + 7] {
            let data: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
            let mut reader = ReadAhead::new(Box::new(io::Cursor::new(data.clone()))).unwrap();
            let mut out = Vec::new();
            reader.read_to_end(&mut out).unwrap();
            assert_eq!(out, data, "size {size}");
            assert_eq!(reader.read(&mut [0; 8]).unwrap(), 0, "size {size}");
        }
    }

    #[test]
    fn read_ahead_passes_a_read_error_on() {
        struct Failing(usize);
        impl Read for Failing {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                if self.0 == 0 {
                    return Err(io::Error::other("corrupt deflate data"));
                }
                let n = buf.len().min(self.0);
                self.0 -= n;
                Ok(n)
            }
        }
        let mut reader = ReadAhead::new(Box::new(Failing(CHUNK + 10))).unwrap();
        let e = reader.read_to_end(&mut Vec::new()).unwrap_err();
        assert!(e.to_string().contains("corrupt deflate data"), "{e}");
    }
}
