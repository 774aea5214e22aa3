//! A whole base backup as `barman-cloud-backup` takes it, over a `tokio-postgres` connection
//! the caller opened (as a superuser or a role with the backup functions; the session must
//! stay open for the backup's duration): `pg_backup_start` (non-exclusive), tablespaces as
//! `<oid>.tar`, PGDATA as `data.tar` with `backup_label` appended after `pg_backup_stop`,
//! restore point `barman_<id>` on a primary, then `backup.info` — also when the backup fails,
//! with `status=FAILED` and the error.

use crate::backup_info::{BackupInfo, BackupStatus, Tablespace};
use crate::base_backup::{upload_tar_with_trailer, Progress, TarError, TarOptions, Trailer};
use crate::catalog::put_backup_info;
use crate::compression::Compression;
use crate::layout::{BackupId, ServerPrefix};
use crate::store::{ObjectStore, StoreError};
use pgherd_postgres::wal::{segment_name, Lsn, Timeline};
use std::path::Path;
use time::OffsetDateTime;
use tokio::sync::oneshot;

/// A failed base backup.
#[derive(Debug, thiserror::Error)]
pub enum BaseBackupError {
    /// A backup SQL function failed.
    #[error("{what} failed: {source} (check that the role may run backups and that no other backup runs on this session)")]
    Sql {
        /// Which call.
        what: &'static str,
        /// The error.
        source: tokio_postgres::Error,
    },
    /// The server answered something unexpected.
    #[error("unexpected answer from PostgreSQL to {what}: {detail}")]
    Unexpected {
        /// Which call.
        what: &'static str,
        /// What came back.
        detail: String,
    },
    /// A tarball could not be written or uploaded.
    #[error(transparent)]
    Tar(#[from] TarError),
    /// `backup.info` could not be uploaded.
    #[error("cannot upload backup.info: {0}")]
    Info(StoreError),
}

impl BaseBackupError {
    /// A stable label for metrics and events.
    pub fn category(&self) -> &'static str {
        match self {
            BaseBackupError::Sql { .. } | BaseBackupError::Unexpected { .. } => "sql",
            BaseBackupError::Tar(e) => e.category(),
            BaseBackupError::Info(e) => e.category(),
        }
    }
}

/// Options of a base backup.
#[derive(Debug, Clone, Default)]
pub struct BaseBackupOptions {
    /// `--name` (CNPG: `backup-<YYYYMMDDhhmmss>`), recorded as `backup_name`.
    pub backup_name: Option<String>,
    /// Tarball compression (`data.compression`).
    pub compression: Option<Compression>,
    /// `data.immediateCheckpoint`.
    pub immediate_checkpoint: bool,
    /// `data.jobs`: threads compressing the tarballs (0 or 1: one).
    pub jobs: usize,
    /// Counts the bytes put into the tarballs as they go.
    pub progress: Progress,
}

/// Where the backup started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupStart {
    /// Start LSN.
    pub lsn: Lsn,
    /// `server_version_num`.
    pub version_num: u32,
    /// `wal_segment_size` in bytes.
    pub segment_size: u64,
    /// `system_identifier`.
    pub systemid: String,
    /// Whether the server is a standby.
    pub in_recovery: bool,
}

/// What `pg_backup_stop` returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupStop {
    /// Stop LSN.
    pub lsn: Lsn,
    /// The `backup_label` content.
    pub label_file: String,
    /// The `tablespace_map` content (empty when there are no tablespaces).
    pub tablespace_map: String,
}

fn sql(what: &'static str) -> impl FnOnce(tokio_postgres::Error) -> BaseBackupError {
    move |source| BaseBackupError::Sql { what, source }
}

fn lsn(what: &'static str, text: &str) -> Result<Lsn, BaseBackupError> {
    text.parse().map_err(|_| BaseBackupError::Unexpected {
        what,
        detail: format!("{text:?} is not an LSN"),
    })
}

/// `pg_backup_start` (PostgreSQL 15+) or `pg_start_backup(..., exclusive => false)`.
pub async fn pg_backup_start(
    client: &tokio_postgres::Client,
    label: &str,
    fast: bool,
) -> Result<BackupStart, BaseBackupError> {
    let row = client
        .query_one(
            "SELECT current_setting('server_version_num')::int4, \
                    (SELECT setting::int8 FROM pg_settings WHERE name = 'wal_segment_size'), \
                    (SELECT system_identifier::text FROM pg_control_system()), \
                    pg_is_in_recovery()",
            &[],
        )
        .await
        .map_err(sql("reading the server's settings"))?;
    let version_num: i32 = row.get(0);
    let segment_size: i64 = row.get(1);
    let systemid: String = row.get(2);
    let in_recovery: bool = row.get(3);
    let start_sql = if version_num >= 150000 {
        "SELECT pg_backup_start($1, $2)::text"
    } else {
        "SELECT pg_start_backup($1, $2, false)::text"
    };
    let row = client
        .query_one(start_sql, &[&label, &fast])
        .await
        .map_err(sql("pg_backup_start"))?;
    let text: String = row.get(0);
    Ok(BackupStart {
        lsn: lsn("pg_backup_start", &text)?,
        version_num: u32::try_from(version_num).unwrap_or(0),
        segment_size: u64::try_from(segment_size)
            .unwrap_or(pgherd_postgres::wal::DEFAULT_SEGMENT_SIZE),
        systemid,
        in_recovery,
    })
}

