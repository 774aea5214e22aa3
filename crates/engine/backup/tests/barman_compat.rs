//! Byte-compatibility with barman-cloud itself (Debian's `barman-cli-cloud`, installed by
//! `scripts/install.sh`) against a real S3-compatible server (moto): barman restores what
//! pgherd archived, pgherd restores what barman archived at the same keys, barman's empty
//! archive check and backup list read pgherd's objects, and `barman-cloud-restore` unpacks a
//! base backup pgherd wrote, also one compressed on several threads (block-parallel gzip),
//! which `gzip -t` and `tar -tzf` accept too.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

mod common;
use common::MotoStores as _;

use pgherd_backup::base_backup::{upload_tar, upload_tar_with_trailer, TarOptions, Trailer};
use pgherd_backup::catalog::{put_backup_info, BackupCatalog};
use pgherd_backup::layout::{BackupId, ServerPrefix, WalFileName};
use pgherd_backup::store::ObjectStore;
use pgherd_backup::wal_archive::archive_wal;
use pgherd_backup::wal_restore::restore_wal;
use pgherd_backup::{BackupInfo, BackupStatus, Compression};
use std::path::Path;
use std::process::{Command, Output};

const DEST: &str = "s3://compat/pg";

fn barman(moto: &common::Moto, tool: &str, args: &[&str]) -> Output {
    let path = format!("/usr/bin/{tool}");
    assert!(
        Path::new(&path).is_file(),
        "{path} is missing: barman-cloud's clients are needed (run ./scripts/install.sh, which installs barman-cli-cloud)"
    );
    let endpoint = moto.endpoint();
    let mut full = vec![
        "--cloud-provider",
        "aws-s3",
        "--endpoint-url",
        endpoint.as_str(),
    ];
    full.extend_from_slice(args);
    Command::new(&path)
        .args(&full)
        .envs(moto.barman_env())
        .output()
        .unwrap_or_else(|e| panic!("run {tool}: {e}"))
}

fn ok(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what} failed: {}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

// barman-cloud 3.4 (Debian 12) reads and writes gzip and bzip2 (snappy needs python3-snappy;
// xz, zstd and lz4 came in later releases).
const SHARED: [Option<Compression>; 3] = [None, Some(Compression::Gzip), Some(Compression::Bzip2)];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn barman_cloud_reads_and_writes_what_pgherd_does() {
    let moto = common::Moto::start();
    moto.create_bucket("compat");
    let store = moto.store("compat", "pg");
    let server = ServerPrefix::new("pg", "main").unwrap();
    let src = tempfile::tempdir().unwrap();
    let dst = tempfile::tempdir().unwrap();

    // An empty folder passes barman's check.
    ok(
        &barman(&moto, "barman-cloud-check-wal-archive", &[DEST, "main"]),
        "check on empty",
    );

    for (i, compression) in SHARED.into_iter().enumerate() {
        // pgherd archives, barman restores.
        let name = format!("0000000100000000000000{:02X}", i + 1);
        let data = common::fake_segment(i as u64);
        std::fs::write(src.path().join(&name), &data).unwrap();
        archive_wal(&store, &server, &src.path().join(&name), compression)
            .await
            .unwrap();
        let out_path = dst.path().join(format!("barman-{name}"));
        let out = barman(
            &moto,
            "barman-cloud-wal-restore",
            &[DEST, "main", &name, out_path.to_str().unwrap()],
        );
        ok(
            &out,
            &format!("barman-cloud-wal-restore of {compression:?}"),
        );
        assert_eq!(std::fs::read(&out_path).unwrap(), data, "{compression:?}");

        // barman archives, pgherd finds it at the key it computes and restores it.
        let name = format!("0000000100000000000000{:02X}", i + 0x11);
        let data = common::fake_segment(100 + i as u64);
        let path = src.path().join(&name);
        std::fs::write(&path, &data).unwrap();
        let mut args = vec![];
        match compression {
            Some(Compression::Gzip) => args.push("--gzip"),
            Some(Compression::Bzip2) => args.push("--bzip2"),
            _ => {}
        }
        args.extend([DEST, "main", path.to_str().unwrap()]);
        ok(
            &barman(&moto, "barman-cloud-wal-archive", &args),
            "barman-cloud-wal-archive",
        );
        let wal: WalFileName = name.parse().unwrap();
        assert!(store
            .head(&server.wal_key(&wal, compression))
            .await
            .unwrap()
            .is_some());
        let out_path = dst.path().join(format!("pgherd-{name}"));
        let r = restore_wal(&store, &server, &name, &out_path, true)
            .await
            .unwrap();
        assert_eq!(r.compression, compression);
        assert_eq!(std::fs::read(&out_path).unwrap(), data, "{compression:?}");
    }

    // Now the folder holds WAL: barman's check refuses it, as pgherd's does.
    let out = barman(&moto, "barman-cloud-check-wal-archive", &[DEST, "main"]);
    assert!(!out.status.success(), "barman accepted a non-empty archive");
    assert!(pgherd_backup::check_empty_archive(&store, &server)
        .await
        .is_err());
}

