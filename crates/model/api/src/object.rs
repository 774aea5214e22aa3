//! [`Object`]: a decoded object of any kind pgherd reads from manifests.

use crate::{
    Backup, Cluster, ClusterImageCatalog, Database, DatabaseRole, ImageCatalog, ObjectStore,
    Pooler, Publication, ScheduledBackup, Subscription,
};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::Value;

macro_rules! objects {
    ($($kind:ident),* $(,)?) => {
        /// A decoded object of a kind pgherd understands.
        #[derive(Debug, Clone, PartialEq)]
        pub enum Object {
            $($kind(Box<$kind>),)*
        }

        impl Object {
            /// The object's kind.
            pub fn kind(&self) -> &'static str {
                match self {
                    $(Object::$kind(_) => stringify!($kind),)*
                }
            }

            /// The object's metadata.
            pub fn metadata(&self) -> &ObjectMeta {
                match self {
                    $(Object::$kind(o) => &o.metadata,)*
                }
            }

            /// The object as JSON, Kubernetes-shaped.
            pub fn to_json(&self) -> Result<Value, serde_json::Error> {
                match self {
                    $(Object::$kind(o) => serde_json::to_value(o),)*
                }
            }
        }
    };
}

objects!(
    Cluster,
    Backup,
    ScheduledBackup,
    Pooler,
    Database,
    ObjectStore,
    Publication,
    Subscription,
    ImageCatalog,
    ClusterImageCatalog,
    DatabaseRole,
    Secret,
    ConfigMap,
);

/// Every kind [`Object`] holds, as stored on the local platform.
pub const KINDS: &[&str] = &[
    "Cluster",
    "Backup",
    "ScheduledBackup",
    "Pooler",
    "Database",
    "ObjectStore",
    "Publication",
    "Subscription",
    "ImageCatalog",
    "ClusterImageCatalog",
    "DatabaseRole",
    "Secret",
    "ConfigMap",
];
