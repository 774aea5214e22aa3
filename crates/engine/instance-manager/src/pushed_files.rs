//! The files a controller sends with a pushed spec ([`PushedFiles`]: passwords, object-store
//! credentials), written beside the spec before it takes effect: each mode 0600 under a
//! temporary name and renamed into place, unchanged ones left alone, and those no longer sent
//! removed.

use pgherd_instance_protocol::{pushed_files_dir as dir, PushedFiles};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;

/// Replace `path` with `bytes` (mode 0600) in one rename, through a temporary name no pushed
/// file can have (a leading dot).
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.tmp"));
    let _ = std::fs::remove_file(&tmp);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// Write `files` into [`dir`]`(spec_path)` and remove what is there and not in `files`.
pub fn store(spec_path: &Path, files: &PushedFiles) -> Result<(), String> {
    if let Some(bad) = files.0.keys().find(|n| !PushedFiles::valid_name(n)) {
        return Err(format!("pushed file name {bad:?} is not a plain file name"));
    }
    let dir = dir(spec_path);
    match std::fs::symlink_metadata(&dir) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => return Err(format!("{} is not a directory", dir.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::DirBuilder::new()
                .mode(0o700)
                .create(&dir)
                .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        }
        Err(e) => return Err(format!("cannot read {}: {e}", dir.display())),
    }
    for (name, content) in &files.0 {
        let path = dir.join(name);
        if std::fs::read(&path).is_ok_and(|old| old == content.as_bytes()) {
            continue;
        }
        write_private(&path, content.as_bytes())
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    let entries =
        std::fs::read_dir(&dir).map_err(|e| format!("cannot list {}: {e}", dir.display()))?;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !files.0.contains_key(&name) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use pgherd_instance_protocol::PUSHED_FILES_DIR;
    use std::os::unix::fs::PermissionsExt;

    fn files(pairs: &[(&str, &str)]) -> PushedFiles {
        PushedFiles(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    #[test]
    fn written_private_replaced_and_pruned() {
        let tmp = tempfile::tempdir().unwrap();
        let spec = tmp.path().join("instance.json");
        store(&spec, &files(&[("role-0", "s3cret"), ("store.json", "{}")])).unwrap();
        let role = dir(&spec).join("role-0");
        assert_eq!(std::fs::read_to_string(&role).unwrap(), "s3cret");
        let mode = std::fs::metadata(&role).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let dir_mode = std::fs::metadata(dir(&spec)).unwrap().permissions().mode();
        assert_eq!(dir_mode & 0o777, 0o700);
        store(&spec, &files(&[("role-0", "changed")])).unwrap();
        assert_eq!(std::fs::read_to_string(&role).unwrap(), "changed");
        assert!(!dir(&spec).join("store.json").exists(), "no longer sent");
    }

    #[test]
    fn names_that_could_leave_the_directory_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let spec = tmp.path().join("instance.json");
        for bad in ["../x", "a/b", ".hidden", "", ".."] {
            assert!(store(&spec, &files(&[(bad, "x")])).is_err(), "{bad:?}");
        }
        assert!(!tmp.path().join("x").exists());
    }

    #[test]
    fn a_link_in_place_of_the_directory_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(elsewhere.path(), tmp.path().join(PUSHED_FILES_DIR)).unwrap();
        let spec = tmp.path().join("instance.json");
        assert!(store(&spec, &files(&[("role-0", "x")])).is_err());
        assert!(!elsewhere.path().join("role-0").exists());
    }
}
