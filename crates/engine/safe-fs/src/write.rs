//! Files inside an opened [`Dir`]: exclusive creation, mode and owner on the open file, rename
//! within the directory.

use crate::walk::{check_name, kind, Dir};
use crate::Owner;
use nix::errno::Errno;
use nix::fcntl::{openat, renameat, OFlag};
use nix::sys::stat::{fstat, FileStat, Mode, SFlag};
use nix::unistd::{unlinkat, UnlinkatFlags};
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::AsFd;

/// What a write did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    /// The file already held these bytes with this mode and owner; it was not touched.
    Unchanged,
    /// The file was created or replaced.
    Replaced,
}

/// Temporary names tried before giving up (each is random; a clash means someone is guessing).
const TEMPORARY_ATTEMPTS: usize = 16;

impl Dir {
    /// Make file `name` hold `bytes` with `mode` and `owner`: left alone when it already does,
    /// else replaced as [`Dir::replace`] does.
    pub fn write(
        &self,
        name: &OsStr,
        bytes: &[u8],
        mode: u32,
        owner: Option<Owner>,
    ) -> io::Result<Written> {
        check_name(name)?;
        if self.holds(name, bytes, mode, owner)? {
            return Ok(Written::Unchanged);
        }
        self.replace(name, bytes, mode, owner)
    }

