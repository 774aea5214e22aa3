//! Helpers shared by the CLI tests.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic
#![allow(dead_code)] // each test binary uses a different subset

use std::path::PathBuf;
use std::process::{Command, Output};

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../..")
}

/// A seed fixture (`tests/fixtures/seeds/NAME`) as text.
pub fn seed_fixture(name: &str) -> String {
    std::fs::read_to_string(repo_root().join("tests/fixtures/seeds").join(name))
        .expect("seed fixture")
}

pub fn pgherd(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pgherd"))
        .args(args)
        .current_dir(repo_root())
        .output()
        .expect("pgherd runs")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A script run as root with pgherd's default locations (`/var/lib/pgherd`, `/run/pgherd`)
/// bind-mounted from temporary directories in a private mount namespace, so what it runs is
/// neither seen by nor touches the machine's own. `pgherd local destroy` runs when it exits.
/// The script sees `$OUT` (a directory for its results), `pgherd` on the PATH, no state
/// directory set, and runs in the repository's root.
#[derive(Debug)]
pub struct DefaultStateDir {
    pub output: Output,
    /// What was `/var/lib/pgherd`.
    pub state: PathBuf,
    /// `$OUT`.
    pub out: PathBuf,
    _tmp: tempfile::TempDir,
}

impl DefaultStateDir {
    /// A fresh `$OUT` to put files in before [`DefaultStateDir::run`].
    pub fn prepare() -> (tempfile::TempDir, PathBuf) {
        let tmp = tempfile::tempdir().unwrap();
        for d in ["state", "run", "out"] {
            std::fs::create_dir(tmp.path().join(d)).unwrap();
        }
        let out = tmp.path().join("out");
        (tmp, out)
    }

    /// Run `script` (bash, `set -e`) in the private namespace made from `prepared`.
    pub fn run(prepared: (tempfile::TempDir, PathBuf), script: &str) -> DefaultStateDir {
        let (tmp, out) = prepared;
        let (state, run) = (tmp.path().join("state"), tmp.path().join("run"));
        for mount_point in ["/var/lib/pgherd", "/run/pgherd"] {
            std::fs::create_dir_all(mount_point).unwrap();
        }
        let bin_dir = std::path::Path::new(env!("CARGO_BIN_EXE_pgherd"))
            .parent()
            .unwrap()
            .to_path_buf();
        let script = format!(
            "set -e\nmount --bind \"$STATE\" /var/lib/pgherd\nmount --bind \"$RUNDIR\" /run/pgherd\n\
             trap 'mkdir -p \"$OUT/logs\"; find /var/lib/pgherd \\( -name \"*.log\" -o -name \"*.csv\" -o -path \"/var/lib/pgherd/status/*\" \\) -type f -exec cp --parents {{}} \"$OUT/logs\" \\; ; \
             pgherd local destroy >\"$OUT/destroy.txt\" 2>&1 || true' EXIT\n{script}"
        );
        let output = Command::new("unshare")
            .args(["--mount", "--propagation", "private", "bash", "-c", &script])
            .current_dir(repo_root())
            .env_remove("PGHERD_STATE_DIR")
            .env_remove("XDG_STATE_HOME")
            .env("HOME", "/root")
            .env(
                "PATH",
                format!(
                    "{}:{}",
                    bin_dir.display(),
                    std::env::var("PATH").unwrap_or_default()
                ),
            )
            .env("STATE", &state)
            .env("RUNDIR", &run)
            .env("OUT", &out)
            .output()
            .expect("unshare runs");
        DefaultStateDir {
            output,
            state,
            out,
            _tmp: tmp,
        }
    }

    /// A file the script wrote into `$OUT` (empty when missing).
    pub fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.out.join(name)).unwrap_or_default()
    }

    /// The logs the script left (copied before `pgherd local destroy` removes them): the
    /// control plane's, then the last lines of every instance's manager and PostgreSQL logs
    /// (without the "starting up" refusals of its start) and of the status files.
    pub fn log(&self) -> String {
        let logs = self.out.join("logs/var/lib/pgherd");
        let mut text = std::fs::read_to_string(logs.join("control-plane.log")).unwrap_or_default();
        let mut files = Vec::new();
        collect_logs(&logs.join("clusters"), &mut files);
        collect_logs(&logs.join("status"), &mut files);
        files.sort();
        for file in files {
            let content = std::fs::read_to_string(&file).unwrap_or_default();
            let lines: Vec<&str> = content.lines().filter(|l| !l.contains("57P03")).collect();
            let tail = &lines[lines.len().saturating_sub(60)..];
            text.push_str(&format!("\n--- {}\n{}\n", file.display(), tail.join("\n")));
        }
        text
    }
}

fn collect_logs(dir: &std::path::Path, files: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect_logs(&path, files);
        } else {
            files.push(path);
        }
    }
}
