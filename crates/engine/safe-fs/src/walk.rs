//! Walking a path from `/` without following links another user controls.

use crate::Owner;
use nix::errno::Errno;
use nix::fcntl::{openat, readlinkat, AtFlags, OFlag};
use nix::sys::stat::{fstat, fstatat, mkdirat, FileStat, Mode, SFlag};
use std::collections::VecDeque;
use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

/// Links followed in one walk before giving up (the kernel's own limit).
const MAX_LINKS: usize = 40;

/// A directory opened by a safe walk; every operation on it acts relative to the open
/// descriptor, so renaming or replacing a directory on its path afterwards changes nothing.
#[derive(Debug)]
pub struct Dir {
    pub(crate) fd: OwnedFd,
    pub(crate) path: PathBuf,
}

impl Dir {
    /// Open an existing directory.
    pub fn open(path: &Path) -> io::Result<Dir> {
        walk(path, false)
    }

    /// Open a directory, creating missing components (mode 0755 less the umask, owned by this
    /// process). Existing directories are left as they are.
    pub fn open_or_create(path: &Path) -> io::Result<Dir> {
        walk(path, true)
    }

    /// The path this directory was opened by (for messages).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// This directory's owner (uid) and permission bits.
    pub fn owner_and_mode(&self) -> io::Result<(u32, u32)> {
        let st = fstat(self.fd.as_fd()).map_err(|e| self.error("cannot inspect", e))?;
        Ok((st.st_uid, st.st_mode & 0o7777))
    }

    /// Set this directory's mode and (when given) owner.
    pub fn set_mode_and_owner(&self, mode: u32, owner: Option<Owner>) -> io::Result<()> {
        let st = fstat(self.fd.as_fd()).map_err(|e| self.error("cannot inspect", e))?;
        let owner_differs = owner.is_some_and(|o| st.st_uid != o.uid || st.st_gid != o.gid);
        if !owner_differs && st.st_mode & 0o7777 == mode {
            return Ok(());
        }
        // A path handle cannot be chmodded or chowned: open the same directory for real.
        let dir = openat(
            self.fd.as_fd(),
            ".",
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| self.error("cannot open", e))?;
        if let Some(o) = owner.filter(|_| owner_differs) {
            std::os::unix::fs::fchown(&dir, Some(o.uid), Some(o.gid))
                .map_err(|e| self.io_error("cannot change the owner of", e))?;
        }
        if st.st_mode & 0o7777 != mode {
            nix::sys::stat::fchmod(dir.as_fd(), Mode::from_bits_truncate(mode))
                .map_err(|e| self.error("cannot set permissions of", e))?;
        }
        Ok(())
    }

    /// Open a subdirectory (one component, not followed if it is a link).
    pub fn subdir(&self, name: &OsStr) -> io::Result<Dir> {
        check_name(name)?;
        let fd = open_dir_at(&self.fd, name).map_err(|e| self.child_error(name, e))?;
        Ok(Dir {
            fd,
            path: self.path.join(name),
        })
    }

    pub(crate) fn error(&self, what: &str, e: Errno) -> io::Error {
        self.io_error(what, io::Error::from(e))
    }

    pub(crate) fn io_error(&self, what: &str, e: io::Error) -> io::Error {
        io::Error::new(e.kind(), format!("{what} {}: {e}", self.path.display()))
    }

    pub(crate) fn child_error(&self, name: &OsStr, e: Errno) -> io::Error {
        let e = io::Error::from(e);
        io::Error::new(e.kind(), format!("{}: {e}", self.path.join(name).display()))
    }
}

/// A single path component that stays inside its directory.
pub(crate) fn check_name(name: &OsStr) -> io::Result<()> {
    let bytes = name.as_bytes();
    if bytes.is_empty() || bytes == b"." || bytes == b".." || bytes.contains(&b'/') {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{:?} is not a file name", name),
        ));
    }
    Ok(())
}

