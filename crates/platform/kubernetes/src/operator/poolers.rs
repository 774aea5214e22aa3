//! Poolers: a kube-runtime controller over `Pooler` objects (woken by the Deployments they own,
//! and every [`EVERY`] for their status). Each reconcile of a Pooler `P` of cluster `C`:
//!
//! 1. refuses what the Kubernetes operator does not run (custom auth and TLS Secrets, an image
//!    catalog, TLS on the metrics port, a parameter outside CloudNativePG's allow-list, a Pooler
//!    named like its cluster) in the Pooler's status, each problem naming its field — nothing
//!    is applied;
//! 2. makes `C-pooler` (`kubernetes.io/tls`): `cnpg_pooler_pgbouncer`'s client certificate,
//!    issued by the cluster's CA once and owned by the Cluster, as CloudNativePG;
//! 3. server-side applies `P`'s ServiceAccount, Role and RoleBinding (its pods read their Pooler
//!    and those Secrets), Deployment (`spec.instances` replicas; the pods run
//!    [`crate::pooler_pod`]), Service and, with `monitoring.enablePodMonitor`, PodMonitor
//!    (refused in the status when the Prometheus Operator's CRD is not installed), all owned by
//!    the Pooler (deleting it removes them);
//! 4. writes `P.status`: `instances` (the Deployment's pods, as CloudNativePG), the Secrets'
//!    versions (`secrets.serverCA`, `clientCA`, `serverTLS`, `pgBouncerSecrets.authQuery`), and
//!    pgherd's `phase` (`active`, `paused`, `pending`, `failed`) with `phaseReason`/`error`;
//!    when the phase becomes `failed`, the reason is also a Warning event `NotCarriedOut` on
//!    the Pooler (`kubectl describe pooler` shows it).
//!
//! The Clusters' reconciles ask [`uses_builtin_auth`] whether their primary keeps PgBouncer's
//! auth role `cnpg_pooler_pgbouncer` and `public.user_search`.

