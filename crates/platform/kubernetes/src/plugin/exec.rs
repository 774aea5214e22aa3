//! The verbs that run `psql` inside an instance's `postgres` container through `kubectl exec`
//! (pods/exec): `psql` itself, and `publication|subscription create|drop`, whose SQL is
//! built here with every name and value quoted. The result is the kubectl command line; the
//! caller runs it (or prints it with `--dry-run`).

use super::{PluginError, Result, Target};
use crate::labels;
use pgherd_postgres::quote::{quote_identifier, quote_literal};

/// The kubectl flags that reach the same API server as this plugin.
#[derive(Debug, Clone, Default)]
pub struct KubectlFlags {
    pub kubeconfig: Option<String>,
    pub context: Option<String>,
}

impl KubectlFlags {
    fn push(&self, argv: &mut Vec<String>) {
        if let Some(k) = &self.kubeconfig {
            argv.extend(["--kubeconfig".to_string(), k.clone()]);
        }
        if let Some(c) = &self.context {
            argv.extend(["--context".to_string(), c.clone()]);
        }
    }
}

/// `kubectl exec` of `command` in `pod`'s `postgres` container.
pub fn exec_argv(
    flags: &KubectlFlags,
    namespace: &str,
    pod: &str,
    tty: bool,
    stdin: bool,
    command: &[String],
) -> Vec<String> {
    let mut argv = vec!["kubectl".to_string()];
    flags.push(&mut argv);
    argv.push("exec".to_string());
    if tty {
        argv.push("-t".to_string());
    }
    if stdin {
        argv.push("-i".to_string());
    }
    argv.extend(["-n", namespace, "-c", "postgres", pod, "--"].map(str::to_string));
    argv.extend(command.iter().cloned());
    argv
}

fn quoted(name: &str, what: &str) -> Result<String> {
    quote_identifier(name).map_err(|e| PluginError::User(format!("{what} {name:?}: {e}")))
}

fn literal(value: &str, what: &str) -> Result<String> {
    quote_literal(value).map_err(|e| PluginError::User(format!("{what}: {e}")))
}

/// What `publication create` publishes.
#[derive(Debug, Clone, Default)]
pub struct PublicationTarget {
    pub all_tables: bool,
    pub tables: Vec<String>,
    pub schemas: Vec<String>,
}

/// `CREATE PUBLICATION`.
pub fn create_publication_sql(
    name: &str,
    target: &PublicationTarget,
    parameters: Option<&str>,
) -> Result<String> {
    let mut sql = format!("CREATE PUBLICATION {}", quoted(name, "publication")?);
    if target.all_tables {
        if !target.tables.is_empty() || !target.schemas.is_empty() {
            return Err(PluginError::User(
                "--all-tables cannot be combined with --table or --schema".to_string(),
            ));
        }
        sql.push_str(" FOR ALL TABLES");
    } else {
        let mut parts = Vec::new();
        for table in &target.tables {
            let q = match table.split_once('.') {
                Some((schema, t)) => {
                    format!("{}.{}", quoted(schema, "schema")?, quoted(t, "table")?)
                }
                None => quoted(table, "table")?,
            };
            parts.push(format!("TABLE {q}"));
        }
        for schema in &target.schemas {
            parts.push(format!("TABLES IN SCHEMA {}", quoted(schema, "schema")?));
        }
        if parts.is_empty() {
            return Err(PluginError::User(
                "say what to publish: --all-tables, or --table and/or --schema".to_string(),
            ));
        }
        sql.push_str(" FOR ");
        sql.push_str(&parts.join(", "));
    }
    if let Some(p) = parameters.filter(|p| !p.is_empty()) {
        sql.push_str(&format!(" WITH ({})", with_parameters(p)?));
    }
    Ok(sql)
}

/// `key=value,...` into `key = 'value', ...` (keys must be plain words).
fn with_parameters(parameters: &str) -> Result<String> {
    let mut out = Vec::new();
    for pair in parameters
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
    {
        let (key, value) = pair
            .split_once('=')
            .ok_or_else(|| PluginError::User(format!("--parameters: {pair:?} is not key=value")))?;
        let key = key.trim();
        if key.is_empty() || !key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err(PluginError::User(format!(
                "--parameters: {key:?} is not a parameter name"
            )));
        }
        out.push(format!(
            "{key} = {}",
            literal(value.trim(), "--parameters")?
        ));
    }
    Ok(out.join(", "))
}

/// `DROP PUBLICATION`.
pub fn drop_publication_sql(name: &str) -> Result<String> {
    Ok(format!(
        "DROP PUBLICATION IF EXISTS {}",
        quoted(name, "publication")?
    ))
}

/// A libpq connection string from `connectionParameters` (values quoted as libpq wants).
pub fn conninfo(
    parameters: &std::collections::BTreeMap<String, String>,
    dbname: Option<&str>,
) -> String {
    let mut params = parameters.clone();
    if let Some(db) = dbname {
        params.insert("dbname".to_string(), db.to_string());
    }
    pgherd_postgres::conf::conninfo_of(&params)
}

