//! The object-store layer against a real S3-compatible server (moto), a real Azure Blob Storage
//! emulator (Azurite) and a local directory:
//! list/delete, streamed multipart uploads, retries through injected transient failures,
//! outages that leave nothing half-written, timeouts and cancellation; the backup catalog.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

mod common;
use common::MotoStores as _;

use bytes::Bytes;
use futures::StreamExt;
use pgherd_backup::catalog::{delete_backup, put_backup_info, BackupCatalog};
use pgherd_backup::layout::{BackupId, ServerPrefix};
use pgherd_backup::store::{
    FaultPlan, Faulty, ObjectStore, Op, Resilient, RetryPolicy, StoreError,
};
use pgherd_backup::wal_archive::archive_wal;
use pgherd_backup::wal_restore::restore_wal;
use pgherd_backup::{BackupInfo, BackupStatus, Compression, WalError};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

fn quick_policy() -> RetryPolicy {
    RetryPolicy {
        attempts: 4,
        initial_backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(100),
        call_timeout: Duration::from_secs(30),
        stream_timeout: Duration::from_secs(60),
    }
}

async fn list_put_get_delete(store: &dyn ObjectStore, root: &str) {
    for key in ["a/1", "a/2", "a/sub/3", "b/4"] {
        store
            .put(&format!("{root}/{key}"), Bytes::from(key.to_string()))
            .await
            .unwrap();
    }
    let all = store.list(&format!("{root}/a/")).await.unwrap();
    let keys: Vec<_> = all
        .iter()
        .map(|o| o.key.strip_prefix(root).unwrap().to_string())
        .collect();
    assert_eq!(keys, ["/a/1", "/a/2", "/a/sub/3"]);
    let dir = store.list_dir(&format!("{root}/a/")).await.unwrap();
    assert_eq!(dir.objects.len(), 2);
    assert_eq!(dir.dirs, [format!("{root}/a/sub/")]);
    assert_eq!(
        store.get(&format!("{root}/a/2")).await.unwrap(),
        Bytes::from("a/2")
    );
    assert_eq!(
        store
            .head(&format!("{root}/b/4"))
            .await
            .unwrap()
            .unwrap()
            .size,
        3
    );
    store.delete(&format!("{root}/b/4")).await.unwrap();
    store.delete(&format!("{root}/b/4")).await.unwrap(); // absent: still fine
    assert!(store.head(&format!("{root}/b/4")).await.unwrap().is_none());
    assert!(matches!(
        store.get(&format!("{root}/b/4")).await,
        Err(StoreError::NotFound { .. })
    ));
    assert!(store
        .list(&format!("{root}/nothing/"))
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        store
            .list_dir(&format!("{root}/nothing/"))
            .await
            .unwrap()
            .objects
            .len(),
        0
    );
}

/// A 20 MiB body streamed in 1 MiB chunks (several multipart parts).
fn body(fail_after: Option<usize>) -> pgherd_backup::store::ByteStream {
    futures::stream::iter(0..20usize)
        .map(move |i| {
            if fail_after == Some(i) {
                Err(StoreError::Local {
                    what: "read",
                    path: "/data/base".into(),
                    source: std::io::Error::other("disk went away"),
                })
            } else {
                Ok(Bytes::from(vec![i as u8; 1024 * 1024]))
            }
        })
        .boxed()
}

async fn streamed_uploads_are_all_or_nothing(store: &dyn ObjectStore, root: &str) {
    let key = format!("{root}/big/data.tar");
    assert_eq!(
        store.put_stream(&key, body(None)).await.unwrap(),
        20 * 1024 * 1024
    );
    let got = store.get(&key).await.unwrap();
    assert_eq!(got.len(), 20 * 1024 * 1024);
    assert!(got[19 * 1024 * 1024..].iter().all(|b| *b == 19));
    let mut stream = store.get_stream(&key).await.unwrap();
    let mut n = 0;
    while let Some(chunk) = stream.next().await {
        n += chunk.unwrap().len();
    }
    assert_eq!(n, 20 * 1024 * 1024);

    let broken = format!("{root}/big/broken.tar");
    let e = store.put_stream(&broken, body(Some(15))).await.unwrap_err();
    assert!(e.to_string().contains("disk went away"), "{e}");
    assert!(
        store.head(&broken).await.unwrap().is_none(),
        "no half-written object"
    );
    assert!(!store
        .list(&format!("{root}/big/"))
        .await
        .unwrap()
        .iter()
        .any(|o| o.key.contains("broken")));
}

