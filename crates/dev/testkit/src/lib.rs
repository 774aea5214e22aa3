//! The test harness shared by the component and end-to-end tests: free loopback ports, the
//! unprivileged PostgreSQL user, secret files, a cluster's certificates on disk, and a real
//! PostgreSQL 15 server (Debian's, installed by `scripts/install.sh`) in a temporary directory,
//! and [`local::Local`], the local platform driven through the `pgherd` binary.
//!
//! For tests only; may depend on any crate but the app.
//!
//! Imports: pgherd-api, pgherd-controller, pgherd-instance-manager, pgherd-instance-protocol, pgherd-local, pgherd-postgres.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a harness that cannot set up must fail the test

pub mod azurite;
pub mod fake_platform;
pub mod local;
pub mod metrics;
pub mod moto;
pub mod pitr;
pub mod prometheus;
pub mod writer;

use pgherd_instance_manager::{InitDbOptions, OsUser, PgBinaries, Postgres, ShutdownMode};
use pgherd_instance_protocol::CertificatePaths;
use std::path::Path;
use std::process::Child;
use std::time::Duration;

/// The PostgreSQL major the test machine has (Debian bookworm's).
pub const TEST_MAJOR: u32 = 15;

/// A single-threaded async runtime for a test's client work.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

/// A TCP port free on loopback now and not handed out before by this test binary, for a
/// server a test starts. Below Linux's ephemeral range (32768–60999), where the kernel picks
/// the source ports of outgoing connections, and below the local platform's (20000–32000), so
/// neither takes it between the choice and the server's bind; once per binary, so two tests
/// running at once never get the same one.
pub fn free_port() -> u16 {
    static HANDED_OUT: std::sync::Mutex<std::collections::BTreeSet<u16>> =
        std::sync::Mutex::new(std::collections::BTreeSet::new());
    const PORTS: std::ops::Range<u16> = 10000..20000;
    let mut handed_out = HANDED_OUT
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    pgherd_local::placement::pick_port(PORTS, 1000, &mut handed_out)
        .unwrap_or_else(|| panic!("no free port in {PORTS:?} after 1000 tries"))
}

/// The user PostgreSQL runs as: `postgres` when the tests run as root, else the current user.
pub fn postgres_user() -> OsUser {
    OsUser::for_postgres("postgres").expect("a postgres OS user (scripts/install.sh creates it)")
}

/// The PostgreSQL binaries of [`TEST_MAJOR`].
pub fn binaries() -> PgBinaries {
    PgBinaries::locate(TEST_MAJOR, None).expect("PostgreSQL 15 (scripts/install.sh installs it)")
}

/// Write a private file (mode 0600) owned by `user`.
pub fn write_private(path: &Path, text: &str, user: &OsUser) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
    user.own_file(path).unwrap();
}

/// Generate a cluster's certificates (valid for `localhost` and 127.0.0.1) into `dir`, with
/// the CA's key as `ca.key` (a test issues client certificates from it).
pub fn write_certificates(dir: &Path, user: &OsUser) -> CertificatePaths {
    let pki = pgherd_controller::pki::generate(
        "c",
        &["localhost".into()],
        &["127.0.0.1".parse().unwrap()],
        90,
    )
    .unwrap();
    user.own_dir(dir, 0o700).unwrap();
    let paths = CertificatePaths::in_dir(dir);
    for (path, text) in [
        (&paths.ca, &pki.ca.cert),
        (&paths.server_cert, &pki.server.cert),
        (&paths.server_key, &pki.server.key),
        (&paths.replication_cert, &pki.replication.cert),
        (&paths.replication_key, &pki.replication.key),
        (&dir.join("ca.key"), &pki.ca.key),
    ] {
        write_private(path, text, user);
    }
    paths
}

/// Settings for an instance that serves TLS on loopback and can be streamed from: what the
/// controller would give a cluster, reduced to what replication needs.
pub fn replication_settings(
    certs: &CertificatePaths,
) -> std::collections::BTreeMap<String, String> {
    let mut s = std::collections::BTreeMap::new();
    for (k, v) in [
        ("listen_addresses", "127.0.0.1"),
        ("wal_level", "logical"),
        ("max_wal_senders", "10"),
        ("hot_standby", "on"),
        ("wal_log_hints", "on"),
        // As clusters have it: WAL a rewind needs is kept.
        ("wal_keep_size", "512MB"),
        ("ssl", "on"),
        ("ssl_min_protocol_version", "TLSv1.3"),
    ] {
        s.insert(k.to_string(), v.to_string());
    }
    s.insert("ssl_ca_file".into(), certs.ca.display().to_string());
    s.insert(
        "ssl_cert_file".into(),
        certs.server_cert.display().to_string(),
    );
    s.insert(
        "ssl_key_file".into(),
        certs.server_key.display().to_string(),
    );
    s
}