use super::events::{Events, OperatorEvent};
use super::pod_monitors::{self, CrdMissing};
use super::{cluster_objects::apply_one, OperatorError};
use crate::pooler_pod::{config_paths, upstream};
use crate::{labels, names, secret, OperatorSettings};
use futures_util::{FutureExt as _, StreamExt as _};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{ListParams, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::Store;
use kube::runtime::watcher;
use kube::{Api, Client};
use pgherd_api::{Cluster, Pooler};
use serde_json::{json, Value};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// How often a Pooler's status is refreshed when nothing wakes it.
const EVERY: Duration = Duration::from_secs(10);
/// Certificates last this long (CloudNativePG's default: 90 days).
const VALIDITY_DAYS: i64 = 90;

/// What the reconciles share.
pub(crate) struct Context {
    client: Client,
    settings: OperatorSettings,
    events: Events,
}

/// The controller over Poolers, and the store of every Pooler it watches.
pub(crate) fn controller(client: &Client) -> (Controller<Pooler>, Store<Pooler>) {
    let controller = Controller::new(
        Api::<Pooler>::all(client.clone()),
        watcher::Config::default(),
    )
    .owns(
        Api::<Deployment>::all(client.clone()),
        watcher::Config::default().labels(labels::POOLER_NAME),
    );
    let store = controller.store();
    (controller, store)
}

/// Run `controller` until SIGTERM/ctrl-c.
pub(crate) async fn run(
    controller: Controller<Pooler>,
    client: Client,
    settings: OperatorSettings,
) {
    let context = Arc::new(Context {
        events: Events::new(client.clone()),
        client,
        settings,
    });
    controller
        .shutdown_on_signal()
        .run(reconcile, error_policy, context)
        .for_each(|outcome| async move {
            if let Err(e) = outcome {
                tracing::debug!("pooler reconcile: {e}");
            }
        })
        .await;
}

/// Whether a Pooler with the built-in authentication names cluster `cluster` of `namespace`
/// (its primary then keeps `cnpg_pooler_pgbouncer` and `user_search`). Until the Pooler store
/// has synced, the API is asked: a pass on stale knowledge would drop the role under running
/// poolers.
pub(crate) async fn uses_builtin_auth(
    client: &Client,
    store: Option<&Store<Pooler>>,
    namespace: &str,
    cluster: &str,
) -> bool {
    let uses = |p: &Pooler| {
        p.metadata.namespace.as_deref() == Some(namespace)
            && p.spec.cluster.name == cluster
            && p.metadata.deletion_timestamp.is_none()
            && pgherd_pooler::config::uses_builtin_auth(p)
    };
    if let Some(store) = store {
        if let Some(Ok(())) = store.wait_until_ready().now_or_never() {
            return store.state().iter().any(|p| uses(p));
        }
    }
    let api: Api<Pooler> = Api::namespaced(client.clone(), namespace);
    match api.list(&ListParams::default()).await {
        Ok(list) => list.items.iter().any(uses),
        Err(_) => false, // the CRD is not installed: no Pooler
    }
}

/// What the Kubernetes operator does not run, each with its field: refused, never ignored.
pub(crate) fn refused(pooler: &Pooler) -> Vec<String> {
    let name = pooler.metadata.name.as_deref().unwrap_or_default();
    let spec = &pooler.spec;
    let p = &spec.pgbouncer;
    let mut out = Vec::new();
    let mut refuse = |field: &str, what: &str, instead: &str| {
        out.push(format!(
            "Pooler {name}: {field}: {what} is not supported by pgherd's Kubernetes operator yet; {instead}"
        ));
    };
    for (field, set) in [
        (
            "spec.pgbouncer.authQuerySecret",
            p.auth_query_secret.is_some(),
        ),
        (
            "spec.pgbouncer.serverTLSSecret",
            p.server_tls_secret.is_some(),
        ),
        (
            "spec.pgbouncer.serverCASecret",
            p.server_ca_secret.is_some(),
        ),
        (
            "spec.pgbouncer.clientCASecret",
            p.client_ca_secret.is_some(),
        ),
        (
            "spec.pgbouncer.clientTLSSecret",
            p.client_tls_secret.is_some(),
        ),
    ] {
        if set {
            refuse(
                field,
                "authentication or TLS with your own Secrets",
                "remove it to use the built-in authentication (cnpg_pooler_pgbouncer with a certificate from the cluster's CA)",
            );
        }
    }
    if p.image_catalog_ref.is_some() {
        refuse(
            "spec.pgbouncer.imageCatalogRef",
            "an image catalog",
            "name the image in spec.pgbouncer.image",
        );
    }
    if let Some(m) = &spec.monitoring {
        if m.tls.as_ref().and_then(|t| t.enabled) == Some(true) {
            refuse(
                "spec.monitoring.tls",
                "TLS on the metrics port",
                "remove it (the metrics are served over HTTP)",
            );
        }
    }
    if name == spec.cluster.name {
        out.push(format!(
            "Pooler {name}: metadata.name: a Pooler must not be named like its cluster (both own a Service and a ServiceAccount of that name); rename it"
        ));
    }
    if out.is_empty() {
        // The parameters, HBA lines and authQuery, as the pods render them.
        let paths = config_paths(Path::new("/c"), Path::new("/r"), "*");
        if let Err(e) = pgherd_pooler::render(pooler, &upstream(pooler), &paths) {
            out.push(e.to_string());
        }
    }
    out
}

fn data(secret: &Secret, key: &str) -> Option<String> {
    secret
        .data
        .as_ref()
        .and_then(|d| d.get(key))
        .and_then(|v| String::from_utf8(v.0.clone()).ok())
}

/// Make `C-pooler` unless it exists; `None` (with why) while the cluster's CA is not there yet.
async fn ensure_client_certificate(
    client: &Client,
    cluster: &Cluster,
) -> Result<Option<String>, OperatorError> {
    let namespace = cluster.metadata.namespace.as_deref().unwrap_or("default");
    let name = cluster.metadata.name.as_deref().unwrap_or_default();
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    if api.get_opt(&names::pooler_secret(name)).await?.is_some() {
        return Ok(None);
    }
    // PostgreSQL checks the pooler's certificate against the client CA: it issues it.
    let ca_name = secret::CertificateSecrets::of(cluster).client_ca;
    let Some(ca) = api.get_opt(&ca_name).await? else {
        return Ok(Some(format!(
            "waiting for the cluster's client CA (Secret {ca_name})"
        )));
    };
    let (Some(cert), Some(key)) = (data(&ca, "ca.crt"), data(&ca, "ca.key")) else {
        return Ok(Some(format!(
            "Secret {ca_name} (the cluster's client CA) has no ca.crt and ca.key: the pooler's client certificate (user {}) cannot be issued",
            pgherd_pooler::AUTH_USER
        )));
    };
    let ca = pgherd_controller::pki::PemPair { cert, key };
    let pair =
        pgherd_controller::pki::client_certificate(&ca, pgherd_pooler::AUTH_USER, VALIDITY_DAYS)?;
    let made = secret::pooler_secret(
        cluster,
        &secret::CertificatePair {
            certificate_pem: pair.cert,
            private_key_pem: pair.key,
        },
    )?;
    super::credentials::create(&api, Some(made)).await?;
    Ok(None)
}

/// `{name, version}` of each Secret the pods read, as CloudNativePG's `status.secrets`.
async fn secret_versions(client: &Client, namespace: &str, cluster: &str) -> Value {
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let version = |name: String| {
        let api = api.clone();
        async move {
            let v = api
                .get_opt(&name)
                .await
                .ok()
                .flatten()
                .and_then(|s| s.metadata.resource_version);
            json!({"name": name, "version": v.unwrap_or_default()})
        }
    };
    let ca = version(names::ca_secret(cluster)).await;
    json!({
        "serverCA": ca,
        "clientCA": ca,
        "serverTLS": version(names::server_secret(cluster)).await,
        "pgBouncerSecrets": {"authQuery": version(names::pooler_secret(cluster)).await},
    })
}

/// Merge `status` into the Pooler's, unless it already says so; whether it was written.
async fn write_status(
    client: &Client,
    pooler: &Pooler,
    status: Value,
) -> Result<bool, OperatorError> {
    let current = serde_json::to_value(&pooler.status).unwrap_or(Value::Null);
    let unchanged = status.as_object().is_some_and(|fields| {
        fields
            .iter()
            .all(|(k, v)| current.get(k).unwrap_or(&Value::Null) == v)
    });
    if unchanged {
        return Ok(false);
    }
    let namespace = pooler.metadata.namespace.as_deref().unwrap_or("default");
    let api: Api<Pooler> = Api::namespaced(client.clone(), namespace);
    api.patch_status(
        pooler.metadata.name.as_deref().unwrap_or_default(),
        &PatchParams::default(),
        &Patch::Merge(&json!({ "status": status })),
    )
    .await?;
    Ok(true)
}

/// Writes the status of a Pooler that cannot run (`why`); a new failure is also an event.
async fn not_running(
    context: &Context,
    pooler: &Pooler,
    phase: &str,
    why: &str,
) -> Result<(), OperatorError> {
    let failed = phase == "failed";
    let status = json!({"phase": phase, "phaseReason": why, "error": if failed { Value::from(why) } else { Value::Null }});
    if write_status(&context.client, pooler, status).await? && failed {
        let event = OperatorEvent::NotCarriedOut {
            note: why.to_string(),
        };
        context.events.publish(pooler, event).await;
    }
    Ok(())
}

async fn reconcile(pooler: Arc<Pooler>, context: Arc<Context>) -> Result<Action, OperatorError> {
    if pooler.metadata.deletion_timestamp.is_some() {
        // Its objects are owned by it: the garbage collector removes them.
        return Ok(Action::await_change());
    }
    let client = &context.client;
    let namespace = pooler.metadata.namespace.as_deref().unwrap_or("default");
    let name = pooler.metadata.name.as_deref().unwrap_or_default();
    let refusals = refused(&pooler);
    if !refusals.is_empty() {
        let why = refusals.join("; ");
        tracing::warn!("{namespace}/{name}: {why}");
        not_running(&context, &pooler, "failed", &why).await?;
        return Ok(Action::await_change());
    }
    let cluster_name = &pooler.spec.cluster.name;
    let clusters: Api<Cluster> = Api::namespaced(client.clone(), namespace);
    let Some(cluster) = clusters.get_opt(cluster_name).await? else {
        let why = format!(
            "Pooler {name}: spec.cluster.name: Cluster {namespace}/{cluster_name} not found"
        );
        not_running(&context, &pooler, "pending", &why).await?;
        return Ok(Action::requeue(EVERY));
    };
    if let Some(why) = ensure_client_certificate(client, &cluster).await? {
        not_running(&context, &pooler, "pending", &why).await?;
        return Ok(Action::requeue(Duration::from_secs(2)));
    }
    let certificates = secret::CertificateSecrets::of(&cluster);
    let objects = match crate::pooler_objects(&pooler, &certificates, &context.settings) {
        Ok(o) => o,
        Err(e) => {
            // The user's template or names: said in the status.
            let why = format!("Pooler {name}: {e}");
            not_running(&context, &pooler, "failed", &why).await?;
            return Ok(Action::await_change());
        }
    };
    let monitor = objects.pod_monitor.as_ref();
    if let Err(CrdMissing) = pod_monitors::apply(client, namespace, name, monitor).await? {
        let why = pod_monitors::crd_missing_message(&format!("Pooler {name}"));
        not_running(&context, &pooler, "failed", &why).await?;
        return Ok(Action::requeue(Duration::from_secs(60)));
    }
    if let Some(account) = &objects.service_account {
        apply_one(client, namespace, account).await?;
    }
    apply_one(client, namespace, &objects.role).await?;
    apply_one(client, namespace, &objects.role_binding).await?;
    apply_one(client, namespace, &objects.deployment).await?;
    apply_one(client, namespace, &objects.service).await?;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), namespace);
    let deployment_status = deployments
        .get_opt(name)
        .await?
        .and_then(|d| d.status)
        .unwrap_or_default();
    let want = pooler.spec.instances.unwrap_or(1);
    let ready = deployment_status.ready_replicas.unwrap_or(0);
    let (phase, reason) = if pooler.spec.pgbouncer.paused == Some(true) {
        ("paused", Value::from("spec.pgbouncer.paused"))
    } else if ready >= want {
        ("active", Value::Null)
    } else {
        (
            "pending",
            Value::from(format!("{ready} of {want} instances ready")),
        )
    };
    let status = json!({
        "instances": deployment_status.replicas.unwrap_or(0),
        "secrets": secret_versions(client, namespace, cluster_name).await,
        "phase": phase,
        "phaseReason": reason,
        "error": Value::Null,
    });
    write_status(client, &pooler, status).await?;
    Ok(Action::requeue(EVERY))
}

