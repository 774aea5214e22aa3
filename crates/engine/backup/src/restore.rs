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
    /// The download ended before the object's listed size: a connection closed early that a
    /// reader could take for the archive's end. Nothing restored is usable; retry.
    #[error(
        "the download of {key:?} ended after {received} of {expected} bytes; retry the restore"
    )]
    Truncated {
        /// The tarball.
        key: String,
        /// Bytes that came.
        received: u64,
        /// The object's size in the listing.
        expected: u64,
    },
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
            RestoreError::Truncated { .. } => "transient",
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

/// Downloads `key` (listed at `expected` bytes) and unpacks it into `dest` while it streams
/// (decompressing on a thread of its own). The restore is whole or fails: a download shorter
/// than the listing is [`RestoreError::Truncated`], and everything after the tar's end marker
/// is read (so the decompressor checks its own trailer) and must be zero padding.
pub async fn unpack_tar(
    store: &dyn ObjectStore,
    key: &str,
    expected: u64,
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
        // The write-back lives as long as the reader: it stops when the unpack is done.
        let write_back = crate::write_back::WriteBack::of_file_system(&dest_owned);
        let reader = crate::reporting::Reporting::new(
            ReadAhead::new(reader).map_err(unpack_err)?,
            move |n| {
                if let Some(w) = &write_back {
                    w.written(n);
                }
            },
        );
        let rest = crate::unpack::unpack(reader, &dest_owned).map_err(unpack_err)?;
        only_padding_follows(rest).map_err(unpack_err)
    });
    let mut received = 0u64;
    while let Some(chunk) = stream.next().await {
        let failed = chunk.is_err();
        if let Ok(c) = &chunk {
            received += c.len() as u64;
        }
        if tx.send(chunk).await.is_err() || failed {
            break;
        }
    }
    let truncated = received < expected;
    if truncated {
        // The unpacker must not take the early end for the archive's end.
        let _ = tx
            .send(Err(StoreError::Transient {
                op: crate::store::Op::Get,
                key: key.to_string(),
                message: format!("the download ended after {received} of {expected} bytes"),
            }))
            .await;
    }
    drop(tx);
    let unpacked = unpacker.await.map_err(|e| RestoreError::Unpack {
        key: key.to_string(),
        dest: dest.to_path_buf(),
        source: io::Error::other(e.to_string()),
    })?;
    if truncated {
        return Err(RestoreError::Truncated {
            key: key.to_string(),
            received,
            expected,
        });
    }
    unpacked
}

/// Reads what follows a tar's end marker to the end: zero blocks only. Anything else means the
/// archive was cut short by a zero block in the middle (entries were lost).
fn only_padding_follows(mut rest: impl Read) -> io::Result<()> {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match rest.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) if buf[..n].iter().all(|b| *b == 0) => {}
            Ok(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "data follows the tar archive's end marker: the archive is damaged and \
                     entries after that point would be missing; restore another backup",
                ))
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
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
                return Some((o.key.clone(), o.size, None));
            }
            Compression::ALL
                .into_iter()
                .find(|c| c.extension() == rest)
                .map(|c| (o.key.clone(), o.size, Some(c)))
        })
    };
    let (data_key, data_size, data_compression) =
        find("data.tar").ok_or_else(|| RestoreError::NoData {
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
    unpack_tar(store, &data_key, data_size, data_compression, dest).await?;
    // A backup of data whose `pg_wal` was a link (WAL on its own volume, taken by a tool that
    // kept the link) restores with a directory: the link's target is not here.
    let wal = dest.join("pg_wal");
    if std::fs::symlink_metadata(&wal).is_ok_and(|m| m.file_type().is_symlink()) {
        let _ = std::fs::remove_file(&wal);
    }
    unpack_dir(&wal.join("archive_status"))?;
    let tablespaces = entry.info.tablespaces().unwrap_or_default();
    for ts in tablespaces {
        let Some((key, size, compression)) = find(&format!("{}.tar", ts.oid)) else {
            continue;
        };
        let location = tablespace_locations
            .get(&ts.name)
            .cloned()
            .unwrap_or_else(|| PathBuf::from(&ts.location));
        unpack_dir(&location)?;
        unpack_tar(store, &key, size, compression, &location).await?;
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