/// A [`Postgres`] in `root/name` with a free port (not created, not started).
pub fn instance(root: &Path, name: &str) -> Postgres {
    let user = postgres_user();
    user.own_dir(root, 0o755).unwrap();
    Postgres {
        binaries: binaries(),
        pgdata: root.join(name).join("pgdata"),
        socket_dir: root.join(name).join("run"),
        port: free_port(),
        user,
        log_file: root.join(name).join("log/postgres.log"),
    }
}

/// A running PostgreSQL that trusts local connections (the test process is not its OS
/// user), stopped when dropped.
#[derive(Debug)]
pub struct TestServer {
    pub pg: Postgres,
    child: Option<Child>,
    _dir: tempfile::TempDir,
}

impl TestServer {
    /// initdb, trust on the Unix socket, no TCP, start, wait until ready.
    pub fn start() -> Self {
        Self::start_with(binaries())
    }

    /// Like `start`, with other server binaries (another major).
    pub fn start_with(binaries: PgBinaries) -> Self {
        Self::start_configured(binaries, "")
    }

    /// Like `start`, with `wal_level = logical` (a publisher).
    pub fn start_logical() -> Self {
        Self::start_configured(binaries(), "wal_level = logical\n")
    }

    /// Like `start_with`, with `conf` added to `postgresql.auto.conf`.
    pub fn start_configured(binaries: PgBinaries, conf: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut pg = instance(dir.path(), "pg");
        pg.binaries = binaries;
        pg.initdb(&InitDbOptions::default()).unwrap();
        pg.write_file("pg_hba.conf", "local all all trust\n")
            .unwrap();
        pg.write_file(
            "postgresql.auto.conf",
            &format!("listen_addresses = ''\n{conf}"),
        )
        .unwrap();
        let mut child = pg.start().unwrap();
        pg.wait_ready_child(&mut child, Duration::from_secs(60))
            .unwrap();
        TestServer {
            pg,
            child: Some(child),
            _dir: dir,
        }
    }

    /// The temporary directory everything lives in.
    pub fn dir(&self) -> &Path {
        self._dir.path()
    }

    /// Stop (fast) and wait for the postmaster.
    pub fn stop(mut self) {
        self.shutdown(ShutdownMode::Fast);
    }

    fn shutdown(&mut self, mode: ShutdownMode) {
        if let Some(mut child) = self.child.take() {
            let _ = self.pg.stop(mode, Duration::from_secs(30));
            let _ = child.wait();
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.shutdown(ShutdownMode::Immediate);
    }
}

/// `GET path` on an instance manager's status endpoint (`host:port`) over TLS trusting the
/// cluster CA `ca`, presenting `client` (certificate, key) if given; the HTTP status code (0
/// when nothing answered) and the body.
pub fn status_request(
    address: &str,
    path: &str,
    authorization: Option<&str>,
    ca: &Path,
    client: Option<(&Path, &Path)>,
) -> (u16, Vec<u8>) {
    let tls = match client {
        Some((cert, key)) => pgherd_instance_manager::tls::client_config(ca, cert, key),
        None => pgherd_instance_manager::tls::anonymous_client_config(ca),
    }
    .expect("TLS client configuration");
    let (host, port) = address.rsplit_once(':').expect("host:port");
    let port: u16 = port.parse().expect("port");
    runtime()
        .block_on(pgherd_instance_manager::status_client::request(
            host,
            port,
            &std::sync::Arc::new(tls),
            path,
            authorization,
            Duration::from_secs(5),
        ))
        .map_or((0, Vec::new()), |(code, body)| (code, body.to_vec()))
}

/// `psql` to `host:port` as the application owner `app` with `sslmode=verify-ca` against the
/// CA file `root`: whether the session is encrypted (`t`), or psql's error.
pub fn psql_verifying(
    host: &str,
    port: &str,
    password: &str,
    root: &Path,
) -> Result<String, String> {
    let out = std::process::Command::new("psql")
        .arg(format!(
            "host={host} port={port} dbname=app user=app sslmode=verify-ca sslrootcert={} connect_timeout=5",
            root.display()
        ))
        .args(["-XAtc", "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"])
        .env("PGPASSWORD", password)
        .output()
        .map_err(|e| format!("cannot run psql: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}
