//! Seed 002's stack (SaaSOdoo). The seed lists its files without showing them; these are
//! written as it describes them: 3 instances of PostgreSQL 18.1 with 1–2 synchronous standbys,
//! superuser access (its runbook logs in as `postgres`), PodMonitor, the managed roles of its
//! table (and the owners of its Databases) with their `cnpg-*` Secrets labelled
//! `app.kubernetes.io/name: postgres` (its cleanup deletes them by that label), the five
//! Databases, and a 2-instance transaction-mode `rw` Pooler.

/// The namespace the seed runs in.
pub const NAMESPACE: &str = "saasodoo";
/// The Cluster's name.
pub const CLUSTER: &str = "postgres-cluster";
/// The Pooler's name.
pub const POOLER: &str = "postgres-cluster-pooler-rw";

/// Managed roles and their Secrets.
pub const ROLES: [(&str, &str); 8] = [
    ("auth_service", "cnpg-auth-service"),
    ("billing_service", "cnpg-billing-service"),
    ("instance_service", "cnpg-instance-service"),
    ("database_service", "cnpg-database-service"),
    ("readonly_user", "cnpg-readonly-user"),
    ("backup_user", "cnpg-backup-user"),
    ("notification_service", "cnpg-notification-service"),
    ("analytics_service", "cnpg-analytics-service"),
];

/// Databases and their owners.
pub const DATABASES: [(&str, &str); 5] = [
    ("auth", "auth_service"),
    ("billing", "billing_service"),
    ("instance", "instance_service"),
    ("communication", "notification_service"),
    ("analytics", "analytics_service"),
];

/// The password of `role` in its Secret.
pub fn password(role: &str) -> String {
    format!("{role}-pw")
}

/// `00-secrets.yaml`: one basic-auth Secret per managed role.
pub fn secrets() -> String {
    let mut out = String::new();
    for (role, secret) in ROLES {
        out.push_str(&format!("apiVersion: v1\nkind: Secret\nmetadata:\n  name: {secret}\n  namespace: {NAMESPACE}\n  labels:\n    app.kubernetes.io/name: postgres\ntype: kubernetes.io/basic-auth\nstringData:\n  username: {role}\n  password: {}\n---\n", password(role)));
    }
    out
}

/// `04-cluster.yaml` with `instances`.
pub fn cluster(instances: u32) -> String {
    let mut managed = String::new();
    for (role, secret) in ROLES {
        let extra = match role {
            "backup_user" => "        replication: true\n",
            _ => "",
        };
        managed.push_str(&format!("      - name: {role}\n        ensure: present\n        login: true\n{extra}        passwordSecret:\n          name: {secret}\n"));
    }
    format!("apiVersion: postgresql.cnpg.io/v1\nkind: Cluster\nmetadata:\n  name: {CLUSTER}\n  namespace: {NAMESPACE}\nspec:\n  instances: {instances}\n  imageName: ghcr.io/cloudnative-pg/postgresql:18.1\n  minSyncReplicas: 1\n  maxSyncReplicas: 2\n  enableSuperuserAccess: true\n  storage:\n    size: 20Gi\n    storageClass: rook-cephfs\n  monitoring:\n    enablePodMonitor: true\n  managed:\n    roles:\n{managed}")
}

/// `07-databases.yaml`.
pub fn databases() -> String {
    let mut out = String::new();
    for (db, owner) in DATABASES {
        out.push_str(&format!("---\napiVersion: postgresql.cnpg.io/v1\nkind: Database\nmetadata:\n  name: {db}\n  namespace: {NAMESPACE}\nspec:\n  name: {db}\n  owner: {owner}\n  cluster:\n    name: {CLUSTER}\n"));
    }
    out
}

/// `10-pgbouncer-pooler.yaml`.
pub fn pooler() -> String {
    format!("---\napiVersion: postgresql.cnpg.io/v1\nkind: Pooler\nmetadata:\n  name: {POOLER}\n  namespace: {NAMESPACE}\nspec:\n  cluster:\n    name: {CLUSTER}\n  instances: 2\n  type: rw\n  pgbouncer:\n    poolMode: transaction\n")
}