/// Open a directory as a path handle (`O_PATH`): it needs only search permission on the
/// parent, as resolving the path would, not read permission on the directory itself (the
/// PostgreSQL user must pass through root's 0711 state directory).
fn open_dir_at(dir: &OwnedFd, name: &OsStr) -> nix::Result<OwnedFd> {
    openat(
        dir.as_fd(),
        name,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
}

fn walk(path: &Path, create: bool) -> io::Result<Dir> {
    let absolute = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()?.join(path)
    };
    let root = openat(
        nix::fcntl::AT_FDCWD,
        "/",
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(io::Error::from)?;
    let fail = |what: String, e: io::Error| {
        io::Error::new(e.kind(), format!("{}: {what}: {e}", absolute.display()))
    };
    let mut stack: Vec<OwnedFd> = vec![root];
    let mut pending: VecDeque<OsString> = components(&absolute);
    let mut links = 0;
    let mut creations = 0;
    while let Some(name) = pending.pop_front() {
        if name == ".." {
            if stack.len() > 1 {
                stack.pop();
            }
            continue;
        }
        let Some(parent) = stack.last() else {
            break;
        };
        match open_dir_at(parent, &name) {
            Ok(fd) => stack.push(fd),
            Err(Errno::ENOENT) if create && creations < 4 * MAX_LINKS => {
                creations += 1;
                match mkdirat(
                    parent.as_fd(),
                    name.as_os_str(),
                    Mode::from_bits_truncate(0o755),
                ) {
                    Ok(()) | Err(Errno::EEXIST) => pending.push_front(name),
                    Err(e) => {
                        return Err(fail(
                            format!("cannot create {}", name.to_string_lossy()),
                            e.into(),
                        ))
                    }
                }
            }
            Err(Errno::ELOOP | Errno::ENOTDIR) => {
                let link = fstatat(
                    parent.as_fd(),
                    name.as_os_str(),
                    AtFlags::AT_SYMLINK_NOFOLLOW,
                )
                .map_err(|e| fail(name.to_string_lossy().into_owned(), e.into()))?;
                if kind(&link) != SFlag::S_IFLNK {
                    return Err(fail(
                        format!("{} is not a directory", name.to_string_lossy()),
                        Errno::ENOTDIR.into(),
                    ));
                }
                let dir = fstat(parent.as_fd()).map_err(io::Error::from)?;
                if !may_follow(&dir, &link) {
                    return Err(fail(
                        format!(
                            "refusing to follow the symbolic link {} in a directory that user {} can change",
                            name.to_string_lossy(),
                            dir.st_uid
                        ),
                        io::ErrorKind::PermissionDenied.into(),
                    ));
                }
                links += 1;
                if links > MAX_LINKS {
                    return Err(fail("too many symbolic links".into(), Errno::ELOOP.into()));
                }
                let target = readlinkat(parent.as_fd(), name.as_os_str())
                    .map_err(|e| fail(name.to_string_lossy().into_owned(), e.into()))?;
                let target = PathBuf::from(target);
                if target.is_absolute() {
                    stack.truncate(1);
                }
                for component in components(&target).into_iter().rev() {
                    pending.push_front(component);
                }
            }
            Err(e) => return Err(fail(name.to_string_lossy().into_owned(), e.into())),
        }
    }
    let fd = stack
        .pop()
        .ok_or_else(|| fail("empty path".into(), io::ErrorKind::InvalidInput.into()))?;
    Ok(Dir { fd, path: absolute })
}

/// A path's components as names to open (`..` kept, `.` and the root dropped).
fn components(path: &Path) -> VecDeque<OsString> {
    path.components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_os_string()),
            Component::ParentDir => Some(OsString::from("..")),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => None,
        })
        .collect()
}

pub(crate) fn kind(st: &FileStat) -> SFlag {
    SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits())
}

/// Whether a link found in `dir` may be followed: the directory can be changed only by root or
/// this process's user, or it is sticky and the link belongs to one of them.
fn may_follow(dir: &FileStat, link: &FileStat) -> bool {
    let me = nix::unistd::geteuid().as_raw();
    let trusted = |uid: u32| uid == 0 || uid == me;
    if !trusted(dir.st_uid) {
        return false;
    }
    if dir.st_mode & 0o022 == 0 {
        return true;
    }
    dir.st_mode & 0o1000 != 0 && trusted(link.st_uid)
}
