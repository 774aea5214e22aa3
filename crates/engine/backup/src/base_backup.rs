//! Base backup tarballs as `barman-cloud-backup` writes them: PGDATA streamed into
//! `data.tar[.ext]` (one compressed tar stream, uploaded in parts), skipping what PostgreSQL
//! recreates (WAL, temporary and runtime files), `global/pg_control` last, and the
//! `backup_label` / `tablespace_map` returned by `pg_backup_stop` added at the end; one
//! `<oid>.tar[.ext]` per tablespace. The `pg_backup_start`/`pg_backup_stop` calls are the
//! caller's. With `jobs` > 1 a gzip tarball is compressed on that many threads, still as one
//! gzip member (see [`crate::parallel_gzip`]), so barman-cloud-restore reads it as before.

use crate::compression::{Compression, Encoder};
use crate::read_ahead::{self, KernelReadAhead};
use crate::store::{ByteStream, ObjectStore, StoreError};
use bytes::Bytes;
use futures::StreamExt;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

/// Bytes put into a backup's tarballs so far (before compression), shared with whoever shows
/// the backup's progress.
#[derive(Debug, Clone, Default)]
pub struct Progress(Arc<AtomicU64>);

impl Progress {
    /// Bytes so far.
    pub fn bytes(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }

    fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
}

/// About how many bytes the tar of `root` will hold (the sizes of the files it takes, with the
/// PGDATA exclusions when `is_pgdata`): the total a backup's progress is measured against.
pub fn estimated_size(root: &Path, is_pgdata: bool) -> u64 {
    let mut total = 0;
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(root.join(&rel)) else {
            continue;
        };
        for entry in entries.flatten() {
            let rel_path = rel.join(entry.file_name());
            let Ok(meta) = entry.path().symlink_metadata() else {
                continue;
            };
            if is_pgdata && excluded(&rel_path, meta.is_dir()) {
                continue;
            }
            if meta.is_dir() {
                stack.push(rel_path);
            } else {
                total += meta.len();
            }
        }
    }
    total
}

/// Directories whose contents are left out (the directory itself is kept), as barman and
/// pg_basebackup do.
pub const EXCLUDED_CONTENTS: [&str; 9] = [
    "pg_wal",
    "pg_xlog",
    "pg_replslot",
    "pg_dynshmem",
    "pg_notify",
    "pg_serial",
    "pg_snapshots",
    "pg_stat_tmp",
    "pg_subtrans",
];

/// Files left out wherever they are (top level for the first ones, anywhere for
/// `pg_internal.init`).
pub const EXCLUDED_FILES: [&str; 7] = [
    "postmaster.pid",
    "postmaster.opts",
    "backup_label",
    "tablespace_map",
    "backup_label.old",
    "tablespace_map.old",
    "pg_internal.init",
];

/// A failed tarball upload.
#[derive(Debug, thiserror::Error)]
pub enum TarError {
    /// A file of the data directory could not be read.
    #[error("cannot read {path:?} for the base backup: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// The upload failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The tar writer task failed.
    #[error("base backup tar task failed: {0}")]
    Task(String),
}

impl TarError {
    /// A stable label for metrics and events.
    pub fn category(&self) -> &'static str {
        match self {
            TarError::Read { .. } => "local_io",
            TarError::Store(e) => e.category(),
            TarError::Task(_) => "task",
        }
    }
}

/// What a tarball upload produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TarUpload {
    /// The object key.
    pub key: String,
    /// Bytes of file content put in the tar (barman's `size`).
    pub content_size: u64,
    /// Bytes uploaded (after compression).
    pub stored_size: u64,
}

/// A `Write` that sends 1 MiB chunks to the uploader.
struct ChannelWriter {
    tx: mpsc::Sender<Result<Bytes, StoreError>>,
    buf: Vec<u8>,
}

const CHUNK: usize = 1024 * 1024;

