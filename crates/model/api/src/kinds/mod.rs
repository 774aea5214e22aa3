//! The kinds other than `Cluster`: Backup, ScheduledBackup, Pooler, Database, ObjectStore.

pub mod backup;
pub mod database;
pub mod object_store;
pub mod pooler;
pub mod scheduled_backup;
