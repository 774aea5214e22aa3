//! WAL on its own volume (`walStorage`): PGDATA's `pg_wal` becomes a link to the WAL directory
//! the spec names, whatever made the data (initdb, a clone, a restored backup). One step after
//! every bootstrap, idempotent and safe to repeat after a crash at any point:
//!
//! 1. `pg_wal` is a link already: done;
//! 2. `pg_wal` is a directory: its files are copied (and synced) to `<wal_dir>.tmp`, which is
//!    renamed to `wal_dir` (a different filesystem: no rename across); WAL already there — of
//!    data set aside by a rejoin — is itself set aside first, and the set-aside data's link
//!    follows it; then the directory is replaced by the link;
//! 3. `pg_wal` is missing (a crash between removing the directory and linking): the link is
//!    made to the copy already in place.

use crate::InstanceError;
use std::path::{Path, PathBuf};

fn io<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> InstanceError + 'a {
    move |e| InstanceError::io(what, path, e)
}

/// Copy the files and directories under `from` into the new directory `to`, synced.
fn copy_tree(from: &Path, to: &Path) -> Result<(), InstanceError> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(to)
        .map_err(io("cannot create", to))?;
    for entry in std::fs::read_dir(from).map_err(io("cannot list", from))? {
        let entry = entry.map_err(io("cannot list", from))?;
        let (source, target) = (entry.path(), to.join(entry.file_name()));
        let kind = entry.file_type().map_err(io("cannot read", &source))?;
        if kind.is_dir() {
            copy_tree(&source, &target)?;
        } else if kind.is_file() {
            std::fs::copy(&source, &target).map_err(io("cannot copy", &source))?;
            std::fs::File::open(&target)
                .and_then(|f| f.sync_all())
                .map_err(io("cannot sync", &target))?;
        }
    }
    std::fs::File::open(to)
        .and_then(|d| d.sync_all())
        .map_err(io("cannot sync", to))
}

/// Data directories set aside next to `pgdata` (`pgdata.diverged-…`) whose `pg_wal` links to
/// `wal_dir`: re-pointed at `aside` once that WAL moved there.
fn repoint_set_aside(pgdata: &Path, wal_dir: &Path, aside: &Path) {
    let (Some(parent), Some(name)) = (pgdata.parent(), pgdata.file_name()) else {
        return;
    };
    let prefix = format!("{}.", name.to_string_lossy());
    for entry in std::fs::read_dir(parent).into_iter().flatten().flatten() {
        if !entry.file_name().to_string_lossy().starts_with(&prefix) {
            continue;
        }
        let link = entry.path().join("pg_wal");
        if std::fs::read_link(&link).is_ok_and(|t| t == wal_dir) {
            let _ = std::fs::remove_file(&link);
            let _ = std::os::unix::fs::symlink(aside, &link);
        }
    }
}