impl ChannelWriter {
    fn send(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK)));
        self.tx
            .blocking_send(Ok(chunk))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the upload stopped"))
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK {
            self.send()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn excluded(rel: &Path, is_dir: bool) -> bool {
    let name = rel.file_name().and_then(|n| n.to_str()).unwrap_or("");
    if !is_dir && EXCLUDED_FILES.contains(&name) {
        return true;
    }
    if name.starts_with("pgsql_tmp") {
        return true;
    }
    // Contents of the excluded directories (at the top level of PGDATA).
    let mut parts = rel.components();
    match (parts.next(), parts.next()) {
        (Some(first), Some(_)) => first
            .as_os_str()
            .to_str()
            .is_some_and(|f| EXCLUDED_CONTENTS.contains(&f)),
        _ => false,
    }
}

/// How an entry of a tar is written, planned by the walk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Planned {
    /// A directory, symbolic link or other non-regular file, appended as it is.
    AsIs,
    /// A regular file, of this size when walked (the read-ahead's plan; the tar takes the
    /// size the file has when opened).
    File(u64),
    /// An excluded directory kept elsewhere (`pg_wal` on its own volume), written as the empty
    /// directory it stands for, as pg_basebackup does: its link's target means nothing where
    /// the backup is restored.
    EmptyDir,
}

/// The entries of the tar of `root` in order (name in the tar, path, how): directories before
/// their contents, names sorted, and with `is_pgdata` the exclusions applied and
/// `global/pg_control` last.
fn plan_tar(root: &Path, is_pgdata: bool) -> Result<Vec<(PathBuf, PathBuf, Planned)>, TarError> {
    let read_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| TarError::Read { path, source }
    };
    let mut plan = Vec::new();
    let mut stack = vec![PathBuf::new()];
    let mut pg_control = None;
    while let Some(rel) = stack.pop() {
        let dir = root.join(&rel);
        let mut entries: Vec<_> = std::fs::read_dir(&dir)
            .map_err(read_err(&dir))?
            .collect::<Result<_, _>>()
            .map_err(read_err(&dir))?;
        entries.sort_by_key(|e| e.file_name());
        for entry in entries.into_iter().rev() {
            let rel_path = rel.join(entry.file_name());
            let path = entry.path();
            let meta = match std::fs::symlink_metadata(&path) {
                Ok(meta) => meta,
                // Files removed while the backup runs are fine (PostgreSQL recreates them).
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(read_err(&path)(e)),
            };
            let is_dir = meta.is_dir();
            if is_pgdata && excluded(&rel_path, is_dir) {
                continue;
            }
            if is_pgdata && rel_path == Path::new("global/pg_control") {
                pg_control = Some((rel_path, path, Planned::File(meta.len())));
                continue;
            }
            if is_dir {
                stack.push(rel_path.clone());
            }
            let top_level = rel_path.components().count() == 1;
            let how = if meta.is_file() {
                Planned::File(meta.len())
            } else if is_pgdata
                && top_level
                && meta.file_type().is_symlink()
                && EXCLUDED_CONTENTS.contains(&rel_path.to_str().unwrap_or_default())
            {
                Planned::EmptyDir
            } else {
                Planned::AsIs
            };
            plan.push((rel_path, path, how));
        }
    }
    plan.extend(pg_control);
    Ok(plan)
}

