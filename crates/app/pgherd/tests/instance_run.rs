//! `pgherd instance run` as a process, on real PostgreSQL 15: a primary bootstraps with its
//! application database, a replica clones it over TLS and streams, both report through
//! `/pg/status`, a kill -9 of the replica's postmaster is healed by its instance manager, and
//! SIGTERM stops PostgreSQL cleanly.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

use pgherd_instance_protocol::{
    Bootstrap, DesiredRole, InstanceSpec, InstanceStatus, PrimaryEndpoint,
};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use pgherd_testkit::free_port;

fn status(port: u16, ca: &Path) -> Option<InstanceStatus> {
    let (code, body) =
        pgherd_testkit::status_request(&format!("127.0.0.1:{port}"), "/pg/status", None, ca, None);
    (code == 200).then(|| serde_json::from_slice(&body).ok())?
}

fn wait_status(
    port: u16,
    ca: &Path,
    what: &str,
    check: impl Fn(&InstanceStatus) -> bool,
) -> InstanceStatus {
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut last = None;
    while Instant::now() < deadline {
        if let Some(s) = status(port, ca) {
            if check(&s) {
                return s;
            }
            last = Some(s);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("timed out waiting for {what}; last status: {last:?}");
}

struct Manager(Child);

impl Drop for Manager {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.0.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let _ = self.0.wait();
    }
}

fn spawn(spec: &Path) -> Manager {
    Manager(
        Command::new(env!("CARGO_BIN_EXE_pgherd"))
            .args(["instance", "run", "--spec"])
            .arg(spec)
            .spawn()
            .unwrap(),
    )
}

/// An instance spec for these tests: PostgreSQL 15 from `bin_dir` under `dir`, TLS with
/// `certificates`, on free ports (the status port given).
#[allow(clippy::too_many_arguments)]
fn test_spec(
    name: &str,
    dir: &Path,
    bin_dir: &Path,
    certificates: &pgherd_instance_protocol::CertificatePaths,
    status_port: u16,
    role: DesiredRole,
    bootstrap: Bootstrap,
    primary: Option<PrimaryEndpoint>,
    slots: Vec<String>,
) -> InstanceSpec {
    InstanceSpec {
        cluster: "c".into(),
        name: name.into(),
        generation: 1,
        pgdata: dir.join("pgdata"),
        wal_dir: None,
        socket_dir: dir.join("run"),
        log_dir: dir.join("log"),
        port: free_port(),
        status_port,
        bin_dir: bin_dir.to_path_buf(),
        major: 15,
        os_user: "postgres".into(),
        role,
        bootstrap,
        primary,
        upstream: None,
        settings: pgherd_testkit::replication_settings(certificates),
        pg_hba: vec![],
        pg_ident: vec!["local root postgres".into()],
        certificates: certificates.clone(),
        replica_slots: slots,
        slot_prefix: "_cnpg_".into(),
        fenced: false,
        restart_token: String::new(),
        roles: vec![],
        databases: vec![],
        tablespaces: vec![],
        tablespace_volumes: false,
        publications: vec![],
        subscriptions: vec![],
        peers: vec![],
        lease_ms: 0,
        lease_token: None,
        superuser_password: None,
        managed_extensions: Default::default(),
        wal_store: None,
        pooler_auth: false,
        discard_older_majors: false,
        files: Default::default(),
        listen_host: "127.0.0.1".into(),
        metrics_port: 0,
        monitoring: Default::default(),
    }
}

#[test]
fn primary_and_replica_managers() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let user = pgherd_instance_manager::OsUser::for_postgres("postgres").unwrap();
    user.own_dir(root, 0o755).unwrap();
    let bin = pgherd_testkit::binaries();

    let certs_dir = root.join("certs");
    let certificates = pgherd_testkit::write_certificates(&certs_dir, &user);
    let password_file = certs_dir.join("app-password");
    pgherd_testkit::write_private(&password_file, "s3cret'; DROP ROLE app; --\n", &user);

    let instance_dir = |name: &str| -> PathBuf {
        let d = root.join(name);
        user.own_dir(&d, 0o700).unwrap();
        d
    };
    let spec = |name: &str,
                role: DesiredRole,
                bootstrap: Bootstrap,
                primary: Option<PrimaryEndpoint>,
                slots: Vec<String>| {
        let d = instance_dir(name);
        test_spec(
            name,
            &d,
            &bin.dir,
            &certificates,
            free_port(),
            role,
            bootstrap,
            primary,
            slots,
        )
    };
    let primary = spec(
        "c-1",
        DesiredRole::Primary,
        Bootstrap::Initdb {
            initdb_args: vec!["--encoding=UTF8".into()],
            database: "app".into(),
            owner: "app".into(),
            owner_password_file: Some(password_file.clone()),
            post_init_sql: vec!["CREATE TABLE public.created_by_post_init (x int)".into()],
            post_init_template_sql: vec![],
            post_init_application_sql: vec!["CREATE TABLE written (id int primary key)".into()],
        },
        None,
        vec!["_cnpg_c_2".into()],
    );
    let replica = spec(
        "c-2",
        DesiredRole::Replica,
        Bootstrap::Clone,
        Some(PrimaryEndpoint {
            name: "c-1".into(),
            host: "127.0.0.1".into(),
            port: primary.port,
            slot: Some("_cnpg_c_2".into()),
            socket_dir: None,
        }),
        vec![],
    );
    let primary_spec = root.join("c-1/instance.json");
    let replica_spec = root.join("c-2/instance.json");
    std::fs::write(&primary_spec, serde_json::to_string(&primary).unwrap()).unwrap();
    std::fs::write(&replica_spec, serde_json::to_string(&replica).unwrap()).unwrap();

    let _p = spawn(&primary_spec);
    let p = wait_status(primary.status_port, &certificates.ca, "the primary", |s| {
        s.is_primary && s.ready && s.applied_generation == 1
    });
    assert_eq!(p.timeline_id, Some(1));
    let mut r_manager = spawn(&replica_spec);
    let r = wait_status(
        replica.status_port,
        &certificates.ca,
        "the replica to stream",
        |s| s.is_wal_receiver_active && s.ready,
    );
    assert!(!r.is_primary);
    wait_status(
        primary.status_port,
        &certificates.ca,
        "the primary to see its replica",
        |s| {
            s.replication_info
                .iter()
                .any(|i| i.application_name == "c-2" && i.state == "streaming")
        },
    );

    // The application database exists, owned by app, with the post-init objects, and the hostile
    // password was stored as a password, not run as SQL.
    let runtime = pgherd_testkit::runtime();
    runtime.block_on(async {
        let connect = |spec: &InstanceSpec, db: &str| {
            let mut c = tokio_postgres::Config::new();
            c.host_path(&spec.socket_dir)
                .port(spec.port)
                .user("postgres")
                .dbname(db);
            async move {
                let (client, conn) = c.connect(tokio_postgres::NoTls).await.unwrap();
                tokio::spawn(conn);
                client
            }
        };
        let pc = connect(&primary, "app").await;
        let owner: String = pc
            .query_one(
                "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = 'app'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(owner, "app");
        let roles: i64 = pc
            .query_one(
                "SELECT count(*) FROM pg_roles WHERE rolname = 'app' AND rolcanlogin",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(roles, 1);
        pc.batch_execute("INSERT INTO written VALUES (1), (2), (3)")
            .await
            .unwrap();
        let postgres_db = connect(&primary, "postgres").await;
        postgres_db
            .query_one("SELECT count(*) FROM public.created_by_post_init", &[])
            .await
            .unwrap();
        let rc = connect(&replica, "app").await;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let n: i64 = rc
                .query_one("SELECT count(*) FROM written", &[])
                .await
                .unwrap()
                .get(0);
            if n == 3 {
                break;
            }
            assert!(Instant::now() < deadline, "rows did not reach the replica");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });

    // kill -9 of the replica's postmaster: its instance manager starts it again.
    let old_pid = r.postmaster_pid.unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(old_pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let healed = wait_status(
        replica.status_port,
        &certificates.ca,
        "the replica to be restarted",
        |s| s.ready && s.postmaster_pid.is_some_and(|p| p != old_pid),
    );
    assert!(healed.is_wal_receiver_active);

    // SIGTERM stops PostgreSQL cleanly.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(r_manager.0.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    assert!(r_manager.0.wait().unwrap().success());
    assert!(
        !replica.pgdata.join("postmaster.pid").exists(),
        "PostgreSQL must be stopped"
    );
    std::mem::forget(r_manager);
}

/// On Kubernetes the manager starts with no spec: it serves on `$POD_IP` with the mounted
/// certificates and takes its spec over the protocol (`PUT /pg/spec`) from the controller's
/// certificate only, and only for its own instance.
#[test]
fn a_pushed_spec_is_taken_from_the_controller_only() {
    use pgherd_instance_manager::{status_client, tls};
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let user = pgherd_instance_manager::OsUser::for_postgres("postgres").unwrap();
    user.own_dir(root, 0o755).unwrap();
    let bin = pgherd_testkit::binaries();
    let certs_dir = root.join("certs");
    let certificates = pgherd_testkit::write_certificates(&certs_dir, &user);
    let ca = pgherd_controller::pki::PemPair {
        cert: std::fs::read_to_string(&certificates.ca).unwrap(),
        key: std::fs::read_to_string(certs_dir.join("ca.key")).unwrap(),
    };
    let issue = |name: &str| {
        let pair = pgherd_controller::pki::client_certificate(&ca, name, 1).unwrap();
        let (cert, key) = (
            root.join(format!("{name}.crt")),
            root.join(format!("{name}.key")),
        );
        std::fs::write(&cert, pair.cert).unwrap();
        std::fs::write(&key, pair.key).unwrap();
        (cert, key)
    };
    let (controller_cert, controller_key) = issue(pgherd_instance_protocol::CONTROLLER_COMMON_NAME);
    let (other_cert, other_key) = issue("app");
    let instance = root.join("c-1");
    user.own_dir(&instance, 0o700).unwrap();
    let status_port = free_port();
    let spec_path = instance.join("instance.json");
    let _manager = Manager(
        Command::new(env!("CARGO_BIN_EXE_pgherd"))
            .args(["instance", "run", "--spec"])
            .arg(&spec_path)
            .arg("--pushed-with-certificates")
            .arg(&certs_dir)
            .args(["--status-port", &status_port.to_string()])
            .env("POD_IP", "127.0.0.1")
            .env("POD_NAME", "c-1")
            .spawn()
            .unwrap(),
    );
    let spec = |name: &str| {
        test_spec(
            name,
            &instance,
            &bin.dir,
            &certificates,
            status_port,
            DesiredRole::Primary,
            Bootstrap::Initdb {
                initdb_args: vec![],
                database: "app".into(),
                owner: "app".into(),
                owner_password_file: None,
                post_init_sql: vec![],
                post_init_template_sql: vec![],
                post_init_application_sql: vec![],
            },
            None,
            vec![],
        )
    };
    let runtime = pgherd_testkit::runtime();
    let push = |spec: &InstanceSpec, client: Option<(&Path, &Path)>| {
        let config = match client {
            Some((cert, key)) => tls::client_config(&certificates.ca, cert, key),
            None => tls::anonymous_client_config(&certificates.ca),
        }
        .unwrap();
        let config = std::sync::Arc::new(config);
        runtime.block_on(status_client::push_spec(
            "127.0.0.1",
            status_port,
            &config,
            spec,
            Duration::from_secs(5),
        ))
    };
    // The endpoint serves before any spec: the kubelet's probes and the controller reach it.
    let deadline = Instant::now() + Duration::from_secs(30);
    while pgherd_testkit::status_request(
        &format!("127.0.0.1:{status_port}"),
        "/healthz",
        None,
        &certificates.ca,
        None,
    )
    .0 != 200
    {
        assert!(
            Instant::now() < deadline,
            "the manager never served /healthz"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let refused = push(&spec("c-1"), None).unwrap_err();
    assert!(refused.contains("401"), "{refused}");
    let refused = push(&spec("c-1"), Some((&other_cert, &other_key))).unwrap_err();
    assert!(refused.contains("401"), "{refused}");
    let refused = push(&spec("c-2"), Some((&controller_cert, &controller_key))).unwrap_err();
    assert!(
        refused.contains("409") && refused.contains("c-2"),
        "{refused}"
    );
    assert!(!spec_path.exists(), "a refused spec was written");
    push(&spec("c-1"), Some((&controller_cert, &controller_key))).unwrap();
    wait_status(status_port, &certificates.ca, "the pushed primary", |s| {
        s.is_primary && s.ready && s.applied_generation == 1
    });
}
