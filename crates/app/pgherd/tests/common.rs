//! Helpers shared by the CLI tests.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic
#![allow(dead_code)] // each test binary uses a different subset

use std::path::PathBuf;
use std::process::{Command, Output};

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../..")
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
