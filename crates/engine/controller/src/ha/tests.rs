//! The election's rules, one observation at a time.

use crate::phase;
use crate::plan::tests::{cluster, obs};
use crate::plan::{plan, Observation};
use pgherd_instance_protocol::{DesiredRole, Role};
use pgherd_postgres::Lsn;
use std::time::Duration;

/// pg-1 primary, pg-2 and pg-3 streaming; pg-3 received more WAL.
fn three() -> Observation {
    let mut o = obs(
        &[
            (1, Some((true, true))),
            (2, Some((false, true))),
            (3, Some((false, true))),
        ],
        Some("pg-1"),
    );
    for (i, lsn) in [(1, 0x300), (2, 0x100), (3, 0x200)] {
        if let Some(s) = o.instances[i - 1].status.as_mut() {
            s.received_lsn = Some(Lsn(lsn));
            s.current_lsn = Some(Lsn(lsn));
        }
    }
    o
}

fn kill_primary(o: &mut Observation) {
    o.instances[0].status = None;
    o.instances[0].dead = true;
    o.instances[0].unhealthy_for = Some(Duration::from_millis(200));
}

fn role_of(p: &crate::plan::Plan, name: &str) -> (DesiredRole, Option<String>) {
    let d = p.instances.iter().find(|i| i.name == name).unwrap();
    (d.role, d.upstream.clone())
}

#[test]
fn a_cluster_starting_again_with_nothing_running_is_not_failing_over() {
    let mut o = three();
    for i in &mut o.instances {
        i.status = None;
        i.dead = true;
        i.unhealthy_for = Some(Duration::from_secs(30));
    }
    let p = plan(&cluster(3), &o);
    assert_ne!(p.phase, phase::FAILING_OVER);
    assert_eq!(p.target_primary.as_deref(), Some("pg-1"));
    assert!(p.fence.is_empty());
    assert_eq!(
        role_of(&p, "pg-1").0,
        DesiredRole::Primary,
        "the primary starts again"
    );
}

#[test]
fn a_dead_primary_fails_over_to_the_most_advanced_replica() {
    let mut o = three();
    kill_primary(&mut o);
    let p = plan(&cluster(3), &o);
    assert_eq!(p.phase, phase::FAILING_OVER);
    assert_eq!(p.target_primary.as_deref(), Some("pg-3"));
    assert_eq!(p.fence, ["pg-1"], "fence before promoting");
    assert_eq!(
        role_of(&p, "pg-3").0,
        DesiredRole::Replica,
        "not promoted yet"
    );
    assert_eq!(role_of(&p, "pg-1"), (DesiredRole::Replica, None));

    o.target_primary = Some("pg-3".into());
    o.instances[0].stopped_for = Some(Duration::from_secs(1));
    let p = plan(&cluster(3), &o);
    assert!(p.fence.is_empty());
    assert_eq!(role_of(&p, "pg-3").0, DesiredRole::Primary);
    assert_eq!(
        role_of(&p, "pg-2"),
        (DesiredRole::Replica, Some("pg-1".into()))
    );
    assert_eq!(p.current_primary.as_deref(), Some("pg-1"));

    // pg-3 runs as primary: the transition is complete, everyone follows it.
    if let Some(s) = o.instances[2].status.as_mut() {
        s.is_primary = true;
        s.role = Role::Primary;
    }
    let p = plan(&cluster(3), &o);
    assert_eq!(p.current_primary.as_deref(), Some("pg-3"));
    assert_eq!(
        role_of(&p, "pg-1"),
        (DesiredRole::Replica, Some("pg-3".into()))
    );
    assert_eq!(
        role_of(&p, "pg-2"),
        (DesiredRole::Replica, Some("pg-3".into()))
    );
    assert_ne!(p.phase, phase::FAILING_OVER);
}

