//! ServiceAccount, Role and RoleBinding per Cluster (`NAME`, or the user's
//! `serviceAccountName`) and per Pooler (`P`), with the rules CloudNativePG's instance manager
//! and PgBouncer manager are given: read their own object and the Secrets and ConfigMaps it
//! names, write its status, events, and (instances) the primary Lease.

use crate::error::Result;
use crate::labels::{self, Base};
use crate::names;
use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use pgherd_api::{Cluster, Pooler};
use std::collections::{BTreeMap, BTreeSet};

const CNPG_GROUP: &str = "postgresql.cnpg.io";

/// The ServiceAccount the instance pods run as.
pub fn cluster_service_account_name(cluster: &Cluster) -> String {
    cluster
        .spec
        .service_account_name
        .clone()
        .unwrap_or_else(|| cluster.metadata.name.clone().unwrap_or_default())
}

fn rule(group: &str, resources: &[&str], verbs: &[&str], names: &[String]) -> PolicyRule {
    let strings = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    PolicyRule {
        api_groups: Some(vec![group.to_string()]),
        resources: Some(strings(resources)),
        verbs: strings(verbs),
        resource_names: (!names.is_empty()).then(|| names.to_vec()),
        non_resource_urls: None,
    }
}

/// Every Secret the cluster's spec names, plus the ones the operator makes for it.
pub fn cluster_secret_names(cluster: &Cluster) -> Vec<String> {
    let name = cluster.metadata.name.as_deref().unwrap_or_default();
    let spec = &cluster.spec;
    let mut out = BTreeSet::from([
        names::app_secret(name),
        names::superuser_secret(name),
        names::ca_secret(name),
        names::server_secret(name),
        names::replication_secret(name),
    ]);
    let mut add = |s: Option<&String>| {
        if let Some(s) = s.filter(|s| !s.is_empty()) {
            out.insert(s.clone());
        }
    };
    if let Some(c) = &spec.certificates {
        for s in [
            &c.server_ca_secret,
            &c.server_tls_secret,
            &c.replication_tls_secret,
            &c.client_ca_secret,
        ] {
            add(s.as_ref());
        }
    }
    add(spec.superuser_secret.as_ref().map(|s| &s.name));
    if let Some(b) = &spec.bootstrap {
        add(b
            .initdb
            .as_ref()
            .and_then(|i| i.secret.as_ref())
            .map(|s| &s.name));
        add(b
            .recovery
            .as_ref()
            .and_then(|r| r.secret.as_ref())
            .map(|s| &s.name));
        add(b
            .recovery
            .as_ref()
            .and_then(|r| r.backup.as_ref())
            .and_then(|b| b.endpoint_ca.as_ref())
            .map(|s| &s.name));
        add(b
            .pg_basebackup
            .as_ref()
            .and_then(|p| p.secret.as_ref())
            .map(|s| &s.name));
    }
    for role in spec.managed.iter().flat_map(|m| m.roles.iter().flatten()) {
        add(role.password_secret.as_ref().map(|s| &s.name));
    }
    for s in spec
        .monitoring
        .iter()
        .flat_map(|m| m.custom_queries_secret.iter().flatten())
    {
        add(Some(&s.name));
    }
    for external in spec.external_clusters.iter().flatten() {
        for s in [
            &external.ssl_cert,
            &external.ssl_key,
            &external.ssl_root_cert,
            &external.password,
        ] {
            add(s.as_ref().and_then(|s| s.name.as_ref()));
        }
        if let Some(store) = &external.barman_object_store {
            secret_refs_in(&serde_json::to_value(store).unwrap_or_default(), &mut add);
        }
    }
    if let Some(store) = spec
        .backup
        .as_ref()
        .and_then(|b| b.barman_object_store.as_ref())
    {
        secret_refs_in(&serde_json::to_value(store).unwrap_or_default(), &mut add);
    }
    out.into_iter().collect()
}

