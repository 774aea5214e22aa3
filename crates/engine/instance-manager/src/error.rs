//! Errors of the instance manager, one variant per failure a caller handles differently.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum InstanceError {
    #[error("TLS: {0}")]
    Tls(String),
    #[error("PostgreSQL {major} server binaries not found (looked in {searched}); install them, e.g. `apt-get install postgresql-{major}`, or point --postgres-bin at their directory")]
    BinariesMissing { major: u32, searched: String },
    #[error("{tool} is not installed in {dir} (PostgreSQL {major}); {purpose} needs it: install the full server package, e.g. `apt-get install postgresql-{major}`, or point --postgres-bin at a directory that has it")]
    ToolMissing {
        tool: &'static str,
        dir: PathBuf,
        major: u32,
        purpose: &'static str,
    },
    #[error("the binaries in {dir} are PostgreSQL {found}, not {wanted}")]
    WrongMajor {
        dir: PathBuf,
        found: String,
        wanted: u32,
    },
    #[error("operating-system user {0:?} does not exist; create it or choose another with --postgres-user")]
    NoSuchUser(String),
    #[error("refusing to run PostgreSQL as root; choose an unprivileged user")]
    RootUser,
    /// The cause is in the message (not a `source`: a chain printed whole would say it twice).
    #[error("{action} {path}: {cause}")]
    Io {
        action: &'static str,
        path: PathBuf,
        cause: std::io::Error,
    },
    /// A file operation through `pgherd_safe_fs` (its message names the path and the cause).
    #[error("{0}")]
    Files(std::io::Error),
    #[error("{command} failed ({status}): {output}")]
    CommandFailed {
        command: String,
        status: String,
        output: String,
    },
    #[error("PostgreSQL did not accept connections within {seconds}s; see {log}")]
    NotReady { seconds: u64, log: PathBuf },
    #[error("invalid bootstrap setting: {0}")]
    InvalidSetting(String),
    #[error("{context}: {message}")]
    Sql {
        context: &'static str,
        message: String,
    },
    #[error("{0} cannot be used in SQL")]
    Unquotable(String),
    /// PostgreSQL keeps stopping on its own; the next start waits.
    #[error("PostgreSQL stopped on its own {exits} time(s) in a row (last: {last}); next start in {seconds}s")]
    CrashLoop {
        exits: u32,
        seconds: u64,
        last: String,
    },
    /// A step that waits for something else to happen first; tried again on the next pass.
    #[error("{0}")]
    NotYet(&'static str),
    /// A backup, restore or object-store failure (its message names the store and what to do).
    #[error("{0}")]
    Backup(String),
}

/// How many exits in a row, each before PostgreSQL became ready, say that it cannot start
/// as configured (rather than a crash it recovers from).
pub const CRASH_LOOP_NEEDS_USER: u32 = 3;

impl InstanceError {
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        InstanceError::Io {
            action,
            path: path.into(),
            cause: source,
        }
    }

    /// Whether trying again cannot help: the spec (or the machine) must change first (missing
    /// binaries or user, a setting or recovery source that cannot work, PostgreSQL exiting
    /// at every start). `local up` stops waiting on such an error.
    pub fn needs_user(&self) -> bool {
        match self {
            InstanceError::BinariesMissing { .. }
            | InstanceError::WrongMajor { .. }
            | InstanceError::ToolMissing { .. }
            | InstanceError::NoSuchUser(_)
            | InstanceError::RootUser
            | InstanceError::InvalidSetting(_)
            | InstanceError::Unquotable(_) => true,
            InstanceError::CrashLoop { exits, .. } => *exits >= CRASH_LOOP_NEEDS_USER,
            _ => false,
        }
    }

    /// A stable category, for metrics labels and events.
    pub fn category(&self) -> &'static str {
        match self {
            InstanceError::BinariesMissing { .. }
            | InstanceError::WrongMajor { .. }
            | InstanceError::ToolMissing { .. } => "binaries",
            InstanceError::NoSuchUser(_) | InstanceError::RootUser => "os-user",
            InstanceError::Io { .. } | InstanceError::Files(_) => "io",
            InstanceError::CommandFailed { .. } => "command",
            InstanceError::NotReady { .. } => "not-ready",
            InstanceError::NotYet(_) => "waiting",
            InstanceError::CrashLoop { .. } => "crash-loop",
            InstanceError::InvalidSetting(_) => "configuration",
            InstanceError::Sql { .. } => "sql",
            InstanceError::Unquotable(_) => "configuration",
            InstanceError::Backup(_) => "backup",
            InstanceError::Tls(_) => "tls",
        }
    }
}