fn error_policy(pooler: Arc<Pooler>, error: &OperatorError, _context: Arc<Context>) -> Action {
    tracing::warn!(
        "Pooler {}/{}: {error}",
        pooler.metadata.namespace.as_deref().unwrap_or("default"),
        pooler.metadata.name.as_deref().unwrap_or_default()
    );
    Action::requeue(Duration::from_secs(5))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn pooler(extra: &str) -> Pooler {
        serde_yaml_ng::from_str(&format!(
            "apiVersion: postgresql.cnpg.io/v1\nkind: Pooler\nmetadata:\n  name: pg-pooler-rw\nspec:\n  cluster:\n    name: pg\n  instances: 2\n  type: rw\n  pgbouncer:\n    poolMode: transaction\n{extra}"
        ))
        .unwrap()
    }

    #[test]
    fn a_plain_pooler_is_accepted() {
        assert_eq!(refused(&pooler("")), Vec::<String>::new());
        let p = pooler("    parameters:\n      max_client_conn: \"500\"\n    paused: true\n");
        assert_eq!(refused(&p), Vec::<String>::new());
    }

    #[test]
    fn unsupported_fields_are_refused_by_name() {
        let p = pooler("    authQuerySecret:\n      name: s\n    authQuery: SELECT 1\n  monitoring:\n    tls:\n      enabled: true\n");
        let said = refused(&p).join("\n");
        for field in ["spec.pgbouncer.authQuerySecret", "spec.monitoring.tls"] {
            assert!(said.contains(field), "{field}: {said}");
        }
        assert!(said.contains("Pooler pg-pooler-rw"), "{said}");
        let p = pooler("    parameters:\n      listen_port: \"1\"\n");
        let said = refused(&p).join("\n");
        assert!(
            said.contains("spec.pgbouncer.parameters.listen_port"),
            "{said}"
        );
    }
}
