//! Declarative objects inside PostgreSQL that the primary's instance manager keeps in the
//! declared state: managed roles (`spec.managed.roles`), databases (`kind: Database`) and
//! tablespaces (`spec.tablespaces`), and the result of applying each.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Where a role's password comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "kind")]
pub enum PasswordSource {
    /// Leave the password as it is (a new role gets none).
    Unchanged,
    /// `PASSWORD NULL`.
    Disabled,
    /// The password is in this file (mode 0600).
    File { path: PathBuf },
}

/// A managed role.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RoleSpec {
    pub name: String,
    /// `false` for `ensure: absent`.
    pub present: bool,
    pub comment: Option<String>,
    pub login: bool,
    pub superuser: bool,
    pub createdb: bool,
    pub createrole: bool,
    pub inherit: bool,
    pub replication: bool,
    pub bypassrls: bool,
    pub connection_limit: i64,
    /// `VALID UNTIL` timestamp; `None` means infinity.
    pub valid_until: Option<String>,
    pub in_roles: Vec<String>,
    pub password: PasswordSource,
}

/// A schema inside a database.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SchemaSpec {
    pub name: String,
    pub present: bool,
    pub owner: Option<String>,
}

/// An extension inside a database.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExtensionSpec {
    pub name: String,
    pub present: bool,
    pub version: Option<String>,
    pub schema: Option<String>,
}

/// A database.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DatabaseSpec {
    /// The `Database` object's name (for reporting).
    pub object: String,
    /// The database name in PostgreSQL.
    pub name: String,
    pub present: bool,
    pub owner: String,
    pub template: Option<String>,
    pub encoding: Option<String>,
    pub locale: Option<String>,
    pub locale_provider: Option<String>,
    pub locale_collate: Option<String>,
    pub locale_ctype: Option<String>,
    pub icu_locale: Option<String>,
    pub icu_rules: Option<String>,
    pub builtin_locale: Option<String>,
    pub collation_version: Option<String>,
    pub is_template: Option<bool>,
    pub allow_connections: Option<bool>,
    pub connection_limit: Option<i64>,
    pub tablespace: Option<String>,
    #[serde(default)]
    pub schemas: Vec<SchemaSpec>,
    #[serde(default)]
    pub extensions: Vec<ExtensionSpec>,
}

/// A tablespace (`spec.tablespaces`) on the volume the platform mounted for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TablespaceSpec {
    pub name: String,
    /// `None`: the superuser owns it.
    pub owner: Option<String>,
    /// Its `LOCATION`: an empty directory on its volume, the same path on every instance (WAL
    /// replay of `CREATE TABLESPACE` on a standby uses the primary's path).
    pub location: PathBuf,
    /// Listed in `temp_tablespaces`.
    #[serde(default)]
    pub temporary: bool,
    /// The primary may create it now: every instance mounts its volume (a standby without it
    /// could not replay the creation).
    #[serde(default)]
    pub creatable: bool,
}

/// Whether one declared object was applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApplyResult {
    /// Role name, or `Database` object name.
    pub name: String,
    pub applied: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl RoleSpec {
    /// A present role named `name` that can log in, with PostgreSQL's defaults for the rest
    /// (inherit, no connection limit, no password change).
    pub fn login(name: &str) -> Self {
        RoleSpec {
            name: name.into(),
            present: true,
            comment: None,
            login: true,
            superuser: false,
            createdb: false,
            createrole: false,
            inherit: true,
            replication: false,
            bypassrls: false,
            connection_limit: -1,
            valid_until: None,
            in_roles: vec![],
            password: PasswordSource::Unchanged,
        }
    }
}

impl DatabaseSpec {
    /// A present database `name` owned by `owner`, declared by Database object `object`, with
    /// nothing else set.
    pub fn owned_by(object: &str, name: &str, owner: &str) -> Self {
        DatabaseSpec {
            object: object.into(),
            name: name.into(),
            present: true,
            owner: owner.into(),
            template: None,
            encoding: None,
            locale: None,
            locale_provider: None,
            locale_collate: None,
            locale_ctype: None,
            icu_locale: None,
            icu_rules: None,
            builtin_locale: None,
            collation_version: None,
            is_template: None,
            allow_connections: None,
            connection_limit: None,
            tablespace: None,
            schemas: vec![],
            extensions: vec![],
        }
    }
}