async fn retries_and_outages<S: ObjectStore>(inner: S, root: &str) {
    let server = ServerPrefix::new(root, "faulty").unwrap();
    let src = tempfile::tempdir().unwrap();
    let seg = src.path().join("000000010000000000000001");
    let data = common::fake_segment(1);
    std::fs::write(&seg, &data).unwrap();

    // The first two calls fail transiently: archiving still succeeds, through retries.
    let plan = FaultPlan {
        fail_calls: [1, 2].into_iter().collect(),
        ..FaultPlan::default()
    };
    let store = Resilient::new(
        Faulty::new(inner, plan),
        quick_policy(),
        CancellationToken::new(),
    );
    archive_wal(&store, &server, &seg, Some(Compression::Gzip))
        .await
        .unwrap();
    assert_eq!(store.inner().injected_failures(), 2);
    assert_eq!(store.inner().calls(), 3);

    // An outage: archiving fails after its retries, and nothing is stored.
    let seg2 = src.path().join("000000010000000000000002");
    std::fs::write(&seg2, &data).unwrap();
    store.inner().set_outage(true);
    let e = archive_wal(&store, &server, &seg2, Some(Compression::Gzip))
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            WalError::Store(StoreError::Transient { op: Op::Put, .. })
        ),
        "{e}"
    );
    store.inner().set_outage(false);
    let dst = tempfile::tempdir().unwrap();
    let e = restore_wal(
        &store,
        &server,
        "000000010000000000000002",
        &dst.path().join("x"),
        true,
    )
    .await
    .unwrap_err();
    assert!(matches!(e, WalError::NotInArchive { .. }), "{e}");
    assert!(!dst.path().join("x").exists());
    restore_wal(
        &store,
        &server,
        "000000010000000000000001",
        &dst.path().join("x"),
        true,
    )
    .await
    .unwrap();
    assert_eq!(std::fs::read(dst.path().join("x")).unwrap(), data);
}

async fn random_failures<S: ObjectStore>(inner: S, root: &str) {
    let plan = FaultPlan {
        fail_probability: 0.3,
        seed: 42,
        ..FaultPlan::default()
    };
    let policy = RetryPolicy {
        attempts: 10,
        ..quick_policy()
    };
    let store = Resilient::new(Faulty::new(inner, plan), policy, CancellationToken::new());
    for i in 0..20 {
        let key = format!("{root}/random/{i}");
        store
            .put(&key, Bytes::from(vec![i as u8; 100]))
            .await
            .unwrap();
        assert_eq!(store.get(&key).await.unwrap().len(), 100);
    }
    assert!(store.inner().injected_failures() > 0);
}

async fn timeouts_and_cancellation<S: ObjectStore>(inner: S, root: &str) {
    let plan = FaultPlan {
        delay: Duration::from_secs(5),
        ..FaultPlan::default()
    };
    let policy = RetryPolicy {
        attempts: 2,
        call_timeout: Duration::from_millis(200),
        ..quick_policy()
    };
    let cancel = CancellationToken::new();
    let store = Resilient::new(Faulty::new(inner, plan), policy, cancel.clone());
    let key = format!("{root}/slow");
    let started = Instant::now();
    let e = store.head(&key).await.unwrap_err();
    assert!(matches!(e, StoreError::Timeout { op: Op::Head, .. }), "{e}");
    assert!(started.elapsed() < Duration::from_secs(3));

    let started = Instant::now();
    let canceller = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        cancel.cancel();
    });
    let e = store.put(&key, Bytes::from("x")).await.unwrap_err();
    assert!(
        matches!(e, StoreError::Cancelled { op: Op::Put, .. }),
        "{e}"
    );
    assert!(started.elapsed() < Duration::from_secs(2));
    canceller.await.unwrap();
    // Later calls fail at once.
    assert!(matches!(
        store.get(&key).await,
        Err(StoreError::Cancelled { .. })
    ));
}

