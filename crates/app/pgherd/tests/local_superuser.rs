//! `enableSuperuserAccess` as CloudNativePG has it: the `postgres` password from
//! `superuserSecret` (changed when the Secret changes) or a generated `<cluster>-superuser`,
//! none at all when disabled; `local psql --superuser` and `local psql` with the application
//! Secret the cluster really uses (`bootstrap.initdb.secret`).
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

use pgherd_testkit::local::{cluster_manifest, connect, Local};
use std::path::Path;
use std::time::{Duration, Instant};

fn manifest(dir: &Path, access: bool, password: &str) -> std::path::PathBuf {
    let path = dir.join(format!("su-{access}-{password}.yaml"));
    std::fs::write(
        &path,
        format!(
            "apiVersion: postgresql.cnpg.io/v1
kind: Cluster
metadata:
  name: su
spec:
  instances: 1
  imageName: ghcr.io/cloudnative-pg/postgresql:15.14
  storage:
    size: 1Gi
  enableSuperuserAccess: {access}
  superuserSecret:
    name: su-root
  bootstrap:
    initdb:
      database: shop
      owner: shopper
      secret:
        name: shop-credentials
---
apiVersion: v1
kind: Secret
metadata:
  name: su-root
type: kubernetes.io/basic-auth
stringData:
  username: postgres
  password: {password}
---
apiVersion: v1
kind: Secret
metadata:
  name: shop-credentials
type: kubernetes.io/basic-auth
stringData:
  username: shopper
  password: shop-Pass-1
"
        ),
    )
    .unwrap();
    path
}

/// Whether `postgres` logs in with `password` through `addr` within `wait`.
fn superuser_logs_in(addr: &str, password: &str, wait: Duration) -> bool {
    let (host, port) = addr.rsplit_once(':').unwrap();
    let mut config = tokio_postgres::Config::new();
    config
        .host(host)
        .port(port.parse().unwrap())
        .user("postgres")
        .password(password)
        .dbname("postgres")
        .connect_timeout(Duration::from_secs(5));
    let rt = pgherd_testkit::runtime();
    let deadline = Instant::now() + wait;
    loop {
        let ok = rt.block_on(async {
            match connect(&config).await {
                Ok(c) => c.query_one("SELECT 1", &[]).await.is_ok(),
                Err(_) => false,
            }
        });
        if ok || Instant::now() >= deadline {
            return ok;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[test]
fn superuser_password_follows_its_secret_and_disabling_removes_it() {
    let local = Local::new(Path::new(env!("CARGO_BIN_EXE_pgherd")));
    let dir = tempfile::tempdir().unwrap();
    local.run_ok(&[
        "up",
        "-f",
        manifest(dir.path(), true, "first-Pw-1").to_str().unwrap(),
        "--timeout-seconds",
        "120",
    ]);
    let rw = local.status("su").endpoints["rw"].clone();
    assert!(superuser_logs_in(
        &rw,
        "first-Pw-1",
        Duration::from_secs(30)
    ));

    // `local psql` uses the cluster's own application Secret, `--superuser` the superuser's.
    let psql = |extra: &[&str]| {
        let mut args = vec!["psql", "su"];
        args.extend_from_slice(extra);
        args.extend([
            "--",
            "-Atc",
            "select current_user || '@' || current_database()",
        ]);
        String::from_utf8_lossy(&local.run_ok(&args).stdout)
            .trim()
            .to_string()
    };
    assert_eq!(psql(&[]), "shopper@shop");
    assert_eq!(psql(&["--superuser"]), "postgres@postgres");

    // The Secret changes: so does the password.
    local.run_ok(&[
        "apply",
        "-f",
        manifest(dir.path(), true, "second-Pw-2").to_str().unwrap(),
    ]);
    assert!(superuser_logs_in(
        &rw,
        "second-Pw-2",
        Duration::from_secs(30)
    ));
    assert!(!superuser_logs_in(&rw, "first-Pw-1", Duration::ZERO));

    // Disabled: no password at all, so no login with the old one.
    local.run_ok(&[
        "apply",
        "-f",
        manifest(dir.path(), false, "second-Pw-2").to_str().unwrap(),
    ]);
    let deadline = Instant::now() + Duration::from_secs(30);
    while superuser_logs_in(&rw, "second-Pw-2", Duration::ZERO) {
        assert!(
            Instant::now() < deadline,
            "the superuser password stayed after disabling"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    let out = local.run(&["psql", "su", "--superuser", "--", "-c", "select 1"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("enableSuperuserAccess"));
}

/// `pg_stat_statements.*` and `auto_explain.*` parameters load their libraries and create the
/// extension CloudNativePG creates (pg_stat_statements) in every database; the user's own
/// `shared_preload_libraries` are kept after them.
#[test]
fn managed_extensions_are_preloaded_and_created() {
    let local = Local::new(Path::new(env!("CARGO_BIN_EXE_pgherd")));
    let dir = tempfile::tempdir().unwrap();
    local.up(
        dir.path(),
        "ext",
        &cluster_manifest(
            "ext",
            1,
            "  enableSuperuserAccess: true
  postgresql:
    shared_preload_libraries: [pg_prewarm]
    parameters:
      pg_stat_statements.max: \"1000\"
      auto_explain.log_min_duration: \"5s\"
",
        ),
        1,
    );
    let rw = local.status("ext").endpoints["rw"].clone();
    let rt = pgherd_testkit::runtime();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        // As the superuser (the generated ext-superuser Secret): only it may see the setting.
        let out = local.run_ok(&[
            "psql",
            "ext",
            "--superuser",
            "--",
            "-Atc",
            "SHOW shared_preload_libraries",
        ]);
        let preload = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let extension: i64 = rt.block_on(async {
            let c = connect(&local.app_config("ext", &rw)).await.unwrap();
            c.query_one(
                "SELECT count(*) FROM pg_extension WHERE extname = 'pg_stat_statements'",
                &[],
            )
            .await
            .unwrap()
            .get(0)
        });
        assert_eq!(preload, "pg_stat_statements,auto_explain,pg_prewarm");
        if extension == 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "pg_stat_statements was not created in the app database"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}
