//! The verbs that create objects: `backup` (a Backup), `pgbench` (a Job running pgbench
//! against the cluster's `-rw` Service with the application credentials) and `certificate`
//! (a TLS Secret for a database user, signed by the cluster's client CA). Each builds the
//! object (printed instead with `--dry-run`) and creates it.

use super::{PluginError, Result, Target};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, PostParams};
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// What `backup` asks for.
#[derive(Debug, Clone, Default)]
pub struct BackupRequest {
    pub cluster: String,
    /// Default: `CLUSTER-YYYYMMDDHHMMSS`.
    pub name: Option<String>,
    /// `primary` or `prefer-standby`; default: the cluster's.
    pub target: Option<String>,
    /// `barmanObjectStore`, `volumeSnapshot` or `plugin`.
    pub method: Option<String>,
    pub online: Option<bool>,
    pub immediate_checkpoint: Option<bool>,
    pub wait_for_archive: Option<bool>,
    pub plugin_name: Option<String>,
    pub plugin_parameters: BTreeMap<String, String>,
}

/// `CLUSTER-YYYYMMDDHHMMSS` at `now`.
pub fn default_backup_name(cluster: &str, now: i64) -> String {
    let stamp = pgherd_api::common::rfc3339(now);
    let digits: String = stamp
        .chars()
        .filter(char::is_ascii_digit)
        .take(14)
        .collect();
    format!("{cluster}-{digits}")
}

/// The Backup object of `request` in `namespace`.
pub fn backup_object(request: &BackupRequest, namespace: &str, now: i64) -> Result<Value> {
    let method = request.method.as_deref();
    if let Some(m) = method {
        if !matches!(m, "barmanObjectStore" | "volumeSnapshot" | "plugin") {
            return Err(PluginError::User(format!(
                "--method {m:?} is not a backup method; use barmanObjectStore, volumeSnapshot or plugin"
            )));
        }
    }
    if let Some(t) = request.target.as_deref() {
        if !matches!(t, "primary" | "prefer-standby") {
            return Err(PluginError::User(format!(
                "--backup-target {t:?} is not a target; use primary or prefer-standby"
            )));
        }
    }
    let is_plugin = method == Some("plugin");
    if is_plugin != request.plugin_name.is_some() {
        return Err(PluginError::User(if is_plugin {
            "--method plugin needs --plugin-name (e.g. barman-cloud.cloudnative-pg.io)".to_string()
        } else {
            "--plugin-name is only for --method plugin".to_string()
        }));
    }
    if method != Some("volumeSnapshot")
        && (request.online.is_some()
            || request.immediate_checkpoint.is_some()
            || request.wait_for_archive.is_some())
    {
        return Err(PluginError::User(
            "--online, --immediate-checkpoint and --wait-for-archive are only for --method volumeSnapshot".to_string(),
        ));
    }
    let name = request
        .name
        .clone()
        .unwrap_or_else(|| default_backup_name(&request.cluster, now));
    let mut spec = json!({"cluster": {"name": request.cluster}});
    if let Some(m) = method {
        spec["method"] = json!(m);
    }
    if let Some(t) = &request.target {
        spec["target"] = json!(t);
    }
    if let Some(online) = request.online {
        spec["online"] = json!(online);
    }
    let mut online_configuration = serde_json::Map::new();
    if let Some(v) = request.immediate_checkpoint {
        online_configuration.insert("immediateCheckpoint".into(), json!(v));
    }
    if let Some(v) = request.wait_for_archive {
        online_configuration.insert("waitForArchive".into(), json!(v));
    }
    if !online_configuration.is_empty() {
        spec["onlineConfiguration"] = Value::Object(online_configuration);
    }
    if let Some(plugin) = &request.plugin_name {
        spec["pluginConfiguration"] = json!({"name": plugin});
        if !request.plugin_parameters.is_empty() {
            spec["pluginConfiguration"]["parameters"] = json!(request.plugin_parameters);
        }
    }
    Ok(json!({
        "apiVersion": "postgresql.cnpg.io/v1",
        "kind": "Backup",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }))
}

/// What `pgbench` asks for.
#[derive(Debug, Clone, Default)]
pub struct PgbenchRequest {
    pub cluster: String,
    pub job_name: Option<String>,
    pub db_name: String,
    pub ttl_seconds: Option<i32>,
    pub node_selector: BTreeMap<String, String>,
    pub args: Vec<String>,
}

/// The pgbench Job of `request`, running the cluster's image against its `-rw` Service with
/// the credentials of its `-app` Secret.
pub fn pgbench_job(
    request: &PgbenchRequest,
    cluster: &pgherd_api::Cluster,
    namespace: &str,
    now: i64,
) -> Value {
    let image = cluster
        .status
        .as_ref()
        .and_then(|s| s.image.clone())
        .or_else(|| cluster.spec.image_name.clone())
        .unwrap_or_else(|| pgherd_api::defaults::DEFAULT_IMAGE_NAME.to_string());
    let name = request
        .job_name
        .clone()
        .unwrap_or_else(|| format!("{}-pgbench-{}", request.cluster, now % 1_000_000));
    let secret = crate::names::app_secret(&request.cluster);
    let from_secret = |key: &str| json!({"secretKeyRef": {"name": secret, "key": key}});
    let mut job = json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "namespace": namespace,
                     "labels": {"pbBenchJob": request.cluster, crate::labels::CLUSTER: request.cluster}},
        "spec": {
            "template": {
                "metadata": {"labels": {"pbBenchJob": request.cluster}},
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{
                        "name": "pgbench",
                        "image": image,
                        "imagePullPolicy": "IfNotPresent",
                        "command": ["pgbench"],
                        "args": request.args,
                        "env": [
                            {"name": "PGHOST", "value": crate::names::rw_service(&request.cluster)},
                            {"name": "PGPORT", "value": "5432"},
                            {"name": "PGDATABASE", "value": request.db_name},
                            {"name": "PGUSER", "valueFrom": from_secret("username")},
                            {"name": "PGPASSWORD", "valueFrom": from_secret("password")},
                        ],
                    }],
                }
            }
        }
    });
    if let Some(ttl) = request.ttl_seconds {
        job["spec"]["ttlSecondsAfterFinished"] = json!(ttl);
    }
    if !request.node_selector.is_empty() {
        job["spec"]["template"]["spec"]["nodeSelector"] = json!(request.node_selector);
    }
    job
}

