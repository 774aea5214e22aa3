//! `pgherd local …` answers that name the real cause, once (security issue, finding 7), and
//! input limits (finding 3), without starting a cluster.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

mod common;
use common::{pgherd, stdout};
use std::process::Output;

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

const CLUSTER: &str = "apiVersion: postgresql.cnpg.io/v1
kind: Cluster
metadata:
  name: c
spec:
  instances: 1
  storage:
    size: 1Gi
";

fn local(state: &std::path::Path, args: &[&str]) -> Output {
    let mut all = vec!["local", "--state-dir", state.to_str().unwrap()];
    all.extend_from_slice(args);
    pgherd(&all)
}

#[test]
fn empty_input_is_an_error_and_directories_are_applied_like_validate_reads_them() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let empty = tmp.path().join("empty.yaml");
    std::fs::write(&empty, "# nothing here\n").unwrap();
    for file in [empty.to_str().unwrap(), "/dev/null"] {
        let out = local(&state, &["apply", "-f", file]);
        assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
        assert!(
            stderr(&out).contains("nothing to apply"),
            "{}",
            stderr(&out)
        );
    }
    let dir = tmp.path().join("manifests");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("cluster.yaml"), CLUSTER).unwrap();
    std::fs::write(dir.join("README.txt"), "not a manifest").unwrap();
    let out = local(&state, &["apply", "-f", dir.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("Cluster/default/c applied"),
        "{}",
        stdout(&out)
    );
    // Not running: the stored cluster says it is stopped, not a stale or missing status.
    let out = local(&state, &["status", "c", "-o", "json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["phase"], "Stopped");
    // State files are private.
    use std::os::unix::fs::PermissionsExt;
    for sub in ["objects", "secrets"] {
        if let Ok(meta) = std::fs::metadata(state.join(sub)) {
            assert_eq!(meta.permissions().mode() & 0o077, 0, "{sub} is private");
        }
    }
}

#[test]
fn names_are_checked_the_same_way_in_every_verb() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    for args in [
        vec!["psql", "../default/c"],
        vec!["status", "../../etc"],
        vec!["promote", "c", "../c-1"],
        vec!["fence", "C", "c-1"],
        vec!["backup", "c", "--backup-name", "a/b"],
        vec!["delete", "cluster", "x/../y"],
    ] {
        let out = local(&state, &args);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", stderr(&out));
        assert!(
            stderr(&out).starts_with("invalid "),
            "{args:?}: {}",
            stderr(&out)
        );
        assert_eq!(
            stderr(&out).lines().count(),
            1,
            "said once: {}",
            stderr(&out)
        );
    }
}

#[test]
fn another_users_state_directory_is_permission_denied_not_not_found() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: needs root to run as another user");
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    // Reachable by others (as /var/lib/pgherd is), private inside.
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let state = tmp.path().join("state");
    let file = tmp.path().join("c.yaml");
    std::fs::write(&file, CLUSTER).unwrap();
    assert!(local(&state, &["apply", "-f", file.to_str().unwrap()])
        .status
        .success());
    for args in [["promote", "c", "c-1"], ["fence", "c", "c-1"]] {
        let out = std::process::Command::new("runuser")
            .args([
                "-u",
                "nobody",
                "--",
                env!("CARGO_BIN_EXE_pgherd"),
                "local",
                "--state-dir",
            ])
            .arg(&state)
            .args(args)
            .output()
            .unwrap();
        assert!(!out.status.success());
        assert!(
            stderr(&out).contains("permission denied"),
            "{args:?}: {}",
            stderr(&out)
        );
        assert!(!stderr(&out).contains("not found"), "{}", stderr(&out));
    }
}

