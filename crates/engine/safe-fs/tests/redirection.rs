//! The attacks the root control plane must resist: another user owns a directory the root
//! process writes into and plants links there (issue: "the postgres OS user can become root").
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

use pgherd_safe_fs::{
    chown_file, ensure_dir, open_append, read_file, read_file_tail, write_file, Owner, Written,
};
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::Path;

/// The unprivileged user that plays the attacker (`nobody`).
const OTHER: Owner = Owner {
    uid: 65534,
    gid: 65534,
};

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// A directory owned by the attacker, inside a private temporary directory.
fn attacker_dir(root: &Path) -> std::path::PathBuf {
    let dir = root.join("instance");
    std::fs::create_dir(&dir).unwrap();
    std::os::unix::fs::chown(&dir, Some(OTHER.uid), Some(OTHER.gid)).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    dir
}

/// A root-owned file the attacker wants.
fn victim(root: &Path) -> std::path::PathBuf {
    let path = root.join("shadow");
    std::fs::write(&path, "root:secret\n").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path
}

fn assert_untouched(victim: &Path) {
    let meta = std::fs::symlink_metadata(victim).unwrap();
    assert_eq!(std::fs::read_to_string(victim).unwrap(), "root:secret\n");
    assert_eq!((meta.uid(), meta.gid()), (0, 0), "victim still root's");
    assert_eq!(meta.permissions().mode() & 0o7777, 0o600);
}

/// A private directory holding the attacker's directory and root's victim file; `None` (and a
/// note) when not root, which these tests need to own files as another user.
fn scene() -> Option<(tempfile::TempDir, std::path::PathBuf, std::path::PathBuf)> {
    if !is_root() {
        eprintln!("skipped: needs root to own files as another user");
        return None;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = attacker_dir(tmp.path());
    let victim = victim(tmp.path());
    Some((tmp, dir, victim))
}

#[test]
fn planted_links_at_the_target_and_at_old_temporary_names_are_replaced_not_followed() {
    let Some((_tmp, dir, victim)) = scene() else {
        return;
    };
    // Every name the previous writer used (.<file>.<pid>.<n>.tmp) and the file itself.
    symlink(&victim, dir.join("app-password")).unwrap();
    for n in 0..64 {
        let name = format!(".app-password.{}.{n}.tmp", std::process::id());
        symlink(&victim, dir.join(name)).unwrap();
    }
    for _ in 0..5 {
        let written = write_file(&dir.join("app-password"), b"pw", 0o600, Some(OTHER)).unwrap();
        assert!(matches!(written, Written::Replaced | Written::Unchanged));
    }
    assert_untouched(&victim);
    let meta = std::fs::symlink_metadata(dir.join("app-password")).unwrap();
    assert!(meta.file_type().is_file(), "the link itself was replaced");
    assert_eq!((meta.uid(), meta.mode() & 0o777), (OTHER.uid, 0o600));
}

#[test]
fn a_directory_replaced_by_a_link_is_refused() {
    let Some((tmp, dir, victim)) = scene() else {
        return;
    };
    // The attacker swaps a subdirectory for a link to the victim's directory.
    symlink(tmp.path(), dir.join("run")).unwrap();
    let err = write_file(&dir.join("run/shadow"), b"x", 0o600, Some(OTHER)).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::PermissionDenied, "{err}");
    assert!(err.to_string().contains("refusing to follow"), "{err}");
    let err = ensure_dir(&dir.join("run"), 0o700, Some(OTHER)).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::PermissionDenied, "{err}");
    let err = chown_file(&dir.join("run/shadow"), OTHER).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::PermissionDenied, "{err}");
    assert_untouched(&victim);
    let meta = std::fs::symlink_metadata(tmp.path()).unwrap();
    assert_eq!(meta.uid(), 0, "the victim's directory was not given away");
}

#[test]
fn appends_and_chowns_refuse_links_hard_links_and_fifos() {
    let Some((_tmp, dir, victim)) = scene() else {
        return;
    };
    symlink(&victim, dir.join("postgres.log")).unwrap();
    let err = open_append(&dir.join("postgres.log"), 0o600, Some(OTHER)).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::PermissionDenied, "{err}");
    assert!(chown_file(&dir.join("postgres.log"), OTHER).is_err());
    std::fs::hard_link(&victim, dir.join("hard.log")).unwrap();
    assert!(open_append(&dir.join("hard.log"), 0o600, Some(OTHER)).is_err());
    assert!(chown_file(&dir.join("hard.log"), OTHER).is_err());
    std::fs::remove_file(dir.join("hard.log")).unwrap();
    nix::unistd::mkfifo(
        &dir.join("fifo"),
        nix::sys::stat::Mode::from_bits_truncate(0o600),
    )
    .unwrap();
    assert!(
        open_append(&dir.join("fifo"), 0o600, Some(OTHER)).is_err(),
        "no hang, no use"
    );
    assert_untouched(&victim);
    // A plain file is created for the owner.
    let mut log = open_append(&dir.join("manager.log"), 0o600, Some(OTHER)).unwrap();
    std::io::Write::write_all(&mut log, b"line\n").unwrap();
    let meta = std::fs::metadata(dir.join("manager.log")).unwrap();
    assert_eq!((meta.uid(), meta.mode() & 0o777), (OTHER.uid, 0o600));
}