/// `pg_backup_stop(wait_for_archive => true)` (or `pg_stop_backup(false, true)`).
pub async fn pg_backup_stop(
    client: &tokio_postgres::Client,
    version_num: u32,
) -> Result<BackupStop, BaseBackupError> {
    let stop_sql = if version_num >= 150000 {
        "SELECT lsn::text, labelfile, spcmapfile FROM pg_backup_stop(true)"
    } else {
        "SELECT lsn::text, labelfile, spcmapfile FROM pg_stop_backup(false, true)"
    };
    let row = client
        .query_one(stop_sql, &[])
        .await
        .map_err(sql("pg_backup_stop"))?;
    let text: String = row.get(0);
    Ok(BackupStop {
        lsn: lsn("pg_backup_stop", &text)?,
        label_file: row.get::<_, Option<String>>(1).unwrap_or_default(),
        tablespace_map: row.get::<_, Option<String>>(2).unwrap_or_default(),
    })
}

/// The user tablespaces (name, oid, location).
pub async fn tablespaces(
    client: &tokio_postgres::Client,
) -> Result<Vec<Tablespace>, BaseBackupError> {
    let rows = client
        .query(
            "SELECT spcname::text, oid::int8, pg_tablespace_location(oid) FROM pg_tablespace \
             WHERE pg_tablespace_location(oid) <> '' ORDER BY oid",
            &[],
        )
        .await
        .map_err(sql("listing tablespaces"))?;
    Ok(rows
        .iter()
        .map(|r| Tablespace {
            name: r.get(0),
            oid: u32::try_from(r.get::<_, i64>(1)).unwrap_or(0),
            location: r.get(2),
        })
        .collect())
}

/// `START WAL LOCATION: 0/2000028 (file 000000010000000000000002)` and `START TIMELINE: 1`.
pub fn parse_label(label: &str) -> (Option<String>, Option<String>, Option<u32>) {
    let mut xlog = None;
    let mut wal = None;
    let mut timeline = None;
    for line in label.lines() {
        if let Some(rest) = line.strip_prefix("START WAL LOCATION: ") {
            let mut parts = rest.split_whitespace();
            xlog = parts.next().map(str::to_string);
            wal = parts.nth(1).map(|f| f.trim_end_matches(')').to_string());
        } else if let Some(rest) = line.strip_prefix("START TIMELINE: ") {
            timeline = rest.trim().parse().ok();
        }
    }
    (xlog, wal, timeline)
}

/// The segment holding the last byte before `lsn` (what `pg_walfile_name` returns for a stop
/// position on a segment boundary).
fn end_segment(timeline: u32, lsn: Lsn, segment_size: u64) -> String {
    let at = if lsn.0 > 0 && lsn.0.is_multiple_of(segment_size) {
        Lsn(lsn.0 - 1)
    } else {
        lsn
    };
    segment_name(Timeline(timeline), at, segment_size)
}