impl Target {
    /// Create the Backup `object` (from [`backup_object`]).
    pub async fn create_backup(&self, object: &Value) -> Result<String> {
        let cluster = object["spec"]["cluster"]["name"]
            .as_str()
            .unwrap_or_default();
        self.cluster(cluster).await?;
        let dynamic: kube::api::DynamicObject =
            serde_json::from_value(object.clone()).map_err(|e| PluginError::Io(e.to_string()))?;
        let name = dynamic.metadata.name.clone().unwrap_or_default();
        self.dynamic("Backup")
            .create(&PostParams::default(), &dynamic)
            .await
            .map_err(PluginError::api(format!(
                "cannot create Backup {}/{name}",
                self.namespace
            )))?;
        Ok(format!("backup/{name} created"))
    }

    /// Create the pgbench Job of `request` (or only build it).
    pub async fn pgbench(&self, request: &PgbenchRequest, dry_run: bool) -> Result<Value> {
        let cluster = self.cluster(&request.cluster).await?;
        let job = pgbench_job(request, &cluster, &self.namespace, super::now());
        if !dry_run {
            let typed: Job =
                serde_json::from_value(job.clone()).map_err(|e| PluginError::Io(e.to_string()))?;
            Api::<Job>::namespaced(self.client.clone(), &self.namespace)
                .create(&PostParams::default(), &typed)
                .await
                .map_err(PluginError::api(format!(
                    "cannot create the pgbench Job in namespace {}",
                    self.namespace
                )))?;
        }
        Ok(job)
    }

    /// `certificate SECRET --cnpg-cluster C --cnpg-user U`: a `kubernetes.io/tls` Secret with
    /// a client certificate for `user`, signed by the cluster's client CA (`C-ca`, or the
    /// Secret `spec.certificates.clientCASecret` names). Returns the Secret with its key
    /// material redacted, for printing.
    pub async fn certificate(
        &self,
        secret_name: &str,
        cluster: &str,
        user: &str,
        dry_run: bool,
    ) -> Result<Value> {
        let c = self.cluster(cluster).await?;
        let ca_secret = c
            .spec
            .certificates
            .as_ref()
            .and_then(|t| t.client_ca_secret.clone())
            .unwrap_or_else(|| crate::names::ca_secret(cluster));
        let secrets: Api<Secret> = Api::namespaced(self.client.clone(), &self.namespace);
        let ca = secrets
            .get_opt(&ca_secret)
            .await
            .map_err(PluginError::api(format!("cannot read Secret {}/{ca_secret}", self.namespace)))?
            .ok_or_else(|| PluginError::User(format!(
                "the client CA Secret {}/{ca_secret} of Cluster {cluster} does not exist (the operator creates it with the cluster)",
                self.namespace
            )))?;
        let key = |k: &str| -> Result<String> {
            let bytes = ca.data.as_ref().and_then(|d| d.get(k)).ok_or_else(|| {
                PluginError::User(format!(
                    "Secret {}/{ca_secret} has no key {k:?}: it cannot sign certificates (a CA Secret needs ca.crt and ca.key)",
                    self.namespace
                ))
            })?;
            String::from_utf8(bytes.0.clone()).map_err(|_| {
                PluginError::User(format!(
                    "Secret {}/{ca_secret} key {k:?} is not PEM text",
                    self.namespace
                ))
            })
        };
        let pair = pgherd_controller::pki::PemPair {
            cert: key("ca.crt")?,
            key: key("ca.key")?,
        };
        let issued = pgherd_controller::pki::client_certificate(
            &pair,
            user,
            pgherd_controller::pki::DEFAULT_VALIDITY_DAYS,
        )
        .map_err(|e| PluginError::Io(format!("cannot sign a certificate with {ca_secret}: {e}")))?;
        let secret = json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "kubernetes.io/tls",
            "metadata": {"name": secret_name, "namespace": self.namespace,
                         "labels": {crate::labels::CLUSTER: cluster}},
            "stringData": {"tls.crt": issued.cert, "tls.key": issued.key},
        });
        if !dry_run {
            let typed: Secret = serde_json::from_value(secret.clone())
                .map_err(|e| PluginError::Io(e.to_string()))?;
            secrets
                .create(&PostParams::default(), &typed)
                .await
                .map_err(PluginError::api(format!(
                    "cannot create Secret {}/{secret_name}",
                    self.namespace
                )))?;
        }
        let mut shown = secret;
        shown["stringData"]["tls.key"] = json!("<redacted>");
        Ok(shown)
    }
}
