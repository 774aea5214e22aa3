//! The controller's pass (`pgherd_controller::reconcile::pass`) against a fake platform: the
//! ordering rules every platform gets from the controller (issue 13, "done when").
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

use pgherd_controller::phase;
use pgherd_controller::reconcile::pass;
use pgherd_testkit::fake_platform::{cluster, freeze, healthy, kill, Call, FakePlatform};
use std::time::Duration;

fn run(platform: &mut FakePlatform, instances: i64) -> pgherd_controller::reconcile::PassOutcome {
    pgherd_testkit::runtime()
        .block_on(pass(platform, &cluster("pg", instances)))
        .unwrap()
}

fn position(calls: &[Call], wanted: impl Fn(&Call) -> bool) -> usize {
    calls
        .iter()
        .position(wanted)
        .unwrap_or_else(|| panic!("missing call in {calls:#?}"))
}

#[test]
fn a_dead_primary_is_replaced_and_not_started_meanwhile() {
    let mut platform = FakePlatform {
        observed: healthy("pg", 3),
        ..Default::default()
    };
    kill(&mut platform.observed, "pg-1");
    let outcome = run(&mut platform, 3);
    assert_eq!(outcome.plan.phase, phase::FAILING_OVER);
    let starts = platform
        .calls
        .iter()
        .find_map(|c| match c {
            Call::Apply {
                starts, primary, ..
            } => {
                assert_eq!(primary.as_deref(), Some("pg-3"), "the promotion is a spec");
                Some(starts.clone())
            }
            _ => None,
        })
        .unwrap();
    assert!(
        !starts.contains("pg-1"),
        "the replaced primary is not started while its successor is promoted: {starts:?}"
    );
}

#[test]
fn a_failed_primary_is_fenced_before_any_spec_is_written_and_stays_down() {
    let mut platform = FakePlatform {
        observed: healthy("pg", 3),
        ..Default::default()
    };
    // Frozen: its manager runs (it could start again), its report is 5 s old.
    freeze(&mut platform.observed, "pg-1", Duration::from_secs(5));
    let outcome = run(&mut platform, 3);
    assert_eq!(outcome.plan.phase, phase::FAILING_OVER);
    assert_eq!(outcome.plan.target_primary.as_deref(), Some("pg-3"));
    let calls = &platform.calls;
    let fence = position(calls, |c| c == &Call::Fence("pg-1".into()));
    let apply = position(calls, |c| matches!(c, Call::Apply { .. }));
    assert!(fence < apply, "fence before promote: {calls:#?}");
    let Call::Apply { primary, .. } = &calls[apply] else {
        unreachable!()
    };
    assert_ne!(
        primary.as_deref(),
        Some("pg-3"),
        "no promotion while the old primary may still accept writes"
    );

    // The next pass: the fence worked (nothing of pg-1 runs), the target is recorded.
    kill(&mut platform.observed, "pg-1");
    platform.observed.observation.target_primary = Some("pg-3".into());
    platform.observed.previous_phase = Some(phase::FAILING_OVER.into());
    platform.calls.clear();
    run(&mut platform, 3);
    let Some(Call::Apply {
        starts, primary, ..
    }) = platform
        .calls
        .iter()
        .find(|c| matches!(c, Call::Apply { .. }))
    else {
        panic!("no apply: {:#?}", platform.calls)
    };
    assert_eq!(
        primary.as_deref(),
        Some("pg-3"),
        "promoted once pg-1 is stopped"
    );
    assert!(
        !starts.contains("pg-1"),
        "the replaced primary stays down until its successor is promoted: {starts:?}"
    );
}

#[test]
fn a_switchover_tells_the_platform_before_the_old_primary_is_demoted() {
    let mut platform = FakePlatform {
        observed: healthy("pg", 3),
        ..Default::default()
    };
    platform.observed.observation.promote_request = Some("pg-2".into());
    let outcome = run(&mut platform, 3);
    assert_eq!(outcome.plan.phase, phase::SWITCHOVER);
    let calls = &platform.calls;
    let told = position(calls, |c| c == &Call::BeforeApply(phase::SWITCHOVER));
    let apply = position(calls, |c| matches!(c, Call::Apply { .. }));
    assert!(told < apply, "pause before demotion: {calls:#?}");
    assert!(
        !calls.contains(&Call::ClearSwitchoverRequest),
        "not done yet: the request stays"
    );
    assert!(
        !calls.iter().any(|c| matches!(c, Call::Fence(_))),
        "a healthy primary is demoted, not fenced: {calls:#?}"
    );
}

#[test]
fn a_switchover_request_is_cleared_once_done_or_impossible() {
    // Done: the requested instance is the primary.
    let mut platform = FakePlatform {
        observed: healthy("pg", 2),
        ..Default::default()
    };
    platform.observed.observation.promote_request = Some("pg-1".into());
    let outcome = run(&mut platform, 2);
    assert!(platform.calls.contains(&Call::ClearSwitchoverRequest));
    assert_eq!(outcome.observation.promote_request, None);

    // Impossible: it names an instance that does not exist.
    let mut platform = FakePlatform {
        observed: healthy("pg", 2),
        ..Default::default()
    };
    platform.observed.observation.promote_request = Some("pg-9".into());
    run(&mut platform, 2);
    assert!(platform.calls.contains(&Call::ClearSwitchoverRequest));
    assert_eq!(platform.observed.observation.promote_request, None);
}

#[test]
fn only_instances_seen_not_running_in_this_pass_are_started() {
    let mut platform = FakePlatform {
        observed: healthy("pg", 2),
        ..Default::default()
    };
    // pg-2's manager was not running when observed: it may be started. pg-1 runs. pg-3 is new
    // (scale up to 3): it may be started.
    platform.observed.not_running.insert("pg-2".into());
    run(&mut platform, 3);
    let apply = platform
        .calls
        .iter()
        .find_map(|c| match c {
            Call::Apply { starts, .. } => Some(starts.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(
        apply.into_iter().collect::<Vec<_>>(),
        ["pg-2", "pg-3"],
        "started: the stopped one and the new one, never one that was running"
    );
}

#[test]
fn one_instance_failing_to_apply_does_not_stop_the_pass() {
    let mut platform = FakePlatform {
        observed: healthy("pg", 3),
        ..Default::default()
    };
    platform.failing.insert("pg-2".into(), "disk full".into());
    let outcome = run(&mut platform, 2);
    assert_eq!(outcome.instance_errors["pg-2"], "disk full");
    // Scaled down to 2: the newest replica goes, after every spec was written.
    let apply = position(&platform.calls, |c| matches!(c, Call::Apply { .. }));
    let remove = position(&platform.calls, |c| c == &Call::Remove(vec!["pg-3".into()]));
    assert!(apply < remove);
}