#[test]
fn a_target_told_to_promote_keeps_the_role_through_a_bad_report() {
    let mut o = three();
    kill_primary(&mut o);
    o.target_primary = Some("pg-3".into());
    o.instances[0].stopped_for = Some(Duration::from_secs(1));
    o.instances[2].told_primary = true;
    // Promoting: its report says "down" (an error after promotion), no WAL position.
    if let Some(s) = o.instances[2].status.as_mut() {
        s.role = Role::Down;
        s.ready = false;
        s.received_lsn = None;
        s.current_lsn = None;
    }
    o.instances[2].unhealthy_for = Some(Duration::from_millis(300));
    let p = plan(&cluster(3), &o);
    assert_eq!(p.target_primary.as_deref(), Some("pg-3"));
    assert_eq!(role_of(&p, "pg-3").0, DesiredRole::Primary, "not demoted");
    assert!(p.fence.is_empty());

    // It fails for good: another is chosen, but the first may be primary already, so it
    // is fenced and nobody is promoted in the same pass.
    o.instances[2].unhealthy_for = Some(super::FAILURE_GRACE);
    let p = plan(&cluster(3), &o);
    assert_eq!(p.target_primary.as_deref(), Some("pg-2"));
    assert_eq!(p.fence, ["pg-3"]);
    assert!(p.instances.iter().all(|i| i.role == DesiredRole::Replica));

    // Fenced by the user instead: given up the same way.
    let mut fenced = o.clone();
    fenced.instances[2].unhealthy_for = None;
    fenced.instances[2].fenced = true;
    let p = plan(&cluster(3), &fenced);
    assert_eq!(p.target_primary.as_deref(), Some("pg-2"));
    assert_eq!(p.fence, ["pg-3"]);

    // Once it is provably stopped, the new target is promoted.
    o.target_primary = Some("pg-2".into());
    o.instances[2].told_primary = false;
    o.instances[2].stopped_for = Some(Duration::from_secs(1));
    o.instances[2].dead = true;
    let p = plan(&cluster(3), &o);
    assert_eq!(p.target_primary.as_deref(), Some("pg-2"));
    assert_eq!(role_of(&p, "pg-2").0, DesiredRole::Primary);
}

#[test]
fn a_short_outage_is_left_to_the_instance_manager() {
    let mut o = three();
    o.instances[0].status = None;
    o.instances[0].unhealthy_for = Some(super::FAILURE_GRACE / 2);
    let p = plan(&cluster(3), &o);
    assert_eq!(p.target_primary.as_deref(), Some("pg-1"));
    assert!(p.fence.is_empty());
    o.instances[0].unhealthy_for = Some(super::FAILURE_GRACE);
    assert_eq!(
        plan(&cluster(3), &o).target_primary.as_deref(),
        Some("pg-3")
    );
    // failoverDelay adds to the grace period.
    let mut c = cluster(3);
    c.spec.failover_delay = Some(10);
    assert_eq!(plan(&c, &o).target_primary.as_deref(), Some("pg-1"));
}

#[test]
fn switchover_waits_for_the_shutdown_checkpoint() {
    let mut o = three();
    o.promote_request = Some("pg-2".into());
    let p = plan(&cluster(3), &o);
    assert_eq!(p.phase, phase::SWITCHOVER);
    assert_eq!(p.target_primary.as_deref(), Some("pg-2"));
    assert!(
        p.fence.is_empty(),
        "a healthy primary is demoted, not killed"
    );
    assert_eq!(role_of(&p, "pg-1"), (DesiredRole::Replica, None));
    assert_eq!(role_of(&p, "pg-2").0, DesiredRole::Replica);

    // pg-1 stopped cleanly at 0/400; pg-2 has only 0/100.
    o.target_primary = Some("pg-2".into());
    o.instances[0].stopped_for = Some(Duration::from_secs(1));
    o.instances[0].unhealthy_for = Some(Duration::from_millis(100));
    if let Some(s) = o.instances[0].status.as_mut() {
        s.is_primary = false;
        s.role = Role::Down;
        s.ready = false;
        s.shutdown_checkpoint = Some(Lsn(0x400));
    }
    let p = plan(&cluster(3), &o);
    assert_eq!(role_of(&p, "pg-2").0, DesiredRole::Replica, "waits for WAL");
    if let Some(s) = o.instances[1].status.as_mut() {
        s.received_lsn = Some(Lsn(0x428));
    }
    let p = plan(&cluster(3), &o);
    assert_eq!(role_of(&p, "pg-2").0, DesiredRole::Primary);
}

