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
        base_token(
            i.status
                .as_ref()
                .map(|s| s.restart_token.as_str())
                .unwrap_or_default(),
        ) == token
    };
    if observed
        .iter()
        .any(|i| base_token(&i.spec_restart_token) == token && !applied(i))
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
                let request = request_of(&d.restart_token).map(str::to_string);
                d.restart_token = with_request(token, request.as_ref());
            }
            if i.name == primary {
                phase::PRIMARY_RESTARTING_IN_PLACE
            } else {
                phase::UPGRADING
            }
        }
    }
}

/// Separates the cluster's restart token from a single instance's restart request in the
/// token an instance's spec carries (`<cluster token>#<request>`).
const REQUEST_SEPARATOR: char = '#';

/// The cluster-wide part of an instance's restart token (what a rolling restart compares).
pub fn base_token(token: &str) -> &str {
    token
        .split_once(REQUEST_SEPARATOR)
        .map_or(token, |(b, _)| b)
}

/// The single-instance restart request part of an instance's restart token, if any.
pub fn request_of(token: &str) -> Option<&str> {
    token.split_once(REQUEST_SEPARATOR).map(|(_, r)| r)
}

/// The token for an instance's spec: the cluster's `base`, plus the user's last restart
/// request for this instance. A new request changes the token, so the instance manager
/// restarts PostgreSQL in place (a replica as a deleted Pod would be, the primary as
/// CloudNativePG's in-place restart); the rolling restart compares only the base.
pub fn with_request(base: &str, request: Option<&String>) -> String {
    match request.filter(|r| !r.is_empty()) {
        Some(r) => format!("{base}{REQUEST_SEPARATOR}{r}"),
        None => base.to_string(),
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
    let restarted =
        |i: &ObservedInstance| fresh(i).is_some_and(|s| base_token(&s.restart_token) == token);
    let primary_status = fresh(primary)?;
    if !primary_status.leads() || restarted(primary) {
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
            (s.is_wal_receiver_active && !s.leads()).then(|| (s.wal_position(), i))
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
        || !fresh(primary).is_some_and(|s| s.leads())
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

    #[test]
    fn a_single_instance_restart_touches_that_instance_only_and_survives_a_rollout() {
        let mut o = crate::plan::tests::obs(
            &[
                (1, Some((true, true))),
                (2, Some((false, true))),
                (3, Some((false, true))),
            ],
            Some("pg-1"),
        );
        o.instance_restarts.insert("pg-3".into(), "r1".into());
        let p = plan(&cluster(3), &o);
        let tokens: Vec<&str> = p
            .instances
            .iter()
            .map(|i| i.restart_token.as_str())
            .collect();
        assert_eq!(tokens, ["", "", "#r1"]);
        assert_eq!(p.phase, phase::HEALTHY, "no rolling restart for it");
        // The primary in place, the same way.
        o.instance_restarts.insert("pg-1".into(), "r2".into());
        let p = plan(&cluster(3), &o);
        assert_eq!(p.instances[0].restart_token, "#r2");
        // Restarted: a later rolling restart keeps the request, so it does not restart again
        // after the roll.
        for (i, t) in [(0, "#r2"), (2, "#r1")] {
            o.instances[i].spec_restart_token = t.into();
            o.instances[i].status.as_mut().unwrap().restart_token = t.into();
        }
        o.restart_token = "t1".into();
        let p = plan(&cluster(3), &o);
        let tokens: Vec<&str> = p
            .instances
            .iter()
            .map(|i| i.restart_token.as_str())
            .collect();
        assert_eq!(tokens, ["#r2", "t1", "#r1"], "the lowest replica first");
        o.instances[1].spec_restart_token = "t1".into();
        o.instances[1].status.as_mut().unwrap().restart_token = "t1".into();
        let p = plan(&cluster(3), &o);
        assert_eq!(p.instances[2].restart_token, "t1#r1");
    }
}