/// `CREATE SUBSCRIPTION`.
pub fn create_subscription_sql(
    name: &str,
    conninfo: &str,
    publication: &str,
    parameters: Option<&str>,
) -> Result<String> {
    let mut sql = format!(
        "CREATE SUBSCRIPTION {} CONNECTION {} PUBLICATION {}",
        quoted(name, "subscription")?,
        literal(conninfo, "connection")?,
        quoted(publication, "publication")?
    );
    if let Some(p) = parameters.filter(|p| !p.is_empty()) {
        sql.push_str(&format!(" WITH ({})", with_parameters(p)?));
    }
    Ok(sql)
}

/// `DROP SUBSCRIPTION`.
pub fn drop_subscription_sql(name: &str) -> Result<String> {
    Ok(format!(
        "DROP SUBSCRIPTION IF EXISTS {}",
        quoted(name, "subscription")?
    ))
}

/// psql running one statement in `dbname`, stopping at the first error.
pub fn psql_command(dbname: &str, sql: &str) -> Vec<String> {
    ["psql", "-v", "ON_ERROR_STOP=1", "-d", dbname, "-c", sql]
        .map(str::to_string)
        .to_vec()
}

impl Target {
    /// The Pod `psql` runs in: the primary, or with `replica` the first ready replica.
    pub async fn psql_pod(&self, cluster: &str, replica: bool) -> Result<String> {
        let c = self.cluster(cluster).await?;
        let pods = self.instance_pods(cluster).await?;
        let role_of = |p: &k8s_openapi::api::core::v1::Pod| {
            p.metadata.labels.as_ref().and_then(|l| {
                l.get(labels::INSTANCE_ROLE)
                    .or_else(|| l.get(labels::LEGACY_ROLE))
                    .cloned()
            })
        };
        let primary = c.status.as_ref().and_then(|s| s.current_primary.clone());
        let pick = pods.iter().find(|p| {
            let role = role_of(p);
            let name = p.metadata.name.as_deref();
            if replica {
                role.as_deref() == Some("replica") || (role.is_none() && name != primary.as_deref())
            } else {
                role.as_deref() == Some("primary") || (role.is_none() && name == primary.as_deref())
            }
        });
        pick.and_then(|p| p.metadata.name.clone()).ok_or_else(|| {
            PluginError::User(format!(
                "Cluster {}/{cluster} has no {} Pod to run psql in",
                self.namespace,
                if replica { "replica" } else { "primary" }
            ))
        })
    }

    /// The connection string of external cluster `name` of `cluster` (its
    /// `connectionParameters`; secrets stay in the pod).
    pub async fn external_conninfo(
        &self,
        cluster: &str,
        name: &str,
        dbname: Option<&str>,
    ) -> Result<String> {
        let c = self.cluster(cluster).await?;
        let external = c
            .spec
            .external_clusters
            .iter()
            .flatten()
            .find(|e| e.name == name)
            .ok_or_else(|| {
                PluginError::User(format!(
                    "Cluster {}/{cluster} has no external cluster {name:?} (spec.externalClusters)",
                    self.namespace
                ))
            })?;
        Ok(conninfo(
            &external.connection_parameters.clone().unwrap_or_default(),
            dbname,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publication_and_subscription_sql_is_quoted() {
        let all = PublicationTarget {
            all_tables: true,
            ..Default::default()
        };
        assert_eq!(
            create_publication_sql("pub", &all, None).unwrap(),
            "CREATE PUBLICATION \"pub\" FOR ALL TABLES"
        );
        let some = PublicationTarget {
            tables: vec!["s.t".into()],
            schemas: vec!["x".into()],
            ..Default::default()
        };
        assert_eq!(
            create_publication_sql("p\"q", &some, Some("publish=insert")).unwrap(),
            "CREATE PUBLICATION \"p\"\"q\" FOR TABLE \"s\".\"t\", TABLES IN SCHEMA \"x\" WITH (publish = 'insert')"
        );
        assert!(create_publication_sql("p", &PublicationTarget::default(), None).is_err());
        let conn = conninfo(
            &[("host".to_string(), "src-rw".to_string())].into(),
            Some("app"),
        );
        assert_eq!(conn, "dbname='app' host='src-rw'");
        assert_eq!(
            create_subscription_sql("sub", &conn, "pub", None).unwrap(),
            "CREATE SUBSCRIPTION \"sub\" CONNECTION 'dbname=''app'' host=''src-rw''' PUBLICATION \"pub\""
        );
        assert!(with_parameters("a b=1").is_err());
        assert_eq!(
            drop_subscription_sql("s").unwrap(),
            "DROP SUBSCRIPTION IF EXISTS \"s\""
        );
    }

    #[test]
    fn exec_line() {
        let argv = exec_argv(
            &KubectlFlags {
                kubeconfig: Some("/k".into()),
                context: None,
            },
            "ns",
            "pc-1",
            true,
            true,
            &["psql".into()],
        );
        assert_eq!(
            argv.join(" "),
            "kubectl --kubeconfig /k exec -t -i -n ns -c postgres pc-1 -- psql"
        );
    }
}