#[test]
fn a_switchover_target_that_never_catches_up_gives_way_to_the_most_advanced() {
    let mut o = three();
    o.promote_request = Some("pg-2".into());
    o.target_primary = Some("pg-2".into());
    o.instances[0].stopped_for = Some(Duration::from_secs(1));
    o.instances[0].unhealthy_for = Some(super::FAILURE_GRACE);
    if let Some(s) = o.instances[0].status.as_mut() {
        s.is_primary = false;
        s.role = Role::Down;
        s.shutdown_checkpoint = Some(Lsn(0x400));
    }
    // pg-2 has 0/100, pg-3 0/200: neither has the checkpoint; pg-3 is the most advanced.
    let p = plan(&cluster(3), &o);
    assert_eq!(p.target_primary.as_deref(), Some("pg-3"));
    o.target_primary = Some("pg-3".into());
    assert_eq!(
        role_of(&plan(&cluster(3), &o), "pg-3").0,
        DesiredRole::Primary
    );
}

#[test]
fn quorum_failover_never_guesses() {
    let mut c = cluster(3);
    c.spec.postgresql =
        Some(serde_yaml_ng::from_str("synchronous:\n  method: any\n  number: 1\n").unwrap());
    let mut o = three();
    assert_eq!(
        plan(&c, &o).synchronous_standby_names,
        "ANY 1 (\"pg-2\", \"pg-3\")"
    );
    kill_primary(&mut o);
    o.instances[2].status = None; // pg-3 (which may hold the last commit) is unreachable
    let p = plan(&c, &o);
    assert_eq!(p.target_primary.as_deref(), Some("pg-1"));
    assert!(p
        .blocked
        .as_deref()
        .unwrap_or_default()
        .contains("only 1 of the 2"));
    assert_eq!(p.phase, phase::FAILING_OVER);
}

#[test]
fn a_primary_its_replicas_still_stream_from_is_not_failed_over() {
    let mut o = three();
    o.instances[0].status = None; // the controller cannot reach pg-1's manager
    o.instances[0].unhealthy_for = Some(super::FAILURE_GRACE * 3);
    for i in 1..3 {
        if let Some(s) = o.instances[i].status.as_mut() {
            s.following = Some("pg-1".into());
        }
    }
    assert_eq!(
        plan(&cluster(3), &o).target_primary.as_deref(),
        Some("pg-1")
    );
    // Once they lose it too, it is failed over.
    for i in 1..3 {
        if let Some(s) = o.instances[i].status.as_mut() {
            s.is_wal_receiver_active = false;
        }
    }
    assert_eq!(
        plan(&cluster(3), &o).target_primary.as_deref(),
        Some("pg-3")
    );
}

#[test]
fn a_partitioned_primary_is_failed_over_before_the_wal_receivers_notice() {
    let mut o = three();
    o.instances[0].status = None; // the controller cannot reach pg-1's manager
    o.instances[0].unhealthy_for = Some(super::FAILURE_GRACE);
    for i in 1..3 {
        if let Some(s) = o.instances[i].status.as_mut() {
            s.following = Some("pg-1".into());
            s.upstream_seen_ms_ago = Some(100); // they still reach it
        }
    }
    assert_eq!(
        plan(&cluster(3), &o).target_primary.as_deref(),
        Some("pg-1"),
        "the controller is the one cut off"
    );
    // Their WAL receivers still say active (until wal_receiver_timeout), but they have not
    // reached pg-1 for two seconds: it is cut off from everyone.
    for i in 1..3 {
        if let Some(s) = o.instances[i].status.as_mut() {
            s.upstream_seen_ms_ago = Some(2000);
        }
    }
    let p = plan(&cluster(3), &o);
    assert_eq!(p.target_primary.as_deref(), Some("pg-3"));
    assert_eq!(p.fence, ["pg-1"], "fenced before anything is promoted");
}