#[test]
fn a_logs_tail_is_read_from_a_plain_file_only() {
    let Some((_tmp, dir, victim)) = scene() else {
        return;
    };
    let log = dir.join("manager.log");
    assert_eq!(read_file_tail(&log, 8).unwrap(), None);
    std::fs::write(&log, b"first line\nlast line\n").unwrap();
    assert_eq!(read_file_tail(&log, 10).unwrap().unwrap(), b"last line\n");
    assert_eq!(
        read_file_tail(&log, 1000).unwrap().unwrap(),
        b"first line\nlast line\n"
    );
    // The instance's user replaces its log with a link to a file only root may read, or with
    // a FIFO no one writes to (which would block the reader forever).
    std::fs::remove_file(&log).unwrap();
    symlink(&victim, &log).unwrap();
    let err = read_file_tail(&log, 1000).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::PermissionDenied, "{err}");
    std::fs::remove_file(&log).unwrap();
    nix::unistd::mkfifo(&log, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    assert!(read_file_tail(&log, 1000).is_err(), "no hang, no use");
}

#[test]
fn links_in_directories_only_root_or_this_user_can_change_are_followed() {
    let tmp = tempfile::tempdir().unwrap();
    let real = tmp.path().join("real");
    std::fs::create_dir(&real).unwrap();
    symlink(&real, tmp.path().join("state")).unwrap();
    symlink("real/../real/./", tmp.path().join("relative")).unwrap();
    write_file(&tmp.path().join("state/a/b.json"), b"1", 0o644, None).unwrap();
    assert_eq!(std::fs::read(real.join("a/b.json")).unwrap(), b"1");
    assert_eq!(
        read_file(&tmp.path().join("relative/a/b.json")).unwrap(),
        Some(b"1".to_vec())
    );
    assert_eq!(read_file(&tmp.path().join("state/a/none")).unwrap(), None);
    assert_eq!(read_file(&tmp.path().join("none/none")).unwrap(), None);
}

#[test]
fn unchanged_files_are_not_rewritten() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("status.json");
    assert_eq!(
        write_file(&path, b"{}", 0o600, None).unwrap(),
        Written::Replaced
    );
    let inode = std::fs::metadata(&path).unwrap().ino();
    assert_eq!(
        write_file(&path, b"{}", 0o600, None).unwrap(),
        Written::Unchanged
    );
    assert_eq!(std::fs::metadata(&path).unwrap().ino(), inode);
    assert_eq!(
        write_file(&path, b"{}", 0o644, None).unwrap(),
        Written::Replaced
    );
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o644
    );
    assert_eq!(
        write_file(&path, b"{1}", 0o644, None).unwrap(),
        Written::Replaced
    );
    assert_eq!(std::fs::read(&path).unwrap(), b"{1}");
    let leftovers = std::fs::read_dir(tmp.path()).unwrap().count();
    assert_eq!(leftovers, 1, "no temporary file left behind");
}

#[test]
fn concurrent_writers_of_one_file_do_not_collide() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("control-plane.pid");
    let writers: Vec<_> = (0..8)
        .map(|i| {
            let path = path.clone();
            std::thread::spawn(move || {
                for _ in 0..50 {
                    write_file(&path, format!("{i}\n").as_bytes(), 0o644, None).unwrap();
                }
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    assert!(std::fs::read_to_string(&path)
        .unwrap()
        .trim()
        .parse::<u32>()
        .is_ok());
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 1);
}

#[test]
fn ensure_dir_sets_mode_and_owner_on_the_open_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("a/b/c");
    ensure_dir(&dir, 0o700, None).unwrap();
    assert_eq!(
        std::fs::metadata(&dir).unwrap().permissions().mode() & 0o7777,
        0o700
    );
    ensure_dir(&dir, 0o711, None).unwrap();
    assert_eq!(
        std::fs::metadata(&dir).unwrap().permissions().mode() & 0o7777,
        0o711
    );
    std::fs::write(tmp.path().join("file"), "").unwrap();
    assert!(ensure_dir(&tmp.path().join("file"), 0o700, None).is_err());
    assert!(
        write_file(&tmp.path().join("a"), b"", 0o600, None).is_err(),
        "a directory"
    );
    assert!(write_file(Path::new("/"), b"", 0o600, None).is_err());
}