    /// Replace file `name` with `bytes`, `mode` and `owner` even when it holds them already (its
    /// modification time says when it was last written): a temporary file created exclusively,
    /// then renamed over the old name.
    pub fn replace(
        &self,
        name: &OsStr,
        bytes: &[u8],
        mode: u32,
        owner: Option<Owner>,
    ) -> io::Result<Written> {
        check_name(name)?;
        for _ in 0..TEMPORARY_ATTEMPTS {
            let mut tmp = OsString::from(".");
            tmp.push(name);
            tmp.push(format!(".{:016x}.tmp", random()));
            let fd = match openat(
                self.fd.as_fd(),
                tmp.as_os_str(),
                OFlag::O_WRONLY
                    | OFlag::O_CREAT
                    | OFlag::O_EXCL
                    | OFlag::O_NOFOLLOW
                    | OFlag::O_CLOEXEC,
                Mode::from_bits_truncate(0o600),
            ) {
                Ok(fd) => fd,
                Err(Errno::EEXIST) => continue,
                Err(e) => return Err(self.child_error(&tmp, e)),
            };
            let mut file = File::from(fd);
            let done = (|| {
                file.write_all(bytes)?;
                file.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(mode))?;
                if let Some(o) = owner {
                    std::os::unix::fs::fchown(&file, Some(o.uid), Some(o.gid))?;
                }
                renameat(self.fd.as_fd(), tmp.as_os_str(), self.fd.as_fd(), name)
                    .map_err(io::Error::from)
            })();
            return match done {
                Ok(()) => Ok(Written::Replaced),
                Err(e) => {
                    let _ = unlinkat(self.fd.as_fd(), tmp.as_os_str(), UnlinkatFlags::NoRemoveDir);
                    Err(self.io_error(&format!("cannot write {} in", name.to_string_lossy()), e))
                }
            };
        }
        Err(self.io_error(
            "cannot create a temporary file in",
            io::ErrorKind::AlreadyExists.into(),
        ))
    }

    /// Read file `name`; `None` when it does not exist. Links and special files are refused.
    pub fn read(&self, name: &OsStr) -> io::Result<Option<Vec<u8>>> {
        check_name(name)?;
        let Some((mut file, st)) = self.open_regular(name, OFlag::O_RDONLY, None)? else {
            return Ok(None);
        };
        let mut out = Vec::with_capacity(usize::try_from(st.st_size).unwrap_or(0));
        file.read_to_end(&mut out)
            .map_err(|e| self.io_error(&format!("cannot read {} in", name.to_string_lossy()), e))?;
        Ok(Some(out))
    }

    /// The last `bytes` bytes (at most) of file `name`; `None` when it does not exist. Links and
    /// special files are refused.
    pub fn read_tail(&self, name: &OsStr, bytes: u64) -> io::Result<Option<Vec<u8>>> {
        use std::io::{Seek, SeekFrom};
        check_name(name)?;
        let Some((mut file, st)) = self.open_regular(name, OFlag::O_RDONLY, None)? else {
            return Ok(None);
        };
        let size = u64::try_from(st.st_size).unwrap_or(0);
        let error = |e| self.io_error(&format!("cannot read {} in", name.to_string_lossy()), e);
        file.seek(SeekFrom::Start(size.saturating_sub(bytes)))
            .map_err(error)?;
        let mut out = Vec::new();
        file.take(bytes).read_to_end(&mut out).map_err(error)?;
        Ok(Some(out))
    }

    /// Open file `name` for appending, creating it with `mode` if it is missing; `owner` is set
    /// on the open file.
    pub fn open_append(&self, name: &OsStr, mode: u32, owner: Option<Owner>) -> io::Result<File> {
        check_name(name)?;
        let flags = OFlag::O_WRONLY | OFlag::O_APPEND | OFlag::O_CREAT;
        let Some((file, st)) = self.open_regular(name, flags, Some(mode))? else {
            return Err(self.child_error(name, Errno::ENOENT));
        };
        if let Some(o) = owner {
            if st.st_uid != o.uid || st.st_gid != o.gid {
                std::os::unix::fs::fchown(&file, Some(o.uid), Some(o.gid))
                    .map_err(|e| self.io_error("cannot change the owner of a file in", e))?;
            }
        }
        Ok(file)
    }

    /// Give regular file `name` to `owner`.
    pub fn chown_file(&self, name: &OsStr, owner: Owner) -> io::Result<()> {
        check_name(name)?;
        let Some((file, _)) = self.open_regular(name, OFlag::O_RDONLY, None)? else {
            return Err(self.child_error(name, Errno::ENOENT));
        };
        std::os::unix::fs::fchown(&file, Some(owner.uid), Some(owner.gid))
            .map_err(|e| self.io_error("cannot change the owner of a file in", e))
    }

    /// Remove file `name` (not a directory); missing is fine.
    pub fn remove_file(&self, name: &OsStr) -> io::Result<()> {
        check_name(name)?;
        match unlinkat(self.fd.as_fd(), name, UnlinkatFlags::NoRemoveDir) {
            Ok(()) | Err(Errno::ENOENT) => Ok(()),
            Err(e) => Err(self.child_error(name, e)),
        }
    }

    /// Open `name` without following a link and without blocking on a FIFO; anything but a
    /// regular file with a single name is refused (a hard link could be another user's file).
    fn open_regular(
        &self,
        name: &OsStr,
        flags: OFlag,
        create_mode: Option<u32>,
    ) -> io::Result<Option<(File, FileStat)>> {
        let flags = flags | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC;
        let mode = Mode::from_bits_truncate(create_mode.unwrap_or(0));
        let fd = match openat(self.fd.as_fd(), name, flags, mode) {
            Ok(fd) => fd,
            Err(Errno::ENOENT) => return Ok(None),
            Err(Errno::ELOOP) => {
                return Err(io::Error::new(
                    io::ErrorKind::PermissionDenied,
                    format!(
                        "{} is a symbolic link; refusing to follow it",
                        self.path.join(name).display()
                    ),
                ))
            }
            Err(e) => return Err(self.child_error(name, e)),
        };
        let st = fstat(fd.as_fd()).map_err(|e| self.child_error(name, e))?;
        if kind(&st) != SFlag::S_IFREG || st.st_nlink > 1 {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!(
                    "{} is not a regular file with a single name; refusing to use it",
                    self.path.join(name).display()
                ),
            ));
        }
        let file = File::from(fd);
        // O_NONBLOCK was only for the open; regular files ignore it, but clear it anyway.
        let _ = nix::fcntl::fcntl(
            &file,
            nix::fcntl::FcntlArg::F_SETFL(flags & OFlag::O_APPEND),
        );
        Ok(Some((file, st)))
    }

    /// Whether `name` already holds exactly `bytes`, `mode` and `owner`.
    fn holds(
        &self,
        name: &OsStr,
        bytes: &[u8],
        mode: u32,
        owner: Option<Owner>,
    ) -> io::Result<bool> {
        let opened = match self.open_regular(name, OFlag::O_RDONLY, None) {
            Ok(opened) => opened,
            // Whatever is there (a link, a FIFO) is replaced by the rename, never followed.
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied => None,
            Err(e) => return Err(e),
        };
        let Some((mut file, st)) = opened else {
            return Ok(false);
        };
        let owner_matches = owner.is_none_or(|o| st.st_uid == o.uid && st.st_gid == o.gid);
        if st.st_mode & 0o7777 != mode
            || !owner_matches
            || u64::try_from(st.st_size).ok() != u64::try_from(bytes.len()).ok()
        {
            return Ok(false);
        }
        let mut current = Vec::with_capacity(bytes.len());
        file.read_to_end(&mut current)
            .map_err(|e| self.io_error("cannot read a file in", e))?;
        Ok(current == bytes)
    }
}

/// A random 64-bit number for temporary names (std's hasher keys come from the OS's random
/// source; the counter and clock make successive values differ).
fn random() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
    );
    h.write_u32(std::process::id());
    h.finish()
}
