//! WAL archive and restore against a real S3-compatible server (moto) and a local directory:
//! every compression round-trips byte for byte, keys follow barman-cloud's layout, the empty
//! archive check, parallel archiving, partial and history files.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

mod common;
use common::MotoStores as _;

use pgherd_backup::layout::ServerPrefix;
use pgherd_backup::store::ObjectStore;
use pgherd_backup::wal_archive::{
    archive_many, archive_wal, check_archive_usable, check_empty_archive,
};
use pgherd_backup::wal_restore::restore_wal;
use pgherd_backup::{Compression, WalError};
use std::path::{Path, PathBuf};

fn write_segment(dir: &Path, name: &str, seed: u64) -> (PathBuf, Vec<u8>) {
    let data = common::fake_segment(seed);
    let path = dir.join(name);
    std::fs::write(&path, &data).unwrap();
    (path, data)
}

/// Archive one segment per compression, check the key, restore, compare.
async fn every_compression_round_trips(store: &dyn ObjectStore, server: &ServerPrefix) {
    let src = tempfile::tempdir().unwrap();
    let dst = tempfile::tempdir().unwrap();
    let mut choices: Vec<Option<Compression>> = vec![None];
    choices.extend(Compression::ALL.into_iter().map(Some));
    for (i, compression) in choices.into_iter().enumerate() {
        let name = format!("0000000100000002000000{:02X}", i + 1);
        let (path, data) = write_segment(src.path(), &name, i as u64 + 7);
        let archived = archive_wal(store, server, &path, compression)
            .await
            .unwrap();
        let ext = compression.map_or("", |c| c.extension());
        assert_eq!(
            archived.key,
            format!("{}/wals/0000000100000002/{name}{ext}", server.root())
        );
        assert_eq!(archived.size, data.len() as u64);
        if compression.is_some() {
            assert!(
                archived.stored_size < archived.size,
                "{compression:?} compresses"
            );
        }
        let head = store.head(&archived.key).await.unwrap().unwrap();
        assert_eq!(head.size, archived.stored_size);

        let dest = dst.path().join("RECOVERYXLOG");
        let restored = restore_wal(store, server, &name, &dest, true)
            .await
            .unwrap();
        assert_eq!(restored.compression, compression);
        assert!(!restored.partial);
        assert_eq!(std::fs::read(&dest).unwrap(), data, "{compression:?}");
    }
    // Only the restored file is left in the destination directory (no temporary files).
    let left: Vec<_> = std::fs::read_dir(dst.path()).unwrap().collect();
    assert_eq!(left.len(), 1);
}

async fn history_partial_and_missing(store: &dyn ObjectStore, server: &ServerPrefix) {
    let src = tempfile::tempdir().unwrap();
    let dst = tempfile::tempdir().unwrap();
    let history = src.path().join("00000002.history");
    std::fs::write(&history, "1\t0/3000000\tno recovery target specified\n").unwrap();
    let a = archive_wal(store, server, &history, Some(Compression::Gzip))
        .await
        .unwrap();
    assert_eq!(a.key, format!("{}/wals/00000002.history.gz", server.root()));
    restore_wal(
        store,
        server,
        "00000002.history",
        &dst.path().join("h"),
        true,
    )
    .await
    .unwrap();
    assert_eq!(
        std::fs::read_to_string(dst.path().join("h")).unwrap(),
        "1\t0/3000000\tno recovery target specified\n"
    );

    // A .partial stands in for its segment only when allowed.
    let (partial, data) = write_segment(src.path(), "000000010000000300000005.partial", 3);
    archive_wal(store, server, &partial, Some(Compression::Zstd))
        .await
        .unwrap();
    let dest = dst.path().join("seg");
    let r = restore_wal(store, server, "000000010000000300000005", &dest, true)
        .await
        .unwrap();
    assert!(r.partial);
    assert_eq!(std::fs::read(&dest).unwrap(), data);
    let e = restore_wal(store, server, "000000010000000300000005", &dest, false)
        .await
        .unwrap_err();
    assert!(matches!(e, WalError::NotInArchive { .. }), "{e}");

    // Backup history files are archived but never restored in place of a segment.
    let backup_file = src.path().join("000000010000000300000006.00000028.backup");
    std::fs::write(&backup_file, "START WAL LOCATION: 3/6000028\n").unwrap();
    archive_wal(store, server, &backup_file, None)
        .await
        .unwrap();
    let e = restore_wal(store, server, "000000010000000300000006", &dest, true)
        .await
        .unwrap_err();
    assert!(matches!(e, WalError::NotInArchive { .. }), "{e}");
    assert!(e.to_string().contains("000000010000000300000006"));

    // Names that are not WAL are refused before anything is uploaded.
    let junk = src.path().join("postmaster.pid");
    std::fs::write(&junk, "x").unwrap();
    let e = archive_wal(store, server, &junk, None).await.unwrap_err();
    assert!(matches!(e, WalError::BadName { .. }), "{e}");
}

