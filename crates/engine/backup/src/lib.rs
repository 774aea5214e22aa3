//! The backup engine: object stores (S3 and S3-compatible, GCS, Azure, local directories;
//! retries, timeouts, cancellation, fault injection), barman-cloud's object layout read and
//! written byte-compatibly (`backup.info`, WAL paths and compressions), WAL archive and
//! restore, base backup tarballs, the backup catalog and retention.
//!
//! Depends on `model/api` only (and the object-store ecosystem); never on the controller, the
//! platforms or the instance manager — they call it.
//!
//! Imports: pgherd-api, pgherd-postgres.

pub mod backup_info;
pub mod backup_session;
pub mod base_backup;
mod byte_count;
pub mod catalog;
pub mod catalog_summary;
pub mod compression;
pub mod gzip_reader;
pub mod layout;
pub mod parallel_gzip;
pub mod pylit;
mod read_ahead;
mod reporting;
pub mod restore;
pub mod retention;
pub mod schedule;
pub mod store;
pub mod timestamp;
mod unpack;
pub mod wal_archive;
pub mod wal_restore;
mod write_back;

pub use backup_info::{BackupInfo, BackupStatus, Tablespace};
pub use compression::Compression;
pub use layout::{BackupId, ServerPrefix, WalFileKind, WalFileName};
pub use store::{ObjectStore, StoreError};
pub use wal_archive::{
    archive_many, archive_wal, archive_with_ready, check_archive_usable, check_empty_archive,
    ArchiveOutcome, WalError,
};
pub use wal_restore::{restore_wal, restore_wal_prefetching, RestoredWal};
