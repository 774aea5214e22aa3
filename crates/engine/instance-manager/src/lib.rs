//! The instance manager's engine: everything about running one PostgreSQL instance — finding
//! the server binaries for a major version, preparing a data directory owned by an
//! unprivileged user, bootstrapping it with `initdb`, writing its configuration, and starting,
//! checking and stopping the postmaster.
//!
//! Depends on the model crates and the engines it runs for its instance (backup, metrics,
//! pooler, safe-fs); it is the only component that touches PGDATA. It must not depend on a
//! platform (Kubernetes or local) or on the app.
//!
//! Imports: pgherd-api, pgherd-backup, pgherd-instance-protocol, pgherd-metrics, pgherd-pooler, pgherd-postgres, pgherd-safe-fs.

pub mod backup_runs;
pub mod base_backup;
pub mod binaries;
pub mod bootstrap;
mod crash_loop;
pub mod declarative;
pub mod demotion;
mod duties;
pub mod error;
pub mod http;
pub mod lease;
pub mod liveness;
pub mod logical;
pub mod major_upgrade;
pub mod metrics;
pub mod observe;
pub mod old_binaries;
pub mod os_user;
pub mod ping;
pub mod pooler;
pub mod postgres;
mod postgres_log;
pub mod process;
pub mod pushed_files;
mod rejoin;
pub mod replication;
mod set_aside;
mod settings;
mod sql;
pub mod status_client;
pub mod supervisor;
pub mod tls;
pub mod upstream;
pub mod wal;
pub mod wal_dir;

pub use binaries::PgBinaries;
pub use error::InstanceError;
pub use os_user::OsUser;
pub use postgres::{InitDbOptions, Postgres, ShutdownMode};