#[test]
fn a_primary_cut_off_from_everyone_is_failed_over_after_the_shorter_grace() {
    let mut o = three();
    o.instances[0].status = None; // the controller cannot reach pg-1's manager
    o.instances[0].unhealthy_for = Some(super::CUT_OFF_GRACE);
    for i in 1..3 {
        if let Some(s) = o.instances[i].status.as_mut() {
            s.following = Some("pg-1".into());
            s.upstream_seen_ms_ago = Some(super::UPSTREAM_REACH_MAX_AGE_MS + 200);
        }
    }
    let p = plan(&cluster(3), &o);
    assert_eq!(p.target_primary.as_deref(), Some("pg-3"));
    assert_eq!(p.fence, ["pg-1"], "fenced before anything is promoted");

    // Not before the grace.
    o.instances[0].unhealthy_for = Some(super::CUT_OFF_GRACE - Duration::from_millis(1));
    assert_eq!(
        plan(&cluster(3), &o).target_primary.as_deref(),
        Some("pg-1")
    );
    o.instances[0].unhealthy_for = Some(super::CUT_OFF_GRACE);

    // One replica still reaches it: only the controller is cut off from it (and the
    // majority keeps its lease), so no failover.
    if let Some(s) = o.instances[1].status.as_mut() {
        s.upstream_seen_ms_ago = Some(100);
    }
    assert_eq!(
        plan(&cluster(3), &o).target_primary.as_deref(),
        Some("pg-1")
    );

    // A replica that does not say how long ago it reached the primary (an older manager)
    // is no witness: the usual grace applies.
    if let Some(s) = o.instances[1].status.as_mut() {
        s.upstream_seen_ms_ago = None;
        s.is_wal_receiver_active = false;
    }
    if let Some(s) = o.instances[2].status.as_mut() {
        s.is_wal_receiver_active = false;
    }
    assert_eq!(
        plan(&cluster(3), &o).target_primary.as_deref(),
        Some("pg-1")
    );
    o.instances[0].unhealthy_for = Some(super::FAILURE_GRACE);
    assert_eq!(
        plan(&cluster(3), &o).target_primary.as_deref(),
        Some("pg-3")
    );

    // A primary whose manager answers (its PostgreSQL down, restarting in place) keeps the
    // usual grace even when no replica reaches it as primary.
    let mut o = three();
    o.instances[0].unhealthy_for = Some(super::CUT_OFF_GRACE);
    if let Some(s) = o.instances[0].status.as_mut() {
        s.is_primary = false;
        s.role = Role::Down;
        s.ready = false;
    }
    for i in 1..3 {
        if let Some(s) = o.instances[i].status.as_mut() {
            s.following = Some("pg-1".into());
            s.upstream_seen_ms_ago = Some(super::UPSTREAM_REACH_MAX_AGE_MS + 200);
        }
    }
    assert_eq!(
        plan(&cluster(3), &o).target_primary.as_deref(),
        Some("pg-1")
    );

    // No replica reports fresh: the controller may be the one cut off from everything.
    let mut o = three();
    o.instances[0].status = None;
    o.instances[0].unhealthy_for = Some(super::CUT_OFF_GRACE);
    for i in 1..3 {
        o.instances[i].status = None;
        o.instances[i].unhealthy_for = Some(super::CUT_OFF_GRACE);
    }
    assert_eq!(
        plan(&cluster(3), &o).target_primary.as_deref(),
        Some("pg-1")
    );
}

#[test]
fn a_second_primary_is_fenced() {
    let mut o = three();
    if let Some(s) = o.instances[1].status.as_mut() {
        s.is_primary = true;
    }
    assert_eq!(plan(&cluster(3), &o).fence, ["pg-2"]);
}

