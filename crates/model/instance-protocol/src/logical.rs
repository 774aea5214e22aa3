//! Logical replication objects the primary's instance manager keeps in the declared state:
//! publications (`kind: Publication`) and subscriptions (`kind: Subscription`).

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A publication in one database.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PublicationSpec {
    /// The `Publication` object's name (for reporting).
    pub object: String,
    /// The publication's name in PostgreSQL.
    pub name: String,
    /// The database holding it.
    pub dbname: String,
    /// `false`: drop it (the object was deleted with `publicationReclaimPolicy: delete`).
    pub present: bool,
    pub target: PublicationTarget,
    /// `WITH (...)` parameters.
    #[serde(default)]
    pub parameters: BTreeMap<String, String>,
}

/// What a publication publishes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "kind")]
pub enum PublicationTarget {
    /// `FOR ALL TABLES`.
    AllTables,
    /// `FOR TABLE ..., TABLES IN SCHEMA ...`.
    Objects { objects: Vec<PublicationObject> },
}

/// One published object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "kind")]
pub enum PublicationObject {
    /// `TABLES IN SCHEMA <schema>`.
    TablesInSchema { schema: String },
    /// `TABLE [ONLY] [<schema>.]<name> [(<columns>)]`.
    Table {
        only: bool,
        schema: Option<String>,
        name: String,
        #[serde(default)]
        columns: Vec<String>,
    },
}

/// A subscription in one database, to a publication of another cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SubscriptionSpec {
    /// The `Subscription` object's name (for reporting).
    pub object: String,
    /// The subscription's name in PostgreSQL.
    pub name: String,
    /// The database holding it.
    pub dbname: String,
    /// `false`: drop it (the object was deleted with `subscriptionReclaimPolicy: delete`).
    pub present: bool,
    /// The publication's name on the publisher.
    pub publication: String,
    /// libpq connection string to the publisher (no password: a `passfile` holds it).
    pub conninfo: String,
    /// `WITH (...)` parameters.
    #[serde(default)]
    pub parameters: BTreeMap<String, String>,
}
