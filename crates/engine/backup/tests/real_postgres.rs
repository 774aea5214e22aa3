//! A base backup of a real PostgreSQL 15 (Debian's, installed by `scripts/install.sh`) with a
//! tablespace, its real WAL archived and restored, then the backup restored into a new data
//! directory that a second server starts from and serves the same rows.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

mod common;
use common::MotoStores as _;

use pgherd_backup::backup_session::{take_base_backup, BaseBackupOptions};
use pgherd_backup::base_backup::{estimated_size, Progress};
use pgherd_backup::layout::{ServerPrefix, WalFileKind, WalFileName};
use pgherd_backup::restore::restore_backup;
use pgherd_backup::wal_archive::archive_wal;
use pgherd_backup::wal_restore::restore_wal;
use pgherd_backup::{BackupStatus, Compression};
use pgherd_instance_manager::OsUser;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

async fn connect(socket_dir: &Path, port: u16) -> tokio_postgres::Client {
    let mut config = tokio_postgres::Config::new();
    config
        .host_path(socket_dir)
        .port(port)
        .user("postgres")
        .dbname("postgres")
        .connect_timeout(Duration::from_secs(10));
    let (client, connection) = config.connect(tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client
}

fn own_tree(user: &OsUser, dir: &Path) {
    user.own_dir(dir, 0o700).unwrap();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let meta = std::fs::symlink_metadata(&path).unwrap();
        if meta.is_dir() {
            own_tree(user, &path);
        } else if meta.is_file() {
            user.own_file(&path).unwrap();
        }
    }
}

