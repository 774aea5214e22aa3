//! Unpacking a base backup's tar into a directory. Regular files, nearly all of a data
//! directory's bytes, are written here in 1 MiB writes (the `tar` crate copies with an 8 KiB
//! buffer: 128,000 `write` calls per gigabyte restored); every other entry (directories,
//! links) is unpacked by the `tar` crate. The same rules hold for both: a path with `..` or
//! one whose parent resolves outside the destination (through a link unpacked earlier) is
//! refused, a file is created anew (an existing one is removed first, never written through),
//! and permissions (without set-id bits) and modification times are kept.

use std::collections::HashSet;
use std::fs::{self, FileTimes, OpenOptions, Permissions};
use std::io::{self, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, SystemTime};

/// Bytes per write of a file's contents.
const WRITE_SIZE: usize = 1024 * 1024;

/// Unpacks every entry of the tar read from `reader` into `dest` (which exists) and hands the
/// reader back, positioned after the archive's end marker.
pub(crate) fn unpack<R: Read>(reader: R, dest: &Path) -> io::Result<R> {
    let dest = dest.canonicalize()?;
    let mut archive = tar::Archive::new(reader);
    archive.set_preserve_permissions(true);
    archive.set_overwrite(true);
    {
        let mut files = FileWriter {
            dest: &dest,
            buffer: vec![0; WRITE_SIZE],
            checked_parents: HashSet::new(),
        };
        // Directories last (as the `tar` crate does): a read-only directory must not stop its
        // own files from being written; they are created as needed meanwhile.
        let mut directories = Vec::new();
        for entry in archive.entries()? {
            let mut entry = entry?;
            let kind = entry.header().entry_type();
            if kind.is_dir() {
                directories.push(entry);
            } else if kind.is_file() {
                files.write(&mut entry)?;
            } else if !entry.unpack_in(&dest)? {
                return Err(refused(&entry.path_bytes()));
            }
        }
        // Parents before children would let a read-only parent stop its children's times and
        // modes: deepest first.
        directories.sort_by(|a, b| b.path_bytes().cmp(&a.path_bytes()));
        for mut directory in directories {
            if !directory.unpack_in(&dest)? {
                return Err(refused(&directory.path_bytes()));
            }
        }
    }
    Ok(archive.into_inner())
}

fn refused(path: &[u8]) -> io::Error {
    let path = String::from_utf8_lossy(path);
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!(
            "the archive's entry {path:?} would be written outside the destination (a `..` in \
             its path, or a link to elsewhere before it): the backup is damaged or was tampered \
             with; restore another one"
        ),
    )
}

/// Writes regular files.
struct FileWriter<'a> {
    /// The canonical destination.
    dest: &'a Path,
    buffer: Vec<u8>,
    /// Parent directories already created and found inside `dest`.
    checked_parents: HashSet<PathBuf>,
}

impl FileWriter<'_> {
    fn write<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>) -> io::Result<()> {
        let path = self.target(entry)?;
        let parent = path.parent().unwrap_or(self.dest);
        if !self.checked_parents.contains(parent) {
            fs::create_dir_all(parent)?;
            if !parent.canonicalize()?.starts_with(self.dest) {
                return Err(refused(&entry.path_bytes()));
            }
            self.checked_parents.insert(parent.to_path_buf());
        }
        let context = |e: io::Error| io::Error::new(e.kind(), format!("{}: {e}", path.display()));
        let mut file = match create_new(&path) {
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                fs::remove_file(&path).map_err(context)?;
                create_new(&path)
            }
            other => other,
        }
        .map_err(context)?;
        let expected = entry.size();
        let mut written = 0u64;
        loop {
            let n = match entry.read(&mut self.buffer) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            file.write_all(&self.buffer[..n]).map_err(context)?;
            written += n as u64;
        }
        if written != expected {
            let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("{name}: the archive ends inside it ({written} of {expected} bytes)"),
            ));
        }
        let header = entry.header();
        if let Ok(mtime) = header.mtime() {
            let at = SystemTime::UNIX_EPOCH + Duration::from_secs(mtime);
            file.set_times(FileTimes::new().set_modified(at).set_accessed(at))
                .map_err(context)?;
        }
        let mode = header.mode()? & 0o777;
        file.set_permissions(Permissions::from_mode(mode))
            .map_err(context)
    }

    /// The entry's path below `dest`: `/` and `.` components dropped, `..` refused.
    fn target<R: Read>(&self, entry: &tar::Entry<'_, R>) -> io::Result<PathBuf> {
        let mut path = self.dest.to_path_buf();
        for part in entry.path()?.components() {
            match part {
                Component::Prefix(_) | Component::RootDir | Component::CurDir => {}
                Component::ParentDir => return Err(refused(&entry.path_bytes())),
                Component::Normal(part) => path.push(part),
            }
        }
        if path == self.dest {
            return Err(refused(&entry.path_bytes()));
        }
        Ok(path)
    }
}

