//! The kinds other than `Cluster`: Backup, ScheduledBackup, Pooler, Database, ObjectStore,
//! Publication, Subscription, ImageCatalog, ClusterImageCatalog and DatabaseRole.

pub mod backup;
pub mod database;
pub mod database_role;
pub mod image_catalog;
pub mod object_store;
pub mod pooler;
pub mod publication;
pub mod scheduled_backup;
pub mod subscription;
