//! From stored `Publication` and `Subscription` objects to the primary's instance spec, and
//! from its results back to their status.
//!
//! A subscription connects to the publisher named in the subscriber's `spec.externalClusters`.
//! A host of the form `<cluster>-rw` (or `-ro`, `-r`, optionally followed by `.<namespace>`,
//! `.<namespace>.svc`, `.<namespace>.svc.cluster.local`) naming a cluster of this state
//! directory stands for its Service, as on Kubernetes: it becomes that cluster's local endpoint.
//! The password (`password` Secret key reference) goes to a passfile owned by the PostgreSQL
//! user, never into the catalog's `subconninfo`.

use crate::state::{read_json, write_json, StateDir};
use crate::LocalError;
use pgherd_api::kinds::publication::{ReclaimPolicy, ReplicationObjectStatus};
use pgherd_api::{Cluster, Publication, Subscription};
use pgherd_instance_manager::OsUser;
use pgherd_instance_protocol::{
    ApplyResult, PublicationObject, PublicationSpec, PublicationTarget, SubscriptionSpec,
};
use std::collections::BTreeMap;
use std::path::Path;

/// Marks a deleted Publication or Subscription whose reclaim policy is `delete`: dropped in
/// PostgreSQL first, then the object goes (a finalizer, in Kubernetes terms).
pub use crate::declarative::DELETING_ANNOTATION;

fn deleting(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> bool {
    meta.annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(DELETING_ANNOTATION))
}

/// Whether deleting an object of `kind` stored at `path` must first drop it in PostgreSQL.
pub fn drops_on_delete(kind: &str, path: &Path) -> Result<bool, LocalError> {
    Ok(match kind {
        "Publication" => read_json::<Publication>(path)?
            .is_some_and(|p| p.spec.publication_reclaim_policy == Some(ReclaimPolicy::Delete)),
        "Subscription" => read_json::<Subscription>(path)?
            .is_some_and(|s| s.spec.subscription_reclaim_policy == Some(ReclaimPolicy::Delete)),
        _ => false,
    })
}

/// The publications of `cluster` in `namespace`.
pub fn publications(
    state: &StateDir,
    namespace: &str,
    cluster: &str,
) -> Result<Vec<PublicationSpec>, LocalError> {
    let all: Vec<(String, String, Publication)> = state.list_objects("Publication")?;
    Ok(all
        .into_iter()
        .filter(|(ns, _, p)| ns == namespace && p.spec.cluster.name == cluster)
        .map(|(_, object, p)| {
            let present = !deleting(&p.metadata);
            let s = p.spec;
            let target = match s.target.objects {
                Some(objects) if s.target.all_tables != Some(true) => PublicationTarget::Objects {
                    objects: objects
                        .into_iter()
                        .filter_map(|o| match (o.tables_in_schema, o.table) {
                            (Some(schema), _) => Some(PublicationObject::TablesInSchema { schema }),
                            (None, Some(t)) => Some(PublicationObject::Table {
                                only: t.only.unwrap_or(false),
                                schema: t.schema,
                                name: t.name,
                                columns: t.columns.unwrap_or_default(),
                            }),
                            (None, None) => None,
                        })
                        .collect(),
                },
                _ => PublicationTarget::AllTables,
            };
            PublicationSpec {
                object,
                name: s.name,
                dbname: s.dbname,
                present,
                target,
                parameters: s.parameters.unwrap_or_default(),
            }
        })
        .collect())
}