#[test]
fn backup_archive_and_restore_a_real_server() {
    let server = pgherd_testkit::TestServer::start();
    let pg = &server.pg;
    let user = pgherd_testkit::postgres_user();
    let ts_dir = server.dir().join("ts1");
    user.own_dir(&ts_dir, 0o700).unwrap();
    let store_dir = tempfile::tempdir().unwrap();
    let store = common::fs_store(store_dir.path());
    let prefix = ServerPrefix::new("", "real").unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();

    let (info, id) = rt.block_on(async {
        let c = connect(&pg.socket_dir, pg.port).await;
        c.batch_execute(&format!(
            "CREATE TABLESPACE ts1 LOCATION '{}'",
            ts_dir.display()
        ))
        .await
        .unwrap();
        c.batch_execute(
            "CREATE TABLE t (id int PRIMARY KEY, v text);
             INSERT INTO t SELECT g, repeat('x', 100) FROM generate_series(1, 10000) g;
             CREATE TABLE in_ts (id int) TABLESPACE ts1;
             INSERT INTO in_ts SELECT generate_series(1, 500);",
        )
        .await
        .unwrap();
        let options = BaseBackupOptions {
            backup_name: Some("backup-test".into()),
            compression: Some(Compression::Gzip),
            immediate_checkpoint: true,
            // Compressed on 3 threads: the restore below reads the block-parallel gzip.
            jobs: 3,
            progress: Progress::default(),
        };
        let estimate = estimated_size(&pg.pgdata, true);
        let (id, info) = take_base_backup(&c, &store, &prefix, &pg.pgdata, &options)
            .await
            .unwrap();
        // Progress counted every byte put into the tarballs, and the estimate was close.
        assert_eq!(Some(options.progress.bytes()), info.size());
        let done = options.progress.bytes() as f64;
        assert!(
            (0.5..1.5).contains(&(done / estimate as f64)),
            "{done} bytes against an estimate of {estimate}"
        );
        // Writes after the backup must not be in the restored copy.
        c.batch_execute("INSERT INTO t VALUES (-1, 'after'); SELECT pg_switch_wal();")
            .await
            .unwrap();
        (info, id)
    });

    assert_eq!(info.status(), BackupStatus::Done);
    assert_eq!(info.timeline(), Some(1));
    assert!(info.version().unwrap() >= 150000);
    assert_eq!(info.backup_name(), Some("backup-test"));
    assert_eq!(info.compression(), Some("gzip"));
    let label = info.backup_label().unwrap();
    assert!(
        label.contains(&format!("LABEL: Barman backup cloud {id}")),
        "{label}"
    );
    let begin_wal: WalFileName = info.begin_wal().unwrap().parse().unwrap();
    let end_wal: WalFileName = info.end_wal().unwrap().parse().unwrap();
    assert!(begin_wal <= end_wal);
    let ts = info.tablespaces().unwrap();
    assert_eq!(ts.len(), 1);
    assert_eq!(ts[0].name, "ts1");
    assert!(store_dir
        .path()
        .join(format!("real/base/{id}/{}.tar.gz", ts[0].oid))
        .is_file());
    assert!(store_dir
        .path()
        .join(format!("real/base/{id}/data.tar.gz"))
        .is_file());

    // Archive the server's real, completed WAL segments, then check they restore intact.
    let wal_dir = pg.pgdata.join("pg_wal");
    let mut segments: Vec<String> = std::fs::read_dir(&wal_dir)
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| {
            n.parse::<WalFileName>().is_ok_and(|w| {
                matches!(w.kind(), WalFileKind::Segment | WalFileKind::BackupHistory)
            })
        })
        .collect();
    segments.sort();
    let current = segments.pop(); // still being written
    assert!(current.is_some());
    let restored_dir = tempfile::tempdir().unwrap();
    rt.block_on(async {
        for name in &segments {
            archive_wal(
                &store,
                &prefix,
                &wal_dir.join(name),
                Some(Compression::Zstd),
            )
            .await
            .unwrap();
            let out = restored_dir.path().join(name);
            restore_wal(&store, &prefix, name, &out, false)
                .await
                .unwrap();
            assert_eq!(
                std::fs::read(&out).unwrap(),
                std::fs::read(wal_dir.join(name)).unwrap(),
                "{name}"
            );
        }
    });
    assert!(
        segments.iter().any(|s| s.as_str() == end_wal.as_str()),
        "{segments:?} {end_wal}"
    );

    // Restore the backup into a new data directory with the tablespace moved, put the WAL
    // the backup needs into pg_wal, and start a second server from it.
    let root = server.dir().join("restored");
    let mut copy = pgherd_testkit::instance(&root, "pg2");
    copy.port = pgherd_testkit::free_port();
    let ts_new = root.join("ts1-restored");
    let locations = BTreeMap::from([("ts1".to_string(), ts_new.clone())]);
    rt.block_on(async {
        restore_backup(&store, &prefix, id.as_str(), &copy.pgdata, &locations)
            .await
            .unwrap();
        // Exactly the WAL from the backup's start to its end: the row written after the
        // backup must not come back.
        let needed = segments.iter().filter(|s| {
            s.len() == 24 && s.as_str() >= begin_wal.as_str() && s.as_str() <= end_wal.as_str()
        });
        for name in needed {
            restore_wal(
                &store,
                &prefix,
                name,
                &copy.pgdata.join("pg_wal").join(name),
                false,
            )
            .await
            .unwrap();
        }
    });
    own_tree(&user, &copy.pgdata);
    own_tree(&user, &ts_new);
    let mut child = copy.start().unwrap();
    copy.wait_ready_child(&mut child, Duration::from_secs(60))
        .unwrap_or_else(|e| {
            let log = std::fs::read_to_string(&copy.log_file).unwrap_or_default();
            panic!("restored server did not start: {e}\n{log}")
        });
    let counts = rt.block_on(async {
        let c = connect(&copy.socket_dir, copy.port).await;
        let t: i64 = c
            .query_one("SELECT count(*) FROM t", &[])
            .await
            .unwrap()
            .get(0);
        let in_ts: i64 = c
            .query_one("SELECT count(*) FROM in_ts", &[])
            .await
            .unwrap()
            .get(0);
        (t, in_ts)
    });
    let _ = copy.stop(
        pgherd_instance_manager::ShutdownMode::Fast,
        Duration::from_secs(30),
    );
    let _ = child.wait();
    assert_eq!(counts, (10000, 500));
}