fn create_new(path: &Path) -> io::Result<fs::File> {
    OpenOptions::new().write(true).create_new(true).open(path)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn header(path: &str, kind: tar::EntryType, size: u64, mode: u32) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_path(path).unwrap();
        h.set_entry_type(kind);
        h.set_size(size);
        h.set_mode(mode);
        h.set_mtime(1_700_000_000);
        h.set_cksum();
        h
    }

    fn archive(build: impl FnOnce(&mut tar::Builder<Vec<u8>>)) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        build(&mut b);
        b.into_inner().unwrap()
    }

    #[test]
    fn files_links_and_directories_are_unpacked_with_modes_and_times() {
        let big: Vec<u8> = (0..3 * WRITE_SIZE + 5).map(|i| (i % 253) as u8).collect();
        let tar = archive(|b| {
            b.append(
                &header("base/", tar::EntryType::Directory, 0, 0o700),
                io::empty(),
            )
            .unwrap();
            b.append(
                &header(
                    "base/1/big",
                    tar::EntryType::Regular,
                    big.len() as u64,
                    0o4755,
                ),
                &big[..],
            )
            .unwrap();
            b.append(
                &header("empty", tar::EntryType::Regular, 0, 0o600),
                io::empty(),
            )
            .unwrap();
            let mut link = header("pg_tblspc/16384", tar::EntryType::Symlink, 0, 0o777);
            link.set_link_name("/somewhere/else").unwrap();
            link.set_cksum();
            b.append(&link, io::empty()).unwrap();
        });
        let dir = tempfile::tempdir().unwrap();
        let mut rest = unpack(io::Cursor::new(tar), dir.path()).unwrap();
        let mut after = Vec::new();
        rest.read_to_end(&mut after).unwrap();
        assert!(after.iter().all(|b| *b == 0));
        let file = dir.path().join("base/1/big");
        assert_eq!(fs::read(&file).unwrap(), big);
        let meta = fs::metadata(&file).unwrap();
        assert_eq!(meta.mode() & 0o7777, 0o755, "no set-id bit from an archive");
        assert_eq!(meta.mtime(), 1_700_000_000);
        assert_eq!(
            fs::metadata(dir.path().join("base")).unwrap().mode() & 0o777,
            0o700
        );
        assert_eq!(fs::read(dir.path().join("empty")).unwrap(), b"");
        assert_eq!(
            fs::read_link(dir.path().join("pg_tblspc/16384")).unwrap(),
            Path::new("/somewhere/else")
        );
    }

    #[test]
    fn an_existing_file_is_replaced_not_written_through() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let victim = outside.path().join("victim");
        fs::write(&victim, b"keep").unwrap();
        std::os::unix::fs::symlink(&victim, dir.path().join("PG_VERSION")).unwrap();
        let tar = archive(|b| {
            b.append(
                &header("PG_VERSION", tar::EntryType::Regular, 3, 0o600),
                &b"15\n"[..],
            )
            .unwrap();
        });
        unpack(io::Cursor::new(tar), dir.path()).unwrap();
        assert_eq!(fs::read(&victim).unwrap(), b"keep");
        assert_eq!(fs::read(dir.path().join("PG_VERSION")).unwrap(), b"15\n");
    }

    #[test]
    fn paths_leaving_the_destination_are_refused() {
        let outside = tempfile::tempdir().unwrap();
        // Through `..`, and through a link the archive itself unpacked before.
        let dotdot = archive(|b| {
            let mut h = header("x", tar::EntryType::Regular, 1, 0o600);
            h.as_gnu_mut().unwrap().name[..6].copy_from_slice(b"../esc");
            h.set_cksum();
            b.append(&h, &b"x"[..]).unwrap();
        });
        let through_link = archive(|b| {
            let mut link = header("pg_tblspc/1", tar::EntryType::Symlink, 0, 0o777);
            link.set_link_name(outside.path()).unwrap();
            link.set_cksum();
            b.append(&link, io::empty()).unwrap();
            b.append(
                &header("pg_tblspc/1/f", tar::EntryType::Regular, 1, 0o600),
                &b"x"[..],
            )
            .unwrap();
        });
        for tar in [dotdot, through_link] {
            let dir = tempfile::tempdir().unwrap();
            let e = unpack(io::Cursor::new(tar), dir.path()).unwrap_err();
            assert!(e.to_string().contains("outside the destination"), "{e}");
            assert_eq!(fs::read_dir(outside.path()).unwrap().count(), 0);
        }
    }

    #[test]
    fn a_file_cut_short_is_an_error() {
        let mut tar = archive(|b| {
            b.append(
                &header("f", tar::EntryType::Regular, 4096, 0o600),
                &[7u8; 4096][..],
            )
            .unwrap();
        });
        tar.truncate(512 + 1000);
        let dir = tempfile::tempdir().unwrap();
        assert!(unpack(io::Cursor::new(tar), dir.path()).is_err());
    }
}