/// Seconds since the epoch, for the headers of entries that are not files on disk.
fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Writes the tar of `root` into `out`; returns `out`.
fn write_tar<W: Write>(
    root: &Path,
    is_pgdata: bool,
    trailer: Trailer,
    out: W,
) -> Result<W, TarError> {
    let read_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| TarError::Read { path, source }
    };
    let mut tar = tar::Builder::new(out);
    tar.follow_symlinks(false);
    tar.mode(tar::HeaderMode::Complete);
    let plan = plan_tar(root, is_pgdata)?;
    let files = plan
        .iter()
        .filter_map(|(_, path, how)| match how {
            Planned::File(size) => Some((path.clone(), *size)),
            _ => None,
        })
        .collect();
    let read_ahead = KernelReadAhead::start(
        files,
        read_ahead::CHUNK,
        read_ahead::WINDOW,
        read_ahead::advise_will_need,
    );
    for (rel_path, path, how) in plan {
        let appended = match how {
            Planned::EmptyDir => {
                let mut header = tar::Header::new_gnu();
                header.set_entry_type(tar::EntryType::Directory);
                header.set_size(0);
                header.set_mode(0o700);
                header.set_mtime(now_secs());
                header.set_cksum();
                tar.append_data(&mut header, &rel_path, io::empty())
            }
            Planned::AsIs => tar.append_path_with_name(&path, &rel_path),
            Planned::File(size) => {
                let mut reported = 0;
                let appended = append_regular_file(&mut tar, &path, &rel_path, &mut |n| {
                    reported += n;
                    read_ahead.consumed(n);
                });
                // The plan's size in all, whatever the file became since.
                read_ahead.consumed(size.saturating_sub(reported));
                appended
            }
        };
        match appended {
            Ok(()) => {}
            // Files removed while the backup runs are fine (PostgreSQL recreates them), but
            // never pg_control.
            Err(e)
                if e.kind() == io::ErrorKind::NotFound
                    && rel_path != Path::new("global/pg_control") => {}
            Err(e) => return Err(TarError::Read { path, source: e }),
        }
    }
    drop(read_ahead);
    let _ = trailer.walked.send(());
    let extra_files = trailer.files.blocking_recv().map_err(|_| TarError::Read {
        path: root.to_path_buf(),
        source: io::Error::other("the files to add at the end of the tar (backup_label) never came: the backup was stopped"),
    })?;
    for (name, content) in &extra_files {
        let mut header = tar::Header::new_gnu();
        header.set_size(content.len() as u64);
        header.set_mode(0o600);
        header.set_mtime(now_secs());
        header.set_cksum();
        tar.append_data(&mut header, name, content.as_slice())
            .map_err(read_err(Path::new(name)))?;
    }
    tar.into_inner().map_err(read_err(root))
}

/// Appends the regular file at `path` as `name`, with exactly the size it had when opened.
///
/// tar's own `append_path`/`append_file` write the header's size from `stat` and then copy the
/// file to its end: a relation PostgreSQL extends while the backup reads it would overrun its
/// header, and since relations grow by zero pages a reader would then take those zeros for the
/// archive's end marker and silently drop every later entry (`global/pg_control` included).
fn append_regular_file<W: Write>(
    tar: &mut tar::Builder<W>,
    path: &Path,
    name: &Path,
    on_read: &mut dyn FnMut(u64),
) -> io::Result<()> {
    let file = std::fs::File::open(path)?;
    let meta = file.metadata()?;
    append_open_file(tar, file, &meta, name, on_read)
}

/// Appends `file` as `name` with the size in `meta`: cut there if the file grew since, padded
/// with zeros if it shrank (as pg_basebackup does; replaying WAL from the backup's start
/// rewrites both). `on_read` hears of the bytes read, a MiB at a time.
fn append_open_file<W: Write>(
    tar: &mut tar::Builder<W>,
    file: std::fs::File,
    meta: &std::fs::Metadata,
    name: &Path,
    on_read: &mut dyn FnMut(u64),
) -> io::Result<()> {
    use std::io::Read;
    let size = meta.len();
    let mut header = tar::Header::new_gnu();
    header.set_metadata_in_mode(meta, tar::HeaderMode::Complete);
    header.set_size(size);
    let mut body =
        crate::reporting::Reporting::new(file.take(size).chain(io::repeat(0)).take(size), on_read);
    let appended = tar.append_data(&mut header, name, &mut body);
    body.flush();
    appended
}

/// Files added at the end of a tar once the directory has been walked: `walked` fires when the
/// walk is done (then call `pg_backup_stop`), and `files` delivers what to append (its
/// `backup_label` and `tablespace_map`). Dropping the sender of `files` fails the upload.
#[derive(Debug)]
pub struct Trailer {
    /// Fired when every file of the directory is in the tar.
    pub walked: oneshot::Sender<()>,
    /// The files to append.
    pub files: oneshot::Receiver<Vec<(String, Vec<u8>)>>,
}

impl Trailer {
    /// A trailer with files known in advance.
    pub fn fixed(files: Vec<(String, Vec<u8>)>) -> Self {
        let (walked, _) = oneshot::channel();
        let (tx, rx) = oneshot::channel();
        let _ = tx.send(files);
        Trailer { walked, files: rx }
    }
}

