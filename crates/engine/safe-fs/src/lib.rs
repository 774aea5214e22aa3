//! File operations that a privileged process (pgherd's control plane runs as root) can do in
//! directories another user owns — PostgreSQL's data, run and log directories belong to the
//! `postgres` user — without that user being able to redirect them.
//!
//! Every path is walked from `/` one component at a time with `O_NOFOLLOW`. A symbolic link is
//! followed only where its directory cannot be changed by anyone but root or this process's
//! user (or, in a sticky directory such as `/tmp`, when the link itself belongs to one of them,
//! the rule of the kernel's `protected_symlinks`). Everything after the walk acts on open file
//! descriptors: files are created exclusively under random names, their mode and owner are set
//! on the open file, and they are renamed into place within the same directory. Files whose
//! content, mode and owner already match are not rewritten.
//!
//! Depends on no other pgherd crate.
//!
//! Imports: none.

mod walk;
mod write;

pub use walk::Dir;
pub use write::Written;

use std::path::Path;

/// The owner to give a file or directory (a uid and gid).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owner {
    pub uid: u32,
    pub gid: u32,
}

/// Write `bytes` to `path` atomically with `mode` (and `owner`, when given), creating missing
/// parent directories (mode 0755 less the umask, owned by this process).
pub fn write_file(
    path: &Path,
    bytes: &[u8],
    mode: u32,
    owner: Option<Owner>,
) -> std::io::Result<Written> {
    let (dir, name) = split(path)?;
    Dir::open_or_create(dir)?.write(name, bytes, mode, owner)
}

/// Replace `path` with `bytes` even when it holds them already (see [`Dir::replace`]), creating
/// missing parent directories as [`write_file`] does.
pub fn replace_file(
    path: &Path,
    bytes: &[u8],
    mode: u32,
    owner: Option<Owner>,
) -> std::io::Result<Written> {
    let (dir, name) = split(path)?;
    Dir::open_or_create(dir)?.replace(name, bytes, mode, owner)
}

/// Create `path` (and missing parents) if needed and give it `mode` and `owner`, acting on the
/// open directory.
pub fn ensure_dir(path: &Path, mode: u32, owner: Option<Owner>) -> std::io::Result<Dir> {
    let dir = Dir::open_or_create(path)?;
    dir.set_mode_and_owner(mode, owner)?;
    Ok(dir)
}

/// Open `path` for appending (created with `mode` if missing), refusing anything but a regular
/// file with one link; `owner` is applied to the open file.
pub fn open_append(path: &Path, mode: u32, owner: Option<Owner>) -> std::io::Result<std::fs::File> {
    let (dir, name) = split(path)?;
    Dir::open_or_create(dir)?.open_append(name, mode, owner)
}

/// Read a whole file, refusing a symbolic link anywhere the walk does not trust; `None` when it
/// does not exist.
pub fn read_file(path: &Path) -> std::io::Result<Option<Vec<u8>>> {
    let (dir, name) = split(path)?;
    match Dir::open(dir) {
        Ok(dir) => dir.read(name),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// The last `bytes` bytes (at most) of a file, refusing links and special files as
/// [`read_file`] does; `None` when it does not exist.
pub fn read_file_tail(path: &Path, bytes: u64) -> std::io::Result<Option<Vec<u8>>> {
    let (dir, name) = split(path)?;
    match Dir::open(dir) {
        Ok(dir) => dir.read_tail(name, bytes),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Give the regular file `path` to `owner` (refusing links and files with several names).
pub fn chown_file(path: &Path, owner: Owner) -> std::io::Result<()> {
    let (dir, name) = split(path)?;
    Dir::open(dir)?.chown_file(name, owner)
}

/// A path's directory and its last component.
fn split(path: &Path) -> std::io::Result<(&Path, &std::ffi::OsStr)> {
    match (path.parent(), path.file_name()) {
        (Some(dir), Some(name)) => Ok((
            if dir.as_os_str().is_empty() {
                Path::new(".")
            } else {
                dir
            },
            name,
        )),
        _ => Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{}: not a file path", path.display()),
        )),
    }
}