#[test]
fn oversized_and_deeply_nested_input_is_refused_quickly_with_the_limit() {
    let tmp = tempfile::tempdir().unwrap();
    let deep = tmp.path().join("deep.yaml");
    std::fs::write(&deep, format!("a: {}", "[".repeat(100_000))).unwrap();
    let started = std::time::Instant::now();
    let out = pgherd(&["validate", deep.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout(&out).contains("nesting deeper than 100")
            || stderr(&out).contains("nesting deeper than 100")
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    let big = tmp.path().join("big.yaml");
    let annotation = "x".repeat(300 * 1024);
    std::fs::write(
        &big,
        CLUSTER.replace(
            "  name: c\n",
            &format!("  name: c\n  annotations:\n    big: {annotation}\n"),
        ),
    )
    .unwrap();
    let out = local(
        &tmp.path().join("state"),
        &["apply", "-f", big.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("metadata.annotations"),
        "{}",
        stderr(&out)
    );
    assert!(stderr(&out).contains("256 KiB"), "{}", stderr(&out));
}

#[test]
fn every_cloudnativepg_kind_is_stored_and_what_is_not_carried_out_is_said() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let corpus = common::repo_root().join("tests/fixtures/kinds");
    let out = local(&state, &["apply", "-f", corpus.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    for stored in [
        "Publication/default/orders-all",
        "Subscription/default/orders-sub",
        "ImageCatalog/default/postgres-images",
        "ClusterImageCatalog/default/postgres-images-global",
        "DatabaseRole/default/shop-analyst",
    ] {
        assert!(
            stdout(&out).contains(&format!("{stored} applied")),
            "{stored}: {}",
            stdout(&out)
        );
    }
    // Not carried out on the local platform yet: said at apply time.
    assert!(
        stderr(&out).contains("DatabaseRole/shop-analyst: warning: clientCertificate: the local platform does not issue client certificates yet"),
        "{}",
        stderr(&out)
    );
    // Publications and subscriptions are carried out by the clusters' primaries.
    assert!(!stderr(&out).contains("Publication/"), "{}", stderr(&out));
    for (kind, name) in [
        ("publications", "orders-all"),
        ("imagecatalog", "postgres-images"),
        ("databaserole", "shop-analyst"),
    ] {
        let got = local(&state, &["get", kind, name, "-o", "json"]);
        assert!(got.status.success(), "{kind}: {}", stderr(&got));
    }
    // Reclaim policy delete, but no cluster to drop it from: the object goes at once.
    local(&state, &["delete", "publication", "orders-some"]);
    let got = local(&state, &["get", "publication", "orders-some", "-o", "json"]);
    assert_eq!(got.status.code(), Some(1), "{}", stdout(&got));
    // A cluster applied on its own is checked against the catalog already stored.
    let file = tmp.path().join("c.yaml");
    std::fs::write(
        &file,
        CLUSTER.replace(
            "  instances: 1\n",
            "  instances: 1\n  imageCatalogRef: {apiGroup: postgresql.cnpg.io, kind: ImageCatalog, name: postgres-images, major: 15}\n",
        ),
    )
    .unwrap();
    // synchronizeLogicalDecoding before PostgreSQL 17 needs pg_failover_slots: refused, as
    // CloudNativePG's webhook refuses it.
    let slots = tmp.path().join("slots.yaml");
    std::fs::write(
        &slots,
        CLUSTER.replace(
            "  instances: 1\n",
            "  instances: 1\n  imageName: ghcr.io/cloudnative-pg/postgresql:15.14\n  replicationSlots:\n    highAvailability:\n      synchronizeLogicalDecoding: true\n",
        ),
    )
    .unwrap();
    let out = local(&state, &["apply", "-f", slots.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("spec.replicationSlots.highAvailability.synchronizeLogicalDecoding")
            && stderr(&out).contains("needs PostgreSQL 17"),
        "{}",
        stderr(&out)
    );
    // A separate WAL volume is not made here: said, not silently ignored.
    let wal = tmp.path().join("wal.yaml");
    std::fs::write(
        &wal,
        CLUSTER.replace(
            "  instances: 1\n",
            "  instances: 1\n  stopDelay: 30\n  walStorage:\n    size: 1Gi\n",
        ),
    )
    .unwrap();
    let out = local(&state, &["apply", "-f", wal.to_str().unwrap()]);
    assert!(
        stderr(&out).contains(
            "warning: spec.walStorage: the local platform keeps WAL in the data directory"
        ),
        "{}",
        stderr(&out)
    );
    // Timings of the user's own are said; the defaults every Cluster carries are not.
    assert!(
        stderr(&out).contains("spec.startDelay/stopDelay/smartShutdownTimeout/switchoverDelay"),
        "{}",
        stderr(&out)
    );
    // A promotion token that is not a demotion's is refused, nothing stored.
    let clone = tmp.path().join("replica.yaml");
    std::fs::write(
        &clone,
        CLUSTER.replace(
            "  instances: 1\n",
            "  instances: 1\n  replica:\n    primary: c\n    source: origin\n    promotionToken: eyJzeXN0ZW1JRCI6IjEifQ==\n  bootstrap:\n    pg_basebackup:\n      source: origin\n  externalClusters:\n    - name: origin\n      connectionParameters:\n        host: origin-rw\n        user: streaming_replica\n",
        ),
    )
    .unwrap();
    let out = local(&state, &["apply", "-f", clone.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("spec.replica.promotionToken: not a promotion token: its JSON")
            && stderr(&out).contains("nothing applied"),
        "{}",
        stderr(&out)
    );
    let out = local(&state, &["apply", "-f", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("spec.imageCatalogRef.major")
            && stderr(&out).contains("no image for major version 15"),
        "{}",
        stderr(&out)
    );
}
