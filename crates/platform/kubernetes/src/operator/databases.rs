//! `Database` objects on Kubernetes: the primary's manager applies them (the controller's
//! [`database_spec`]); each gets CloudNativePG's finalizer `cnpg.io/deleteDatabase` so that
//! deleting one with `databaseReclaimPolicy: delete` drops the database before the object goes
//! (with `retain` the finalizer is removed at once and the database stays); the primary's
//! results become their status. A Database deleted while its Cluster does not exist (deleted
//! first, as seed 002's cleanup does) has nothing to drop: [`release_orphans`] removes the
//! finalizer, as CloudNativePG's database controller does, so `kubectl delete` returns.

use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::Client;
use pgherd_api::kinds::database::{DatabaseReclaimPolicy, DatabaseStatus};
use pgherd_api::Cluster;
use pgherd_api::Database;
use pgherd_controller::declarative::database_spec;
use pgherd_instance_protocol::{ApplyResult, DatabaseSpec, InstanceSpec};
use std::time::Duration;

/// CloudNativePG's finalizer on Database objects.
pub(crate) const FINALIZER: &str = "cnpg.io/deleteDatabase";

fn api(client: &Client, namespace: &str) -> Api<Database> {
    Api::namespaced(client.clone(), namespace)
}

fn name(d: &Database) -> String {
    d.metadata.name.clone().unwrap_or_default()
}

fn deleting(d: &Database) -> bool {
    d.metadata.deletion_timestamp.is_some()
}

fn drops(d: &Database) -> bool {
    d.spec.database_reclaim_policy == Some(DatabaseReclaimPolicy::Delete)
}

fn finalizers(d: &Database) -> Vec<String> {
    d.metadata.finalizers.clone().unwrap_or_default()
}

/// Set the object's finalizers (a merge patch replaces the list; conditioned on the version
/// read, so a concurrent change is not overwritten).
async fn set_finalizers(client: &Client, namespace: &str, d: &Database, list: Vec<String>) {
    let patch = serde_json::json!({
        "metadata": {
            "finalizers": list,
            "resourceVersion": d.metadata.resource_version,
        }
    });
    if let Err(e) = api(client, namespace)
        .patch(&name(d), &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        tracing::debug!("Database {}: cannot set its finalizers: {e}", name(d));
    }
}

/// The Database objects of `cluster` in `namespace`.
pub(crate) async fn list(
    client: &Client,
    namespace: &str,
    cluster: &str,
) -> Result<Vec<Database>, kube::Error> {
    Ok(api(client, namespace)
        .list(&ListParams::default())
        .await?
        .into_iter()
        .filter(|d| d.spec.cluster.name == cluster)
        .collect())
}

/// What the primary applies for `databases`; finalizers added to new ones, and removed at once
/// from deleted ones that keep their database.
pub(crate) async fn specs(
    client: &Client,
    namespace: &str,
    databases: &[Database],
) -> Vec<DatabaseSpec> {
    let mut out = Vec::new();
    for d in databases {
        let has = finalizers(d).iter().any(|f| f == FINALIZER);
        match (deleting(d), drops(d)) {
            (false, _) => {
                if !has {
                    let mut list = finalizers(d);
                    list.push(FINALIZER.to_string());
                    set_finalizers(client, namespace, d, list).await;
                }
                out.push(database_spec(&name(d), d, false));
            }
            (true, true) if has => out.push(database_spec(&name(d), d, true)),
            (true, _) => {
                if has {
                    let list = finalizers(d)
                        .into_iter()
                        .filter(|f| f != FINALIZER)
                        .collect();
                    set_finalizers(client, namespace, d, list).await;
                }
            }
        }
    }
    out
}

/// Each Database's status from the primary's results; a deleted one whose drop the primary
/// applied (under `applied`, the spec its results are for) loses its finalizer.
pub(crate) async fn write_status(
    client: &Client,
    namespace: &str,
    databases: &[Database],
    results: &[ApplyResult],
    applied: Option<&InstanceSpec>,
) {
    for r in results {
        let Some(d) = databases.iter().find(|d| name(d) == r.name) else {
            continue;
        };
        let dropped = applied.is_some_and(|spec| {
            spec.databases
                .iter()
                .any(|s| s.object == r.name && !s.present)
        });
        if r.applied && dropped && deleting(d) {
            let list = finalizers(d)
                .into_iter()
                .filter(|f| f != FINALIZER)
                .collect();
            set_finalizers(client, namespace, d, list).await;
            continue;
        }
        let status = DatabaseStatus {
            observed_generation: d.metadata.generation,
            applied: Some(r.applied),
            message: r.message.clone(),
            ..Default::default()
        };
        if d.status.as_ref() == Some(&status) {
            continue;
        }
        let patch = serde_json::json!({ "status": status });
        if let Err(e) = api(client, namespace)
            .patch_status(&r.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            tracing::debug!("Database {}: cannot write its status: {e}", r.name);
        }
    }
}

/// How often deleted Databases of missing Clusters are looked for.
const ORPHANS_EVERY: Duration = Duration::from_secs(3);

/// Remove the finalizer of every deleted Database whose Cluster does not exist, until stopped.
pub(crate) async fn release_orphans(client: Client) {
    loop {
        if let Ok(list) = Api::<Database>::all(client.clone())
            .list(&ListParams::default())
            .await
        {
            for d in list.into_iter().filter(deleting) {
                if !finalizers(&d).iter().any(|f| f == FINALIZER) {
                    continue;
                }
                let namespace = d.metadata.namespace.clone().unwrap_or_default();
                let clusters: Api<Cluster> = Api::namespaced(client.clone(), &namespace);
                if let Ok(None) = clusters.get_opt(&d.spec.cluster.name).await {
                    tracing::info!(
                        "Database {namespace}/{}: its Cluster {} does not exist; nothing to drop",
                        name(&d),
                        d.spec.cluster.name
                    );
                    let list = finalizers(&d)
                        .into_iter()
                        .filter(|f| f != FINALIZER)
                        .collect();
                    set_finalizers(&client, &namespace, &d, list).await;
                }
            }
        }
        tokio::time::sleep(ORPHANS_EVERY).await;
    }
}
