//! Seed 001's three-node cluster. The seed shows its parameter table and backup settings, not
//! the manifest: written as it describes them (3 instances, superuser access, its parameters
//! and pg_hba lines, S3 backups with 30-day retention, a daily backup at 2 AM with
//! `immediate`), the object store at a test endpoint (moto).

use pgherd_testkit::moto::{ACCESS_KEY, SECRET_KEY};

/// The namespace.
pub const NAMESPACE: &str = "postgres";
/// The Cluster's name.
pub const CLUSTER: &str = "postgres-cluster";
/// The bucket.
pub const BUCKET: &str = "postgres-backups";
/// The image the seed's restore manifest names (the seed says 16.2; its manifests 16.3).
pub const IMAGE: &str = "ghcr.io/cloudnative-pg/postgresql:16.3";

/// The credentials Secret, the Cluster running `image`, its ScheduledBackup.
pub fn stack(endpoint: &str, image: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: Secret
metadata:
  name: postgres-backup-s3
  namespace: {NAMESPACE}
stringData:
  ACCESS_KEY_ID: {ACCESS_KEY}
  ACCESS_SECRET_KEY: {SECRET_KEY}
---
apiVersion: postgresql.cnpg.io/v1
kind: Cluster
metadata:
  name: postgres-cluster
  namespace: {NAMESPACE}
spec:
  instances: 3
  imageName: {image}
  enableSuperuserAccess: true
  storage:
    size: 50Gi
    storageClass: nfs-postgres-v2
  postgresql:
    parameters:
      max_connections: "200"
      shared_buffers: "128MB"
      effective_cache_size: "3GB"
      work_mem: "8MB"
      wal_buffers: "16MB"
      maintenance_work_mem: "64MB"
      max_wal_size: "1GB"
      checkpoint_timeout: "5min"
    pg_hba:
      - host all all 10.0.0.0/8 scram-sha-256
      - host all all 172.16.0.0/12 scram-sha-256
      - host all all 192.168.0.0/16 scram-sha-256
  backup:
    barmanObjectStore:
      destinationPath: s3://postgres-backups/postgres-cluster
      endpointURL: {endpoint}
      s3Credentials:
        accessKeyId:
          name: postgres-backup-s3
          key: ACCESS_KEY_ID
        secretAccessKey:
          name: postgres-backup-s3
          key: ACCESS_SECRET_KEY
    retentionPolicy: "30d"
---
apiVersion: postgresql.cnpg.io/v1
kind: ScheduledBackup
metadata:
  name: postgres-cluster-daily
  namespace: {NAMESPACE}
spec:
  schedule: "0 0 2 * * *"
  immediate: true
  backupOwnerReference: self
  cluster:
    name: postgres-cluster
"#
    )
}
