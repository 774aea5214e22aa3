//! Cluster: names, instances, image, storage, resources, update strategy, services, leases.

use super::backup_config::{validate_backup_configuration, validate_plugins};
use super::cluster_config::{validate_managed_roles, validate_postgresql, validate_tablespaces};
use super::cluster_sources::{validate_bootstrap, validate_external_clusters, validate_replica};
use super::{is_dns1035_label, Context};
use crate::cluster::{Cluster, PrimaryUpdateStrategy, StorageConfiguration};
use crate::diagnostics::{Diagnostic, FieldPath};
use crate::quantity;
use pgherd_postgres::version::{major_from_image, MINIMUM_SUPPORTED_MAJOR};

/// Longest allowed cluster name: instance names and services append suffixes to it.
pub const MAX_CLUSTER_NAME_LENGTH: usize = 50;

/// Environment variable names the instance manager owns.
fn is_reserved_env(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    upper.starts_with("CNPG_")
        || upper.starts_with("PG")
        || matches!(upper.as_str(), "POD_NAME" | "NAMESPACE" | "CLUSTER_NAME")
}

/// Every problem with a (defaulted) Cluster.
pub fn validate_cluster(cluster: &Cluster, ctx: &Context) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    let spec = FieldPath::new("spec");
    let name = cluster.metadata.name.as_deref().unwrap_or_default();
    if !is_dns1035_label(name) {
        out.push(
            Diagnostic::error("metadata.name", format!("{name:?} is not a valid cluster name"))
                .with_hint("use lowercase letters, digits and '-', starting with a letter and not ending with '-'"),
        );
    }
    if name.len() > MAX_CLUSTER_NAME_LENGTH {
        out.push(
            Diagnostic::error(
                "metadata.name",
                format!(
                    "must be at most {MAX_CLUSTER_NAME_LENGTH} characters, got {}",
                    name.len()
                ),
            )
            .with_hint("instance, service and secret names append suffixes to the cluster name"),
        );
    }
    let s = &cluster.spec;
    let instances = s.instances.unwrap_or(1);

    validate_image(cluster, &spec, &mut out);
    validate_storage(s.storage.as_ref(), &spec.key("storage"), true, &mut out);
    validate_storage(
        s.wal_storage.as_ref(),
        &spec.key("walStorage"),
        false,
        &mut out,
    );
    if s.ephemeral_volume_source.is_some()
        && s.ephemeral_volumes_size_limit
            .as_ref()
            .is_some_and(|l| l.temporary_data.is_some())
    {
        out.push(
            Diagnostic::error(
                "spec.ephemeralVolumeSource",
                "cannot be used together with spec.ephemeralVolumesSizeLimit.temporaryData",
            )
            .with_hint("set the size limit inside the ephemeral volume source instead"),
        );
    }
    validate_resources(cluster, &mut out);

    if s.primary_update_strategy == Some(PrimaryUpdateStrategy::Supervised) && instances == 1 {
        out.push(
            Diagnostic::error(
                "spec.primaryUpdateStrategy",
                "supervised is not allowed for a single-instance cluster",
            )
            .with_hint("use unsupervised, or run more than one instance"),
        );
    }
    let (min_sync, max_sync) = (
        s.min_sync_replicas.unwrap_or(0),
        s.max_sync_replicas.unwrap_or(0),
    );
    if min_sync > max_sync {
        out.push(Diagnostic::error(
            "spec.minSyncReplicas",
            format!("must not exceed spec.maxSyncReplicas ({max_sync}), got {min_sync}"),
        ));
    }
    if max_sync > 0 && max_sync >= instances {
        out.push(
            Diagnostic::error(
                "spec.maxSyncReplicas",
                format!("must be lower than the number of instances ({instances}), got {max_sync}"),
            )
            .with_hint(format!(
                "set spec.maxSyncReplicas to at most {} or add instances",
                (instances - 1).max(0)
            )),
        );
    }

    validate_postgresql(cluster, ctx, &mut out);
    validate_bootstrap(cluster, ctx, &mut out);
    validate_external_clusters(cluster, ctx, &mut out);
    validate_backup_configuration(cluster, ctx, &mut out);
    validate_plugins(cluster, ctx, &mut out);
    validate_replica(cluster, &mut out);
    validate_managed_roles(cluster, ctx, &mut out);
    validate_tablespaces(cluster, &mut out);
    validate_services(cluster, &mut out);
    validate_misc(cluster, ctx, &mut out);
    super::cluster_extra::validate_cluster_extra(cluster, &mut out);
    super::validate_cluster_catalog_ref(cluster, ctx, &mut out);
    out
}