/// Streams a tar of `root` to `key`, compressed with `compression`. With `is_pgdata`, the
/// PGDATA exclusions apply and `global/pg_control` goes last; `extra_files` (e.g.
/// `backup_label` from `pg_backup_stop`) are appended at the end. If reading or uploading
/// fails, no object is created.
pub async fn upload_tar(
    store: &dyn ObjectStore,
    key: &str,
    root: &Path,
    is_pgdata: bool,
    compression: Option<Compression>,
    extra_files: Vec<(String, Vec<u8>)>,
) -> Result<TarUpload, TarError> {
    let options = TarOptions {
        compression,
        ..TarOptions::default()
    };
    upload_tar_with_trailer(
        store,
        key,
        root,
        is_pgdata,
        &options,
        Trailer::fixed(extra_files),
    )
    .await
}

/// How a tarball is compressed, and where its progress is counted.
#[derive(Debug, Clone, Default)]
pub struct TarOptions {
    /// The compression (`data.compression`).
    pub compression: Option<Compression>,
    /// Compression threads (`data.jobs`; 0 and 1 both mean one, on the tar's own thread).
    pub jobs: usize,
    /// Counts the bytes put in the tar.
    pub progress: Progress,
}

/// [`upload_tar`] with the files to append delivered later through a [`Trailer`], compressed
/// on `options.jobs` threads, counting the bytes put in the tar into `options.progress`.
pub async fn upload_tar_with_trailer(
    store: &dyn ObjectStore,
    key: &str,
    root: &Path,
    is_pgdata: bool,
    options: &TarOptions,
    trailer: Trailer,
) -> Result<TarUpload, TarError> {
    let TarOptions {
        compression,
        jobs,
        progress,
    } = options.clone();
    let (tx, rx) = mpsc::channel::<Result<Bytes, StoreError>>(8);
    let root_owned = root.to_path_buf();
    let error_tx = tx.clone();
    let writer = tokio::task::spawn_blocking(move || -> Result<u64, TarError> {
        let run = || -> Result<u64, TarError> {
            let io_err = |source| TarError::Read {
                path: root_owned.clone(),
                source,
            };
            let sink = ChannelWriter {
                tx,
                buf: Vec::with_capacity(CHUNK),
            };
            let encoder = Encoder::parallel(compression, jobs, sink).map_err(io_err)?;
            let counting = CountingWriter {
                inner: encoder,
                count: 0,
                progress,
            };
            let counting = write_tar(&root_owned, is_pgdata, trailer, counting)?;
            let count = counting.count;
            let mut sink = counting.inner.finish().map_err(io_err)?;
            sink.send().map_err(io_err)?;
            Ok(count)
        };
        let result = run();
        if let Err(e) = &result {
            // Make the upload fail (and abort) instead of completing a truncated tar.
            let _ = error_tx.blocking_send(Err(StoreError::Local {
                what: "tar",
                path: root_owned.clone(),
                source: io::Error::other(e.to_string()),
            }));
        }
        result
    });
    let body: ByteStream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    })
    .boxed();
    let uploaded = store.put_stream(key, body).await;
    let written = writer.await.map_err(|e| TarError::Task(e.to_string()))?;
    match (written, uploaded) {
        (Ok(content_size), Ok(stored_size)) => Ok(TarUpload {
            key: key.to_string(),
            content_size,
            stored_size,
        }),
        // Reading PGDATA failed, which failed the upload: report the read.
        (Err(e), Err(StoreError::Local { .. })) | (Err(e), Ok(_)) => Err(e),
        // The upload failed, which stopped the writer: report the upload.
        (_, Err(e)) => Err(e.into()),
    }
}

/// Counts bytes written before compression (the tar's size).
struct CountingWriter<W> {
    inner: W,
    count: u64,
    progress: Progress,
}

