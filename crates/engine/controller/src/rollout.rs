//! Rolling restarts: one instance at a time, replicas first, and the primary's turn either a
//! restart in place or, with `primaryUpdateMethod: switchover`, a switchover first.

use crate::phase;
use crate::plan::{fresh, DesiredInstance, Observation, ObservedInstance};
use pgherd_api::cluster::PrimaryUpdateMethod;
use pgherd_api::Cluster;

/// A rolling restart, when instances run under an older restart token: one instance at a
/// time, replicas (lowest serial first) before the primary, each only once every instance is
/// ready again.
pub(crate) fn roll(
    instances: &mut [DesiredInstance],
    observed: &[&&ObservedInstance],
    primary: &str,
    token: &str,
) -> &'static str {
    let applied = |i: &ObservedInstance| {
        i.status
            .as_ref()
            .map(|s| s.restart_token.as_str())
            .unwrap_or_default()
            == token
    };
    if observed
        .iter()
        .any(|i| i.spec_restart_token == token && !applied(i))
    {
        return phase::UPGRADING; // one is restarting already
    }
    let next = observed
        .iter()
        .filter(|i| !applied(i))
        .min_by_key(|i| (i.name == primary, i.serial));
    match next {
        None => phase::HEALTHY,
        Some(i) => {
            if let Some(d) = instances.iter_mut().find(|d| d.name == i.name) {
                d.restart_token = token.to_string();
            }
            if i.name == primary {
                phase::PRIMARY_RESTARTING_IN_PLACE
            } else {
                phase::UPGRADING
            }
        }
    }
}

/// With `primaryUpdateMethod: switchover` (or when the primary's restart recreates it), when a
/// rolling restart has reached the primary (every replica runs under the new restart token and
/// is ready, the primary does not), the replica to switch over to: the most advanced streaming
/// one. `None` otherwise, or while another
/// transition or request is under way.
pub(crate) fn switchover_for_restart(
    cluster: &Cluster,
    existing: &[&ObservedInstance],
    primary: &ObservedInstance,
    observed: &Observation,
) -> Option<String> {
    let by_switchover = cluster.spec.primary_update_method == Some(PrimaryUpdateMethod::Switchover)
        || primary.restart_recreates;
    if !by_switchover
        || existing.len() < 2
        || observed.promote_request.is_some()
        || observed
            .target_primary
            .as_deref()
            .is_some_and(|t| t != primary.name)
    {
        return None;
    }
    let token = observed.restart_token.as_str();
    let restarted = |i: &ObservedInstance| fresh(i).is_some_and(|s| s.restart_token == token);
    let primary_status = fresh(primary)?;
    if !primary_status.is_primary || restarted(primary) {
        return None;
    }
    let replicas: Vec<&&ObservedInstance> =
        existing.iter().filter(|i| i.name != primary.name).collect();
    if !replicas
        .iter()
        .all(|i| restarted(i) && fresh(i).is_some_and(|s| s.ready))
    {
        return None;
    }
    most_advanced_streaming(replicas.iter().map(|i| **i))
}

/// The replica a planned switchover goes to: the most advanced streaming one that is not
/// fenced (the lowest serial among equals).
pub(crate) fn most_advanced_streaming<'a>(
    replicas: impl Iterator<Item = &'a ObservedInstance>,
) -> Option<String> {
    replicas
        .filter(|i| !i.fenced)
        .filter_map(|i| {
            let s = fresh(i)?;
            (s.is_wal_receiver_active && !s.is_primary).then(|| (s.wal_position(), i))
        })
        .max_by_key(|(lsn, i)| (*lsn, std::cmp::Reverse(i.serial)))
        .map(|(_, i)| i.name.clone())
}

/// When the primary runs on a node being drained (cordoned, or carrying a drain taint), the
/// replica to switch over to before its pod is evicted, as CloudNativePG does: the most advanced
/// streaming one on a node that is not being drained. `None` otherwise, or while another
/// transition or request is under way.
pub(crate) fn switchover_off_draining_node(
    existing: &[&ObservedInstance],
    primary: &ObservedInstance,
    observed: &Observation,
) -> Option<String> {
    if !primary.draining
        || observed.promote_request.is_some()
        || observed
            .target_primary
            .as_deref()
            .is_some_and(|t| t != primary.name)
        || !fresh(primary).is_some_and(|s| s.is_primary)
    {
        return None;
    }
    most_advanced_streaming(
        existing
            .iter()
            .filter(|i| i.name != primary.name && !i.draining)
            .copied(),
    )
}

