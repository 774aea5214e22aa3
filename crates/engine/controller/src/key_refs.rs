//! Values a Cluster takes from Secrets and ConfigMaps by key (`bootstrap.initdb.postInit*SQLRefs`,
//! the monitoring custom queries, object-store credentials): what a platform's lookup found,
//! turned into the text or into one message naming the field, the object and the key, the same
//! on every platform. Pure: the platform looks the objects up.

use pgherd_api::common::SqlRefs;

/// The kind of object a key is read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Secret,
    ConfigMap,
}

impl Source {
    pub fn kind(self) -> &'static str {
        match self {
            Source::Secret => "Secret",
            Source::ConfigMap => "ConfigMap",
        }
    }
}

/// What looking up one key found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    /// No such object in the namespace.
    NoObject,
    /// The object has no such key.
    NoKey,
    /// The key's value, as text.
    Text(String),
    /// The key's value is not UTF-8 text.
    NotText,
}

impl Found {
    /// From a Secret's data, if the Secret exists.
    pub fn from_bytes(
        data: Option<&std::collections::BTreeMap<String, Vec<u8>>>,
        key: &str,
    ) -> Self {
        match data.map(|d| d.get(key)) {
            None => Found::NoObject,
            Some(None) => Found::NoKey,
            Some(Some(b)) => String::from_utf8(b.clone()).map_or(Found::NotText, Found::Text),
        }
    }

    /// From text data (a ConfigMap's, or a Secret's read as text), if the object exists.
    pub fn from_text(data: Option<&std::collections::BTreeMap<String, String>>, key: &str) -> Self {
        match data.map(|d| d.get(key)) {
            None => Found::NoObject,
            Some(None) => Found::NoKey,
            Some(Some(t)) => Found::Text(t.clone()),
        }
    }
}

/// The text under `key` of the `source` object `name`, or why not; `field` names the Cluster
/// field that refers to it.
pub fn text(
    field: &str,
    namespace: &str,
    source: Source,
    name: &str,
    key: &str,
    found: Found,
) -> Result<String, String> {
    let kind = source.kind();
    match found {
        Found::Text(t) => Ok(t),
        Found::NoObject => Err(format!(
            "{field}: {kind} {name:?} not found in namespace {namespace}; apply it (kind: {kind}) before the Cluster"
        )),
        Found::NoKey => Err(format!("{field}: {kind} {name:?} has no key {key:?}")),
        Found::NotText => Err(format!(
            "{field}: key {key:?} of {kind} {name:?} is not UTF-8 text"
        )),
    }
}

/// The keys `refs` point to, in CloudNativePG's order: every Secret reference in list order,
/// then every ConfigMap reference.
fn entries(refs: Option<&SqlRefs>) -> impl Iterator<Item = (Source, &str, &str)> {
    let secrets = refs
        .into_iter()
        .flat_map(|r| &r.secret_refs)
        .map(|r| (Source::Secret, r.name.as_str(), r.key.as_str()));
    let maps = refs
        .into_iter()
        .flat_map(|r| &r.config_map_refs)
        .map(|r| (Source::ConfigMap, r.name.as_str(), r.key.as_str()));
    secrets.chain(maps)
}

/// The statements `refs` point to, in CloudNativePG's order. `lookup` finds one key of one
/// object.
pub fn sql(
    field: &str,
    namespace: &str,
    refs: Option<&SqlRefs>,
    mut lookup: impl FnMut(Source, &str, &str) -> Found,
) -> Result<Vec<String>, String> {
    entries(refs)
        .map(|(source, name, key)| {
            text(
                field,
                namespace,
                source,
                name,
                key,
                lookup(source, name, key),
            )
        })
        .collect()
}

/// The objects `refs` point to, for a platform that fetches them first.
pub fn referenced(refs: Option<&SqlRefs>) -> Vec<(Source, String)> {
    entries(refs)
        .map(|(source, name, _)| (source, name.to_string()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use pgherd_api::common::{ConfigMapKeySelector, SecretKeySelector};

    fn refs() -> SqlRefs {
        SqlRefs {
            secret_refs: vec![SecretKeySelector {
                name: "s".into(),
                key: "a.sql".into(),
            }],
            config_map_refs: vec![
                ConfigMapKeySelector {
                    name: "m".into(),
                    key: "b.sql".into(),
                },
                ConfigMapKeySelector {
                    name: "m".into(),
                    key: "c.sql".into(),
                },
            ],
        }
    }

    #[test]
    fn secrets_first_then_config_maps_in_list_order() {
        let got = sql("f", "ns", Some(&refs()), |source, name, key| {
            Found::Text(format!("{}/{name}/{key}", source.kind()))
        })
        .unwrap();
        assert_eq!(
            got,
            ["Secret/s/a.sql", "ConfigMap/m/b.sql", "ConfigMap/m/c.sql"]
        );
        assert_eq!(
            referenced(Some(&refs())),
            [
                (Source::Secret, "s".to_string()),
                (Source::ConfigMap, "m".to_string()),
                (Source::ConfigMap, "m".to_string())
            ]
        );
    }

    #[test]
    fn a_missing_object_or_key_names_the_field_the_object_and_the_key() {
        let e = sql("spec.x", "ns", Some(&refs()), |source, _, _| match source {
            Source::Secret => Found::Text("ok".into()),
            Source::ConfigMap => Found::NoObject,
        })
        .unwrap_err();
        assert_eq!(
            e,
            "spec.x: ConfigMap \"m\" not found in namespace ns; apply it (kind: ConfigMap) before the Cluster"
        );
        let e = sql("spec.x", "ns", Some(&refs()), |_, _, _| Found::NoKey).unwrap_err();
        assert_eq!(e, "spec.x: Secret \"s\" has no key \"a.sql\"");
        let e = sql("spec.x", "ns", Some(&refs()), |_, _, _| Found::NotText).unwrap_err();
        assert!(e.contains("is not UTF-8 text"), "{e}");
        assert_eq!(
            sql("spec.x", "ns", None, |_, _, _| Found::NoKey),
            Ok(vec![])
        );
    }
}
