//! The pure core of the controller: from a Cluster and what its instances report, which
//! instances must exist with which role, which go away, and the phase. No I/O, no clock:
//! every decision is a function of the inputs, so it is tested exhaustively.

use crate::synchronous::SyncPolicy;
use crate::{ha, phase};
use pgherd_api::Cluster;
use pgherd_instance_protocol::{DesiredRole, InstanceStatus};

/// One instance as the platform sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObservedInstance {
    pub serial: u32,
    pub name: String,
    /// Its last report, if the instance manager answered.
    pub status: Option<InstanceStatus>,
    /// The restart token currently in its spec.
    pub spec_restart_token: String,
    /// How long it has been unhealthy (no fresh report, or PostgreSQL not ready); `None` when
    /// healthy.
    pub unhealthy_for: Option<std::time::Duration>,
    /// Neither its instance manager nor its PostgreSQL runs (the platform checked).
    pub dead: bool,
    /// Its PostgreSQL is provably not running (it cannot accept a write), and for at least how
    /// long: a lower bound on the time since it last could write WAL (the platform counts
    /// from when it first had the proof, or from when the instance must have stopped).
    pub stopped_for: Option<std::time::Duration>,
    /// Fenced by the user (`cnpg.io/fencedInstances`): kept stopped, never promoted.
    pub fenced: bool,
    /// Its spec tells it to be primary: it may be promoting or promoted, whatever its last
    /// report says.
    pub told_primary: bool,
    /// Its restart is a new instance process tree (Kubernetes: a pod from a changed pod
    /// template), not a PostgreSQL restart: a primary's turn is then always a switchover first
    /// (recreating a primary in place would be an outage its failover could race).
    pub restart_recreates: bool,
    /// It runs where it is about to be evicted from (Kubernetes: a cordoned node, or one with
    /// a drain taint): a primary there is switched over to a replica elsewhere first.
    pub draining: bool,
    /// The platform gave up its storage: a replica that cannot come back where its data is
    /// (Kubernetes: its pod gone during a `nodeMaintenanceWindow` without `reusePVC`). The plan
    /// removes it, data and all, and clones a new instance in its place; never a primary.
    pub storage_given_up: bool,
}

impl ObservedInstance {
    /// Its PostgreSQL is provably not running: it cannot accept a write.
    pub fn stopped(&self) -> bool {
        self.stopped_for.is_some()
    }
}

/// CloudNativePG's fencing annotation: a JSON list of instance names, `["*"]` for all.
pub const FENCED_INSTANCES_ANNOTATION: &str = "cnpg.io/fencedInstances";

/// The instances fenced by the `cnpg.io/fencedInstances` annotation.
pub fn fenced_instances(cluster: &Cluster) -> Vec<String> {
    cluster
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(FENCED_INSTANCES_ANNOTATION))
        .and_then(|v| serde_json::from_str::<Vec<String>>(v).ok())
        .unwrap_or_default()
}

/// The cluster as observed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Observation {
    pub instances: Vec<ObservedInstance>,
    /// Highest serial ever used (serials are never reused).
    pub latest_serial: u32,
    /// The instance that is primary, as recorded in status.
    pub current_primary: Option<String>,
    /// The restart token every instance should run under (a rolling restart changes it).
    pub restart_token: String,
    /// The instance that is to become primary, as recorded in status (a switchover or
    /// failover in progress when it differs from `current_primary`).
    pub target_primary: Option<String>,
    /// A requested switchover (`local promote`, `kubectl cnpg promote`).
    pub promote_request: Option<String>,
    /// A hibernation started and the cluster has not finished waking from it (the platform
    /// reads it back from the previous status; see [`crate::hibernation`]).
    pub hibernated: bool,
    /// Single-instance restarts the user asked for (`local restart CLUSTER INSTANCE`): the
    /// instance and the request's token. A request stays recorded; a new token restarts it
    /// again (see [`crate::rollout::with_request`]).
    pub instance_restarts: std::collections::BTreeMap<String, String>,
}

/// How a new instance gets its data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataSource {
    /// `initdb` (the first instance of a new cluster).
    Initdb,
    /// A copy of the primary.
    Clone,
}

/// An instance that must exist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredInstance {
    pub serial: u32,
    pub name: String,
    pub role: DesiredRole,
    pub data_source: DataSource,
    /// The restart token for its spec.
    pub restart_token: String,
    /// Replicas: the instance to stream from; `None` while there is none to follow (a
    /// demoted or fenced old primary waiting for the new one).
    pub upstream: Option<String>,
    /// Keep its PostgreSQL stopped.
    pub fenced: bool,
}

