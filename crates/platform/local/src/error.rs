//! Errors of the local platform.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum LocalError {
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
    #[error("{path}: {message}")]
    Corrupt { path: PathBuf, message: String },
    #[error(transparent)]
    Instance(#[from] pgherd_instance_manager::InstanceError),
    #[error(transparent)]
    Pki(#[from] pgherd_controller::pki::PkiError),
    #[error("no free port: {0}")]
    NoPort(std::io::Error),
    #[error("{0}")]
    Invalid(String),
}

impl LocalError {
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        LocalError::Io {
            action,
            path: path.into(),
            cause: source,
        }
    }
}
