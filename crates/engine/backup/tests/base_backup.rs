//! Base backup tarballs on a local directory: contents, exclusions, order, compression, and
//! an unreadable data directory leaving no object.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

mod common;

use pgherd_backup::base_backup::{upload_tar, TarError};
use pgherd_backup::layout::{BackupId, ServerPrefix};
use pgherd_backup::store::ObjectStore;
use pgherd_backup::Compression;
use std::io::Read;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_tar_contents_and_order() {
    let pgdata = tempfile::tempdir().unwrap();
    for (file, content) in [
        ("PG_VERSION", "16\n".to_string()),
        ("base/1/1259", "x".repeat(3_000_000)),
        ("global/pg_control", "control".to_string()),
        ("global/pg_internal.init", "cache".to_string()),
        ("pg_wal/000000010000000000000001", "wal".to_string()),
        (
            "pg_wal/archive_status/000000010000000000000001.ready",
            String::new(),
        ),
        ("postmaster.pid", "1".to_string()),
        ("base/pgsql_tmp/pgsql_tmp1.0", "tmp".to_string()),
        ("zzz_last_sorted", "z".to_string()),
    ] {
        let p = pgdata.path().join(file);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, content).unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let store = common::fs_store(dir.path());
    let server = ServerPrefix::new("", "c").unwrap();
    let id: BackupId = "20240101T000000".parse().unwrap();
    for compression in [
        None,
        Some(Compression::Gzip),
        Some(Compression::Bzip2),
        Some(Compression::Snappy),
        Some(Compression::Lz4),
    ] {
        let key = server.data_tar_key(&id, compression);
        let up = upload_tar(
            &store,
            &key,
            pgdata.path(),
            true,
            compression,
            vec![("backup_label".into(), b"LABEL: x\n".to_vec())],
        )
        .await
        .unwrap();
        let stored = store.get(&key).await.unwrap();
        assert_eq!(stored.len() as u64, up.stored_size);
        let raw = match compression {
            None => stored.to_vec(),
            Some(c) => c.decompress(&stored).unwrap(),
        };
        assert_eq!(raw.len() as u64, up.content_size);
        let mut archive = tar::Archive::new(raw.as_slice());
        let mut names = Vec::new();
        let mut label = String::new();
        for entry in archive.entries().unwrap() {
            let mut entry = entry.unwrap();
            let name = entry.path().unwrap().to_string_lossy().into_owned();
            if name == "backup_label" {
                entry.read_to_string(&mut label).unwrap();
            }
            names.push(name);
        }
        assert_eq!(label, "LABEL: x\n");
        let n = names.len();
        assert_eq!(
            &names[n - 2..],
            ["global/pg_control", "backup_label"],
            "{names:?}"
        );
        for present in [
            "PG_VERSION",
            "base/1/1259",
            "pg_wal",
            "zzz_last_sorted",
            "global/pg_control",
        ] {
            assert!(
                names.iter().any(|x| x.trim_end_matches('/') == present),
                "{present} missing: {names:?}"
            );
        }
        for absent in [
            "postmaster.pid",
            "pg_wal/000000010000000000000001",
            "pg_wal/archive_status",
            "global/pg_internal.init",
            "base/pgsql_tmp",
        ] {
            assert!(
                !names.iter().any(|x| x.trim_end_matches('/') == absent),
                "{absent} present: {names:?}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_data_directory_leaves_no_object() {
    let dir = tempfile::tempdir().unwrap();
    let store = common::fs_store(dir.path());
    let e = upload_tar(
        &store,
        "c/base/x/data.tar.gz",
        &dir.path().join("absent"),
        true,
        Some(Compression::Gzip),
        vec![],
    )
    .await
    .unwrap_err();
    assert!(matches!(e, TarError::Read { .. }), "{e}");
    assert!(e.to_string().contains("absent"), "{e}");
    assert!(store.head("c/base/x/data.tar.gz").await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_unpacks_the_latest_backup() {
    use pgherd_backup::catalog::put_backup_info;
    use pgherd_backup::restore::{restore_backup, RestoreError};
    use pgherd_backup::{BackupInfo, BackupStatus};

    let pgdata = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(pgdata.path().join("base/1")).unwrap();
    std::fs::write(pgdata.path().join("PG_VERSION"), "15\n").unwrap();
    std::fs::write(pgdata.path().join("base/1/1259"), vec![7u8; 2_500_000]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = common::fs_store(dir.path());
    let server = ServerPrefix::new("", "c").unwrap();
    for (id, status, content) in [
        ("20240101T000000", BackupStatus::Done, "old"),
        ("20240102T000000", BackupStatus::Done, "new"),
        ("20240103T000000", BackupStatus::Failed, "failed"),
    ] {
        let id: BackupId = id.parse().unwrap();
        std::fs::write(pgdata.path().join("which"), content).unwrap();
        upload_tar(
            &store,
            &server.data_tar_key(&id, Some(Compression::Snappy)),
            pgdata.path(),
            true,
            Some(Compression::Snappy),
            vec![("backup_label".into(), b"LABEL: x\n".to_vec())],
        )
        .await
        .unwrap();
        let mut info = BackupInfo::new();
        info.set_status(status);
        put_backup_info(&store, &server, &id, &info).await.unwrap();
    }
    let target = tempfile::tempdir().unwrap();
    let dest = target.path().join("restored");
    let info = restore_backup(&store, &server, "latest", &dest, &Default::default())
        .await
        .unwrap();
    assert_eq!(info.status(), BackupStatus::Done);
    assert_eq!(std::fs::read_to_string(dest.join("which")).unwrap(), "new");
    assert_eq!(
        std::fs::read(dest.join("base/1/1259")).unwrap(),
        vec![7u8; 2_500_000]
    );
    assert_eq!(
        std::fs::read_to_string(dest.join("backup_label")).unwrap(),
        "LABEL: x\n"
    );

    let e = restore_backup(
        &store,
        &server,
        "20240101T000000",
        &dest,
        &Default::default(),
    )
    .await
    .unwrap_err();
    assert!(matches!(e, RestoreError::NotEmpty(_)), "{e}");
    let e = restore_backup(
        &store,
        &server,
        "nope",
        &target.path().join("x"),
        &Default::default(),
    )
    .await
    .unwrap_err();
    assert!(e.to_string().contains("no backup \"nope\""), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_deletes_obsolete_backups_and_wal() {
    use pgherd_backup::catalog::{apply_retention, put_backup_info, BackupCatalog};
    use pgherd_backup::retention::plan;
    use pgherd_backup::wal_archive::{archive_wal, list_archived_wal};
    use pgherd_backup::{BackupInfo, BackupStatus};
    use time::macros::datetime;

    let dir = tempfile::tempdir().unwrap();
    let store = common::fs_store(dir.path());
    let server = ServerPrefix::new("", "c").unwrap();
    for (id, end, wal) in [
        (
            "20240101T000000",
            datetime!(2024-01-01 01:00 UTC),
            "000000010000000000000002",
        ),
        (
            "20240201T000000",
            datetime!(2024-02-01 01:00 UTC),
            "000000010000000000000004",
        ),
        (
            "20240301T000000",
            datetime!(2024-03-01 01:00 UTC),
            "000000010000000000000006",
        ),
    ] {
        let id: BackupId = id.parse().unwrap();
        let mut info = BackupInfo::new();
        info.set_status(BackupStatus::Done);
        info.set_end_time(end);
        info.set_begin(wal, "0/0", 0);
        put_backup_info(&store, &server, &id, &info).await.unwrap();
    }
    let src = tempfile::tempdir().unwrap();
    for name in [
        "000000010000000000000001",
        "000000010000000000000003",
        "000000010000000000000004",
        "000000010000000000000007",
        "00000002.history",
    ] {
        std::fs::write(src.path().join(name), name).unwrap();
        archive_wal(
            &store,
            &server,
            &src.path().join(name),
            Some(Compression::Gzip),
        )
        .await
        .unwrap();
    }
    let catalog = BackupCatalog::load(&store, &server).await.unwrap();
    let p = plan(
        &catalog,
        "30d".parse().unwrap(),
        datetime!(2024-03-15 00:00 UTC),
    );
    let (backups, wals) = apply_retention(&store, &server, &p).await.unwrap();
    assert_eq!((backups, wals), (1, 2));
    let left: Vec<String> = BackupCatalog::load(&store, &server)
        .await
        .unwrap()
        .backups
        .iter()
        .map(|b| b.id.to_string())
        .collect();
    assert_eq!(left, ["20240201T000000", "20240301T000000"]);
    let mut wal_left: Vec<String> = list_archived_wal(&store, &server)
        .await
        .unwrap()
        .into_iter()
        .map(|(n, _)| n.to_string())
        .collect();
    wal_left.sort();
    assert_eq!(
        wal_left,
        [
            "000000010000000000000004",
            "000000010000000000000007",
            "00000002.history"
        ]
    );
}

/// A store whose downloads end, without an error, after `cut` bytes: a connection closed
/// early that reads as the end of the object.
#[derive(Debug)]
struct CutDownloads<S> {
    inner: S,
    cut: usize,
}

#[async_trait::async_trait]
impl<S: ObjectStore> ObjectStore for CutDownloads<S> {
    async fn put(&self, key: &str, data: bytes::Bytes) -> Result<(), pgherd_backup::StoreError> {
        self.inner.put(key, data).await
    }
    async fn put_stream(
        &self,
        key: &str,
        body: pgherd_backup::store::ByteStream,
    ) -> Result<u64, pgherd_backup::StoreError> {
        self.inner.put_stream(key, body).await
    }
    async fn get(&self, key: &str) -> Result<bytes::Bytes, pgherd_backup::StoreError> {
        self.inner.get(key).await
    }
    async fn get_stream(
        &self,
        key: &str,
    ) -> Result<pgherd_backup::store::ByteStream, pgherd_backup::StoreError> {
        let whole = self.inner.get(key).await?;
        let part = whole.slice(..self.cut.min(whole.len()));
        Ok(Box::pin(futures::stream::iter([Ok(part)])))
    }
    async fn head(
        &self,
        key: &str,
    ) -> Result<Option<pgherd_backup::store::ObjectInfo>, pgherd_backup::StoreError> {
        self.inner.head(key).await
    }
    async fn list(
        &self,
        dir: &str,
    ) -> Result<Vec<pgherd_backup::store::ObjectInfo>, pgherd_backup::StoreError> {
        self.inner.list(dir).await
    }
    async fn list_dir(
        &self,
        dir: &str,
    ) -> Result<pgherd_backup::store::DirListing, pgherd_backup::StoreError> {
        self.inner.list_dir(dir).await
    }
    async fn delete(&self, key: &str) -> Result<(), pgherd_backup::StoreError> {
        self.inner.delete(key).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_is_whole_or_fails() {
    use pgherd_backup::catalog::put_backup_info;
    use pgherd_backup::restore::{restore_backup, RestoreError};
    use pgherd_backup::{BackupInfo, BackupStatus};

    let pgdata = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(pgdata.path().join("global")).unwrap();
    std::fs::write(pgdata.path().join("PG_VERSION"), "15\n").unwrap();
    std::fs::write(pgdata.path().join("global/pg_control"), vec![3u8; 512]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = common::fs_store(dir.path());
    let server = ServerPrefix::new("", "c").unwrap();
    let id: BackupId = "20240101T000000".parse().unwrap();
    let key = server.data_tar_key(&id, None);
    upload_tar(&store, &key, pgdata.path(), true, None, Vec::new())
        .await
        .unwrap();
    let mut info = BackupInfo::new();
    info.set_status(BackupStatus::Done);
    put_backup_info(&store, &server, &id, &info).await.unwrap();
    let target = tempfile::tempdir().unwrap();

    // Whole: every file, pg_control last in the tar and present.
    let whole = target.path().join("whole");
    restore_backup(&store, &server, "latest", &whole, &Default::default())
        .await
        .unwrap();
    assert_eq!(
        std::fs::read(whole.join("global/pg_control")).unwrap(),
        vec![3u8; 512]
    );

    // The tar holds `global/` (a header), `PG_VERSION` (a header and a block), then
    // `global/pg_control`: cut between the last two, where a tar reader sees a clean end, the
    // download's size against the listing says otherwise.
    const BOUNDARY: usize = 512 + 1024;
    let cut = CutDownloads {
        inner: common::fs_store(dir.path()),
        cut: BOUNDARY,
    };
    let e = restore_backup(
        &cut,
        &server,
        "latest",
        &target.path().join("cut"),
        &Default::default(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(e, RestoreError::Truncated { received, .. } if received == BOUNDARY as u64),
        "{e}"
    );
    assert_eq!(e.category(), "transient");

    // An end marker in the middle: two zero blocks where pg_control's header belongs, the
    // rest of the archive after them.
    let mut tar = store.get(&key).await.unwrap().to_vec();
    let mut damaged = tar[..BOUNDARY].to_vec();
    damaged.extend_from_slice(&[0u8; 1024]);
    damaged.append(&mut tar.split_off(BOUNDARY));
    store.put(&key, damaged.into()).await.unwrap();
    let e = restore_backup(
        &store,
        &server,
        "latest",
        &target.path().join("damaged"),
        &Default::default(),
    )
    .await
    .unwrap_err();
    assert!(
        e.to_string()
            .contains("data follows the tar archive's end marker"),
        "{e}"
    );
}
