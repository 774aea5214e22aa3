//! Seed 000's stage stack (shared PostgreSQL cluster): the base Cluster as the seed describes it
//! (PostgreSQL 17.2, S3 backups with 30-day retention and gzip, PodMonitor), its daily
//! ScheduledBackup (`immediate`), and the overlay's credentials Secret — with the object store
//! reached at a test endpoint (moto) instead of S3.

use pgherd_testkit::moto::{ACCESS_KEY, SECRET_KEY};

/// The stage namespace.
pub const NAMESPACE: &str = "postgres-stage";
/// The Cluster's name.
pub const CLUSTER: &str = "postgres-shared";
/// The bucket the seed creates ("2. S3 Bucket Setup").
pub const BUCKET: &str = "cloudnativepg-backups";

/// The overlay's `postgres-backup-s3-credentials` Secret in `namespace`.
pub fn credentials(namespace: &str) -> String {
    format!("apiVersion: v1\nkind: Secret\nmetadata:\n  name: postgres-backup-s3-credentials\n  namespace: {namespace}\nstringData:\n  ACCESS_KEY_ID: {ACCESS_KEY}\n  ACCESS_SECRET_KEY: {SECRET_KEY}\n---\n")
}

/// The object store's endpoint and credentials, as lines under `barmanObjectStore:`.
pub fn s3(endpoint: &str) -> String {
    format!("      endpointURL: {endpoint}\n      s3Credentials:\n        accessKeyId:\n          name: postgres-backup-s3-credentials\n          key: ACCESS_KEY_ID\n        secretAccessKey:\n          name: postgres-backup-s3-credentials\n          key: ACCESS_SECRET_KEY\n")
}

/// The base Cluster with `instances` and its ScheduledBackup.
pub fn cluster(instances: u32, endpoint: &str) -> String {
    let s3 = s3(endpoint);
    format!("apiVersion: postgresql.cnpg.io/v1\nkind: Cluster\nmetadata:\n  name: {CLUSTER}\n  namespace: {NAMESPACE}\nspec:\n  instances: {instances}\n  imageName: ghcr.io/cloudnative-pg/postgresql:17.2\n  storage:\n    size: 10Gi\n    storageClass: longhorn-single-replica\n  monitoring:\n    enablePodMonitor: true\n  backup:\n    retentionPolicy: \"30d\"\n    barmanObjectStore:\n      destinationPath: s3://{BUCKET}/postgres-stage\n{s3}      wal:\n        compression: gzip\n      data:\n        compression: gzip\n---\napiVersion: postgresql.cnpg.io/v1\nkind: ScheduledBackup\nmetadata:\n  name: postgres-shared-daily\n  namespace: {NAMESPACE}\nspec:\n  schedule: \"0 0 0 * * *\"\n  immediate: true\n  backupOwnerReference: self\n  cluster:\n    name: {CLUSTER}\n")
}

/// The seed's point-in-time recovery manifest (`tests/fixtures/seeds`) with its credentials
/// filled in, `target` as its target time, and `image` when given.
pub fn pitr(fixture: &str, endpoint: &str, target: &str, image: Option<&str>) -> String {
    let mut out = fixture
        .replace(
            "      s3Credentials:\n        # Same credentials as original cluster\n",
            &s3(endpoint),
        )
        .replace("2025-10-06 12:00:00", target);
    if let Some(image) = image {
        out = out.replace(
            "  instances: 1\n",
            &format!("  instances: 1\n  imageName: {image}\n"),
        );
    }
    out
}
