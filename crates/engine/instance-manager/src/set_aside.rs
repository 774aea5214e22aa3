//! Files kept for salvage: renamed beside where they were, never deleted (data a rejoin could
//! not rewind, WAL of earlier data, tablespace files of set-aside data).

use crate::InstanceError;
use std::path::{Path, PathBuf};

/// Rename `path` to `<path>.<tag>-<unix seconds>` (beside it: the same filesystem) and return
/// the new path.
pub(crate) fn set_aside(path: &Path, tag: &str) -> Result<PathBuf, InstanceError> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let aside = PathBuf::from(format!("{}.{tag}-{now}", path.display()));
    std::fs::rename(path, &aside).map_err(|e| InstanceError::io("cannot set aside", path, e))?;
    Ok(aside)
}
