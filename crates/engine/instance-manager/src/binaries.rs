//! Where the PostgreSQL server binaries of a major version live on this machine.

use crate::InstanceError;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The server binaries (`initdb`, `postgres`, `pg_ctl`, ...) of one major version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgBinaries {
    pub dir: PathBuf,
    pub major: u32,
}

/// Directories searched for a major version, in order.
fn candidates(major: u32) -> Vec<PathBuf> {
    vec![
        PathBuf::from(format!("/usr/lib/postgresql/{major}/bin")),
        PathBuf::from(format!("/usr/pgsql-{major}/bin")),
        PathBuf::from(format!("/opt/postgresql/{major}/bin")),
    ]
}

/// The major version printed by `postgres --version` ("postgres (PostgreSQL) 15.14 (Debian ...)").
fn version_of(dir: &Path) -> Option<String> {
    let out = Command::new(dir.join("postgres"))
        .arg("--version")
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let version = text
        .split(')')
        .nth(1)?
        .split_whitespace()
        .next()?
        .to_string();
    Some(version)
}

impl PgBinaries {
    /// Find the binaries of `major`: in `explicit` if given, else in the usual places.
    pub fn locate(major: u32, explicit: Option<&Path>) -> Result<Self, InstanceError> {
        let dirs = match explicit {
            Some(dir) => vec![dir.to_path_buf()],
            None => candidates(major),
        };
        for dir in &dirs {
            if !dir.join("postgres").is_file() || !dir.join("initdb").is_file() {
                continue;
            }
            let found = version_of(dir).unwrap_or_default();
            let found_major = found.split('.').next().and_then(|m| m.parse::<u32>().ok());
            if found_major == Some(major) {
                return Ok(PgBinaries {
                    dir: dir.clone(),
                    major,
                });
            }
            if explicit.is_some() {
                return Err(InstanceError::WrongMajor {
                    dir: dir.clone(),
                    found,
                    wanted: major,
                });
            }
        }
        Err(InstanceError::BinariesMissing {
            major,
            searched: dirs
                .iter()
                .map(|d| d.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
        })
    }

    /// Path of one binary.
    pub fn bin(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_major_says_what_to_install() {
        let err = PgBinaries::locate(99, None).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("PostgreSQL 99 server binaries not found"),
            "{text}"
        );
        assert!(text.contains("apt-get install postgresql-99"), "{text}");
    }
}