/// Both replicas' reports sampled `age_ms` ago, their WAL receivers `streaming`.
fn reports(o: &mut Observation, age_ms: u64, streaming: bool) {
    for i in &mut o.instances[1..] {
        if let Some(s) = i.status.as_mut() {
            s.observed_ms_ago = age_ms;
            s.is_wal_receiver_active = streaming;
        }
    }
}

#[test]
fn a_failover_compares_positions_sampled_after_the_old_primary_stopped() {
    let mut o = three();
    kill_primary(&mut o);
    o.target_primary = Some("pg-3".into());
    o.instances[0].stopped_for = Some(Duration::from_millis(50));
    reports(&mut o, 120, true);
    let p = plan(&cluster(3), &o);
    assert_eq!(p.target_primary.as_deref(), Some("pg-3"));
    assert_eq!(
        role_of(&p, "pg-3").0,
        DesiredRole::Replica,
        "reports from before the stop may miss WAL that arrived later: wait"
    );

    // Sampled after the stop, the receivers still streaming: bytes sent before the stop
    // may still be on their way for the margin.
    reports(&mut o, 10, true);
    o.instances[0].stopped_for = Some(super::FINAL_POSITION_MARGIN);
    let p = plan(&cluster(3), &o);
    assert_eq!(role_of(&p, "pg-3").0, DesiredRole::Replica);
    o.instances[0].stopped_for = Some(super::FINAL_POSITION_MARGIN + Duration::from_millis(10));
    let p = plan(&cluster(3), &o);
    assert_eq!(
        role_of(&p, "pg-3").0,
        DesiredRole::Primary,
        "past the margin"
    );

    // A receiver that stopped streaming flushed what it had: final once sampled after the
    // stop.
    o.instances[0].stopped_for = Some(Duration::from_millis(20));
    reports(&mut o, 10, false);
    let p = plan(&cluster(3), &o);
    assert_eq!(role_of(&p, "pg-3").0, DesiredRole::Primary);
}

#[test]
fn a_failover_promotes_the_best_final_position_not_its_first_choice() {
    // pg-2 was chosen on earlier reports; the final ones put pg-3 ahead.
    let mut o = three();
    kill_primary(&mut o);
    o.target_primary = Some("pg-2".into());
    o.instances[0].stopped_for = Some(Duration::from_secs(1));
    reports(&mut o, 0, false);
    let p = plan(&cluster(3), &o);
    assert_eq!(p.target_primary.as_deref(), Some("pg-3"));
    assert_eq!(role_of(&p, "pg-3").0, DesiredRole::Primary);
    assert_eq!(role_of(&p, "pg-2").0, DesiredRole::Replica);
}

#[test]
fn the_wait_for_final_positions_ends_with_any_fresh_report() {
    let mut o = three();
    kill_primary(&mut o);
    o.target_primary = Some("pg-3".into());
    reports(&mut o, super::STALE_REPORT_MS, true);
    o.instances[0].stopped_for = Some(
        Duration::from_millis(super::STALE_REPORT_MS)
            + super::FINAL_POSITION_MARGIN
            + Duration::from_millis(1),
    );
    let p = plan(&cluster(3), &o);
    assert_eq!(role_of(&p, "pg-3").0, DesiredRole::Primary);
}

#[test]
fn a_switchover_to_a_target_holding_the_shutdown_checkpoint_does_not_wait() {
    // The old primary stopped cleanly and the target has its shutdown checkpoint: nothing
    // it wrote can be missing, whatever the other replica's report.
    let mut o = three();
    o.target_primary = Some("pg-3".into());
    o.promote_request = Some("pg-3".into());
    if let Some(s) = o.instances[0].status.as_mut() {
        s.is_primary = false;
        s.role = Role::Down;
        s.ready = false;
        s.shutdown_checkpoint = Some(Lsn(0x1f0));
    }
    o.instances[0].stopped_for = Some(Duration::ZERO);
    o.instances[0].unhealthy_for = Some(Duration::ZERO);
    reports(&mut o, 500, true);
    let p = plan(&cluster(3), &o);
    assert_eq!(role_of(&p, "pg-3").0, DesiredRole::Primary);
}
