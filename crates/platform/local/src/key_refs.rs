//! Values the Cluster takes from stored Secrets and ConfigMaps by key: the SQL of
//! `bootstrap.initdb.postInit*SQLRefs` and the monitoring custom queries.

use crate::state::StateDir;
use crate::LocalError;
use k8s_openapi::api::core::v1::ConfigMap;
use pgherd_api::common::{ConfigMapKeySelector, SecretKeySelector, SqlRefs};

/// The text under `r.key` of the stored Secret `r.name`; `field` names the Cluster field for
/// error messages.
pub fn secret_key(
    state: &StateDir,
    namespace: &str,
    field: &str,
    r: &SecretKeySelector,
) -> Result<String, LocalError> {
    let data = crate::secrets::read(state, namespace, &r.name)?.ok_or_else(|| {
        LocalError::Invalid(format!(
            "{field}: Secret {:?} not found in namespace {namespace}; apply it (kind: Secret) before the Cluster",
            r.name
        ))
    })?;
    let bytes = data
        .get(&r.key)
        .ok_or_else(|| missing_key(field, "Secret", &r.name, &r.key))?;
    String::from_utf8(bytes.clone()).map_err(|_| {
        LocalError::Invalid(format!(
            "{field}: key {:?} of Secret {:?} is not UTF-8 text",
            r.key, r.name
        ))
    })
}

/// The text under `r.key` of the stored ConfigMap `r.name`.
pub fn config_map_key(
    state: &StateDir,
    namespace: &str,
    field: &str,
    r: &ConfigMapKeySelector,
) -> Result<String, LocalError> {
    let map: ConfigMap =
        crate::state::read_json(&state.object_path("ConfigMap", namespace, &r.name))?
            .ok_or_else(|| {
                LocalError::Invalid(format!(
                    "{field}: ConfigMap {:?} not found in namespace {namespace}; apply it (kind: ConfigMap) before the Cluster",
                    r.name
                ))
            })?;
    map.data
        .as_ref()
        .and_then(|d| d.get(&r.key))
        .cloned()
        .ok_or_else(|| missing_key(field, "ConfigMap", &r.name, &r.key))
}

/// The statements `refs` point to, in CloudNativePG's order: every Secret reference in list
/// order, then every ConfigMap reference.
pub fn sql(
    state: &StateDir,
    namespace: &str,
    field: &str,
    refs: Option<&SqlRefs>,
) -> Result<Vec<String>, LocalError> {
    let Some(refs) = refs else {
        return Ok(Vec::new());
    };
    let mut statements = Vec::new();
    for r in &refs.secret_refs {
        statements.push(secret_key(state, namespace, field, r)?);
    }
    for r in &refs.config_map_refs {
        statements.push(config_map_key(state, namespace, field, r)?);
    }
    Ok(statements)
}

fn missing_key(field: &str, kind: &str, name: &str, key: &str) -> LocalError {
    LocalError::Invalid(format!("{field}: {kind} {name:?} has no key {key:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_first_then_config_maps() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::new(dir.path());
        state.create().unwrap();
        let docs = pgherd_api::manifest::load(
            "apiVersion: v1\nkind: Secret\nmetadata:\n  name: s\nstringData:\n  a.sql: CREATE TABLE from_secret ()\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\ndata:\n  b.sql: CREATE TABLE from_map ()\n",
        );
        crate::apply::store(&state, &docs).unwrap();
        let refs = SqlRefs {
            secret_refs: vec![SecretKeySelector {
                name: "s".into(),
                key: "a.sql".into(),
            }],
            config_map_refs: vec![ConfigMapKeySelector {
                name: "c".into(),
                key: "b.sql".into(),
            }],
        };
        assert_eq!(
            sql(&state, "default", "f", Some(&refs)).unwrap(),
            ["CREATE TABLE from_secret ()", "CREATE TABLE from_map ()"]
        );
        let bad = SqlRefs {
            secret_refs: vec![SecretKeySelector {
                name: "s".into(),
                key: "nope".into(),
            }],
            config_map_refs: vec![],
        };
        let err = sql(
            &state,
            "default",
            "spec.bootstrap.initdb.postInitSQLRefs",
            Some(&bad),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("postInitSQLRefs") && err.contains("\"nope\""),
            "{err}"
        );
        let absent = SqlRefs {
            secret_refs: vec![],
            config_map_refs: vec![ConfigMapKeySelector {
                name: "gone".into(),
                key: "k".into(),
            }],
        };
        assert!(sql(&state, "default", "f", Some(&absent))
            .unwrap_err()
            .to_string()
            .contains("ConfigMap \"gone\" not found"));
    }
}
