//! Values the Cluster takes from stored Secrets and ConfigMaps by key: the SQL of
//! `bootstrap.initdb.postInit*SQLRefs` and the monitoring custom queries. What a lookup found
//! becomes text or a message through `pgherd_controller::key_refs`, as on Kubernetes.

use crate::state::StateDir;
use crate::LocalError;
use k8s_openapi::api::core::v1::ConfigMap;
use pgherd_api::common::{ConfigMapKeySelector, SecretKeySelector, SqlRefs};
use pgherd_controller::key_refs::{self, Found, Source};

/// What the stored `source` object `name` has under `key`.
fn lookup(
    state: &StateDir,
    namespace: &str,
    source: Source,
    name: &str,
    key: &str,
) -> Result<Found, LocalError> {
    Ok(match source {
        Source::Secret => {
            Found::from_bytes(crate::secrets::read(state, namespace, name)?.as_ref(), key)
        }
        Source::ConfigMap => {
            let map: Option<ConfigMap> =
                crate::state::read_json(&state.object_path("ConfigMap", namespace, name))?;
            let data = map.map(|m| m.data.unwrap_or_default());
            Found::from_text(data.as_ref(), key)
        }
    })
}

fn text(
    state: &StateDir,
    namespace: &str,
    field: &str,
    source: Source,
    name: &str,
    key: &str,
) -> Result<String, LocalError> {
    let found = lookup(state, namespace, source, name, key)?;
    key_refs::text(field, namespace, source, name, key, found).map_err(LocalError::Invalid)
}

/// The text under `r.key` of the stored Secret `r.name`; `field` names the Cluster field for
/// error messages.
pub fn secret_key(
    state: &StateDir,
    namespace: &str,
    field: &str,
    r: &SecretKeySelector,
) -> Result<String, LocalError> {
    text(state, namespace, field, Source::Secret, &r.name, &r.key)
}

/// The text under `r.key` of the stored ConfigMap `r.name`.
pub fn config_map_key(
    state: &StateDir,
    namespace: &str,
    field: &str,
    r: &ConfigMapKeySelector,
) -> Result<String, LocalError> {
    text(state, namespace, field, Source::ConfigMap, &r.name, &r.key)
}

/// The statements `refs` point to, in CloudNativePG's order.
pub fn sql(
    state: &StateDir,
    namespace: &str,
    field: &str,
    refs: Option<&SqlRefs>,
) -> Result<Vec<String>, LocalError> {
    let mut failed = None;
    let statements = key_refs::sql(field, namespace, refs, |source, name, key| {
        lookup(state, namespace, source, name, key).unwrap_or_else(|e| {
            failed.get_or_insert(e);
            Found::NoObject
        })
    });
    if let Some(e) = failed {
        return Err(e);
    }
    statements.map_err(LocalError::Invalid)
}
