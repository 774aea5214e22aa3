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