fn validate_image(cluster: &Cluster, spec: &FieldPath, out: &mut Vec<Diagnostic>) {
    let s = &cluster.spec;
    if s.image_name.is_some() && s.image_catalog_ref.is_some() {
        out.push(
            Diagnostic::error(
                "spec.imageName",
                "cannot be set together with spec.imageCatalogRef",
            )
            .with_hint("keep one of the two"),
        );
    }
    if let Some(policy) = s.image_pull_policy.as_deref() {
        if !matches!(policy, "" | "Always" | "Never" | "IfNotPresent") {
            out.push(Diagnostic::error(
                "spec.imagePullPolicy",
                format!(
                    "unsupported value {policy:?}; must be one of: Always, Never, IfNotPresent"
                ),
            ));
        }
    }
    if let Some(catalog) = &s.image_catalog_ref {
        if !matches!(
            catalog.kind.as_str(),
            "ImageCatalog" | "ClusterImageCatalog"
        ) {
            out.push(Diagnostic::error(
                "spec.imageCatalogRef.kind",
                "must be ImageCatalog or ClusterImageCatalog",
            ));
        }
    }
    let path = spec.key("imageName");
    let major = match (&s.image_catalog_ref, s.image_name.as_deref()) {
        (Some(catalog), _) => Some((spec.key("imageCatalogRef").key("major"), catalog.major)),
        (None, Some(image)) => match major_from_image(image) {
            Ok(m) => Some((path.clone(), i64::from(m.0))),
            Err(e) => {
                out.push(Diagnostic::error(path.as_str(), e.to_string()).with_hint(
                    "name a versioned image, e.g. ghcr.io/cloudnative-pg/postgresql:17.2",
                ));
                None
            }
        },
        (None, None) => None,
    };
    if let Some((at, major)) = major {
        if major < i64::from(MINIMUM_SUPPORTED_MAJOR) {
            out.push(
                Diagnostic::error(at.as_str(), format!("PostgreSQL {major} is not supported"))
                    .with_hint(format!("use PostgreSQL {MINIMUM_SUPPORTED_MAJOR} or newer")),
            );
        }
    }
}

/// A storage stanza needs a size, either `size` or a storage request in `pvcTemplate`.
pub(super) fn validate_storage(
    storage: Option<&StorageConfiguration>,
    path: &FieldPath,
    required: bool,
    out: &mut Vec<Diagnostic>,
) {
    let size = storage
        .and_then(|s| s.size.as_deref())
        .filter(|s| !s.is_empty());
    let requested = storage
        .and_then(|s| s.pvc_template.as_ref())
        .and_then(|t| t.resources.as_ref())
        .and_then(|r| r.requests.as_ref())
        .and_then(|r| r.get("storage"))
        .is_some_and(|q| quantity::parse(&q.0).is_some_and(|v| v > 0.0));
    match size {
        Some(size) if quantity::parse(size).is_none() => out.push(
            Diagnostic::error(
                path.key("size").as_str(),
                format!("{size:?} is not a valid size"),
            )
            .with_hint("write a quantity such as 10Gi or 500Mi"),
        ),
        Some(size) if quantity::parse(size).is_some_and(|v| v <= 0.0) => {
            out.push(Diagnostic::error(
                path.key("size").as_str(),
                format!("must be greater than zero, got {size:?}"),
            ))
        }
        Some(_) => {}
        None if requested => {}
        None if storage.is_none() && !required => {}
        None => out.push(
            Diagnostic::error(path.key("size").as_str(), "size not configured").with_hint(format!(
                "add {}: 10Gi (or a storage request in {})",
                path.key("size"),
                path.key("pvcTemplate")
            )),
        ),
    }
}

fn validate_resources(cluster: &Cluster, out: &mut Vec<Diagnostic>) {
    let Some(resources) = &cluster.spec.resources else {
        return;
    };
    let (Some(requests), Some(limits)) = (&resources.requests, &resources.limits) else {
        return;
    };
    for (name, request) in requests {
        let Some(limit) = limits.get(name) else {
            continue;
        };
        if let (Some(r), Some(l)) = (quantity::parse(&request.0), quantity::parse(&limit.0)) {
            if l > 0.0 && r > l {
                out.push(
                    Diagnostic::error(
                        format!("spec.resources.requests.{name}"),
                        format!("request {} is larger than the limit {}", request.0, limit.0),
                    )
                    .with_hint("lower the request or raise the limit"),
                );
            }
        }
    }
}

