//! `kubectl cnpg`: the verbs of CloudNativePG's kubectl plugin against the Kubernetes API,
//! with the same writes (JSON merge patches, creates, deletes; status writes through the
//! status subresource carrying the `resourceVersion` read, retried on conflict), so
//! runbooks and tools built on those writes keep working. The decisions shared with the local
//! platform (which instance an argument names, fencing lists, switchover requests, the status
//! view and its text) live in `pgherd-controller`; this module reads and writes objects.

pub mod exec;
pub mod logs;
pub mod objects;
pub mod status;
pub mod verbs;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DynamicObject, ListParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::Client;
use pgherd_api::Cluster;

/// Why a verb failed.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    /// The user asked for something that does not exist or cannot be done (exit 1).
    #[error("{0}")]
    User(String),
    #[error("cluster {name:?} not found in namespace {namespace:?}; list the clusters there with `kubectl get clusters -n {namespace}`, or give the namespace with -n")]
    ClusterNotFound { name: String, namespace: String },
    #[error(transparent)]
    Instance(#[from] pgherd_controller::operations::InstanceChoiceError),
    #[error("cannot load the kubeconfig: {0}")]
    Config(String),
    /// An API call failed (exit 2).
    #[error("{action}: {source}")]
    Api {
        action: String,
        #[source]
        source: kube::Error,
    },
    #[error("{0}")]
    Io(String),
}

impl PluginError {
    /// Whether the user's input is at fault (exit code 1) rather than the environment (2).
    pub fn is_user_error(&self) -> bool {
        matches!(
            self,
            PluginError::User(_) | PluginError::ClusterNotFound { .. } | PluginError::Instance(_)
        )
    }

    fn api(action: impl Into<String>) -> impl FnOnce(kube::Error) -> PluginError {
        let action = action.into();
        move |source| PluginError::Api { action, source }
    }
}

/// Result of the plugin's operations.
pub type Result<T, E = PluginError> = std::result::Result<T, E>;

/// How to reach the API server: kubectl's global flags.
#[derive(Debug, Clone, Default)]
pub struct Connection {
    pub kubeconfig: Option<std::path::PathBuf>,
    pub context: Option<String>,
    pub namespace: Option<String>,
}

/// A client and the namespace the verbs act in.
#[derive(Clone)]
pub struct Target {
    pub client: Client,
    pub namespace: String,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("namespace", &self.namespace)
            .finish_non_exhaustive()
    }
}

/// Install the process' TLS provider (ring, the workspace's) once; later calls are no-ops.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Connect as kubectl would: `--kubeconfig` (else `$KUBECONFIG`, else `~/.kube/config`,
/// else the in-cluster service account), `--context`, and the namespace from `-n` or the
/// context's.
pub async fn connect(connection: &Connection) -> Result<Target> {
    use kube::config::{KubeConfigOptions, Kubeconfig};
    install_crypto_provider();
    let options = KubeConfigOptions {
        context: connection.context.clone(),
        cluster: None,
        user: None,
    };
    let config = match &connection.kubeconfig {
        Some(path) => {
            let kubeconfig = Kubeconfig::read_from(path)
                .map_err(|e| PluginError::Config(format!("{}: {e}", path.display())))?;
            kube::Config::from_custom_kubeconfig(kubeconfig, &options)
                .await
                .map_err(|e| PluginError::Config(format!("{}: {e}", path.display())))?
        }
        None if connection.context.is_some() => kube::Config::from_kubeconfig(&options)
            .await
            .map_err(|e| PluginError::Config(e.to_string()))?,
        None => kube::Config::infer()
            .await
            .map_err(|e| PluginError::Config(e.to_string()))?,
    };
    let namespace = connection
        .namespace
        .clone()
        .unwrap_or_else(|| config.default_namespace.clone());
    let client = Client::try_from(config).map_err(|e| PluginError::Config(e.to_string()))?;
    Ok(Target { client, namespace })
}

/// The API resource of a pgherd kind (`Cluster`, `Backup`, `Pooler`, ...).
pub fn api_resource(kind: &str) -> ApiResource {
    ApiResource::from_gvk(&GroupVersionKind::gvk("postgresql.cnpg.io", "v1", kind))
}

impl Target {
    /// The namespace's objects of a pgherd kind, untyped.
    pub fn dynamic(&self, kind: &str) -> Api<DynamicObject> {
        Api::namespaced_with(self.client.clone(), &self.namespace, &api_resource(kind))
    }

    pub fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    /// The Cluster `name`, or an error naming the namespace when there is none.
    pub async fn cluster(&self, name: &str) -> Result<Cluster> {
        let object = self
            .dynamic("Cluster")
            .get_opt(name)
            .await
            .map_err(PluginError::api(format!(
                "cannot read Cluster {}/{name}",
                self.namespace
            )))?
            .ok_or_else(|| PluginError::ClusterNotFound {
                name: name.to_string(),
                namespace: self.namespace.clone(),
            })?;
        let value = serde_json::to_value(&object).map_err(|e| PluginError::Io(e.to_string()))?;
        serde_json::from_value(value).map_err(|e| {
            PluginError::User(format!(
                "Cluster {}/{name} cannot be read as a postgresql.cnpg.io/v1 Cluster: {e}",
                self.namespace
            ))
        })
    }

    /// The instance Pods of cluster `name`, in serial order.
    pub async fn instance_pods(&self, name: &str) -> Result<Vec<Pod>> {
        let selector = format!("{}={name}", crate::labels::CLUSTER);
        let mut pods: Vec<Pod> = self
            .pods()
            .list(&ListParams::default().labels(&selector))
            .await
            .map_err(PluginError::api(format!(
                "cannot list the Pods of Cluster {}/{name}",
                self.namespace
            )))?
            .items
            .into_iter()
            .filter(|p| {
                let role = p
                    .metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(crate::labels::POD_ROLE));
                role.is_none_or(|r| r == "instance")
            })
            .collect();
        pods.sort_by_key(|p| serial_of(p.metadata.name.as_deref().unwrap_or_default()));
        Ok(pods)
    }

    /// The instance an argument names (`X-2` or `2`) among the cluster's Pods and the
    /// instances its status lists.
    pub async fn instance(&self, cluster: &Cluster, given: &str) -> Result<String> {
        let name = cluster.metadata.name.clone().unwrap_or_default();
        let known = known_instances(cluster, &self.instance_pods(&name).await?);
        Ok(pgherd_controller::operations::resolve_instance(
            &name, &known, given,
        )?)
    }
}

/// The instances of a cluster: its Pods and those its status names.
pub fn known_instances(cluster: &Cluster, pods: &[Pod]) -> Vec<String> {
    let mut names: Vec<String> = pods
        .iter()
        .filter_map(|p| p.metadata.name.clone())
        .collect();
    if let Some(listed) = cluster
        .status
        .as_ref()
        .and_then(|s| s.instance_names.clone())
    {
        names.extend(listed);
    }
    names.sort_by_key(|n| serial_of(n));
    names.dedup();
    names
}

/// Sort key putting `X-2` before `X-10`.
pub fn serial_of(name: &str) -> (String, u64) {
    match name.rsplit_once('-').map(|(p, s)| (p, s.parse::<u64>())) {
        Some((prefix, Ok(n))) => (prefix.to_string(), n),
        _ => (name.to_string(), 0),
    }
}

/// Now, in seconds since the epoch.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}
