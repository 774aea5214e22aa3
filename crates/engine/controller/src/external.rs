//! Connecting to an external cluster (`spec.externalClusters[]`) over libpq: its
//! `connectionParameters`, with its password and certificates as files the platform writes
//! (mode 0600, owned by the PostgreSQL user) and names in the connection string — the secrets
//! themselves are never in a connection string, a spec, a status or a log. Also the first
//! instance's bootstrap for `bootstrap.pg_basebackup`.

use pgherd_api::cluster::ExternalCluster;
use pgherd_api::common::CoreSecretKeySelector;
use pgherd_api::Cluster;
use pgherd_instance_protocol::Bootstrap;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// A credential of an external cluster that libpq reads from a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Credential {
    Password,
    SslCert,
    SslKey,
    SslRootCert,
}

impl Credential {
    pub const ALL: [Credential; 4] = [
        Credential::Password,
        Credential::SslCert,
        Credential::SslKey,
        Credential::SslRootCert,
    ];

    /// The connection keyword that names its file.
    pub fn keyword(self) -> &'static str {
        match self {
            Credential::Password => "passfile",
            Credential::SslCert => "sslcert",
            Credential::SslKey => "sslkey",
            Credential::SslRootCert => "sslrootcert",
        }
    }

    /// Its field in an external cluster.
    pub fn field(self) -> &'static str {
        match self {
            Credential::Password => "password",
            Credential::SslCert => "sslCert",
            Credential::SslKey => "sslKey",
            Credential::SslRootCert => "sslRootCert",
        }
    }

    /// The Secret key `external` takes it from, if any.
    pub fn selector(self, external: &ExternalCluster) -> Option<&CoreSecretKeySelector> {
        match self {
            Credential::Password => external.password.as_ref(),
            Credential::SslCert => external.ssl_cert.as_ref(),
            Credential::SslKey => external.ssl_key.as_ref(),
            Credential::SslRootCert => external.ssl_root_cert.as_ref(),
        }
    }

    /// The name of its file for external cluster `name`: one per external cluster and
    /// credential, of characters safe in a file name whatever the external cluster is called.
    pub fn file_name(self, name: &str) -> String {
        let safe: String = name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let suffix = match self {
            Credential::Password => "pgpass",
            Credential::SslCert => "crt",
            Credential::SslKey => "key",
            Credential::SslRootCert => "ca.crt",
        };
        format!("external-{safe}.{suffix}")
    }

    /// The file's content for the Secret's value (a password becomes a `.pgpass` line).
    pub fn content(self, value: &str) -> String {
        match self {
            Credential::Password => pgherd_postgres::conf::pgpass_line(value),
            _ => value.to_string(),
        }
    }
}

/// The external cluster `name` of `cluster`, with its field path
/// (`spec.externalClusters[i]`).
pub fn find<'a>(cluster: &'a Cluster, name: &str) -> Option<(String, &'a ExternalCluster)> {
    cluster
        .spec
        .external_clusters
        .iter()
        .flatten()
        .enumerate()
        .find(|(_, e)| e.name == name)
        .map(|(i, e)| (format!("spec.externalClusters[{i}]"), e))
}

/// The external cluster `name` that the field `field` names (`spec.replica.source`, ...), with
/// its field path; the error says which field names an unknown one.
pub fn source<'a>(
    cluster: &'a Cluster,
    name: &str,
    field: &str,
) -> Result<(String, &'a ExternalCluster), String> {
    find(cluster, name).ok_or_else(|| {
        format!("{field}: external cluster {name:?} not found in spec.externalClusters")
    })
}

/// The credentials `external` takes from Secrets, each with its field path under `field`.
pub fn credentials<'a>(
    external: &'a ExternalCluster,
    field: &str,
) -> Vec<(Credential, String, &'a CoreSecretKeySelector)> {
    Credential::ALL
        .into_iter()
        .filter_map(|c| {
            c.selector(external)
                .map(|s| (c, format!("{field}.{}", c.field()), s))
        })
        .collect()
}