fn fake_pgdata(root: &Path) {
    for (file, content) in [
        ("PG_VERSION", "16\n"),
        ("postgresql.conf", "port = 5432\n"),
        ("base/1/1259", "relation"),
        ("global/pg_control", "control"),
        ("global/1262", "databases"),
        ("pg_wal/000000010000000000000001", "wal"),
        ("postmaster.pid", "1234"),
        ("pg_stat_tmp/global.stat", "stats"),
    ] {
        let p = root.join(file);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, content).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn barman_cloud_lists_and_restores_a_pgherd_base_backup() {
    let moto = common::Moto::start();
    moto.create_bucket("compat");
    let store = moto.store("compat", "pg");
    let server = ServerPrefix::new("pg", "main").unwrap();
    let pgdata = tempfile::tempdir().unwrap();
    fake_pgdata(pgdata.path());

    let id: BackupId = "20240131T235959".parse().unwrap();
    let label = "START WAL LOCATION: 0/2000028 (file 000000010000000000000002)\nCHECKPOINT LOCATION: 0/2000060\nBACKUP METHOD: streamed\nBACKUP FROM: primary\nSTART TIME: 2024-01-31 23:59:59 UTC\nLABEL: barman_20240131T235959\nSTART TIMELINE: 1\n";
    let tar = upload_tar(
        &store,
        &server.data_tar_key(&id, Some(Compression::Gzip)),
        pgdata.path(),
        true,
        Some(Compression::Gzip),
        vec![("backup_label".into(), label.as_bytes().to_vec())],
    )
    .await
    .unwrap();
    assert!(tar.stored_size < tar.content_size);

    let mut info = BackupInfo::new();
    info.set_status(BackupStatus::Done);
    info.set_backup_name(Some("backup-20240131235959"));
    info.set_backup_label(Some(label));
    info.set_begin("000000010000000000000002", "0/2000028", 40);
    info.set_end("000000010000000000000002", "0/2000100", 256);
    info.set_begin_time(time::macros::datetime!(2024-01-31 23:59:59 UTC));
    info.set_end_time(time::macros::datetime!(2024-02-01 00:00:03 UTC));
    info.set_timeline(1);
    info.set_version(160002);
    info.set_systemid("7331553211246551063");
    info.set_size(tar.content_size);
    info.set_compression(Some("gzip"));
    info.set_source(pgdata.path().to_str().unwrap(), "cloud");
    put_backup_info(&store, &server, &id, &info).await.unwrap();

    // pgherd's catalog reads it back.
    let catalog = BackupCatalog::load(&store, &server).await.unwrap();
    assert_eq!(catalog.find("latest").unwrap().info, info);

    // barman lists it with the fields pgherd wrote.
    let out = barman(
        &moto,
        "barman-cloud-backup-list",
        &["--format", "json", DEST, "main"],
    );
    ok(&out, "barman-cloud-backup-list");
    let text = format!(
        "{}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    for needle in [
        "\"backup_id\": \"20240131T235959\"",
        "\"status\": \"DONE\"",
        "\"begin_wal\": \"000000010000000000000002\"",
        "\"end_xlog\": \"0/2000100\"",
        "\"systemid\": \"7331553211246551063\"",
    ] {
        assert!(text.contains(needle), "{needle} not in {text}");
    }

    // barman restores it.
    let target = tempfile::tempdir().unwrap();
    let restore_to = target.path().join("pgdata");
    let out = barman(
        &moto,
        "barman-cloud-restore",
        &[
            DEST,
            "main",
            "20240131T235959",
            restore_to.to_str().unwrap(),
        ],
    );
    ok(&out, "barman-cloud-restore");
    let read = |f: &str| std::fs::read_to_string(restore_to.join(f)).ok();
    assert_eq!(read("PG_VERSION").as_deref(), Some("16\n"));
    assert_eq!(read("base/1/1259").as_deref(), Some("relation"));
    assert_eq!(read("global/pg_control").as_deref(), Some("control"));
    assert_eq!(read("backup_label").as_deref(), Some(label));
    assert!(restore_to.join("pg_wal").is_dir());
    assert_eq!(read("pg_wal/000000010000000000000001"), None);
    assert_eq!(read("postmaster.pid"), None);
    assert_eq!(read("pg_stat_tmp/global.stat"), None);

    // pgherd restores it from S3 to the same files.
    let ours = target.path().join("ours");
    pgherd_backup::restore::restore_backup(&store, &server, "latest", &ours, &Default::default())
        .await
        .unwrap();
    for f in [
        "PG_VERSION",
        "base/1/1259",
        "global/pg_control",
        "global/1262",
        "backup_label",
    ] {
        assert_eq!(
            std::fs::read(ours.join(f)).unwrap(),
            std::fs::read(restore_to.join(f)).unwrap(),
            "{f}"
        );
    }
}

/// Files of several sizes, compressible and not, some far larger than a compression block.
fn big_pgdata(root: &Path) -> Vec<(String, Vec<u8>)> {
    let mut state = 0x853c_49e6_748f_ea9b_u64;
    let mut noise = |n: usize| -> Vec<u8> {
        (0..n)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state.to_le_bytes()[0]
            })
            .collect()
    };
    let mut files = vec![
        ("PG_VERSION".to_string(), b"16\n".to_vec()),
        ("global/pg_control".to_string(), b"control".to_vec()),
        ("base/1/empty".to_string(), Vec::new()),
        ("base/1/one".to_string(), b"x".to_vec()),
    ];
    for (i, size) in [
        3 * 1024 * 1024 + 17,
        256 * 1024,
        256 * 1024 - 1,
        1_000_000,
        8 * 1024 * 1024,
    ]
    .into_iter()
    .enumerate()
    {
        // Half the files noise, half pages of a repeated row (like table data).
        let content = if i % 2 == 0 {
            noise(size)
        } else {
            b"row 42 | pgherd | 2024-01-31 | "
                .iter()
                .copied()
                .cycle()
                .take(size)
                .collect()
        };
        files.push((format!("base/5/{}", 16384 + i), content));
    }
    for (name, content) in &files {
        let p = root.join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, content).unwrap();
    }
    files
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn barman_cloud_gzip_and_tar_read_a_backup_compressed_on_several_threads() {
    let moto = common::Moto::start();
    moto.create_bucket("compat");
    let store = moto.store("compat", "pg");
    let server = ServerPrefix::new("pg", "main").unwrap();
    let pgdata = tempfile::tempdir().unwrap();
    let files = big_pgdata(pgdata.path());

    let id: BackupId = "20240201T101010".parse().unwrap();
    let label = "START WAL LOCATION: 0/2000028 (file 000000010000000000000002)\nCHECKPOINT LOCATION: 0/2000060\nBACKUP METHOD: streamed\nBACKUP FROM: primary\nSTART TIME: 2024-02-01 10:10:10 UTC\nLABEL: barman_20240201T101010\nSTART TIMELINE: 1\n";
    let key = server.data_tar_key(&id, Some(Compression::Gzip));
    let options = TarOptions {
        compression: Some(Compression::Gzip),
        jobs: 3,
        ..TarOptions::default()
    };
    let tar = upload_tar_with_trailer(
        &store,
        &key,
        pgdata.path(),
        true,
        &options,
        Trailer::fixed(vec![("backup_label".into(), label.as_bytes().to_vec())]),
    )
    .await
    .unwrap();
    assert_eq!(options.progress.bytes(), tar.content_size);

    let mut info = BackupInfo::new();
    info.set_status(BackupStatus::Done);
    info.set_backup_label(Some(label));
    info.set_begin("000000010000000000000002", "0/2000028", 40);
    info.set_end("000000010000000000000002", "0/2000100", 256);
    info.set_begin_time(time::macros::datetime!(2024-02-01 10:10:10 UTC));
    info.set_end_time(time::macros::datetime!(2024-02-01 10:10:13 UTC));
    info.set_timeline(1);
    info.set_version(160002);
    info.set_systemid("7331553211246551063");
    info.set_size(tar.content_size);
    info.set_compression(Some("gzip"));
    info.set_source(pgdata.path().to_str().unwrap(), "cloud");
    put_backup_info(&store, &server, &id, &info).await.unwrap();

    // The object is one gzip member `gzip -t` accepts, with a tar `tar -tzf` lists.
    let target = tempfile::tempdir().unwrap();
    let object = target.path().join("data.tar.gz");
    std::fs::write(&object, store.get(&key).await.unwrap()).unwrap();
    let run = |cmd: &str, args: &[&str]| {
        let out = Command::new(cmd).args(args).output().unwrap();
        ok(&out, cmd);
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    run("gzip", &["-t", object.to_str().unwrap()]);
    let listing = run("tar", &["-tzf", object.to_str().unwrap()]);
    for (name, _) in &files {
        assert!(
            listing.lines().any(|l| l == name),
            "{name} not in {listing}"
        );
    }

    // barman-cloud-restore (Python's tarfile, streaming) and pgherd restore the same files.
    let theirs = target.path().join("barman");
    let out = barman(
        &moto,
        "barman-cloud-restore",
        &[DEST, "main", "20240201T101010", theirs.to_str().unwrap()],
    );
    ok(&out, "barman-cloud-restore");
    let ours = target.path().join("ours");
    pgherd_backup::restore::restore_backup(&store, &server, "latest", &ours, &Default::default())
        .await
        .unwrap();
    for (name, content) in files
        .iter()
        .chain([("backup_label".to_string(), label.as_bytes().to_vec())].iter())
    {
        assert_eq!(
            &std::fs::read(theirs.join(name)).unwrap(),
            content,
            "{name}, barman"
        );
        assert_eq!(
            &std::fs::read(ours.join(name)).unwrap(),
            content,
            "{name}, pgherd"
        );
    }
}
