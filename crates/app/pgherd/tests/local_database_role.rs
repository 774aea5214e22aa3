//! `DatabaseRole` on the local platform, through the managed-roles code: the role is created
//! with its Secret's password, a name `spec.managed.roles` also declares is left to the
//! Cluster (the DatabaseRole says so), and `databaseRoleReclaimPolicy: delete` drops the role
//! before the object goes.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

use pgherd_testkit::local::{cluster_manifest, connect, Local};
use std::path::Path;
use std::time::{Duration, Instant};

const ROLES: &str = "apiVersion: postgresql.cnpg.io/v1
kind: DatabaseRole
metadata:
  name: analyst
spec:
  cluster:
    name: roles
  name: analyst
  login: true
  connectionLimit: 3
  passwordSecret:
    name: analyst-secret
  databaseRoleReclaimPolicy: delete
---
apiVersion: postgresql.cnpg.io/v1
kind: DatabaseRole
metadata:
  name: twice
spec:
  cluster:
    name: roles
  name: reporter
  login: true
---
apiVersion: v1
kind: Secret
metadata:
  name: analyst-secret
type: kubernetes.io/basic-auth
stringData:
  username: analyst
  password: Analyst-Pw-1
";

fn get(local: &Local, name: &str) -> Option<serde_json::Value> {
    let out = local.run(&["get", "databaserole", name, "-o", "json"]);
    out.status
        .success()
        .then(|| serde_json::from_slice(&out.stdout).unwrap())
}

fn wait(what: &str, local: &Local, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !check() {
        assert!(
            Instant::now() < deadline,
            "timed out: {what}\n{}",
            local.logs()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

fn logs_in(local: &Local) -> bool {
    let rw = local.status("roles").endpoints["rw"].clone();
    let mut config = local.app_config("roles", &rw);
    config.user("analyst").password("Analyst-Pw-1");
    pgherd_testkit::runtime().block_on(async {
        match connect(&config).await {
            Ok(c) => c.query_one("SELECT 1", &[]).await.is_ok(),
            Err(_) => false,
        }
    })
}

#[test]
fn database_roles_are_managed_like_managed_roles() {
    let local = Local::new(Path::new(env!("CARGO_BIN_EXE_pgherd")));
    let dir = tempfile::tempdir().unwrap();
    let cluster = cluster_manifest(
        "roles",
        1,
        "  managed:\n    roles:\n      - name: reporter\n        login: false\n",
    );
    local.up(dir.path(), "roles", &cluster, 1);
    let file = dir.path().join("roles.yaml");
    std::fs::write(&file, ROLES).unwrap();
    local.run_ok(&["apply", "-f", file.to_str().unwrap()]);

    wait("analyst applied", &local, || {
        get(&local, "analyst").is_some_and(|v| v["status"]["applied"] == true)
    });
    assert!(
        logs_in(&local),
        "analyst logs in with its Secret's password"
    );
    wait("the conflict reported", &local, || {
        get(&local, "twice").is_some_and(|v| {
            v["status"]["applied"] == false
                && v["status"]["message"]
                    .as_str()
                    .unwrap_or("")
                    .contains("spec.managed.roles")
        })
    });

    local.run_ok(&["delete", "databaserole", "analyst"]);
    wait("the role dropped and the object gone", &local, || {
        get(&local, "analyst").is_none()
    });
    assert!(!logs_in(&local), "the role was dropped");
}
