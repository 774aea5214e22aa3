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

/// Client tools that work against servers of older majors (`pg_basebackup` down to 9.1, `psql`
/// down to 9.2): borrowed from a newer major when a server-only build lacks them. `pg_rewind`,
/// `pg_controldata` and `pg_upgrade` must match their data and are never borrowed.
const BACKWARD_COMPATIBLE: &[&str] = &["pg_basebackup", "psql"];

/// How many majors above its own a borrowed tool may come from.
const NEWER_MAJORS: u32 = 10;

/// Directories searched for a major version, in order: Debian's, the PGDG RPMs', pgherd's
/// install script's, then whatever `pg_config` on the PATH reports (used when its major matches).
fn candidates(major: u32) -> Vec<PathBuf> {
    let mut dirs = major_dirs(major);
    if let Some(dir) = pg_config_bindir() {
        if !dirs.contains(&dir) {
            dirs.push(dir);
        }
    }
    dirs
}

/// The directories that hold `major`'s binaries and no other's.
pub(crate) fn major_dirs(major: u32) -> Vec<PathBuf> {
    vec![
        PathBuf::from(format!("/usr/lib/postgresql/{major}/bin")),
        PathBuf::from(format!("/usr/pgsql-{major}/bin")),
        PathBuf::from(format!("/opt/postgresql/{major}/bin")),
    ]
}

/// `pg_config --bindir`, when a `pg_config` is on the PATH.
fn pg_config_bindir() -> Option<PathBuf> {
    let out = Command::new("pg_config").arg("--bindir").output().ok()?;
    if !out.status.success() {
        return None;
    }
    let dir = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (!dir.is_empty()).then(|| PathBuf::from(dir))
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

    /// Path of one binary: this major's own, or, for a client tool that works against older
    /// servers ([`BACKWARD_COMPATIBLE`]) which a server-only build lacks, the same tool of the
    /// nearest newer major installed.
    pub fn bin(&self, name: &str) -> PathBuf {
        let own = self.dir.join(name);
        if own.is_file() || !BACKWARD_COMPATIBLE.contains(&name) {
            return own;
        }
        // Only directories of a known newer major (not `pg_config`'s, which may be older), then
        // client-tool sets of this major or a newer one (`/opt/postgresql/tools-<major>`).
        ((self.major + 1)..=(self.major + NEWER_MAJORS))
            .flat_map(major_dirs)
            .chain(
                (self.major..=(self.major + NEWER_MAJORS))
                    .map(|m| PathBuf::from(format!("/opt/postgresql/tools-{m}/bin"))),
            )
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
            .unwrap_or(own)
    }

    /// Path of a tool that server-only builds may lack, or a clear error naming `purpose`.
    pub fn tool(
        &self,
        name: &'static str,
        purpose: &'static str,
    ) -> Result<PathBuf, InstanceError> {
        let path = self.bin(name);
        if path.is_file() {
            Ok(path)
        } else {
            Err(InstanceError::ToolMissing {
                tool: name,
                dir: self.dir.clone(),
                major: self.major,
                purpose,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_only_builds_borrow_client_tools_from_a_newer_major_only() {
        let tmp = std::env::temp_dir().join(format!("pgherd-bin-{}", std::process::id()));
        std::fs::create_dir_all(&tmp).unwrap_or_default();
        let old = PgBinaries {
            dir: tmp.clone(),
            major: 9,
        };
        // No newer major's pg_rewind is ever used; pg_basebackup falls back when one exists.
        assert_eq!(old.bin("pg_rewind"), tmp.join("pg_rewind"));
        let borrowed = old.bin("pg_basebackup");
        if borrowed != tmp.join("pg_basebackup") {
            assert!(borrowed.is_file());
            assert!(!borrowed.starts_with(&tmp));
        }
        assert!(old.tool("pg_rewind", "rejoining").is_err());
        let _ = std::fs::remove_dir_all(&tmp);
    }

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
