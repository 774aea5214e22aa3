//! The operator image's binary (`Dockerfile`: `scripts/build-static.sh`, musl, at `/manager` in
//! an image `FROM scratch` with only the CA bundle beside it) runs in an empty root as that
//! image runs it: it is statically linked (no ELF interpreter), prints its version and the
//! release manifest, validates a Cluster, and copies itself as the instance pods' init
//! container does (`/manager bootstrap /controller/manager`).
//!
//! `scripts/test.sh` builds the binary and passes its path in `PGHERD_STATIC_BINARY`; a plain
//! `cargo test` without it says so and checks nothing.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn static_binary() -> Option<PathBuf> {
    let Some(path) = std::env::var_os("PGHERD_STATIC_BINARY") else {
        eprintln!("PGHERD_STATIC_BINARY is not set (scripts/test.sh builds it): not checked");
        return None;
    };
    let path = PathBuf::from(path);
    assert!(
        path.is_file(),
        "PGHERD_STATIC_BINARY={} does not exist: run scripts/build-static.sh",
        path.display()
    );
    Some(path)
}

/// Whether the ELF file at `path` names a program interpreter (a dynamic loader): a static
/// binary has none.
fn has_interpreter(path: &Path) -> bool {
    let elf = std::fs::read(path).unwrap();
    assert_eq!(&elf[..4], b"\x7fELF", "not an ELF file");
    assert_eq!(elf[4], 2, "not a 64-bit ELF file");
    let u16_at = |at: usize| u16::from_le_bytes([elf[at], elf[at + 1]]) as usize;
    let phoff = u64::from_le_bytes(elf[0x20..0x28].try_into().unwrap()) as usize;
    let (phentsize, phnum) = (u16_at(0x36), u16_at(0x38));
    (0..phnum).any(|i| {
        let at = phoff + i * phentsize;
        u32::from_le_bytes(elf[at..at + 4].try_into().unwrap()) == 3 // PT_INTERP
    })
}

/// Run `/manager ARGS` in `root` as its only file system (new user, mount and PID namespaces
/// whose root is `root`, with `/proc` mounted as a container runtime mounts it), as a
/// container of the image would.
fn in_root(root: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new("unshare")
        .args([
            "--user",
            "--map-root-user",
            "--mount",
            "--pid",
            "--fork",
            "--mount-proc",
            "--root",
        ])
        .arg(root)
        .arg("/manager")
        .args(args)
        .env_clear()
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("unshare (util-linux) runs");
    if let Some(text) = stdin {
        use std::io::Write as _;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
    }
    drop(child.stdin.take());
    child.wait_with_output().unwrap()
}

#[test]
fn the_image_binary_runs_in_an_empty_root() {
    let Some(binary) = static_binary() else {
        return;
    };
    assert!(
        !has_interpreter(&binary),
        "{} is dynamically linked",
        binary.display()
    );
    // The image's file system: the binary and the CA bundle, nothing else.
    let root = tempfile::tempdir().unwrap();
    std::fs::copy(&binary, root.path().join("manager")).unwrap();
    let certs = root.path().join("etc/ssl/certs");
    std::fs::create_dir_all(&certs).unwrap();
    std::fs::copy(
        "/etc/ssl/certs/ca-certificates.crt",
        certs.join("ca-certificates.crt"),
    )
    .unwrap();
    std::fs::create_dir(root.path().join("controller")).unwrap();
    std::fs::create_dir(root.path().join("proc")).unwrap();

    let version = in_root(root.path(), &["--version"], None);
    assert!(version.status.success(), "{version:?}");
    assert!(
        String::from_utf8_lossy(&version.stdout).contains(env!("CARGO_PKG_VERSION")),
        "{version:?}"
    );

    let manifests = in_root(root.path(), &["manifests"], None);
    assert!(manifests.status.success(), "{manifests:?}");
    let text = String::from_utf8_lossy(&manifests.stdout);
    assert!(
        text.contains("kind: Deployment") && text.contains("cnpg-controller-manager"),
        "the release manifest"
    );

    let cluster = "apiVersion: postgresql.cnpg.io/v1\nkind: Cluster\nmetadata:\n  name: pg\nspec:\n  instances: 0\n  storage:\n    size: 1Gi\n";
    let refused = in_root(root.path(), &["validate", "-"], Some(cluster));
    assert!(!refused.status.success(), "{refused:?}");
    assert!(
        String::from_utf8_lossy(&refused.stdout).contains("spec.instances")
            || String::from_utf8_lossy(&refused.stderr).contains("spec.instances"),
        "{refused:?}"
    );

    // The instance pods' init container: the binary copies itself into the shared volume.
    let copied = in_root(root.path(), &["bootstrap", "/controller/manager"], None);
    assert!(copied.status.success(), "{copied:?}");
    let copy = root.path().join("controller/manager");
    assert_eq!(
        std::fs::read(&copy).unwrap(),
        std::fs::read(&binary).unwrap(),
        "the copy differs"
    );
}
