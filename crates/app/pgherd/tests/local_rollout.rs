//! `primaryUpdateMethod: switchover`: a rolling restart switches the primary over to a replica
//! instead of restarting it in place (issue: "primaryUpdateMethod: switchover is ignored").
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

use pgherd_testkit::local::{cluster_manifest, Local};
use std::path::Path;
use std::time::Duration;

#[test]
fn a_rolling_restart_switches_the_primary_over_when_asked() {
    let local = Local::new(Path::new(env!("CARGO_BIN_EXE_pgherd")));
    let dir = tempfile::tempdir().unwrap();
    local.up(
        dir.path(),
        "roll",
        &cluster_manifest("roll", 2, "  primaryUpdateMethod: switchover\n"),
        2,
    );
    let before = local.status("roll");
    let old_primary = before.current_primary.clone().unwrap();
    let pid_of = |s: &pgherd_local::status::LocalClusterStatus, name: &str| {
        s.instances_status
            .iter()
            .find(|i| i.name == name)
            .and_then(|i| i.pid)
    };
    let old_pids: Vec<Option<u32>> = before.instances_status.iter().map(|i| i.pid).collect();
    local.run_ok(&["restart", "roll"]);
    let after = local.wait_for(
        "roll",
        "both restarted, primary switched over",
        Duration::from_secs(120),
        |s| {
            s.phase == "Cluster in healthy state"
                && s.ready_instances == 2
                && s.current_primary.as_deref() != Some(old_primary.as_str())
                && s.instances_status
                    .iter()
                    .all(|i| i.pid.is_some() && !old_pids.contains(&i.pid))
        },
    );
    assert_ne!(
        pid_of(&after, &old_primary),
        None,
        "the old primary runs again, as a replica"
    );
}
