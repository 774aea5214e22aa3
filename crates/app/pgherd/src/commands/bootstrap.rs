//! `pgherd bootstrap DEST`: the init container of an instance pod copies the manager binary
//! into the volume the PostgreSQL container runs it from.

use anyhow::Context as _;
use std::io::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::ExitCode;

pub fn run(dest: &Path) -> anyhow::Result<ExitCode> {
    let exe = std::env::current_exe().context("cannot find this binary")?;
    let bytes = std::fs::read(&exe).with_context(|| format!("cannot read {}", exe.display()))?;
    let dir = dest
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    // Written beside the destination, then renamed: a pod restarted midway never runs half a
    // binary.
    let mut temporary = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("cannot create a file in {}", dir.display()))?;
    temporary.write_all(&bytes)?;
    temporary
        .as_file()
        .set_permissions(std::fs::Permissions::from_mode(0o755))?;
    temporary
        .persist(dest)
        .with_context(|| format!("cannot write {}", dest.display()))?;
    println!("copied {} to {}", exe.display(), dest.display());
    Ok(ExitCode::SUCCESS)
}
