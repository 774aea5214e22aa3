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

/// The connection string to `external_name` (an entry of the subscriber's externalClusters).
fn conninfo(
    state: &StateDir,
    namespace: &str,
    cluster: &Cluster,
    external_name: &str,
    dbname: Option<&str>,
    secrets_dir: &Path,
    user: &OsUser,
) -> Result<String, String> {
    let Some((field, external)) = pgherd_controller::external::find(cluster, external_name) else {
        return Err(format!(
            "spec.externalClusterName: Cluster {:?} has no external cluster {external_name:?}; add it to its spec.externalClusters",
            cluster.metadata.name.as_deref().unwrap_or_default()
        ));
    };
    let parameters = crate::external::parameters(
        state,
        namespace,
        external,
        &field,
        dbname,
        secrets_dir,
        user,
    )?;
    Ok(pgherd_postgres::conf::conninfo_of(&parameters))
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
