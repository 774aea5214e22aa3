//! The CloudNativePG-compatible API: the `postgresql.cnpg.io/v1` kinds (Cluster, Backup,
//! ScheduledBackup, Pooler, Database, Publication, Subscription, ImageCatalog,
//! ClusterImageCatalog, DatabaseRole) and `barmancloud.cnpg.io/v1` ObjectStore, with their
//! defaults, their validation (every error at once, each with a field path and a fix), the
//! parsing of manifest files (multi-document YAML or JSON, plus the `v1` Secrets and ConfigMaps
//! users keep beside them), and the CRDs generated from the types.
//!
//! Pure: no I/O beyond what the caller hands in. Must not depend on any engine, platform or
//! app crate.
//!
//! Imports: pgherd-postgres.

pub mod barman;
pub mod cluster;
pub mod common;
pub mod kinds;

pub use cluster::{Cluster, ClusterSpec, ClusterStatus};
pub use kinds::backup::{Backup, BackupSpec};
pub use kinds::database::{Database, DatabaseSpec};
pub use kinds::database_role::{DatabaseRole, DatabaseRoleSpec};
pub use kinds::image_catalog::{ClusterImageCatalog, ImageCatalog, ImageCatalogSpec};
pub use kinds::object_store::{ObjectStore, ObjectStoreSpec};
pub use kinds::pooler::{Pooler, PoolerSpec};
pub use kinds::publication::{Publication, PublicationSpec};
pub use kinds::scheduled_backup::{ScheduledBackup, ScheduledBackupSpec};
pub use kinds::subscription::{Subscription, SubscriptionSpec};
pub mod crd;
pub mod cron;
pub mod defaults;
pub mod diagnostics;
pub mod document;
pub mod duration;
pub mod limits;
pub mod manifest;
mod metadata;
pub mod object;
pub mod quantity;
pub mod replica_token;
pub mod structural;
pub mod validate;
pub mod yaml11;
