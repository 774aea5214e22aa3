//! PostgreSQL domain rules with no I/O: server versions (and reading the major version out of
//! a container image reference), configuration parameter (GUC) rules — which ones the operator
//! owns, which ones are forbidden, what the defaults are — and the grammar of `pg_hba.conf`
//! lines, WAL positions and segment names, and the quoting of SQL identifiers and literals.
//! Everything here is a pure function of its input.
//!
//! Must not depend on any other pgherd crate, on I/O, or on an async runtime.
//!
//! Imports: none.

pub mod conf;
pub mod control_file;
pub mod guc;
pub mod hba;
pub mod quote;
pub mod version;
pub mod wal;

pub use version::{MajorVersion, VersionError};
pub use wal::{Lsn, Timeline};