/// Every `{name, key}` secret selector inside an object-store configuration (credentials of
/// S3, Azure, Google, the endpoint CA).
fn secret_refs_in(value: &serde_json::Value, add: &mut impl FnMut(Option<&String>)) {
    match value {
        serde_json::Value::Object(map) => {
            if let (Some(serde_json::Value::String(name)), Some(_)) =
                (map.get("name"), map.get("key"))
            {
                add(Some(name));
            }
            for v in map.values() {
                secret_refs_in(v, add);
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| secret_refs_in(v, add)),
        _ => {}
    }
}

/// ConfigMaps the instance manager reads: the custom queries, and the default queries unless
/// disabled.
fn cluster_config_map_names(cluster: &Cluster) -> Vec<String> {
    let monitoring = cluster.spec.monitoring.clone().unwrap_or_default();
    let mut out = BTreeSet::new();
    if monitoring.disable_default_queries != Some(true) {
        out.insert("cnpg-default-monitoring".to_string());
    }
    for c in monitoring.custom_queries_config_map.iter().flatten() {
        out.insert(c.name.clone());
    }
    out.into_iter().collect()
}

/// The ServiceAccount (`None` when the user names an existing one), Role and RoleBinding of a
/// cluster.
pub fn cluster_rbac(cluster: &Cluster) -> Result<(Option<ServiceAccount>, Role, RoleBinding)> {
    let base = Base::of_cluster(cluster)?;
    let own = vec![base.name.clone()];
    let lbls = || labels::cluster_labels(cluster, "database");
    let account = match &cluster.spec.service_account_name {
        Some(_) => None,
        None => {
            let template = cluster
                .spec
                .service_account_template
                .as_ref()
                .map(|t| t.metadata.clone())
                .unwrap_or_default();
            let mut sa_labels = template.labels.unwrap_or_default();
            sa_labels.extend(lbls());
            Some(ServiceAccount {
                metadata: base.meta(
                    &base.name,
                    sa_labels,
                    template.annotations.unwrap_or_default(),
                )?,
                automount_service_account_token: Some(false),
                ..ServiceAccount::default()
            })
        }
    };
    let read = ["get", "watch"];
    let status = ["get", "patch", "update", "watch"];
    let rules = vec![
        rule(
            "",
            &["configmaps"],
            &read,
            &cluster_config_map_names(cluster),
        ),
        rule("", &["secrets"], &read, &cluster_secret_names(cluster)),
        rule(CNPG_GROUP, &["clusters"], &["get", "list", "watch"], &own),
        rule(CNPG_GROUP, &["clusters/status"], &status, &own),
        rule(CNPG_GROUP, &["backups"], &["get", "list", "delete"], &[]),
        rule(
            CNPG_GROUP,
            &["backups/status"],
            &["get", "patch", "update"],
            &[],
        ),
        rule(
            CNPG_GROUP,
            &["databases", "publications", "subscriptions"],
            &["get", "list", "update", "watch"],
            &[],
        ),
        rule(
            CNPG_GROUP,
            &[
                "databases/status",
                "publications/status",
                "subscriptions/status",
            ],
            &["get", "patch", "update"],
            &[],
        ),
        rule(
            CNPG_GROUP,
            &["failoverquorums"],
            &["get", "list", "watch"],
            &own,
        ),
        rule(CNPG_GROUP, &["failoverquorums/status"], &status, &own),
        rule("", &["events"], &["create", "patch"], &[]),
        rule("events.k8s.io", &["events"], &["create", "patch"], &[]),
        rule(
            "coordination.k8s.io",
            &["leases"],
            &["get", "update", "watch"],
            &own,
        ),
    ];
    let role = Role {
        metadata: base.meta(&base.name, lbls(), BTreeMap::new())?,
        rules: Some(rules),
    };
    let binding = binding(&base, lbls(), &cluster_service_account_name(cluster))?;
    Ok((account, role, binding))
}

fn binding(base: &Base, lbls: BTreeMap<String, String>, account: &str) -> Result<RoleBinding> {
    Ok(RoleBinding {
        metadata: base.meta(&base.name, lbls, BTreeMap::new())?,
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".to_string(),
            kind: "Role".to_string(),
            name: base.name.clone(),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".to_string(),
            name: account.to_string(),
            namespace: base.namespace.clone(),
            api_group: None,
        }]),
    })
}

/// The ServiceAccount a pooler's pods run as.
pub fn pooler_service_account_name(pooler: &Pooler) -> String {
    pooler
        .spec
        .service_account_name
        .clone()
        .unwrap_or_else(|| pooler.metadata.name.clone().unwrap_or_default())
}

/// The ServiceAccount (`None` when the user names one), Role and RoleBinding of a pooler.
pub fn pooler_rbac(
    pooler: &Pooler,
    certificates: &crate::secret::CertificateSecrets,
) -> Result<(Option<ServiceAccount>, Role, RoleBinding)> {
    let base = Base::new(pooler, "Pooler", None)?;
    let lbls = || crate::pooler::pooler_labels(pooler);
    let own = vec![base.name.clone()];
    let account = match &pooler.spec.service_account_name {
        Some(_) => None,
        None => Some(ServiceAccount {
            metadata: base.meta(&base.name, lbls(), BTreeMap::new())?,
            ..ServiceAccount::default()
        }),
    };
    let rules = vec![
        rule(CNPG_GROUP, &["poolers"], &["get", "watch"], &own),
        // Its cluster's status, watched: a rw pooler pauses during a switchover.
        rule(
            CNPG_GROUP,
            &["clusters"],
            &["get", "list", "watch"],
            std::slice::from_ref(&pooler.spec.cluster.name),
        ),
        rule(
            CNPG_GROUP,
            &["poolers/status"],
            &["get", "patch", "update", "watch"],
            &own,
        ),
        rule(
            "",
            &["secrets"],
            &["get", "watch"],
            &crate::pooler::pooler_secret_names(pooler, certificates),
        ),
        rule("", &["events"], &["create", "patch"], &[]),
        rule("events.k8s.io", &["events"], &["create", "patch"], &[]),
    ];
    let role = Role {
        metadata: base.meta(&base.name, lbls(), BTreeMap::new())?,
        rules: Some(rules),
    };
    let binding = binding(&base, lbls(), &pooler_service_account_name(pooler))?;
    Ok((account, role, binding))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn cluster_role_reads_only_its_own_secrets() {
        let mut c = Cluster::new("pg", Default::default());
        c.metadata.uid = Some("u".into());
        c.metadata.namespace = Some("ns".into());
        let (sa, role, rb) = cluster_rbac(&c).unwrap();
        assert_eq!(sa.unwrap().automount_service_account_token, Some(false));
        let rules = role.rules.unwrap();
        let secrets = rules
            .iter()
            .find(|r| r.resources.as_deref() == Some(&["secrets".to_string()][..]))
            .unwrap();
        assert!(secrets
            .resource_names
            .as_ref()
            .unwrap()
            .contains(&"pg-replication".to_string()));
        assert!(rules
            .iter()
            .any(|r| r.api_groups.as_deref() == Some(&["coordination.k8s.io".to_string()][..])));
        assert_eq!(rb.subjects.unwrap()[0].name, "pg");
        c.spec.service_account_name = Some("mine".into());
        let (sa, _, rb) = cluster_rbac(&c).unwrap();
        assert!(sa.is_none());
        assert_eq!(rb.subjects.unwrap()[0].name, "mine");
    }
}