fn validate_services(cluster: &Cluster, out: &mut Vec<Diagnostic>) {
    let Some(services) = cluster
        .spec
        .managed
        .as_ref()
        .and_then(|m| m.services.as_ref())
    else {
        return;
    };
    let name = cluster.metadata.name.as_deref().unwrap_or_default();
    let path = FieldPath::new("spec.managed.services");
    for (i, disabled) in services
        .disabled_default_services
        .iter()
        .flatten()
        .enumerate()
    {
        if *disabled == crate::cluster::ServiceSelectorType::Rw {
            out.push(Diagnostic::error(
                path.key("disabledDefaultServices").index(i).as_str(),
                "the rw service cannot be disabled",
            ));
        }
    }
    let reserved: Vec<String> = ["rw", "ro", "r", "any"]
        .iter()
        .map(|s| format!("{name}-{s}"))
        .collect();
    let mut seen = std::collections::BTreeSet::new();
    for (i, service) in services.additional.iter().flatten().enumerate() {
        let at = path.key("additional").index(i).key("serviceTemplate");
        let service_name = service
            .service_template
            .metadata
            .as_ref()
            .and_then(|m| m.name.as_deref())
            .unwrap_or_default();
        if service_name.is_empty() {
            out.push(Diagnostic::error(
                at.key("metadata").key("name").as_str(),
                "required field is missing",
            ));
        } else if reserved.iter().any(|r| r == service_name) {
            out.push(Diagnostic::error(
                at.key("metadata").key("name").as_str(),
                format!("{service_name:?} is reserved for the default services"),
            ));
        } else if !seen.insert(service_name) {
            out.push(Diagnostic::error(
                at.key("metadata").key("name").as_str(),
                format!("duplicate service name {service_name:?}"),
            ));
        }
        if service
            .service_template
            .spec
            .as_ref()
            .and_then(|s| s.selector.as_ref())
            .is_some_and(|s| !s.is_empty())
        {
            out.push(
                Diagnostic::error(
                    at.key("spec").key("selector").as_str(),
                    "the selector is managed by the operator",
                )
                .with_hint("remove it and set selectorType"),
            );
        }
    }
}

fn validate_misc(cluster: &Cluster, ctx: &Context, out: &mut Vec<Diagnostic>) {
    let s = &cluster.spec;
    for (i, env) in s.env.iter().flatten().enumerate() {
        if is_reserved_env(&env.name) {
            out.push(Diagnostic::error(format!("spec.env[{i}].name"), format!("{:?} is reserved by the instance manager", env.name)).with_hint("names starting with PG or CNPG_, and POD_NAME, NAMESPACE, CLUSTER_NAME are reserved"));
        }
    }
    if s.service_account_name.is_some() && s.service_account_template.is_some() {
        out.push(Diagnostic::error(
            "spec.serviceAccountName",
            "cannot be set together with spec.serviceAccountTemplate",
        ));
    }
    if let Some(lease) = &s.primary_lease {
        let duration = lease.lease_duration_seconds.unwrap_or(15);
        let renew = lease.renew_deadline_seconds.unwrap_or(10);
        let retry = lease.retry_period_seconds.unwrap_or(2);
        if duration <= renew {
            out.push(Diagnostic::error(
                "spec.primaryLease.leaseDurationSeconds",
                format!("must be greater than renewDeadlineSeconds ({renew}), got {duration}"),
            ));
        }
        if 5 * i64::from(renew) <= 6 * i64::from(retry) {
            out.push(Diagnostic::error(
                "spec.primaryLease.renewDeadlineSeconds",
                format!("must be more than 1.2 x retryPeriodSeconds ({retry}), got {renew}"),
            ));
        }
    }
    if let Some(certs) = &s.certificates {
        let p = FieldPath::new("spec.certificates");
        if certs.server_tls_secret.is_some()
            && certs
                .server_alt_dns_names
                .as_ref()
                .is_some_and(|n| !n.is_empty())
        {
            out.push(
                Diagnostic::error(
                    p.key("serverAltDNSNames").as_str(),
                    "cannot be used with a user-provided serverTLSSecret",
                )
                .with_hint("put the names in your certificate instead"),
            );
        }
        if certs.server_tls_secret.is_some() && certs.server_ca_secret.is_none() {
            out.push(Diagnostic::error(
                p.key("serverCASecret").as_str(),
                "required when serverTLSSecret is set",
            ));
        }
        if certs.replication_tls_secret.is_some() && certs.client_ca_secret.is_none() {
            out.push(Diagnostic::error(
                p.key("clientCASecret").as_str(),
                "required when replicationTLSSecret is set",
            ));
        }
        for (field, value) in [
            ("serverCASecret", &certs.server_ca_secret),
            ("serverTLSSecret", &certs.server_tls_secret),
            ("replicationTLSSecret", &certs.replication_tls_secret),
            ("clientCASecret", &certs.client_ca_secret),
        ] {
            if let Some(name) = value {
                ctx.secret(&p.key(field), name, out);
            }
        }
    }
    if let Some(secret) = &s.superuser_secret {
        ctx.secret(
            &FieldPath::new("spec.superuserSecret.name"),
            &secret.name,
            out,
        );
    }
    if let Some(monitoring) = &s.monitoring {
        let p = FieldPath::new("spec.monitoring");
        for (i, sel) in monitoring
            .custom_queries_config_map
            .iter()
            .flatten()
            .enumerate()
        {
            ctx.config_map_key(&p.key("customQueriesConfigMap").index(i), sel, out);
        }
        for (i, sel) in monitoring
            .custom_queries_secret
            .iter()
            .flatten()
            .enumerate()
        {
            ctx.secret_key(&p.key("customQueriesSecret").index(i), sel, out);
        }
    }
    if let Some(window) = &s.node_maintenance_window {
        if window.in_progress == Some(true) {
            out.push(
                Diagnostic::warning(
                    "spec.nodeMaintenanceWindow",
                    "a node maintenance window is in progress",
                )
                .with_hint("consider spec.enablePDB instead"),
            );
        }
    }
}
