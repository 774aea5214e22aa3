//! The unprivileged operating-system user PostgreSQL runs as. PostgreSQL refuses to run as
//! root, and pgherd never tries: when pgherd itself runs as root it starts every PostgreSQL
//! process as this user and hands it the directories it needs.

use crate::InstanceError;
use nix::unistd::{Gid, Uid, User};
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

    /// Create `dir` (and parents) and give it to this user with mode `mode`.
    pub fn own_dir(&self, dir: &Path, mode: u32) -> Result<(), InstanceError> {
        use std::os::unix::fs::PermissionsExt;
        std::fs::create_dir_all(dir).map_err(|e| InstanceError::io("cannot create", dir, e))?;
        if Uid::effective().is_root() {
            std::os::unix::fs::chown(dir, Some(self.uid), Some(self.gid))
                .map_err(|e| InstanceError::io("cannot change the owner of", dir, e))?;
        }
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode))
            .map_err(|e| InstanceError::io("cannot set permissions of", dir, e))
    }

    /// Give an existing file to this user.
    pub fn own_file(&self, file: &Path) -> Result<(), InstanceError> {
        if Uid::effective().is_root() {
            std::os::unix::fs::chown(file, Some(self.uid), Some(self.gid))
                .map_err(|e| InstanceError::io("cannot change the owner of", file, e))?;
        }
        Ok(())
    }
}
