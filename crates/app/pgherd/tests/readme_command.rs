//! The README's first command, exactly as written, run as root with no state directory named
//! (issue: "the README's first command does not work as written when run as root"). The default
//! state directory (/var/lib/pgherd) and socket directory (/run/pgherd) are bind mounts of
//! temporary directories in a private mount namespace, so a cluster the machine's user runs there
//! is neither seen nor touched.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

mod common;
use common::{repo_root, DefaultStateDir};

const COMMAND: &str = "pgherd local up -f examples/cluster-example.yaml";

#[test]
fn the_readmes_first_command_works_as_root_with_the_default_state_dir() {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).unwrap();
    assert!(
        readme.contains(COMMAND),
        "the README no longer says {COMMAND:?}"
    );
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: the README's command is checked as root (CI runs as root)");
        return;
    }
    let prepared = DefaultStateDir::prepare();
    // The longest name a Cluster may have (50 characters), in the default state directory:
    // its sockets must still fit the kernel's 107 bytes.
    let long = "c".repeat(50);
    std::fs::write(
        prepared.1.join("long-name.yaml"),
        format!("apiVersion: postgresql.cnpg.io/v1\nkind: Cluster\nmetadata:\n  name: {long}\nspec:\n  instances: 2\n  imageName: ghcr.io/cloudnative-pg/postgresql:15.14\n  storage:\n    size: 1Gi\n"),
    )
    .unwrap();
    let script = format!(
        r#"{COMMAND}
pgherd local status cluster-example -o json > "$OUT/status.json"
pgherd local psql cluster-example -- -Atc 'select 40 + 2' > "$OUT/psql.txt"
pgherd local up -f "$OUT/long-name.yaml" > "$OUT/long-name.txt" 2>&1
ls /var/lib/pgherd > "$OUT/state.txt"
"#
    );
    let ran = DefaultStateDir::run(prepared, &script);
    let (output, out) = (&ran.output, &ran.out);
    assert!(
        output.status.success(),
        "{COMMAND} failed:\n{}\n{}\ncontrol plane:\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
        ran.log()
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("cluster-example is healthy"), "{stdout}");
    let status: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("status.json")).unwrap()).unwrap();
    assert_eq!(status["readyInstances"], 3, "{status:#}");
    assert_eq!(
        std::fs::read_to_string(out.join("psql.txt"))
            .unwrap()
            .trim(),
        "42"
    );
    // It ran in the default location: the state landed in the bind-mounted /var/lib/pgherd.
    let listing = std::fs::read_to_string(out.join("state.txt")).unwrap();
    assert!(listing.contains("clusters"), "{listing}");
    let long_up = std::fs::read_to_string(out.join("long-name.txt")).unwrap();
    assert!(long_up.contains(&format!("{long} is healthy")), "{long_up}");
    let destroyed = std::fs::read_to_string(out.join("destroy.txt")).unwrap_or_default();
    assert!(destroyed.contains("/var/lib/pgherd"), "{destroyed}");
}