async fn catalog(store: &dyn ObjectStore, root: &str) {
    let server = ServerPrefix::new(root, "cat").unwrap();
    assert!(BackupCatalog::load(store, &server)
        .await
        .unwrap()
        .backups
        .is_empty());
    for (id, status, name) in [
        (
            "20240101T000000",
            BackupStatus::Done,
            "backup-20240101000000",
        ),
        (
            "20240102T000000",
            BackupStatus::Failed,
            "backup-20240102000000",
        ),
        (
            "20240103T000000",
            BackupStatus::Done,
            "backup-20240103000000",
        ),
    ] {
        let mut info = BackupInfo::new();
        info.set_status(status);
        info.set_backup_name(Some(name));
        let id: BackupId = id.parse().unwrap();
        put_backup_info(store, &server, &id, &info).await.unwrap();
        store
            .put(&server.data_tar_key(&id, None), Bytes::from_static(b"tar"))
            .await
            .unwrap();
    }
    // Not a backup: ignored.
    store
        .put(&format!("{}junk/file", server.base_dir()), Bytes::from("x"))
        .await
        .unwrap();
    let cat = BackupCatalog::load(store, &server).await.unwrap();
    let ids: Vec<_> = cat.backups.iter().map(|b| b.id.to_string()).collect();
    assert_eq!(
        ids,
        ["20240101T000000", "20240102T000000", "20240103T000000"]
    );
    assert_eq!(cat.find("latest").unwrap().id.as_str(), "20240103T000000");
    assert_eq!(cat.find("oldest").unwrap().id.as_str(), "20240101T000000");
    assert_eq!(
        cat.find("last-failed").unwrap().id.as_str(),
        "20240102T000000"
    );
    assert_eq!(
        cat.find("backup-20240103000000").unwrap().id.as_str(),
        "20240103T000000"
    );
    assert!(cat.find("nope").is_none());

    assert!(cat.unreadable.is_empty());

    // A corrupt backup.info hides that backup only.
    let bad: BackupId = "20240104T000000".parse().unwrap();
    store
        .put(
            &server.backup_info_key(&bad),
            Bytes::from("garbage without equals\n"),
        )
        .await
        .unwrap();
    let cat = BackupCatalog::load(store, &server).await.unwrap();
    assert_eq!(cat.backups.len(), 3);
    assert_eq!(cat.unreadable.len(), 1);
    assert!(
        cat.unreadable[0].contains("20240104T000000/backup.info"),
        "{:?}",
        cat.unreadable
    );
    delete_backup(store, &server, &bad).await.unwrap();

    let first: BackupId = "20240101T000000".parse().unwrap();
    delete_backup(store, &server, &first).await.unwrap();
    assert!(store
        .list(&server.backup_dir(&first))
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        BackupCatalog::load(store, &server)
            .await
            .unwrap()
            .backups
            .len(),
        2
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_on_a_local_directory() {
    let dir = tempfile::tempdir().unwrap();
    list_put_get_delete(&common::fs_store(dir.path()), "p").await;
    streamed_uploads_are_all_or_nothing(&common::fs_store(dir.path()), "p").await;
    retries_and_outages(common::fs_store(dir.path()), "p").await;
    random_failures(common::fs_store(dir.path()), "p").await;
    timeouts_and_cancellation(common::fs_store(dir.path()), "p").await;
    catalog(&common::fs_store(dir.path()), "p").await;
    // No staging files are left behind by the failed upload.
    let mut stack = vec![dir.path().to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(d).unwrap() {
            let p = e.unwrap().path();
            assert!(!p.to_string_lossy().contains("broken"), "{p:?} left behind");
            if p.is_dir() {
                stack.push(p);
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_on_s3() {
    let moto = common::Moto::start();
    moto.create_bucket("store");
    list_put_get_delete(&moto.store("store", ""), "p").await;
    streamed_uploads_are_all_or_nothing(&moto.store("store", ""), "p").await;
    retries_and_outages(moto.store("store", ""), "p").await;
    random_failures(moto.store("store", ""), "p").await;
    timeouts_and_cancellation(moto.store("store", ""), "p").await;
    catalog(&moto.store("store", ""), "p").await;

    // Server-side encryption (wal.encryption / data.encryption) is sent with uploads.
    let mut config = moto.config("store", "");
    config.encryption = Some(pgherd_api::barman::Encryption::Aes256);
    let encrypted = pgherd_backup::store::open(&config).unwrap();
    encrypted.put("p/sse", Bytes::from("secret")).await.unwrap();
    assert_eq!(encrypted.get("p/sse").await.unwrap(), Bytes::from("secret"));
    encrypted.put_stream("p/sse-big", body(None)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_on_azure_emulated_storage() {
    use pgherd_api::barman::{AzureCredentials, BarmanObjectStoreConfiguration};
    use pgherd_api::common::SecretKeySelector;
    let azurite = pgherd_testkit::azurite::Azurite::start();
    azurite.create_container("backups");
    // As a user writes it: barman's emulated-storage destination and a connection string
    // from a Secret.
    let cfg = BarmanObjectStoreConfiguration {
        destination_path: format!("{}/backups/cluster", azurite.account_url()),
        azure_credentials: Some(AzureCredentials {
            connection_string: Some(SecretKeySelector {
                name: "azure-creds".into(),
                key: "AZURE_CONNECTION_STRING".into(),
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let connection_string = azurite.connection_string();
    let config = pgherd_backup::store::StoreConfig::from_barman(&cfg, &|s| {
        assert_eq!(s.key, "AZURE_CONNECTION_STRING");
        Ok(connection_string.clone())
    })
    .unwrap();
    let open = || pgherd_backup::store::open(&config).unwrap();
    list_put_get_delete(&open(), "p").await;
    streamed_uploads_are_all_or_nothing(&open(), "p").await;
    retries_and_outages(open(), "p").await;
    random_failures(open(), "p").await;
    timeouts_and_cancellation(open(), "p").await;
    catalog(&open(), "p").await;

    // A wrong key is refused with the store named, not retried forever.
    let mut wrong = config.clone();
    wrong.azure_keys = Some(pgherd_backup::store::AzureKeys::AccountKey(
        "d3Jvbmc=".into(),
    ));
    let e = pgherd_backup::store::open(&wrong)
        .unwrap()
        .get("p/anything")
        .await
        .unwrap_err();
    assert!(!matches!(e, StoreError::NotFound { .. }), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_s3_endpoint_fails_with_a_clear_error() {
    // Nothing listens on this port (bound then released).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut config = common::config_for_endpoint(&format!("http://127.0.0.1:{port}"));
    config.request_timeout = Duration::from_secs(2);
    let store = Resilient::new(
        pgherd_backup::store::open(&config).unwrap(),
        RetryPolicy {
            attempts: 2,
            ..quick_policy()
        },
        CancellationToken::new(),
    );
    let e = store.put("p/x", Bytes::from("x")).await.unwrap_err();
    assert!(e.is_retryable(), "{e:?}");
    let text = e.to_string();
    assert!(text.contains("\"p/x\""), "{text}");
    assert!(
        !text.contains(common::SECRET_KEY) && !text.contains(common::ACCESS_KEY),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_endpoint_with_a_private_ca() {
    let pki = pgherd_controller::pki::generate(
        "s3",
        &["localhost".into()],
        &["127.0.0.1".parse().unwrap()],
        30,
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cert = dir.path().join("server.crt");
    let key = dir.path().join("server.key");
    std::fs::write(&cert, &pki.server.cert).unwrap();
    std::fs::write(&key, &pki.server.key).unwrap();
    let moto = common::Moto::start_tls(&cert, &key, "tls");
    assert!(moto.endpoint().starts_with("https://"));

    // Trusting the endpoint's CA (endpointCA): works.
    let mut config = moto.config("tls", "p");
    config.endpoint_ca_pem = Some(pki.ca.cert.clone().into_bytes());
    let store = pgherd_backup::store::open(&config).unwrap();
    store.put("p/x", Bytes::from("over tls")).await.unwrap();
    assert_eq!(store.get("p/x").await.unwrap(), Bytes::from("over tls"));

    // Without it the certificate is refused, and the error says which object.
    let mut untrusted = moto.config("tls", "p");
    untrusted.request_timeout = Duration::from_secs(5);
    let store = pgherd_backup::store::open(&untrusted).unwrap();
    let e = store.get("p/x").await.unwrap_err();
    assert!(e.to_string().contains("\"p/x\""), "{e}");

    // A CA that is not PEM is a configuration error.
    let mut bad = moto.config("tls", "p");
    bad.endpoint_ca_pem = Some(b"not a certificate".to_vec());
    assert!(matches!(
        pgherd_backup::store::open(&bad),
        Err(StoreError::Config(_))
    ));
}

/// `tags` go on every uploaded object and `historyTags` on timeline history files (S3 object
/// tagging, read back from the server).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tags_and_history_tags_on_s3() {
    let moto = common::Moto::start();
    moto.create_bucket("tags");
    let mut config = moto.config("tags", "");
    config.tags = vec![("env".into(), "prod".into())];
    config.history_tags = vec![("kind".into(), "history".into())];
    let store = pgherd_backup::store::open(&config).unwrap();
    let wal = "c/wals/0000000100000000/000000010000000000000001";
    let history = "c/wals/00000002.history";
    store
        .put(wal, bytes::Bytes::from_static(b"wal"))
        .await
        .unwrap();
    store
        .put(history, bytes::Bytes::from_static(b"history"))
        .await
        .unwrap();
    let tags = |key: &str| {
        let script = format!(
            "import boto3\ns3 = boto3.client('s3', endpoint_url={:?}, region_name='us-east-1', \
             aws_access_key_id='k', aws_secret_access_key='s')\n\
             for t in s3.get_object_tagging(Bucket='tags', Key={key:?})['TagSet']:\n\
             \x20   print('<Key>' + t['Key'] + '</Key><Value>' + t['Value'] + '</Value>')\n",
            moto.endpoint()
        );
        let out = std::process::Command::new("python3")
            .args(["-c", &script])
            .output()
            .unwrap();
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    };
    let on_wal = tags(wal);
    assert!(
        on_wal.contains("<Key>env</Key>") && on_wal.contains("<Value>prod</Value>"),
        "{on_wal}"
    );
    let on_history = tags(history);
    assert!(
        on_history.contains("<Key>kind</Key>") && !on_history.contains("<Key>env</Key>"),
        "{on_history}"
    );
}