/// The connection parameters of `external` (at `field`): its `connectionParameters`, `dbname`
/// when given, the credential files written for it (`files`) and a 10 s `connect_timeout`
/// unless it sets one, so a source that does not answer never holds a clone or a subscription
/// for ever. The error names the field and what to do.
pub fn parameters(
    external: &ExternalCluster,
    field: &str,
    files: &BTreeMap<Credential, PathBuf>,
    dbname: Option<&str>,
) -> Result<BTreeMap<String, String>, String> {
    let mut parameters = external.connection_parameters.clone().unwrap_or_default();
    if parameters.is_empty() {
        return Err(format!(
            "{field}.connectionParameters: external cluster {:?} has none, so it cannot be connected to (hint: set host, user and dbname, e.g. host: {}-rw)",
            external.name, external.name
        ));
    }
    if let Some(bad) = parameters
        .keys()
        .find(|k| !pgherd_postgres::conf::is_conninfo_keyword(k))
    {
        return Err(format!(
            "{field}.connectionParameters: {bad:?} is not a libpq connection keyword (hint: lower-case names such as host, port, user, dbname, sslmode)"
        ));
    }
    if let Some(db) = dbname {
        parameters.insert("dbname".into(), db.to_string());
    }
    for (credential, path) in files {
        parameters.insert(credential.keyword().into(), path.display().to_string());
    }
    parameters
        .entry("connect_timeout".into())
        .or_insert_with(|| "10".into());
    Ok(parameters)
}

/// The first instance's bootstrap for `bootstrap.pg_basebackup`, connecting with `parameters`
/// (from [`parameters`], as the platform reaches the source); `None` when the cluster does not
/// clone another. The application database and owner are
/// [`crate::instance_spec::application`]'s.
pub fn clone_bootstrap(
    cluster: &Cluster,
    parameters: &BTreeMap<String, String>,
    owner_password_file: PathBuf,
) -> Option<Bootstrap> {
    let clone = cluster.spec.bootstrap.as_ref()?.pg_basebackup.as_ref()?;
    let (database, owner, _) = crate::instance_spec::application(cluster);
    Some(Bootstrap::CloneSource {
        source: clone.source.clone(),
        conninfo: pgherd_postgres::conf::conninfo_of(parameters),
        database,
        owner,
        owner_password_file: Some(owner_password_file),
    })
}

/// A replica cluster's upstream (`spec.replica.source`): its connection, with `parameters` as
/// the platform reaches it (when the external cluster has `connectionParameters`), and its
/// object store's file (when it has one). `None` unless the cluster [`follows_source`].
pub fn upstream(
    cluster: &Cluster,
    parameters: Option<&BTreeMap<String, String>>,
    store_file: Option<PathBuf>,
) -> Option<pgherd_instance_protocol::Upstream> {
    if !follows_source(cluster) {
        return None;
    }
    let replica = cluster.spec.replica.as_ref()?;
    Some(pgherd_instance_protocol::Upstream {
        source: replica.source.clone(),
        conninfo: parameters.map(pgherd_postgres::conf::conninfo_of),
        store_file,
        demote: demoted_by_topology(cluster),
        promotion_token: pending_promotion_token(cluster).map(str::to_string),
    })
}

/// Whether the distributed topology makes this cluster a replica (`replica.primary` naming
/// another cluster than `replica.self`, which defaults to its name): the one way a running
/// primary cluster is demoted (a clean stop and a token), which admission lets through and
/// the leader's spec asks for. `replica.enabled` cannot demote one (its WAL would diverge), and
/// cannot be set together with `primary`.
pub fn demoted_by_topology(cluster: &Cluster) -> bool {
    cluster.is_replica()
        && cluster
            .spec
            .replica
            .as_ref()
            .is_some_and(|r| r.primary.is_some() && r.enabled.is_none())
}

/// Whether the cluster's leader follows `spec.replica.source`: a replica cluster, or one
/// promoted with a token it has not been promoted with yet (it follows until it has replayed
/// past the token). The platforms resolve the source while this holds.
pub fn follows_source(cluster: &Cluster) -> bool {
    cluster.is_replica() || pending_promotion_token(cluster).is_some()
}