/// What the controller decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Every instance that must exist (existing and new), by serial.
    pub instances: Vec<DesiredInstance>,
    /// Instances to remove (stop and delete their data): only ever replicas.
    pub remove: Vec<String>,
    pub phase: &'static str,
    pub current_primary: Option<String>,
    pub target_primary: Option<String>,
    pub ready_instances: usize,
    pub latest_serial: u32,
    /// Instances the platform must stop by force now (see [`crate::ha`]).
    pub fence: Vec<String>,
    /// `synchronous_standby_names` for the primary (empty: asynchronous).
    pub synchronous_standby_names: String,
    /// Why the cluster cannot make progress (e.g. a failover that would lose commits).
    pub blocked: Option<String>,
    /// Hibernating, waking, or neither.
    pub hibernation: crate::hibernation::Hibernation,
}

/// `<cluster>-<serial>`.
pub fn instance_name(cluster: &str, serial: u32) -> String {
    format!("{cluster}-{serial}")
}

pub(crate) fn fresh(i: &ObservedInstance) -> Option<&InstanceStatus> {
    i.status.as_ref().filter(|s| ha::is_fresh(s))
}

/// Decide.
pub fn plan(cluster: &Cluster, observed: &Observation) -> Plan {
    let cluster_name = cluster.metadata.name.as_deref().unwrap_or_default();
    let wanted = usize::try_from(cluster.spec.instances.unwrap_or(1).max(1)).unwrap_or(1);
    let mut existing: Vec<&ObservedInstance> = observed.instances.iter().collect();
    existing.sort_by_key(|i| i.serial);
    let mut latest = observed
        .latest_serial
        .max(existing.last().map_or(0, |i| i.serial));

    if existing.is_empty() {
        latest += 1;
        let name = instance_name(cluster_name, latest);
        return Plan {
            instances: vec![DesiredInstance {
                serial: latest,
                name: name.clone(),
                role: DesiredRole::Primary,
                data_source: DataSource::Initdb,
                restart_token: observed.restart_token.clone(),
                upstream: None,
                fenced: false,
            }],
            remove: Vec::new(),
            phase: phase::SETTING_UP_PRIMARY,
            current_primary: None,
            target_primary: Some(name),
            ready_instances: 0,
            latest_serial: latest,
            fence: Vec::new(),
            synchronous_standby_names: String::new(),
            blocked: None,
            hibernation: Default::default(),
        };
    }

    // The recorded primary if it still exists, else the first instance.
    let recorded = observed
        .current_primary
        .as_deref()
        .and_then(|p| existing.iter().find(|i| i.name == p))
        .copied()
        .unwrap_or(existing[0]);
    let failover_delay = std::time::Duration::from_secs(
        u64::try_from(cluster.spec.failover_delay.unwrap_or(0)).unwrap_or(0),
    );
    let sync_around = |primary: &str| {
        let replicas: Vec<String> = existing
            .iter()
            .filter(|i| i.name != primary)
            .map(|i| i.name.clone())
            .collect();
        let streaming: Vec<String> = existing
            .iter()
            .filter(|i| i.name != primary && fresh(i).is_some_and(|s| s.ready && !s.leads()))
            .map(|i| i.name.clone())
            .collect();
        SyncPolicy::of(cluster, &replicas, &streaming)
    };
    // Planned switchovers: with `primaryUpdateMethod: switchover`, the primary's turn in a
    // rolling restart (the old primary then restarts as a replica); and a primary on a node
    // being drained, before its pod is evicted.
    let with_request;
    let as_observed = observed;
    let planned = crate::rollout::switchover_for_restart(cluster, &existing, recorded, observed)
        .or_else(|| crate::rollout::switchover_off_draining_node(&existing, recorded, observed));
    let observed = match planned {
        Some(target) => {
            with_request = Observation {
                promote_request: Some(target),
                ..observed.clone()
            };
            &with_request
        }
        None => observed,
    };
    let election = ha::elect(
        &existing,
        recorded,
        observed,
        failover_delay,
        sync_around(&recorded.name).as_ref(),
    );
    let transition = election.target != election.recorded;
    let primary = existing
        .iter()
        .find(|i| i.name == election.recorded)
        .copied()
        .unwrap_or(recorded);
    let primary_up = !transition && fresh(primary).is_some_and(|s| s.ready && s.leads());
    let fenced_by_user = |i: &ObservedInstance| i.fenced;
    let mut instances: Vec<DesiredInstance> = existing
        .iter()
        .map(|i| {
            let is_recorded = i.name == election.recorded;
            let is_target = i.name == election.target;
            let role =
                if (!transition && is_recorded) || (transition && is_target && election.promote) {
                    DesiredRole::Primary
                } else {
                    DesiredRole::Replica
                };
            DesiredInstance {
                serial: i.serial,
                name: i.name.clone(),
                role,
                data_source: if is_recorded {
                    DataSource::Initdb
                } else {
                    DataSource::Clone
                },
                restart_token: crate::rollout::with_request(
                    crate::rollout::base_token(&i.spec_restart_token),
                    observed.instance_restarts.get(&i.name),
                ),
                // The old primary waits, stopped, for the new one; everyone else keeps
                // following the recorded primary until the new one runs.
                upstream: (role == DesiredRole::Replica && !(transition && is_recorded))
                    .then(|| election.recorded.clone()),
                fenced: fenced_by_user(i),
            }
        })
        .collect();

    // Replicas whose storage the platform gave up go (the scale rule below clones new ones),
    // never the primary or the primary-to-be, and not in the middle of a transition.
    let mut remove: Vec<String> = existing
        .iter()
        .filter(|i| {
            i.storage_given_up
                && !transition
                && !i.told_primary
                && i.name != primary.name
                && i.name != election.target
        })
        .map(|i| i.name.clone())
        .collect();
    let kept = existing.len() - remove.len();
    if kept > wanted && !transition {
        // Scale down: the newest replicas go first; never the primary.
        let surplus = kept - wanted;
        let newest: Vec<String> = existing
            .iter()
            .rev()
            .filter(|i| i.name != primary.name && !remove.contains(&i.name))
            .take(surplus)
            .map(|i| i.name.clone())
            .collect();
        remove.extend(newest);
    }
    instances.retain(|d| !remove.contains(&d.name));
    let remaining: Vec<&&ObservedInstance> = existing
        .iter()
        .filter(|i| !remove.contains(&i.name))
        .collect();
    let ready = remaining
        .iter()
        .filter(|i| fresh(i).is_some_and(|s| s.ready))
        .count();

    let phase = if transition {
        if election.switchover {
            phase::SWITCHOVER
        } else {
            phase::FAILING_OVER
        }
    } else if election.blocked.is_some() {
        phase::FAILING_OVER
    } else if !primary_up {
        if existing.len() == 1 {
            phase::SETTING_UP_PRIMARY
        } else {
            phase::WAITING_FOR_INSTANCES
        }
    } else if remaining.len() < wanted {
        if ready == remaining.len() {
            // One new replica at a time, cloned from the primary.
            latest += 1;
            instances.push(DesiredInstance {
                serial: latest,
                name: instance_name(cluster_name, latest),
                role: DesiredRole::Replica,
                data_source: DataSource::Clone,
                restart_token: observed.restart_token.clone(),
                upstream: Some(primary.name.clone()),
                fenced: false,
            });
        }
        phase::CREATING_REPLICA
    } else if ready == remaining.len() {
        crate::rollout::roll(
            &mut instances,
            &remaining,
            &primary.name,
            &observed.restart_token,
        )
    } else {
        phase::WAITING_FOR_INSTANCES
    };

    // The primary-to-be waits for the others (all of them under `required`).
    let synchronous_standby_names = sync_around(&election.target)
        .map(|p| p.standby_names())
        .unwrap_or_default();
    let awake = Plan {
        instances,
        remove,
        phase,
        current_primary: Some(election.recorded.clone()),
        target_primary: Some(election.target.clone()),
        ready_instances: ready,
        latest_serial: latest,
        fence: election.fence,
        synchronous_standby_names,
        blocked: election.blocked,
        hibernation: Default::default(),
    };
    crate::hibernation::apply(cluster, as_observed, &existing, recorded, awake)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use pgherd_instance_protocol::Role;

    pub(crate) fn cluster(instances: i64) -> Cluster {
        let mut c = Cluster::new("pg", Default::default());
        c.spec.instances = Some(instances);
        c
    }

    pub(crate) fn status(name: &str, primary: bool, ready: bool) -> InstanceStatus {
        let role = if primary {
            Role::Primary
        } else {
            Role::Replica
        };
        InstanceStatus {
            is_primary: primary,
            ready,
            timeline_id: Some(1),
            is_wal_receiver_active: !primary && ready,
            applied_generation: 1,
            ..InstanceStatus::nothing_observed(name, role, "test")
        }
    }

    pub(crate) fn obs(list: &[(u32, Option<(bool, bool)>)], primary: Option<&str>) -> Observation {
        Observation {
            instances: list
                .iter()
                .map(|(serial, st)| {
                    let name = instance_name("pg", *serial);
                    ObservedInstance {
                        serial: *serial,
                        status: st.map(|(p, r)| status(&name, p, r)),
                        name,
                        spec_restart_token: String::new(),
                        unhealthy_for: None,
                        dead: false,
                        stopped_for: None,
                        fenced: false,
                        told_primary: false,
                        restart_recreates: false,
                        draining: false,
                        storage_given_up: false,
                    }
                })
                .collect(),
            latest_serial: list.iter().map(|(s, _)| *s).max().unwrap_or(0),
            current_primary: primary.map(str::to_string),
            restart_token: String::new(),
            target_primary: None,
            promote_request: None,
            hibernated: false,
            instance_restarts: Default::default(),
        }
    }

    #[test]
    fn new_cluster_starts_with_one_primary() {
        let p = plan(&cluster(3), &Observation::default());
        assert_eq!(p.phase, phase::SETTING_UP_PRIMARY);
        assert_eq!(
            p.instances,
            vec![DesiredInstance {
                serial: 1,
                name: "pg-1".into(),
                role: DesiredRole::Primary,
                data_source: DataSource::Initdb,
                restart_token: String::new(),
                upstream: None,
                fenced: false,
            }]
        );
        assert_eq!(p.target_primary.as_deref(), Some("pg-1"));
        assert_eq!(p.current_primary, None);
    }

    #[test]
    fn replicas_are_added_one_at_a_time_once_the_primary_is_up() {
        let p = plan(&cluster(3), &obs(&[(1, Some((true, false)))], None));
        assert_eq!(p.instances.len(), 1, "the primary is not ready yet");
        assert_eq!(p.phase, phase::SETTING_UP_PRIMARY);

        let p = plan(&cluster(3), &obs(&[(1, Some((true, true)))], None));
        assert_eq!(p.phase, phase::CREATING_REPLICA);
        assert_eq!(
            p.instances[1],
            DesiredInstance {
                serial: 2,
                name: "pg-2".into(),
                role: DesiredRole::Replica,
                data_source: DataSource::Clone,
                restart_token: String::new(),
                upstream: Some("pg-1".into()),
                fenced: false,
            }
        );
        assert_eq!(p.current_primary.as_deref(), Some("pg-1"));

        let p = plan(
            &cluster(3),
            &obs(&[(1, Some((true, true))), (2, None)], Some("pg-1")),
        );
        assert_eq!(p.instances.len(), 2, "wait for pg-2 before creating pg-3");
        assert_eq!(p.phase, phase::CREATING_REPLICA);

        let p = plan(
            &cluster(3),
            &obs(
                &[(1, Some((true, true))), (2, Some((false, true)))],
                Some("pg-1"),
            ),
        );
        assert_eq!(p.instances.last().map(|i| i.name.as_str()), Some("pg-3"));
    }

    #[test]
    fn healthy_when_all_ready() {
        let p = plan(
            &cluster(3),
            &obs(
                &[
                    (1, Some((true, true))),
                    (2, Some((false, true))),
                    (3, Some((false, true))),
                ],
                Some("pg-1"),
            ),
        );
        assert_eq!(p.phase, phase::HEALTHY);
        assert_eq!(p.ready_instances, 3);
        assert!(p.remove.is_empty());
        let p = plan(
            &cluster(3),
            &obs(
                &[
                    (1, Some((true, true))),
                    (2, Some((false, false))),
                    (3, Some((false, true))),
                ],
                Some("pg-1"),
            ),
        );
        assert_eq!(p.phase, phase::WAITING_FOR_INSTANCES);
    }

    #[test]
    fn scale_down_removes_newest_replicas_never_the_primary() {
        // pg-3 is the primary (after a switchover); scaling 3 -> 1 keeps it.
        let o = obs(
            &[
                (1, Some((false, true))),
                (2, Some((false, true))),
                (3, Some((true, true))),
            ],
            Some("pg-3"),
        );
        let p = plan(&cluster(1), &o);
        assert_eq!(p.remove, vec!["pg-2".to_string(), "pg-1".to_string()]);
        assert_eq!(
            p.instances
                .iter()
                .map(|i| i.name.as_str())
                .collect::<Vec<_>>(),
            ["pg-3"]
        );
        assert_eq!(p.phase, phase::HEALTHY);
    }

    #[test]
    fn a_replica_whose_storage_is_given_up_is_replaced_never_the_primary() {
        let mut o = obs(
            &[(1, Some((true, true))), (2, Some((false, true))), (3, None)],
            Some("pg-1"),
        );
        o.instances[0].storage_given_up = true;
        o.instances[2].storage_given_up = true;
        let p = plan(&cluster(3), &o);
        // pg-3 goes with its data; the primary stays whatever the platform says.
        assert_eq!(p.remove, vec!["pg-3".to_string()]);
        assert_eq!(
            p.instances
                .iter()
                .map(|i| (i.name.as_str(), i.data_source))
                .collect::<Vec<_>>(),
            [
                ("pg-1", DataSource::Initdb),
                ("pg-2", DataSource::Clone),
                ("pg-4", DataSource::Clone)
            ],
            "a new replica is cloned in its place"
        );
        assert_eq!(p.phase, phase::CREATING_REPLICA);
        // Scaling down at the same time counts the one already going.
        let p = plan(&cluster(2), &o);
        assert_eq!(p.remove, vec!["pg-3".to_string()]);
        assert_eq!(p.phase, phase::HEALTHY);
    }

    #[test]
    fn serials_are_never_reused() {
        let mut o = obs(
            &[(1, Some((true, true))), (3, Some((false, true)))],
            Some("pg-1"),
        );
        o.latest_serial = 4;
        let p = plan(&cluster(3), &o);
        assert_eq!(p.instances.last().map(|i| i.serial), Some(5));
        assert_eq!(p.latest_serial, 5);
    }

    #[test]
    fn unreachable_primary_blocks_growth() {
        let p = plan(
            &cluster(3),
            &obs(&[(1, None), (2, Some((false, true)))], Some("pg-1")),
        );
        assert_eq!(p.phase, phase::WAITING_FOR_INSTANCES);
        assert_eq!(p.instances.len(), 2);
        assert_eq!(p.current_primary.as_deref(), Some("pg-1"));
        assert_eq!(p.target_primary.as_deref(), Some("pg-1"));
        assert!(p.fence.is_empty(), "no failover before the grace period");
    }

    #[test]
    fn rolling_restart_goes_replica_by_replica_then_the_primary() {
        let mut o = obs(
            &[
                (1, Some((true, true))),
                (2, Some((false, true))),
                (3, Some((false, true))),
            ],
            Some("pg-1"),
        );
        o.restart_token = "t1".into();
        let p = plan(&cluster(3), &o);
        assert_eq!(p.phase, phase::UPGRADING);
        let tokens: Vec<&str> = p
            .instances
            .iter()
            .map(|i| i.restart_token.as_str())
            .collect();
        assert_eq!(tokens, ["", "t1", ""], "the lowest replica first");

        // pg-2 was told but has not restarted yet: nothing else moves.
        o.instances[1].spec_restart_token = "t1".into();
        let p = plan(&cluster(3), &o);
        assert_eq!(
            p.instances
                .iter()
                .map(|i| i.restart_token.as_str())
                .collect::<Vec<_>>(),
            ["", "t1", ""]
        );

        // pg-2 restarted; then pg-3; then the primary, last.
        o.instances[1].status.as_mut().unwrap().restart_token = "t1".into();
        let p = plan(&cluster(3), &o);
        assert_eq!(
            p.instances
                .iter()
                .map(|i| i.restart_token.as_str())
                .collect::<Vec<_>>(),
            ["", "t1", "t1"]
        );
        o.instances[2].spec_restart_token = "t1".into();
        o.instances[2].status.as_mut().unwrap().restart_token = "t1".into();
        let p = plan(&cluster(3), &o);
        assert_eq!(p.phase, phase::PRIMARY_RESTARTING_IN_PLACE);
        assert_eq!(p.instances[0].restart_token, "t1");
        o.instances[0].spec_restart_token = "t1".into();
        o.instances[0].status.as_mut().unwrap().restart_token = "t1".into();
        assert_eq!(plan(&cluster(3), &o).phase, phase::HEALTHY);
    }

    #[test]
    fn no_restart_while_an_instance_is_not_ready() {
        let mut o = obs(
            &[(1, Some((true, true))), (2, Some((false, false)))],
            Some("pg-1"),
        );
        o.restart_token = "t1".into();
        let p = plan(&cluster(2), &o);
        assert_eq!(p.phase, phase::WAITING_FOR_INSTANCES);
        assert!(p.instances.iter().all(|i| i.restart_token.is_empty()));
    }
}
