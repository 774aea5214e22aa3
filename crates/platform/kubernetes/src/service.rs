//! The cluster's Services: `NAME-rw` (the primary), `NAME-ro` (the replicas), `NAME-r` (every
//! instance), minus `managed.services.disabledDefaultServices`, plus the
//! `managed.services.additional` ones. One port `postgres` 5432; selectors are CloudNativePG's,
//! and for additional services the selector is always the operator's.

use crate::error::Result;
use crate::labels::{self, map, Base};
use crate::names;
use crate::pod::POSTGRES_PORT;
use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use pgherd_api::cluster::{ServiceSelectorType, ServiceUpdateStrategy};
use pgherd_api::Cluster;
use std::collections::BTreeMap;

/// Name of the Services' port.
pub const SERVICE_PORT_NAME: &str = "postgres";

/// The selector of a Service of type `selector`.
pub fn selector(cluster: &str, selector: ServiceSelectorType) -> BTreeMap<String, String> {
    match selector {
        ServiceSelectorType::Rw => map([
            (labels::CLUSTER, cluster),
            (labels::INSTANCE_ROLE, "primary"),
        ]),
        ServiceSelectorType::Ro => map([
            (labels::CLUSTER, cluster),
            (labels::INSTANCE_ROLE, "replica"),
        ]),
        ServiceSelectorType::R => map([(labels::CLUSTER, cluster), (labels::POD_ROLE, "instance")]),
    }
}

fn default_ports() -> Vec<ServicePort> {
    vec![ServicePort {
        name: Some(SERVICE_PORT_NAME.to_string()),
        port: POSTGRES_PORT,
        target_port: Some(IntOrString::Int(POSTGRES_PORT)),
        protocol: Some("TCP".to_string()),
        ..ServicePort::default()
    }]
}

/// One additional service as built, with how the operator updates it.
#[derive(Debug, Clone, PartialEq)]
pub struct ManagedService {
    pub service: Service,
    /// `patch` (merge into the live object) or `replace` (delete and recreate on drift).
    pub update_strategy: ServiceUpdateStrategy,
}

/// The default Services, in the order rw, ro, r, without the disabled ones.
pub fn default_services(cluster: &Cluster) -> Result<Vec<Service>> {
    let base = Base::of_cluster(cluster)?;
    let disabled: Vec<ServiceSelectorType> = cluster
        .spec
        .managed
        .as_ref()
        .and_then(|m| m.services.as_ref())
        .and_then(|s| s.disabled_default_services.clone())
        .unwrap_or_default();
    let mut out = Vec::new();
    for (kind, name) in [
        (ServiceSelectorType::Rw, names::rw_service(&base.name)),
        (ServiceSelectorType::Ro, names::ro_service(&base.name)),
        (ServiceSelectorType::R, names::r_service(&base.name)),
    ] {
        // `rw` cannot be disabled (validation refuses it); never drop it here either.
        if kind != ServiceSelectorType::Rw && disabled.contains(&kind) {
            continue;
        }
        out.push(Service {
            metadata: base.meta(
                &name,
                labels::cluster_labels(cluster, "database"),
                BTreeMap::new(),
            )?,
            spec: Some(ServiceSpec {
                type_: Some("ClusterIP".to_string()),
                ports: Some(default_ports()),
                selector: Some(selector(&base.name, kind)),
                ..ServiceSpec::default()
            }),
            status: None,
        });
    }
    Ok(out)
}

/// The `managed.services.additional` Services: the user's template, the operator's selector
/// (default `rw`) and, when the template has none, the default port.
pub fn additional_services(cluster: &Cluster) -> Result<Vec<ManagedService>> {
    let base = Base::of_cluster(cluster)?;
    let additional = cluster
        .spec
        .managed
        .as_ref()
        .and_then(|m| m.services.as_ref())
        .and_then(|s| s.additional.clone())
        .unwrap_or_default();
    let mut out = Vec::new();
    for (i, extra) in additional.into_iter().enumerate() {
        let template = extra.service_template;
        let metadata = template.metadata.unwrap_or_default();
        let name = metadata.name.clone().ok_or_else(|| {
            base.spec_error(format!(
                "spec.managed.services.additional[{i}].serviceTemplate.metadata.name is required"
            ))
        })?;
        let mut service_labels = metadata.labels.unwrap_or_default();
        service_labels.extend(labels::cluster_labels(cluster, "database"));
        let mut spec = template.spec.unwrap_or_default();
        spec.selector = Some(selector(
            &base.name,
            extra.selector_type.unwrap_or(ServiceSelectorType::Rw),
        ));
        if spec.ports.as_ref().is_none_or(Vec::is_empty) {
            spec.ports = Some(default_ports());
        }
        out.push(ManagedService {
            service: Service {
                metadata: base.meta(
                    &name,
                    service_labels,
                    metadata.annotations.unwrap_or_default(),
                )?,
                spec: Some(spec),
                status: None,
            },
            update_strategy: extra.update_strategy.unwrap_or_default(),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use pgherd_api::cluster::{ManagedConfiguration, ManagedServices};

    #[test]
    fn disabled_defaults_are_dropped_but_rw_stays() {
        let mut c = Cluster::new("pg", Default::default());
        c.metadata.uid = Some("u".into());
        c.spec.managed = Some(ManagedConfiguration {
            services: Some(ManagedServices {
                disabled_default_services: Some(vec![
                    ServiceSelectorType::Ro,
                    ServiceSelectorType::Rw,
                ]),
                additional: None,
            }),
            roles: None,
        });
        let names: Vec<_> = default_services(&c)
            .unwrap()
            .into_iter()
            .map(|s| s.metadata.name.unwrap())
            .collect();
        assert_eq!(names, ["pg-rw", "pg-r"]);
    }

    #[test]
    fn selectors_are_cloudnativepgs() {
        let rw = selector("pg", ServiceSelectorType::Rw);
        assert_eq!(rw["cnpg.io/instanceRole"], "primary");
        let ro = selector("pg", ServiceSelectorType::Ro);
        assert_eq!(ro["cnpg.io/instanceRole"], "replica");
        let r = selector("pg", ServiceSelectorType::R);
        assert_eq!(r["cnpg.io/podRole"], "instance");
        assert!(r.values().all(|v| v != "primary"));
    }
}
