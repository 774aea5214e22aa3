//! The unprivileged operating-system user PostgreSQL runs as. PostgreSQL refuses to run as
//! root, and pgherd never tries: when pgherd itself runs as root it starts every PostgreSQL
//! process as this user and hands it the directories it needs.

use crate::InstanceError;
use nix::unistd::{Gid, Uid, User};
use pgherd_safe_fs::Owner;
use std::path::Path;
use std::process::Command;

/// An operating-system user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OsUser {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: std::path::PathBuf,
}

impl OsUser {
    /// Look up a user by name; root is refused.
    pub fn lookup(name: &str) -> Result<Self, InstanceError> {
        let user = User::from_name(name)
            .ok()
            .flatten()
            .ok_or_else(|| InstanceError::NoSuchUser(name.to_string()))?;
        if user.uid.is_root() {
            return Err(InstanceError::RootUser);
        }
        Ok(OsUser {
            name: user.name,
            uid: user.uid.as_raw(),
            gid: user.gid.as_raw(),
            home: user.dir,
        })
    }

    /// The user this process runs as, when it is not root.
    pub fn current() -> Result<Self, InstanceError> {
        let uid = Uid::effective();
        if uid.is_root() {
            return Err(InstanceError::RootUser);
        }
        let user = User::from_uid(uid)
            .ok()
            .flatten()
            .ok_or_else(|| InstanceError::NoSuchUser(uid.to_string()))?;
        Ok(OsUser {
            name: user.name,
            uid: uid.as_raw(),
            gid: Gid::effective().as_raw(),
            home: user.dir,
        })
    }

    /// The user to run PostgreSQL as: `name` when this process is root, else this process's own
    /// user (an unprivileged process cannot switch users).
    pub fn for_postgres(name: &str) -> Result<Self, InstanceError> {
        if Uid::effective().is_root() {
            Self::lookup(name)
        } else {
            Self::current()
        }
    }

    /// Make `command` run as this user (a no-op when this process already is this user).
    pub fn apply(&self, command: &mut Command) {
        use std::os::unix::process::CommandExt;
        if Uid::effective().as_raw() != self.uid {
            command.uid(self.uid).gid(self.gid);
        }
        self.set_env(command);
    }

    /// The user's environment (HOME, USER, LOGNAME) for `command`, without switching to it.
    pub fn set_env(&self, command: &mut Command) {
        command
            .env("HOME", &self.home)
            .env("USER", &self.name)
            .env("LOGNAME", &self.name);
    }

    /// The owner to give files this process creates for this user: `Some` only when this
    /// process is root (nobody else can give files away) and is not this user.
    pub fn owner(&self) -> Option<Owner> {
        (Uid::effective().is_root() && self.uid != 0).then_some(Owner {
            uid: self.uid,
            gid: self.gid,
        })
    }

    /// Create `dir` (and parents) and give it to this user with mode `mode`, acting on the open
    /// directory: a link planted on the way is not followed (see `pgherd_safe_fs`).
    pub fn own_dir(&self, dir: &Path, mode: u32) -> Result<(), InstanceError> {
        pgherd_safe_fs::ensure_dir(dir, mode, self.owner())
            .map(|_| ())
            .map_err(InstanceError::Files)
    }

    /// Give an existing regular file to this user (a link or a hard link is refused).
    pub fn own_file(&self, file: &Path) -> Result<(), InstanceError> {
        match self.owner() {
            Some(owner) => pgherd_safe_fs::chown_file(file, owner).map_err(InstanceError::Files),
            None => Ok(()),
        }
    }

    /// Write `bytes` to `path` atomically for this user, with `mode`.
    pub fn write_file(&self, path: &Path, bytes: &[u8], mode: u32) -> Result<(), InstanceError> {
        pgherd_safe_fs::write_file(path, bytes, mode, self.owner())
            .map(|_| ())
            .map_err(InstanceError::Files)
    }

    /// Open `path` for appending as this user's file (created with mode 0600).
    pub fn open_log(&self, path: &Path) -> Result<std::fs::File, InstanceError> {
        pgherd_safe_fs::open_append(path, 0o600, self.owner()).map_err(InstanceError::Files)
    }
}
