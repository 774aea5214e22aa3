//! Kinds the Kubernetes operator does not reconcile yet (the local platform does): each such
//! object gets a status saying so, in the fields its kind has for it, so nothing a user
//! applies is silently ignored. Checked every [`EVERY`].

use kube::api::{Api, ApiResource, DynamicObject, ListParams, Patch, PatchParams};
use kube::{Client, Resource};
use std::collections::BTreeSet;
use std::time::Duration;

/// How often the kinds are listed.
const EVERY: Duration = Duration::from_secs(10);

/// What to tell a user who applied an object of a kind the operator does not run.
fn message(kind: &str) -> String {
    format!(
        "{kind} objects are not reconciled by pgherd's Kubernetes operator yet; the local platform runs them (pgherd local apply -f FILE)"
    )
}

/// The status patch saying so, in the fields `kind` has for it.
fn status_patch(kind: &str) -> serde_json::Value {
    serde_json::json!({"status": {"applied": false, "message": message(kind)}})
}

fn resource<K: Resource<DynamicType = ()>>() -> ApiResource {
    ApiResource::erase::<K>(&())
}

/// Mark every object of the kinds not run on Kubernetes, until stopped.
pub(crate) async fn run(client: Client) {
    let kinds = [
        resource::<pgherd_api::Publication>(),
        resource::<pgherd_api::Subscription>(),
        resource::<pgherd_api::DatabaseRole>(),
    ];
    // (uid, generation) already marked by this process.
    let mut marked: BTreeSet<(String, i64)> = BTreeSet::new();
    loop {
        for kind in &kinds {
            let api: Api<DynamicObject> = Api::all_with(client.clone(), kind);
            let Ok(list) = api.list(&ListParams::default()).await else {
                continue; // the CRD is not installed
            };
            for object in list {
                let key = (
                    object.metadata.uid.clone().unwrap_or_default(),
                    object.metadata.generation.unwrap_or(0),
                );
                if marked.contains(&key) {
                    continue;
                }
                let (Some(namespace), Some(name)) = (
                    object.metadata.namespace.clone(),
                    object.metadata.name.clone(),
                ) else {
                    continue;
                };
                let namespaced: Api<DynamicObject> =
                    Api::namespaced_with(client.clone(), &namespace, kind);
                let patch = status_patch(&kind.kind);
                match namespaced
                    .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                {
                    Ok(_) => {
                        tracing::warn!("{namespace}/{name}: {}", message(&kind.kind));
                        marked.insert(key);
                    }
                    Err(e) => tracing::debug!("{namespace}/{name}: cannot write status: {e}"),
                }
            }
        }
        tokio::time::sleep(EVERY).await;
    }
}