/// A libpq connection string value, quoted.
fn conninfo_value(value: &str) -> String {
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// A `.pgpass` field, escaped.
fn pgpass_field(value: &str) -> String {
    value.replace('\\', "\\\\").replace(':', "\\:")
}

/// The local endpoint a Service-like host stands for: `(127.0.0.1, port)`.
fn local_service(state: &StateDir, namespace: &str, host: &str) -> Option<(String, u16)> {
    let mut labels = host.split('.');
    let service = labels.next()?;
    let rest: Vec<&str> = labels.collect();
    let namespace = match rest.as_slice() {
        [] => namespace,
        [ns] | [ns, "svc"] | [ns, "svc", "cluster", "local"] => ns,
        _ => return None,
    };
    let (cluster, kind) = service.rsplit_once('-')?;
    if !matches!(kind, "rw" | "ro" | "r") {
        return None;
    }
    let ports: BTreeMap<String, u16> =
        read_json(&state.cluster_dir(namespace, cluster).join("ports.json"))
            .ok()
            .flatten()?;
    ports.get(kind).map(|p| ("127.0.0.1".to_string(), *p))
}

/// The connection string to `external` (an entry of the subscriber's externalClusters).
fn conninfo(
    state: &StateDir,
    namespace: &str,
    cluster: &Cluster,
    external_name: &str,
    dbname: Option<&str>,
    secrets_dir: &Path,
    user: &OsUser,
) -> Result<String, String> {
    let externals = cluster
        .spec
        .external_clusters
        .as_deref()
        .unwrap_or_default();
    let Some(external) = externals.iter().find(|e| e.name == external_name) else {
        return Err(format!(
            "spec.externalClusterName: Cluster {:?} has no external cluster {external_name:?}; add it to its spec.externalClusters",
            cluster.metadata.name.as_deref().unwrap_or_default()
        ));
    };
    if external.ssl_cert.is_some() || external.ssl_key.is_some() || external.ssl_root_cert.is_some()
    {
        return Err(format!(
            "external cluster {external_name:?}: certificate authentication (sslCert, sslKey, sslRootCert) is not supported on the local platform yet; use a password"
        ));
    }
    let mut parameters = external.connection_parameters.clone().unwrap_or_default();
    if let Some(host) = parameters.get("host").cloned() {
        if let Some((address, port)) = local_service(state, namespace, &host) {
            parameters.insert("host".into(), address);
            parameters.insert("port".into(), port.to_string());
        }
    }
    if let Some(db) = dbname {
        parameters.insert("dbname".into(), db.to_string());
    }
    // A publisher that does not answer must not hold CREATE SUBSCRIPTION for ever.
    parameters
        .entry("connect_timeout".into())
        .or_insert_with(|| "10".into());
    if let Some(selector) = &external.password {
        let secret = selector.name.clone().unwrap_or_default();
        let password = crate::secrets::read(state, namespace, &secret)
            .map_err(|e| e.to_string())?
            .and_then(|d| d.get(&selector.key).cloned())
            .ok_or_else(|| {
                format!(
                    "external cluster {external_name:?}: Secret {secret:?} key {:?} not found; apply the Secret",
                    selector.key
                )
            })?;
        let password = String::from_utf8_lossy(&password).into_owned();
        user.own_dir(secrets_dir, 0o700)
            .map_err(|e| e.to_string())?;
        let path = secrets_dir.join(format!("{external_name}.pgpass"));
        let line = format!("*:*:*:*:{}\n", pgpass_field(&password));
        user.write_file(&path, line.as_bytes(), 0o600)
            .map_err(|e| e.to_string())?;
        parameters.insert("passfile".into(), path.display().to_string());
    }
    Ok(parameters
        .iter()
        .map(|(k, v)| format!("{k}={}", conninfo_value(v)))
        .collect::<Vec<_>>()
        .join(" "))
}

/// The subscriptions of `cluster`, with the results of those that cannot even be specified
/// (an unknown external cluster, a missing Secret), to report as their status.
pub fn subscriptions(
    state: &StateDir,
    namespace: &str,
    cluster: &Cluster,
    secrets_dir: &Path,
    user: &OsUser,
) -> Result<(Vec<SubscriptionSpec>, Vec<ApplyResult>), LocalError> {
    let name = cluster.metadata.name.as_deref().unwrap_or_default();
    let all: Vec<(String, String, Subscription)> = state.list_objects("Subscription")?;
    let mut specs = Vec::new();
    let mut problems = Vec::new();
    for (_, object, s) in all
        .into_iter()
        .filter(|(ns, _, s)| ns == namespace && s.spec.cluster.name == name)
    {
        let present = !deleting(&s.metadata);
        let spec = s.spec;
        match conninfo(
            state,
            namespace,
            cluster,
            &spec.external_cluster_name,
            spec.publication_db_name.as_deref(),
            secrets_dir,
            user,
        ) {
            Ok(conninfo) => specs.push(SubscriptionSpec {
                object,
                name: spec.name,
                dbname: spec.dbname,
                present,
                publication: spec.publication_name,
                conninfo,
                parameters: spec.parameters.unwrap_or_default(),
            }),
            Err(message) => problems.push(ApplyResult {
                name: object,
                applied: false,
                message: Some(message),
            }),
        }
    }
    Ok((specs, problems))
}

/// Write each object's status (`applied`, `message`) from the primary's results; a deleted
/// object whose drop was applied goes away with its status. `dropped` says which objects the
/// results' spec asked to drop.
pub fn write_status(
    state: &StateDir,
    kind: &str,
    namespace: &str,
    results: &[ApplyResult],
    dropped: &dyn Fn(&str) -> bool,
) -> Result<(), LocalError> {
    for r in results {
        let object_path = state.object_path(kind, namespace, &r.name);
        let meta: Option<serde_json::Value> = read_json(&object_path)?;
        let Some(meta) = meta else { continue };
        let being_deleted = meta
            .pointer("/metadata/annotations")
            .and_then(|a| a.get(DELETING_ANNOTATION))
            .is_some();
        if r.applied && being_deleted && dropped(&r.name) {
            for path in [object_path, state.status_path(kind, namespace, &r.name)] {
                let _ = std::fs::remove_file(path);
            }
            continue;
        }
        let status = ReplicationObjectStatus {
            observed_generation: None,
            applied: Some(r.applied),
            message: r.message.clone(),
        };
        write_json(&state.status_path(kind, namespace, &r.name), &status, 0o600)?;
    }
    Ok(())
}

/// The statuses of the Publications and Subscriptions from the primary's report; `applied` is
/// its spec when the report is for that spec (a drop is known done only then).
pub fn write_results(
    state: &StateDir,
    namespace: &str,
    report: &pgherd_instance_protocol::InstanceStatus,
    applied: Option<&pgherd_instance_protocol::InstanceSpec>,
) -> Result<(), LocalError> {
    let dropped_publication = |object: &str| {
        applied.is_some_and(|s| {
            s.publications
                .iter()
                .any(|p| p.object == object && !p.present)
        })
    };
    let dropped_subscription = |object: &str| {
        applied.is_some_and(|s| {
            s.subscriptions
                .iter()
                .any(|p| p.object == object && !p.present)
        })
    };
    write_status(
        state,
        "Publication",
        namespace,
        &report.publication_results,
        &dropped_publication,
    )?;
    write_status(
        state,
        "Subscription",
        namespace,
        &report.subscription_results,
        &dropped_subscription,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_like_hosts_become_local_endpoints() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::new(dir.path().to_path_buf());
        let cluster_dir = state.cluster_dir("default", "shop");
        std::fs::create_dir_all(&cluster_dir).unwrap();
        std::fs::write(
            cluster_dir.join("ports.json"),
            r#"{"rw": 7001, "ro": 7002, "r": 7003}"#,
        )
        .unwrap();
        let local = |host: &str| local_service(&state, "default", host);
        let ep = |p: u16| Some(("127.0.0.1".to_string(), p));
        assert_eq!(local("shop-rw"), ep(7001));
        assert_eq!(local("shop-ro.default"), ep(7002));
        assert_eq!(local("shop-r.default.svc"), ep(7003));
        assert_eq!(local("shop-rw.default.svc.cluster.local"), ep(7001));
        assert_eq!(local("shop-rw.other"), None);
        assert_eq!(local("shop"), None);
        assert_eq!(local("db.example.com"), None);
    }

    #[test]
    fn conninfo_values_and_pgpass_fields_are_escaped() {
        assert_eq!(conninfo_value("a b'c\\"), "'a b\\'c\\\\'");
        assert_eq!(pgpass_field("p:w\\d"), "p\\:w\\\\d");
    }
}