/// `spec.replica.promotionToken` of a cluster that is no longer a replica and was not promoted
/// with that token yet (`status.lastPromotionToken`).
pub fn pending_promotion_token(cluster: &Cluster) -> Option<&str> {
    if cluster.is_replica() {
        return None;
    }
    let token = cluster
        .spec
        .replica
        .as_ref()?
        .promotion_token
        .as_deref()
        .filter(|t| !t.is_empty())?;
    let last = cluster
        .status
        .as_ref()
        .and_then(|s| s.last_promotion_token.as_deref());
    (last != Some(token)).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster(yaml: &str) -> Cluster {
        serde_yaml_ng::from_str(yaml).unwrap()
    }

    const CLONE: &str = "
metadata: {name: copy}
spec:
  instances: 2
  bootstrap:
    pg_basebackup: {source: origin, database: shop, owner: shopper}
  externalClusters:
    - name: other
    - name: origin
      connectionParameters: {host: origin-rw, user: migrator, sslmode: require}
      password: {name: origin-pass, key: password}
      sslRootCert: {name: origin-ca, key: ca.crt}
";

    #[test]
    fn credentials_become_files_named_in_the_connection_string() {
        let c = cluster(CLONE);
        let (field, external) = find(&c, "origin").unwrap();
        assert_eq!(field, "spec.externalClusters[1]");
        let creds = credentials(external, &field);
        let fields: Vec<_> = creds
            .iter()
            .map(|(_, f, s)| (f.as_str(), s.key.as_str()))
            .collect();
        assert_eq!(
            fields,
            [
                ("spec.externalClusters[1].password", "password"),
                ("spec.externalClusters[1].sslRootCert", "ca.crt")
            ]
        );
        let files: BTreeMap<_, _> = creds
            .iter()
            .map(|(c, _, _)| (*c, PathBuf::from("/x").join(c.file_name("origin"))))
            .collect();
        let params = parameters(external, &field, &files, None).unwrap();
        assert_eq!(params["passfile"], "/x/external-origin.pgpass");
        assert_eq!(params["sslrootcert"], "/x/external-origin.ca.crt");
        assert_eq!(params["connect_timeout"], "10");
        let Some(Bootstrap::CloneSource {
            source,
            conninfo,
            database,
            owner,
            ..
        }) = clone_bootstrap(&c, &params, "/pw".into())
        else {
            panic!("not a clone");
        };
        assert_eq!(
            (source.as_str(), database.as_str(), owner.as_str()),
            ("origin", "shop", "shopper")
        );
        assert_eq!(
            conninfo,
            "connect_timeout='10' host='origin-rw' passfile='/x/external-origin.pgpass' sslmode='require' sslrootcert='/x/external-origin.ca.crt' user='migrator'"
        );
        assert_eq!(
            Credential::Password.content("a:b\\c"),
            "*:*:*:*:a\\:b\\\\c\n"
        );
        assert_eq!(
            Credential::SslKey.file_name("a/../b c"),
            "external-a____b_c.key"
        );
    }

    #[test]
    fn unusable_parameters_name_the_field() {
        let c = cluster(CLONE);
        let (field, other) = find(&c, "other").unwrap();
        let e = parameters(other, &field, &BTreeMap::new(), None).unwrap_err();
        assert!(
            e.starts_with("spec.externalClusters[0].connectionParameters: "),
            "{e}"
        );
        let mut bad = other.clone();
        bad.connection_parameters = Some([("host x".to_string(), "y".to_string())].into());
        let e = parameters(&bad, &field, &BTreeMap::new(), Some("app")).unwrap_err();
        assert!(
            e.contains("\"host x\" is not a libpq connection keyword"),
            "{e}"
        );
        let plain = cluster("metadata: {name: p}\nspec: {instances: 1}");
        assert!(clone_bootstrap(&plain, &BTreeMap::new(), "/pw".into()).is_none());
    }

    #[test]
    fn a_demoted_cluster_follows_and_a_token_holds_the_promotion_until_recorded() {
        let member = |primary: &str, token: &str, last: &str| {
            cluster(&format!(
                "
metadata: {{name: shop}}
spec:
  instances: 1
  replica: {{self: shop, primary: {primary}, source: mirror{token}}}
  externalClusters:
    - name: mirror
      connectionParameters: {{host: mirror-rw}}
{last}"
            ))
        };
        // Demoted: follows mirror, and may demote a writable primary.
        let demoted = member("mirror", "", "");
        let up = upstream(&demoted, None, None).unwrap();
        assert!(up.demote && up.promotion_token.is_none());
        // Promoted with a token: follows until the token is recorded as the last one.
        let promoting = member("shop", ", promotionToken: T", "");
        assert_eq!(pending_promotion_token(&promoting), Some("T"));
        let up = upstream(&promoting, None, None).unwrap();
        assert!(!up.demote);
        assert_eq!(up.promotion_token.as_deref(), Some("T"));
        let promoted = member(
            "shop",
            ", promotionToken: T",
            "status: {lastPromotionToken: T}\n",
        );
        assert_eq!(pending_promotion_token(&promoted), None);
        assert!(upstream(&promoted, None, None).is_none());
        // Standalone topology: a replica cluster never demotes a primary.
        let standalone = cluster(
            "
metadata: {name: shop}
spec:
  instances: 1
  replica: {enabled: true, source: mirror}
  externalClusters:
    - name: mirror
      connectionParameters: {host: mirror-rw}
",
        );
        assert!(!upstream(&standalone, None, None).unwrap().demote);
    }
}
