//! The `cnpg_collector_*` metrics that do not come from SQL: whether PostgreSQL answered, its
//! version, the exporter's own bookkeeping, facts other subsystems know (fencing, replica mode,
//! backups) given through [`ClusterFacts`], and the volumes' usage (statvfs on the paths given).
//! The SQL-based collector metrics are queries in `collector_queries.yaml`.

use crate::exposition::{Family, MetricKind};
use std::path::PathBuf;

/// What other subsystems know, filled in by the integrator (the instance manager) and read at
/// each scrape. `None` leaves the metric out.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClusterFacts {
    /// The cluster is a replica cluster (`spec.replica.enabled`).
    pub replica_mode: bool,
    /// This instance is fenced.
    pub fencing_on: bool,
    /// A switchover needs a human (CloudNativePG: `primaryUpdateMethod: supervised`).
    pub manual_switchover_required: bool,
    /// Distinct nodes the cluster's instances run on.
    pub nodes_used: Option<u32>,
    /// `spec.minSyncReplicas` / `spec.maxSyncReplicas`.
    pub sync_replicas_min: Option<u32>,
    pub sync_replicas_max: Option<u32>,
    /// Seconds since the epoch.
    pub first_recoverability_point: Option<f64>,
    pub last_available_backup_timestamp: Option<f64>,
    pub last_failed_backup_timestamp: Option<f64>,
    /// Size of the volume holding pg_wal, in bytes (`cnpg_collector_pg_wal{value="volume_size"}`).
    pub wal_volume_size_bytes: Option<u64>,
}

/// Directories whose file systems are measured at each scrape (`volume` label → path),
/// e.g. `pgdata` → PGDATA, `pg_wal` → the WAL directory.
pub type Volumes = Vec<(String, PathBuf)>;

/// Names and HELP of every collector metric this module emits (for the list of exported names).
pub const COLLECTOR_METRICS: &[(&str, &str)] = &[
    (
        "cnpg_collector_up",
        "1 if PostgreSQL is up and answering the exporter, 0 otherwise",
    ),
    (
        "cnpg_collector_postgres_version",
        "PostgreSQL version (major.minor), full version in the label",
    ),
    (
        "cnpg_collector_collections_total",
        "Scrapes of this exporter",
    ),
    (
        "cnpg_collector_collection_errors_total",
        "Scrapes in which at least one query failed",
    ),
    (
        "cnpg_collector_last_collection_error",
        "1 if the last scrape had an error, 0 otherwise",
    ),
    (
        "cnpg_collector_collection_duration_seconds",
        "Duration of the last scrape, by part",
    ),
    (
        "cnpg_collector_query_errors_total",
        "Failures of each query in each database, by category",
    ),
    (
        "cnpg_collector_replica_mode",
        "1 if the cluster is in replica mode, 0 otherwise",
    ),
    (
        "cnpg_collector_fencing_on",
        "1 if the instance is fenced, 0 otherwise",
    ),
    (
        "cnpg_collector_manual_switchover_required",
        "1 if a switchover must be done by hand, 0 otherwise",
    ),
    (
        "cnpg_collector_nodes_used",
        "Distinct nodes the cluster's instances run on",
    ),
    (
        "cnpg_collector_first_recoverability_point",
        "Earliest point in time a recovery can reach, in seconds since the epoch",
    ),
    (
        "cnpg_collector_last_available_backup_timestamp",
        "When the last successful backup ended, in seconds since the epoch",
    ),
    (
        "cnpg_collector_last_failed_backup_timestamp",
        "When the last backup failed, in seconds since the epoch",
    ),
    (
        "cnpg_collector_volume_size_bytes",
        "Size of the file system holding the volume, in bytes",
    ),
    (
        "cnpg_collector_volume_available_bytes",
        "Bytes available to PostgreSQL on the volume's file system",
    ),
    (
        "cnpg_errors_total",
        "Errors running monitoring queries, by query",
    ),
    (
        "cnpg_last_error",
        "1 if the last scrape ended with a query error, 0 otherwise",
    ),
    (
        "cnpg_last_update_timestamp",
        "When query results were last refreshed, in seconds since the epoch",
    ),
    (
        "cnpg_cache_hits",
        "Query results served from the cache in the last scrape",
    ),
    (
        "cnpg_cache_miss",
        "1 if the last scrape ran at least one query (cache miss), 0 otherwise",
    ),
];

fn help(name: &str) -> &'static str {
    COLLECTOR_METRICS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, h)| *h)
        .unwrap_or("")
}

/// A family of one collector metric.
pub fn family(name: &str, kind: MetricKind) -> Family {
    Family::new(name, help(name), kind)
}

fn flag(value: bool) -> f64 {
    if value {
        1.0
    } else {
        0.0
    }
}

