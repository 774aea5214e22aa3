//! Synchronous replication: `synchronous_standby_names` for the primary from
//! `spec.postgresql.synchronous` (or the legacy `minSyncReplicas`/`maxSyncReplicas`), and the
//! quorum rule a failover must respect so that no acknowledged commit can be lost.

use pgherd_api::cluster::{DataDurability, SynchronousReplicaMethod};
use pgherd_api::Cluster;

/// The synchronous replication in force for one primary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncPolicy {
    pub method: SynchronousReplicaMethod,
    /// How many standbys must confirm a commit.
    pub number: usize,
    /// The cluster's standbys a commit may wait for, in priority order.
    pub cluster_standbys: Vec<String>,
    /// Names listed before and after the cluster's (`standbyNamesPre`/`Post`).
    pub pre: Vec<String>,
    pub post: Vec<String>,
    /// `required`: the list never shrinks to what is available (writes wait instead).
    pub required: bool,
}

impl SyncPolicy {
    /// The policy for `cluster` whose replicas are `replicas` (by serial) of which `ready` are
    /// streaming. `None` when replication is asynchronous.
    pub fn of(cluster: &Cluster, replicas: &[String], ready: &[String]) -> Option<SyncPolicy> {
        if let Some(s) = cluster
            .spec
            .postgresql
            .as_ref()
            .and_then(|p| p.synchronous.as_ref())
        {
            let required = s.data_durability.unwrap_or_default() == DataDurability::Required;
            let max = s
                .max_standby_names_from_cluster
                .and_then(|m| usize::try_from(m).ok())
                .unwrap_or(usize::MAX);
            // `preferred` waits only for standbys that stream now.
            let pool: Vec<String> = if required {
                replicas.to_vec()
            } else {
                replicas
                    .iter()
                    .filter(|r| ready.contains(r))
                    .cloned()
                    .collect()
            };
            let cluster_standbys: Vec<String> = pool.into_iter().take(max).collect();
            let pre = s.standby_names_pre.clone().unwrap_or_default();
            let post = s.standby_names_post.clone().unwrap_or_default();
            let wanted = usize::try_from(s.number).unwrap_or(0);
            let listed = cluster_standbys.len() + pre.len() + post.len();
            let number = if required { wanted } else { wanted.min(listed) };
            // Nothing to wait for (a single instance): asynchronous until replicas exist.
            if number == 0 || listed == 0 {
                return None;
            }
            return Some(SyncPolicy {
                method: s.method,
                number,
                cluster_standbys,
                pre,
                post,
                required,
            });
        }
        // Legacy: ANY q of all replicas, q = ready replicas clamped to [min, max].
        let max = usize::try_from(cluster.spec.max_sync_replicas.unwrap_or(0)).unwrap_or(0);
        if max == 0 {
            return None;
        }
        let min = usize::try_from(cluster.spec.min_sync_replicas.unwrap_or(0)).unwrap_or(0);
        let number = ready.len().min(max).max(min);
        (number > 0).then(|| SyncPolicy {
            method: SynchronousReplicaMethod::Any,
            number,
            cluster_standbys: replicas.to_vec(),
            pre: Vec::new(),
            post: Vec::new(),
            required: min > 0,
        })
    }

    /// The value of `synchronous_standby_names`, names double-quoted.
    pub fn standby_names(&self) -> String {
        let names: Vec<String> = self
            .pre
            .iter()
            .chain(&self.cluster_standbys)
            .chain(&self.post)
            .map(|n| format!("\"{}\"", n.replace('"', "\"\"")))
            .collect();
        let method = match self.method {
            SynchronousReplicaMethod::Any => "ANY",
            SynchronousReplicaMethod::First => "FIRST",
        };
        format!("{method} {} ({})", self.number, names.join(", "))
    }