/// barman-cloud-backup (Debian's barman-cli-cloud) backs up a real server into moto; pgherd's
/// catalog reads barman's own backup.info and pgherd restores the backup into a data directory
/// a second server starts from.
#[test]
fn restore_a_backup_taken_by_barman_cloud() {
    let server = pgherd_testkit::TestServer::start();
    let pg = &server.pg;
    let user = pgherd_testkit::postgres_user();
    let moto = common::Moto::start();
    moto.create_bucket("barman");
    let store = moto.store("barman", "pg");
    let prefix = ServerPrefix::new("pg", "main").unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let c = connect(&pg.socket_dir, pg.port).await;
        c.batch_execute(
            "CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t SELECT generate_series(1, 1234);",
        )
        .await
        .unwrap();
    });
    let tool = "/usr/bin/barman-cloud-backup";
    assert!(
        Path::new(tool).is_file(),
        "{tool} is missing: run ./scripts/install.sh (installs barman-cli-cloud)"
    );
    let out = std::process::Command::new(tool)
        .args([
            "--cloud-provider",
            "aws-s3",
            "--endpoint-url",
            &moto.endpoint(),
        ])
        .args([
            "-h",
            pg.socket_dir.to_str().unwrap(),
            "-p",
            &pg.port.to_string(),
        ])
        .args(["-U", "postgres", "--gzip", "--name", "backup-by-barman"])
        .args(["s3://barman/pg", "main"])
        .envs(moto.barman_env())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "barman-cloud-backup: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    let root = server.dir().join("from-barman");
    let mut copy = pgherd_testkit::instance(&root, "pg3");
    copy.port = pgherd_testkit::free_port();
    let info = rt.block_on(async {
        let catalog = pgherd_backup::catalog::BackupCatalog::load(&store, &prefix)
            .await
            .unwrap();
        assert!(catalog.unreadable.is_empty(), "{:?}", catalog.unreadable);
        let entry = catalog.find("backup-by-barman").unwrap().clone();
        let info = restore_backup(&store, &prefix, "latest", &copy.pgdata, &BTreeMap::new())
            .await
            .unwrap();
        assert_eq!(info, entry.info);
        // barman-cloud-backup does not archive WAL: take it from the source server's pg_wal.
        let begin = info.begin_wal().unwrap().to_string();
        let end = info.end_wal().unwrap().to_string();
        for e in std::fs::read_dir(pg.pgdata.join("pg_wal")).unwrap() {
            let name = e.unwrap().file_name().into_string().unwrap();
            if name.len() == 24 && name >= begin && name <= end {
                std::fs::copy(
                    pg.pgdata.join("pg_wal").join(&name),
                    copy.pgdata.join("pg_wal").join(&name),
                )
                .unwrap();
            }
        }
        info
    });
    assert_eq!(info.status(), BackupStatus::Done);
    // barman 3.4 records compression=None even with --gzip: restores go by the extension.
    assert!(matches!(info.compression(), None | Some("gzip")));
    assert!(info.backup_label().unwrap().contains("START WAL LOCATION"));
    own_tree(&user, &copy.pgdata);
    let mut child = copy.start().unwrap();
    copy.wait_ready_child(&mut child, Duration::from_secs(60))
        .unwrap_or_else(|e| {
            let log = std::fs::read_to_string(&copy.log_file).unwrap_or_default();
            panic!("server restored from barman's backup did not start: {e}\n{log}")
        });
    let count = rt.block_on(async {
        let c = connect(&copy.socket_dir, copy.port).await;
        c.query_one("SELECT count(*) FROM t", &[])
            .await
            .unwrap()
            .get::<_, i64>(0)
    });
    let _ = copy.stop(
        pgherd_instance_manager::ShutdownMode::Fast,
        Duration::from_secs(30),
    );
    let _ = child.wait();
    assert_eq!(count, 1234);
}