/// The families derived from the facts.
pub fn fact_families(facts: &ClusterFacts) -> Vec<Family> {
    let mut out = vec![
        family("cnpg_collector_replica_mode", MetricKind::Gauge)
            .with(vec![], flag(facts.replica_mode)),
        family("cnpg_collector_fencing_on", MetricKind::Gauge).with(vec![], flag(facts.fencing_on)),
        family(
            "cnpg_collector_manual_switchover_required",
            MetricKind::Gauge,
        )
        .with(vec![], flag(facts.manual_switchover_required)),
    ];
    if let Some(nodes) = facts.nodes_used {
        out.push(
            family("cnpg_collector_nodes_used", MetricKind::Gauge).with(vec![], f64::from(nodes)),
        );
    }
    // Always there, 0 before the first backup (as in CloudNativePG), so an alert on them sees a
    // cluster that never backed up.
    let backups = [
        (
            "cnpg_collector_first_recoverability_point",
            facts.first_recoverability_point,
        ),
        (
            "cnpg_collector_last_available_backup_timestamp",
            facts.last_available_backup_timestamp,
        ),
        (
            "cnpg_collector_last_failed_backup_timestamp",
            facts.last_failed_backup_timestamp,
        ),
    ];
    for (name, value) in backups {
        out.push(family(name, MetricKind::Gauge).with(vec![], value.unwrap_or(0.0)));
    }
    let mut sync = Family::new(
        "cnpg_collector_sync_replicas",
        "Synchronous replicas (value=observed|expected|streaming|min|max)",
        MetricKind::Gauge,
    );
    // Unset min/max are CloudNativePG's defaults, 0.
    for (label, value) in [
        ("min", facts.sync_replicas_min),
        ("max", facts.sync_replicas_max),
    ] {
        sync.push(
            vec![("value".into(), label.into())],
            f64::from(value.unwrap_or(0)),
        );
    }
    out.push(sync);
    if let Some(size) = facts.wal_volume_size_bytes {
        out.push(
            Family::new(
                "cnpg_collector_pg_wal",
                "WAL segments in pg_wal (value=count), their total size in bytes (value=size) and the WAL size settings in bytes (value=min|max|keep|slots_max|volume_size)",
                MetricKind::Gauge,
            )
            .with(vec![("value".into(), "volume_size".into())], size as f64),
        );
    }
    out
}

/// Size and available bytes of each volume's file system; a path that cannot be measured is
/// left out and reported.
pub fn volume_families(volumes: &Volumes) -> (Vec<Family>, Vec<String>) {
    let mut size = family("cnpg_collector_volume_size_bytes", MetricKind::Gauge);
    let mut available = family("cnpg_collector_volume_available_bytes", MetricKind::Gauge);
    let mut problems = Vec::new();
    for (volume, path) in volumes {
        match nix::sys::statvfs::statvfs(path) {
            Ok(stat) => {
                let block = stat.fragment_size() as f64;
                let labels = vec![("volume".to_string(), volume.clone())];
                size.push(labels.clone(), stat.blocks() as f64 * block);
                available.push(labels, stat.blocks_available() as f64 * block);
            }
            Err(e) => problems.push(format!("volume {volume} ({}): {e}", path.display())),
        }
    }
    (vec![size, available], problems)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn facts_become_metrics_and_unknowns_are_zero_or_left_out() {
        let facts = ClusterFacts {
            fencing_on: true,
            sync_replicas_min: Some(1),
            last_available_backup_timestamp: Some(1.7e9),
            ..ClusterFacts::default()
        };
        let families = fact_families(&facts);
        let get = |n: &str| families.iter().find(|f| f.name == n);
        assert_eq!(
            get("cnpg_collector_fencing_on").unwrap().samples[0].value,
            1.0
        );
        assert_eq!(
            get("cnpg_collector_replica_mode").unwrap().samples[0].value,
            0.0
        );
        // Before any backup, 0 (as in CloudNativePG), not absent.
        for name in [
            "cnpg_collector_last_failed_backup_timestamp",
            "cnpg_collector_first_recoverability_point",
        ] {
            assert_eq!(get(name).unwrap().samples[0].value, 0.0, "{name}");
        }
        assert_eq!(
            get("cnpg_collector_last_available_backup_timestamp")
                .unwrap()
                .samples[0]
                .value,
            1.7e9
        );
        // Unset min/max are CloudNativePG's default 0.
        let sync = &get("cnpg_collector_sync_replicas").unwrap().samples;
        assert_eq!(sync.len(), 2);
        assert_eq!(sync[1].value, 0.0);
        assert!(get("cnpg_collector_nodes_used").is_none());
        assert!(families.iter().all(|f| !f.help.is_empty()));
    }

    #[test]
    fn volumes_are_measured() {
        let dir = tempfile::tempdir().unwrap();
        let (families, problems) = volume_families(&vec![
            ("pgdata".into(), dir.path().to_path_buf()),
            ("gone".into(), dir.path().join("missing")),
        ]);
        assert_eq!(problems.len(), 1);
        assert!(families[0].samples[0].value > 0.0);
        assert!(families[1].samples[0].value <= families[0].samples[0].value);
    }
}