    /// Whether promoting the most advanced of `reachable` cluster standbys is sure to keep
    /// every acknowledged commit: each commit reached `number` of the listed standbys, so
    /// seeing all but `number - 1` of them guarantees one that has it. Names outside the
    /// cluster (pre/post) count as unreachable. Only `required` guarantees anything: with
    /// `preferred`, commits may have been acknowledged with fewer standbys, and the best
    /// reachable one is all there is.
    pub fn failover_is_safe(&self, reachable: &[String]) -> Result<(), String> {
        if !self.required {
            return Ok(());
        }
        let listed = self.pre.len() + self.cluster_standbys.len() + self.post.len();
        let seen = self
            .cluster_standbys
            .iter()
            .filter(|s| reachable.contains(s))
            .count();
        let needed = listed.saturating_sub(self.number) + 1;
        if seen >= needed {
            Ok(())
        } else {
            Err(format!(
                "only {seen} of the {listed} synchronous standbys can be compared and a commit needs {} of them: promoting now could lose acknowledged commits (waiting for {} more to report)",
                self.number,
                needed - seen
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster(yaml: &str) -> Cluster {
        let mut c = Cluster::new("pg", Default::default());
        c.spec = serde_yaml_ng::from_str(yaml).unwrap();
        c
    }

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn quorum_required_lists_every_replica() {
        let c =
            cluster("instances: 3\npostgresql:\n  synchronous:\n    method: any\n    number: 1\n");
        let p = SyncPolicy::of(&c, &names(&["pg-2", "pg-3"]), &names(&["pg-2"])).unwrap();
        assert_eq!(p.standby_names(), "ANY 1 (\"pg-2\", \"pg-3\")");
        assert!(p.failover_is_safe(&names(&["pg-2", "pg-3"])).is_ok());
        let err = p.failover_is_safe(&names(&["pg-2"])).unwrap_err();
        assert!(err.contains("only 1 of the 2"), "{err}");
    }

    #[test]
    fn preferred_follows_what_streams() {
        let c = cluster("instances: 3\npostgresql:\n  synchronous:\n    method: first\n    number: 2\n    dataDurability: preferred\n    standbyNamesPre: [ext]\n");
        let p = SyncPolicy::of(&c, &names(&["pg-2", "pg-3"]), &names(&["pg-3"])).unwrap();
        assert_eq!(p.standby_names(), "FIRST 2 (\"ext\", \"pg-3\")");
        assert!(p.failover_is_safe(&[]).is_ok());
        let none = SyncPolicy::of(&c, &names(&["pg-2"]), &[]);
        assert_eq!(
            none.map(|p| p.standby_names()).as_deref(),
            Some("FIRST 1 (\"ext\")")
        );
        let c = cluster("instances: 2\npostgresql:\n  synchronous:\n    method: any\n    number: 1\n    dataDurability: preferred\n");
        assert_eq!(SyncPolicy::of(&c, &names(&["pg-2"]), &[]), None);
    }

    #[test]
    fn max_standby_names_and_legacy_bounds() {
        let c = cluster("instances: 4\npostgresql:\n  synchronous:\n    method: any\n    number: 1\n    maxStandbyNamesFromCluster: 2\n");
        let p = SyncPolicy::of(&c, &names(&["pg-2", "pg-3", "pg-4"]), &[]).unwrap();
        assert_eq!(p.standby_names(), "ANY 1 (\"pg-2\", \"pg-3\")");
        let legacy = cluster("instances: 3\nminSyncReplicas: 1\nmaxSyncReplicas: 2\n");
        let p = SyncPolicy::of(&legacy, &names(&["pg-2", "pg-3"]), &[]).unwrap();
        assert_eq!(p.standby_names(), "ANY 1 (\"pg-2\", \"pg-3\")");
        let p = SyncPolicy::of(
            &legacy,
            &names(&["pg-2", "pg-3"]),
            &names(&["pg-2", "pg-3"]),
        )
        .unwrap();
        assert_eq!(p.number, 2);
        assert_eq!(
            SyncPolicy::of(&cluster("instances: 3\n"), &names(&["pg-2"]), &[]),
            None
        );
    }
}