/// Make `pgdata/pg_wal` a link to `wal_dir` (see the module's steps).
pub fn relocate(pgdata: &Path, wal_dir: &Path) -> Result<(), InstanceError> {
    let link = pgdata.join("pg_wal");
    match std::fs::symlink_metadata(&link) {
        Ok(m) if m.file_type().is_symlink() => {
            // Its target is made if missing (a new, empty WAL volume).
            let status = wal_dir.join("archive_status");
            if std::fs::read_link(&link).is_ok_and(|t| t == wal_dir) && !status.exists() {
                std::fs::create_dir_all(&status).map_err(io("cannot create", &status))?;
            }
            return Ok(());
        }
        Ok(m) if m.is_dir() => {
            let staging = PathBuf::from(format!("{}.tmp", wal_dir.display()));
            if staging.exists() {
                std::fs::remove_dir_all(&staging).map_err(io("cannot remove", &staging))?;
            }
            copy_tree(&link, &staging)?;
            if wal_dir.exists() {
                let aside = crate::set_aside::set_aside(wal_dir, "aside")?;
                repoint_set_aside(pgdata, wal_dir, &aside);
                tracing::warn!(
                    "WAL of earlier data in {} set aside as {}",
                    wal_dir.display(),
                    aside.display()
                );
            }
            std::fs::rename(&staging, wal_dir).map_err(io("cannot move into place", wal_dir))?;
            std::fs::remove_dir_all(&link).map_err(io("cannot remove", &link))?;
        }
        Ok(_) => {
            return Err(InstanceError::InvalidSetting(format!(
                "{} is neither a directory nor a link",
                link.display()
            )))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && wal_dir.exists() => {}
        Err(e) => return Err(InstanceError::io("cannot read", &link, e)),
    }
    std::os::unix::fs::symlink(wal_dir, &link).map_err(io("cannot link", &link))?;
    tracing::info!("WAL is in {}", wal_dir.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(dir: &Path, wal: &str) -> PathBuf {
        let pgdata = dir.join("pgdata");
        std::fs::create_dir_all(pgdata.join("pg_wal/archive_status")).unwrap();
        std::fs::write(pgdata.join("pg_wal/000000010000000000000001"), wal).unwrap();
        std::fs::write(pgdata.join("pg_wal/archive_status/x.ready"), "").unwrap();
        pgdata
    }

    #[test]
    fn wal_moves_to_its_volume_and_pg_wal_links_there() {
        let tmp = tempfile::tempdir().unwrap();
        let pgdata = data(tmp.path(), "first");
        let wal_dir = tmp.path().join("walvol/pg_wal");
        std::fs::create_dir_all(wal_dir.parent().unwrap()).unwrap();
        relocate(&pgdata, &wal_dir).unwrap();
        assert_eq!(std::fs::read_link(pgdata.join("pg_wal")).unwrap(), wal_dir);
        let segment = pgdata.join("pg_wal/000000010000000000000001");
        assert_eq!(std::fs::read_to_string(segment).unwrap(), "first");
        assert!(wal_dir.join("archive_status/x.ready").exists());
        // Again: nothing to do.
        relocate(&pgdata, &wal_dir).unwrap();
    }

    #[test]
    fn new_data_sets_the_old_wal_aside_with_the_data_it_belongs_to() {
        let tmp = tempfile::tempdir().unwrap();
        let wal_dir = tmp.path().join("walvol/pg_wal");
        std::fs::create_dir_all(wal_dir.parent().unwrap()).unwrap();
        let pgdata = data(tmp.path(), "old");
        relocate(&pgdata, &wal_dir).unwrap();
        // A rejoin sets the data aside and clones anew.
        let aside = tmp.path().join("pgdata.diverged-1");
        std::fs::rename(&pgdata, &aside).unwrap();
        let pgdata = data(tmp.path(), "new");
        relocate(&pgdata, &wal_dir).unwrap();
        let new = std::fs::read_to_string(pgdata.join("pg_wal/000000010000000000000001"));
        assert_eq!(new.unwrap(), "new");
        let old = std::fs::read_to_string(aside.join("pg_wal/000000010000000000000001"));
        assert_eq!(old.unwrap(), "old", "the set-aside data keeps its own WAL");
    }

    #[test]
    fn a_crash_before_the_link_is_finished_at_the_next_start() {
        let tmp = tempfile::tempdir().unwrap();
        let wal_dir = tmp.path().join("pg_wal_volume");
        std::fs::create_dir_all(&wal_dir).unwrap();
        std::fs::write(wal_dir.join("000000010000000000000001"), "kept").unwrap();
        let pgdata = tmp.path().join("pgdata");
        std::fs::create_dir_all(&pgdata).unwrap();
        relocate(&pgdata, &wal_dir).unwrap();
        let kept = std::fs::read_to_string(pgdata.join("pg_wal/000000010000000000000001"));
        assert_eq!(kept.unwrap(), "kept");
    }
}