#[cfg(test)]
mod tests {
    use crate::phase;
    use crate::plan::plan;
    use crate::plan::tests::{cluster, obs};
    use pgherd_api::cluster::PrimaryUpdateMethod;
    use pgherd_postgres::Lsn;

    /// A rolling restart under token `t1` that has reached the primary (pg-1): both replicas
    /// run under it; pg-3 received more WAL.
    fn primarys_turn() -> crate::plan::Observation {
        let mut o = obs(
            &[
                (1, Some((true, true))),
                (2, Some((false, true))),
                (3, Some((false, true))),
            ],
            Some("pg-1"),
        );
        o.restart_token = "t1".into();
        for (i, lsn) in [(1, 0x300), (2, 0x100), (3, 0x200)] {
            let instance = &mut o.instances[i - 1];
            if i > 1 {
                instance.spec_restart_token = "t1".into();
            }
            if let Some(s) = instance.status.as_mut() {
                s.received_lsn = Some(Lsn(lsn));
                s.current_lsn = Some(Lsn(lsn));
                if i > 1 {
                    s.restart_token = "t1".into();
                }
            }
        }
        o
    }

    #[test]
    fn restart_in_place_by_default() {
        let p = plan(&cluster(3), &primarys_turn());
        assert_eq!(p.phase, phase::PRIMARY_RESTARTING_IN_PLACE);
        assert_eq!(p.target_primary.as_deref(), Some("pg-1"));
    }

    #[test]
    fn a_primary_on_a_draining_node_is_switched_over_to_a_replica_elsewhere() {
        let mut o = obs(
            &[
                (1, Some((true, true))),
                (2, Some((false, true))),
                (3, Some((false, true))),
            ],
            Some("pg-1"),
        );
        for (i, lsn) in [(0, 0x300), (1, 0x200), (2, 0x100)] {
            let s = o.instances[i].status.as_mut().unwrap();
            s.received_lsn = Some(Lsn(lsn));
            s.current_lsn = Some(Lsn(lsn));
        }
        // Not draining: nothing moves.
        assert_eq!(plan(&cluster(3), &o).phase, phase::HEALTHY);
        // pg-1's node is drained, and so is pg-2's (the most advanced replica): pg-3.
        o.instances[0].draining = true;
        o.instances[1].draining = true;
        let p = plan(&cluster(3), &o);
        assert_eq!(p.phase, phase::SWITCHOVER);
        assert_eq!(p.target_primary.as_deref(), Some("pg-3"));
        // Every replica's node drained too: the primary stays (nowhere better to go).
        o.instances[2].draining = true;
        assert_eq!(plan(&cluster(3), &o).phase, phase::HEALTHY);
    }

    #[test]
    fn a_primary_whose_restart_recreates_it_is_switched_over_first_whatever_the_method() {
        let mut o = primarys_turn();
        o.instances[0].restart_recreates = true;
        let p = plan(&cluster(3), &o);
        assert_eq!(p.phase, phase::SWITCHOVER);
        assert_eq!(p.target_primary.as_deref(), Some("pg-3"));
    }

    #[test]
    fn switchover_method_switches_to_the_most_advanced_replica_first() {
        let mut c = cluster(3);
        c.spec.primary_update_method = Some(PrimaryUpdateMethod::Switchover);
        let p = plan(&c, &primarys_turn());
        assert_eq!(p.phase, phase::SWITCHOVER);
        assert_eq!(p.target_primary.as_deref(), Some("pg-3"));
        assert!(
            p.instances
                .iter()
                .all(|i| i.name != "pg-1" || i.restart_token.is_empty()),
            "the primary is not restarted in place"
        );
        // While replicas still run the old token, nothing is switched over yet.
        let mut o = primarys_turn();
        if let Some(s) = o.instances[1].status.as_mut() {
            s.restart_token = String::new();
        }
        let p = plan(&c, &o);
        assert_ne!(p.phase, phase::SWITCHOVER);
    }
}
