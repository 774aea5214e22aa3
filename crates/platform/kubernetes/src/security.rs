//! Security contexts of generated pods: non-root with the cluster's UID/GID, no capabilities,
//! no privilege escalation, a read-only root file system and the `RuntimeDefault` seccomp
//! profile; the user's `podSecurityContext` and `securityContext` override field by field.

use crate::error::{BuildError, Result};
use crate::labels::Base;
use k8s_openapi::api::core::v1::{
    Capabilities, PodSecurityContext, SeccompProfile, SecurityContext,
};
use pgherd_api::Cluster;
use serde::{de::DeserializeOwned, Serialize};

/// `user`'s fields over `base`'s, one by one (CloudNativePG's rule for security contexts).
pub(crate) fn overlay<T: Serialize + DeserializeOwned>(
    base: &Base,
    what: &'static str,
    generated: T,
    user: Option<&T>,
) -> Result<T> {
    let Some(user) = user else {
        return Ok(generated);
    };
    let merge = |source| BuildError::Merge {
        kind: base.kind,
        owner: base.name.clone(),
        what,
        source,
    };
    let mut out = serde_json::to_value(&generated).map_err(merge)?;
    let over = serde_json::to_value(user).map_err(merge)?;
    if let (Some(out), serde_json::Value::Object(over)) = (out.as_object_mut(), over) {
        out.extend(over);
    }
    serde_json::from_value(out).map_err(merge)
}

/// The pod-level security context: `postgresUID/GID` as user, group and fsGroup, non-root,
/// `seccompProfile` (RuntimeDefault), then the user's `podSecurityContext` field by field.
pub(crate) fn pod_security(base: &Base, cluster: &Cluster) -> Result<PodSecurityContext> {
    let uid = cluster.spec.postgres_uid.unwrap_or(26);
    let gid = cluster.spec.postgres_gid.unwrap_or(26);
    let generated = PodSecurityContext {
        run_as_user: Some(uid),
        run_as_group: Some(gid),
        fs_group: Some(gid),
        run_as_non_root: Some(true),
        seccomp_profile: Some(seccomp(cluster)),
        ..PodSecurityContext::default()
    };
    overlay(
        base,
        "spec.podSecurityContext",
        generated,
        cluster.spec.pod_security_context.as_ref(),
    )
}

/// The container runtime's default seccomp profile.
pub(crate) fn runtime_default_seccomp() -> SeccompProfile {
    SeccompProfile {
        type_: "RuntimeDefault".to_string(),
        localhost_profile: None,
    }
}

pub(crate) fn seccomp(cluster: &Cluster) -> SeccompProfile {
    cluster
        .spec
        .seccomp_profile
        .clone()
        .unwrap_or_else(runtime_default_seccomp)
}

/// No capabilities, no privilege, read-only root, not root (Kubernetes' restricted profile).
pub(crate) fn restricted(seccomp_profile: SeccompProfile) -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".to_string()]),
            add: None,
        }),
        privileged: Some(false),
        read_only_root_filesystem: Some(true),
        run_as_non_root: Some(true),
        seccomp_profile: Some(seccomp_profile),
        ..SecurityContext::default()
    }
}

/// The containers' security context: no capabilities, no privilege, read-only root, then the
/// user's `securityContext` field by field.
pub(crate) fn container_security(
    base: &Base,
    seccomp_profile: SeccompProfile,
    user: Option<&SecurityContext>,
) -> Result<SecurityContext> {
    overlay(
        base,
        "spec.securityContext",
        restricted(seccomp_profile),
        user,
    )
}
