//! The old major's PostgreSQL for a major-upgrade job where the new image has only the new one
//! (Kubernetes): the job's first step runs in the *old* image and copies its installation
//! (`pg_config`'s `bindir`, `pkglibdir` and `sharedir`, each under the same path below the
//! destination, so the relocatable binaries find their libraries and shared files from where
//! they now are), and names the copied `bindir` in `bindir.txt`; the upgrade step, in the new
//! image, runs `pg_upgrade --old-bindir` on that copy. CloudNativePG's job does the same.

use crate::postgres::run;
use crate::{InstanceError, OsUser, PgBinaries, Postgres};
use std::path::{Component, Path, PathBuf};
use std::process::Command;

/// In the destination: the copied `bindir`.
pub const BINDIR_FILE: &str = "bindir.txt";

/// What `pg_config` says of this image's PostgreSQL, for each directory copied.
const COPIED: [&str; 3] = ["bindir", "pkglibdir", "sharedir"];

/// Copy this image's PostgreSQL installation into `into` (emptied first); the copied
/// `bindir`.
pub fn copy_installation(into: &Path) -> Result<PathBuf, InstanceError> {
    match std::fs::remove_dir_all(into) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(InstanceError::io("cannot empty", into, e))
        }
        _ => {}
    }
    std::fs::create_dir_all(into).map_err(|e| InstanceError::io("cannot create", into, e))?;
    let mut bindir = None;
    for what in COPIED {
        let source = pg_config(what)?;
        let target = below(into, &source)?;
        std::fs::create_dir_all(&target)
            .map_err(|e| InstanceError::io("cannot create", &target, e))?;
        let mut cp = Command::new("cp");
        cp.arg("-a")
            .arg(format!("{}/.", source.display()))
            .arg(&target);
        run(
            cp,
            &format!("cp -a {} {}", source.display(), target.display()),
        )?;
        if what == "bindir" {
            bindir = Some(target);
        }
    }
    let bindir = bindir.unwrap_or_default();
    let file = into.join(BINDIR_FILE);
    std::fs::write(&file, format!("{}\n", bindir.display()))
        .map_err(|e| InstanceError::io("cannot write", &file, e))?;
    Ok(bindir)
}

/// The binaries [`copy_installation`] left in `from`, which must be of `major`.
pub fn copied(from: &Path, major: u32) -> Result<PgBinaries, InstanceError> {
    let file = from.join(BINDIR_FILE);
    let text = std::fs::read_to_string(&file).map_err(|e| {
        InstanceError::io(
            "cannot read (the job's step copying the old image's PostgreSQL did not finish)",
            &file,
            e,
        )
    })?;
    PgBinaries::locate(major, Some(Path::new(text.trim())))
}

/// The stopped old server of data `pgdata` (major `major`) as the upgrade step sees it: the
/// binaries [`copy_installation`] left in `from`, this process's user, its socket in
/// `socket_dir`, its log in the temporary directory (made if missing: a pod's scratch
/// directory may not hold it yet).
pub fn old_server(
    pgdata: PathBuf,
    major: u32,
    from: &Path,
    socket_dir: PathBuf,
    port: u16,
) -> Result<Postgres, InstanceError> {
    let logs = std::env::temp_dir();
    std::fs::create_dir_all(&logs).map_err(|e| InstanceError::io("cannot create", &logs, e))?;
    Ok(Postgres {
        binaries: copied(from, major)?,
        pgdata,
        socket_dir,
        port,
        user: OsUser::for_postgres("postgres")?,
        log_file: logs.join("major-upgrade-postgres.log"),
    })
}

/// `pg_config --WHAT`.
fn pg_config(what: &str) -> Result<PathBuf, InstanceError> {
    let mut command = Command::new("pg_config");
    command.arg(format!("--{what}"));
    let out = run(command, &format!("pg_config --{what} (in the old image)"))?;
    let dir = PathBuf::from(out.trim());
    if !dir.is_absolute() {
        return Err(InstanceError::InvalidSetting(format!(
            "pg_config --{what} says {out:?}: not an absolute path"
        )));
    }
    Ok(dir)
}

/// `path` (absolute) below `root`, refusing `..`.
fn below(root: &Path, path: &Path) -> Result<PathBuf, InstanceError> {
    let mut out = root.to_path_buf();
    for part in path.components() {
        match part {
            Component::Normal(p) => out.push(p),
            Component::RootDir | Component::CurDir => {}
            _ => {
                return Err(InstanceError::InvalidSetting(format!(
                    "{}: a path with `..` cannot be copied",
                    path.display()
                )))
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_keeps_its_path_below_the_destination() {
        assert_eq!(
            below(
                Path::new("/controller/old"),
                Path::new("/usr/lib/postgresql/15/bin")
            )
            .unwrap(),
            PathBuf::from("/controller/old/usr/lib/postgresql/15/bin")
        );
        assert!(below(Path::new("/x"), Path::new("/usr/../etc")).is_err());
    }
}
