//! `spec.monitoring` resolved for the instances: the custom query files from the stored
//! ConfigMaps and Secrets it names, the default-query switch and the cache TTL.

use crate::key_refs::{config_map_key, secret_key};
use crate::state::StateDir;
use crate::LocalError;
use pgherd_api::Cluster;
use pgherd_instance_protocol::{BackupFacts, CustomQueries, MonitoringSpec};

/// CloudNativePG's default `metricsQueriesTTL`.
const DEFAULT_TTL_SECONDS: u64 = 30;

/// The backup facts of a cluster's status (RFC 3339 timestamps) as the metrics want them.
pub fn backup_facts(status: Option<&crate::status::LocalClusterStatus>) -> BackupFacts {
    let seconds = |t: &Option<String>| {
        t.as_deref()
            .and_then(pgherd_backup::timestamp::parse_time)
            .map(time::OffsetDateTime::unix_timestamp)
    };
    status.map_or_else(BackupFacts::default, |s| BackupFacts {
        first_recoverability_point: seconds(&s.first_recoverability_point),
        last_available_backup: seconds(&s.last_successful_backup),
        last_failed_backup: seconds(&s.last_failed_backup),
    })
}

/// The resolved spec, and what could not be resolved: a query file that cannot be read (a
/// ConfigMap not applied yet, say) is left out, an invalid TTL falls back to the default;
/// either way the rest applies and the cluster goes on.
pub fn resolve(
    state: &StateDir,
    namespace: &str,
    cluster: &Cluster,
) -> (MonitoringSpec, Vec<LocalError>) {
    let mut problems = Vec::new();
    let Some(monitoring) = cluster.spec.monitoring.as_ref() else {
        let spec = MonitoringSpec {
            queries_ttl_seconds: DEFAULT_TTL_SECONDS,
            ..MonitoringSpec::default()
        };
        return (spec, problems);
    };
    let mut custom_queries = Vec::new();
    for r in monitoring.custom_queries_config_map.iter().flatten() {
        let field = "spec.monitoring.customQueriesConfigMap";
        match config_map_key(state, namespace, field, r) {
            Ok(yaml) => custom_queries.push(CustomQueries {
                source: format!("ConfigMap/{} key {}", r.name, r.key),
                yaml,
            }),
            Err(e) => problems.push(e),
        }
    }
    for r in monitoring.custom_queries_secret.iter().flatten() {
        let field = "spec.monitoring.customQueriesSecret";
        match secret_key(state, namespace, field, r) {
            Ok(yaml) => custom_queries.push(CustomQueries {
                source: format!("Secret/{} key {}", r.name, r.key),
                yaml,
            }),
            Err(e) => problems.push(e),
        }
    }
    let queries_ttl_seconds = match monitoring.metrics_queries_ttl.as_deref() {
        None => DEFAULT_TTL_SECONDS,
        Some(text) => match pgherd_api::duration::parse_go_duration(text) {
            Ok(ttl) => ttl.as_secs(),
            Err(e) => {
                problems.push(LocalError::Invalid(format!(
                    "cluster {}: spec.monitoring.metricsQueriesTTL: {e}",
                    cluster.metadata.name.as_deref().unwrap_or("-")
                )));
                DEFAULT_TTL_SECONDS
            }
        },
    };
    let spec = MonitoringSpec {
        disable_default_queries: monitoring.disable_default_queries.unwrap_or(false),
        custom_queries,
        queries_ttl_seconds,
        ..MonitoringSpec::default()
    };
    (spec, problems)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn custom_queries_come_from_stored_objects() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::new(dir.path());
        state.create().unwrap();
        let docs = pgherd_api::manifest::load(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: q\ndata:\n  queries: |\n    pg_x:\n      query: SELECT 1 AS v\n      metrics:\n        - v:\n            usage: GAUGE\n            description: one\n",
        );
        crate::apply::store(&state, &docs).unwrap();
        let cluster: Cluster = serde_yaml_ng::from_str(
            "apiVersion: postgresql.cnpg.io/v1\nkind: Cluster\nmetadata:\n  name: c\nspec:\n  instances: 1\n  monitoring:\n    disableDefaultQueries: true\n    metricsQueriesTTL: 1m\n    customQueriesConfigMap:\n      - name: q\n        key: queries\n",
        )
        .unwrap();
        let (m, problems) = resolve(&state, "default", &cluster);
        assert!(problems.is_empty(), "{problems:?}");
        assert!(m.disable_default_queries);
        assert_eq!(m.queries_ttl_seconds, 60);
        assert_eq!(m.custom_queries.len(), 1);
        assert!(m.custom_queries[0].yaml.contains("pg_x"));
        assert_eq!(m.custom_queries[0].source, "ConfigMap/q key queries");

        let missing: Cluster = serde_yaml_ng::from_str(
            "apiVersion: postgresql.cnpg.io/v1\nkind: Cluster\nmetadata:\n  name: c\nspec:\n  instances: 1\n  monitoring:\n    customQueriesSecret:\n      - name: nope\n        key: queries\n",
        )
        .unwrap();
        let (m, problems) = resolve(&state, "default", &missing);
        assert!(m.custom_queries.is_empty());
        let e = problems[0].to_string();
        assert!(
            e.contains("customQueriesSecret") && e.contains("nope"),
            "{e}"
        );
    }
}