impl<W: Write> Write for CountingWriter<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(data)?;
        self.count += n as u64;
        self.progress.add(n as u64);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exclusions() {
        assert!(excluded(
            Path::new("pg_wal/000000010000000000000001"),
            false
        ));
        assert!(!excluded(Path::new("pg_wal"), true));
        assert!(excluded(Path::new("postmaster.pid"), false));
        assert!(excluded(Path::new("global/pg_internal.init"), false));
        assert!(excluded(Path::new("base/pgsql_tmp"), true));
        assert!(!excluded(Path::new("base/1/1259"), false));
        assert!(!excluded(Path::new("postgresql.conf"), false));
    }

    /// The entries of a tar: path and size.
    fn entries_of(tar: &[u8]) -> Vec<(String, u64)> {
        tar::Archive::new(tar)
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (e.path().unwrap().display().to_string(), e.size())
            })
            .collect()
    }

    #[test]
    fn a_file_that_grows_or_shrinks_while_read_keeps_its_size_and_the_next_entry() {
        let tmp = tempfile::tempdir().unwrap();
        let (grown, shrunk) = (tmp.path().join("16384"), tmp.path().join("16385"));
        std::fs::write(&grown, vec![7u8; 8192]).unwrap();
        std::fs::write(&shrunk, vec![9u8; 8192]).unwrap();
        let mut tar = tar::Builder::new(Vec::new());
        // Opened at 8 KiB, then PostgreSQL extends it with zero pages before it is read.
        let file = std::fs::File::open(&grown).unwrap();
        let meta = file.metadata().unwrap();
        std::fs::OpenOptions::new()
            .append(true)
            .open(&grown)
            .unwrap()
            .write_all(&[0u8; 16384])
            .unwrap();
        append_open_file(
            &mut tar,
            file,
            &meta,
            Path::new("base/1/16384"),
            &mut |_| {},
        )
        .unwrap();
        // Opened at 8 KiB, then truncated (a vacuum) before it is read.
        let file = std::fs::File::open(&shrunk).unwrap();
        let meta = file.metadata().unwrap();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&shrunk)
            .unwrap()
            .set_len(100)
            .unwrap();
        append_open_file(
            &mut tar,
            file,
            &meta,
            Path::new("base/1/16385"),
            &mut |_| {},
        )
        .unwrap();
        let mut read = 0;
        append_regular_file(&mut tar, &grown, Path::new("global/pg_control"), &mut |n| {
            read += n
        })
        .unwrap();
        assert_eq!(read, 8192 + 16384, "every byte read is reported");
        let out = tar.into_inner().unwrap();
        assert_eq!(
            entries_of(&out),
            vec![
                ("base/1/16384".to_string(), 8192),
                ("base/1/16385".to_string(), 8192),
                ("global/pg_control".to_string(), 8192 + 16384),
            ]
        );
        let mut archive = tar::Archive::new(out.as_slice());
        let mut entries = archive.entries().unwrap();
        let mut first = Vec::new();
        io::Read::read_to_end(&mut entries.next().unwrap().unwrap(), &mut first).unwrap();
        assert_eq!(first, vec![7u8; 8192]);
        let mut second = Vec::new();
        io::Read::read_to_end(&mut entries.next().unwrap().unwrap(), &mut second).unwrap();
        assert_eq!(&second[..100], &[9u8; 100][..]);
        assert!(second[100..].iter().all(|b| *b == 0), "padded with zeros");
    }

    #[test]
    fn a_linked_pg_wal_is_written_as_an_empty_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let (pgdata, wal) = (tmp.path().join("pgdata"), tmp.path().join("wal"));
        std::fs::create_dir_all(pgdata.join("base")).unwrap();
        std::fs::create_dir_all(&wal).unwrap();
        std::fs::write(wal.join("000000010000000000000001"), "segment").unwrap();
        std::fs::write(pgdata.join("PG_VERSION"), "15\n").unwrap();
        std::os::unix::fs::symlink(&wal, pgdata.join("pg_wal")).unwrap();
        let out = write_tar(&pgdata, true, Trailer::fixed(Vec::new()), Vec::new()).unwrap();
        let mut archive = tar::Archive::new(out.as_slice());
        let entries: Vec<(String, tar::EntryType)> = archive
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (
                    e.path().unwrap().display().to_string(),
                    e.header().entry_type(),
                )
            })
            .collect();
        let wal_entry = entries
            .iter()
            .find(|(p, _)| p.trim_end_matches('/') == "pg_wal");
        assert_eq!(
            wal_entry.map(|(_, t)| *t),
            Some(tar::EntryType::Directory),
            "{entries:?}"
        );
        assert!(
            !entries
                .iter()
                .any(|(p, _)| p.contains("000000010000000000000001")),
            "WAL segments are not part of a base backup"
        );
    }
}