/// Takes a base backup of `pgdata` (the data directory of the server `client` is connected to,
/// on this machine) into `server`'s folder. Returns the id and the `backup.info` uploaded.
pub async fn take_base_backup(
    client: &tokio_postgres::Client,
    store: &dyn ObjectStore,
    server: &ServerPrefix,
    pgdata: &Path,
    options: &BaseBackupOptions,
) -> Result<(BackupId, BackupInfo), BaseBackupError> {
    let begin = OffsetDateTime::now_utc();
    let id = BackupId::at(begin);
    let mut info = BackupInfo::new();
    info.set_backup_name(options.backup_name.as_deref());
    info.set_begin_time(begin);
    info.set_source(&pgdata.display().to_string(), "cloud");
    info.set_compression(options.compression.map(Compression::name));
    let label = format!("Barman backup cloud {id}");
    let start = pg_backup_start(client, &label, options.immediate_checkpoint).await?;
    info.set_status(BackupStatus::Started);
    info.set_systemid(&start.systemid);
    info.set_version(start.version_num);
    info.set_raw("xlog_segment_size", Some(start.segment_size.to_string()));

    let result = copy_and_stop(
        client, store, server, pgdata, options, &id, &start, &mut info,
    )
    .await;
    match result {
        Ok(()) => {
            info.set_status(BackupStatus::Done);
            info.set_end_time(OffsetDateTime::now_utc());
            put_backup_info(store, server, &id, &info)
                .await
                .map_err(BaseBackupError::Info)?;
            tracing::info!(backup = %id, root = server.root(), "base backup done");
            Ok((id, info))
        }
        Err(e) => {
            info.set_status(BackupStatus::Failed);
            info.set_error(Some(&format!("failure uploading data ({e})")));
            info.set_end_time(OffsetDateTime::now_utc());
            if let Err(put) = put_backup_info(store, server, &id, &info).await {
                tracing::warn!(backup = %id, error = %put, "cannot record the failed backup");
            }
            Err(e)
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn copy_and_stop(
    client: &tokio_postgres::Client,
    store: &dyn ObjectStore,
    server: &ServerPrefix,
    pgdata: &Path,
    options: &BaseBackupOptions,
    id: &BackupId,
    start: &BackupStart,
    info: &mut BackupInfo,
) -> Result<(), BaseBackupError> {
    let mut size = 0;
    let tar_options = TarOptions {
        compression: options.compression,
        jobs: options.jobs,
        progress: options.progress.clone(),
    };
    let spaces = tablespaces(client).await?;
    info.set_tablespaces(&spaces);
    for ts in &spaces {
        let key = server.tablespace_tar_key(id, ts.oid, options.compression);
        let up = upload_tar_with_trailer(
            store,
            &key,
            Path::new(&ts.location),
            false,
            &tar_options,
            Trailer::fixed(vec![]),
        )
        .await;
        match up {
            Ok(up) => size += up.content_size,
            Err(e) => {
                let _ = pg_backup_stop(client, start.version_num).await;
                return Err(e.into());
            }
        }
    }
    let (walked_tx, walked_rx) = oneshot::channel();
    let (files_tx, files_rx) = oneshot::channel();
    let trailer = Trailer {
        walked: walked_tx,
        files: files_rx,
    };
    let key = server.data_tar_key(id, options.compression);
    let upload = upload_tar_with_trailer(store, &key, pgdata, true, &tar_options, trailer);
    let stopper = async {
        // Stop the backup whether the walk finished or failed (the sender is then dropped).
        let _ = walked_rx.await;
        let stop = pg_backup_stop(client, start.version_num).await;
        if let Ok(stop) = &stop {
            let mut files = vec![(
                "backup_label".to_string(),
                stop.label_file.clone().into_bytes(),
            )];
            if !stop.tablespace_map.is_empty() {
                files.push((
                    "tablespace_map".into(),
                    stop.tablespace_map.clone().into_bytes(),
                ));
            }
            let _ = files_tx.send(files);
        }
        stop
    };
    let (uploaded, stop) = tokio::join!(upload, stopper);
    let stop = stop?;
    let uploaded = uploaded?;
    size += uploaded.content_size;

    let (begin_xlog, begin_wal, timeline) = parse_label(&stop.label_file);
    let timeline = timeline.unwrap_or(1);
    let begin_wal = begin_wal
        .unwrap_or_else(|| segment_name(Timeline(timeline), start.lsn, start.segment_size));
    info.set_begin(
        &begin_wal,
        &begin_xlog.unwrap_or_else(|| start.lsn.to_string()),
        start.lsn.0 % start.segment_size,
    );
    info.set_end(
        &end_segment(timeline, stop.lsn, start.segment_size),
        &stop.lsn.to_string(),
        stop.lsn.0 % start.segment_size,
    );
    info.set_timeline(timeline);
    info.set_backup_label(Some(&stop.label_file));
    info.set_size(size);
    if !start.in_recovery {
        client
            .query_one(
                "SELECT pg_create_restore_point($1)::text",
                &[&format!("barman_{id}")],
            )
            .await
            .map_err(sql("pg_create_restore_point"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_fields() {
        let label = "START WAL LOCATION: 0/2000028 (file 000000010000000000000002)\nCHECKPOINT LOCATION: 0/2000060\nSTART TIMELINE: 3\n";
        assert_eq!(
            parse_label(label),
            (
                Some("0/2000028".into()),
                Some("000000010000000000000002".into()),
                Some(3)
            )
        );
        assert_eq!(parse_label(""), (None, None, None));
    }

    #[test]
    fn end_segments() {
        let seg = 16 * 1024 * 1024;
        assert_eq!(
            end_segment(1, Lsn(0x3000000), seg),
            "000000010000000000000002"
        );
        assert_eq!(
            end_segment(1, Lsn(0x3000100), seg),
            "000000010000000000000003"
        );
    }
}