async fn empty_archive_check_and_parallel(store: &dyn ObjectStore, server: &ServerPrefix) {
    check_empty_archive(store, server).await.unwrap();
    let src = tempfile::tempdir().unwrap();
    let paths: Vec<PathBuf> = (1..=6)
        .map(|i| write_segment(src.path(), &format!("0000000300000000000000{i:02X}"), i).0)
        .collect();
    let results = archive_many(store, server, &paths, Some(Compression::Lz4), 3).await;
    assert_eq!(results.len(), 6);
    for (r, p) in results.iter().zip(&paths) {
        let r = r.as_ref().unwrap();
        assert_eq!(r.name.as_str(), p.file_name().unwrap().to_str().unwrap());
    }
    let e = check_empty_archive(store, server).await.unwrap_err();
    assert!(e.to_string().starts_with("Expected empty archive"), "{e}");
    assert!(
        matches!(e, WalError::ArchiveNotEmpty { count: 6, .. }),
        "{e}"
    );
    // A cluster continuing on timeline 4 may use the folder; one on timeline 3 may not.
    check_archive_usable(store, server, Some(4)).await.unwrap();
    assert!(check_archive_usable(store, server, Some(3)).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wal_on_a_local_directory() {
    let dir = tempfile::tempdir().unwrap();
    let store = common::fs_store(dir.path());
    let server = ServerPrefix::new("", "cluster-example").unwrap();
    every_compression_round_trips(&store, &server).await;
    history_partial_and_missing(&store, &server).await;
    // The objects are plain files in barman's layout.
    assert!(dir
        .path()
        .join("cluster-example/wals/0000000100000002/000000010000000200000002.gz")
        .is_file());
    let other = ServerPrefix::new("", "another").unwrap();
    empty_archive_check_and_parallel(&store, &other).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wal_on_s3() {
    let moto = common::Moto::start();
    moto.create_bucket("backups");
    let store = moto.store("backups", "pg/prod");
    let server = ServerPrefix::new("pg/prod", "cluster-example").unwrap();
    every_compression_round_trips(&store, &server).await;
    history_partial_and_missing(&store, &server).await;
    let other = ServerPrefix::new("pg/prod", "another").unwrap();
    empty_archive_check_and_parallel(&store, &other).await;
}

/// A bucket that does not exist is a clear, permanent error naming the object (not a hang,
/// not a retry loop).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_bucket_is_a_clear_error() {
    let moto = common::Moto::start();
    let store = moto.store("no-such-bucket", "pg");
    let server = ServerPrefix::new("pg", "c").unwrap();
    let src = tempfile::tempdir().unwrap();
    let (path, _) = write_segment(src.path(), "000000010000000000000001", 1);
    let e = archive_wal(&store, &server, &path, None).await.unwrap_err();
    let text = e.to_string();
    assert_eq!(e.category(), "permanent", "{text}");
    assert!(
        text.contains("000000010000000000000001") && text.contains("bucket"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_prefetches_the_next_segments() {
    use pgherd_backup::restore_wal_prefetching;
    use pgherd_backup::store::{FaultPlan, Faulty};

    let dir = tempfile::tempdir().unwrap();
    let store = Faulty::new(common::fs_store(dir.path()), FaultPlan::default());
    let server = ServerPrefix::new("", "c").unwrap();
    let src = tempfile::tempdir().unwrap();
    let names = [
        "0000000100000000000000FE",
        "0000000100000000000000FF",
        "000000010000000100000000",
    ];
    let mut data = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let (path, d) = write_segment(src.path(), name, i as u64);
        archive_wal(&store, &server, &path, Some(Compression::Snappy))
            .await
            .unwrap();
        data.push(d);
    }
    let pg_wal = tempfile::tempdir().unwrap();
    let spool = pg_wal.path().join("spool");
    let seg = 16 * 1024 * 1024;
    let dest = pg_wal.path().join("RECOVERYXLOG");
    restore_wal_prefetching(&store, &server, names[0], &dest, &spool, 4, seg)
        .await
        .unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), data[0]);
    assert!(spool.join(names[1]).is_file() && spool.join(names[2]).is_file());
    let calls = store.calls();
    for (i, name) in names.iter().enumerate().skip(1) {
        let r = restore_wal_prefetching(&store, &server, name, &dest, &spool, 1, seg)
            .await
            .unwrap();
        assert_eq!(std::fs::read(&dest).unwrap(), data[i], "{name}");
        assert!(r.key.contains("spool"));
    }
    assert_eq!(store.calls(), calls, "served from the spool");
    assert!(!spool.join(names[1]).exists());
    let e = restore_wal_prefetching(
        &store,
        &server,
        "000000010000000100000001",
        &dest,
        &spool,
        2,
        seg,
    )
    .await
    .unwrap_err();
    assert!(matches!(e, WalError::NotInArchive { .. }), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn archive_command_uploads_ready_files_in_parallel() {
    use pgherd_backup::store::{FaultPlan, Faulty};
    use pgherd_backup::{archive_with_ready, ArchiveOutcome};

    let dir = tempfile::tempdir().unwrap();
    let store = Faulty::new(common::fs_store(dir.path()), FaultPlan::default());
    let server = ServerPrefix::new("", "c").unwrap();
    let pgdata = tempfile::tempdir().unwrap();
    let pg_wal = pgdata.path().join("pg_wal");
    std::fs::create_dir_all(pg_wal.join("archive_status")).unwrap();
    let names = [
        "000000010000000000000001",
        "000000010000000000000002",
        "000000010000000000000003",
        "000000010000000000000004",
    ];
    for name in names {
        std::fs::write(pg_wal.join(name), name).unwrap();
        std::fs::write(
            pg_wal.join("archive_status").join(format!("{name}.ready")),
            "",
        )
        .unwrap();
    }
    let spool = pgdata.path().join("spool");
    let outcome = archive_with_ready(&store, &server, &pg_wal.join(names[0]), None, 3, &spool)
        .await
        .unwrap();
    assert!(
        matches!(outcome, ArchiveOutcome::Archived(_)),
        "{outcome:?}"
    );
    for name in &names[..3] {
        let key = format!("c/wals/0000000100000000/{name}");
        assert!(store.head(&key).await.unwrap().is_some(), "{name}");
    }
    assert!(store
        .head("c/wals/0000000100000000/000000010000000000000004")
        .await
        .unwrap()
        .is_none());
    let calls = store.calls();
    // PostgreSQL then asks for the next ones: already there, no upload.
    for name in &names[1..3] {
        let outcome = archive_with_ready(&store, &server, &pg_wal.join(name), None, 3, &spool)
            .await
            .unwrap();
        assert_eq!(outcome, ArchiveOutcome::PreArchived);
    }
    assert_eq!(store.calls(), calls);
    // Markers are consumed: asking again uploads again (idempotent overwrite).
    let outcome = archive_with_ready(&store, &server, &pg_wal.join(names[1]), None, 1, &spool)
        .await
        .unwrap();
    assert!(matches!(outcome, ArchiveOutcome::Archived(_)));
}
