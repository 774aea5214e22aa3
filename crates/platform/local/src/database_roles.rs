//! `DatabaseRole` objects (CloudNativePG 1.30): roles of a cluster declared as their own
//! objects, applied by the same code as `spec.managed.roles` (which wins on a name both
//! declare, as in CloudNativePG: the DatabaseRole then reports `applied: false`). Deleting one
//! with `databaseRoleReclaimPolicy: delete` drops the role first, then the object goes.

use crate::declarative::DELETING_ANNOTATION;
use crate::state::{read_json, write_json, StateDir};
use crate::LocalError;
use pgherd_api::kinds::database_role::{ClientCertificateState, DatabaseRole, DatabaseRoleStatus};
use pgherd_api::kinds::publication::ReclaimPolicy;
use pgherd_api::Cluster;
use pgherd_instance_manager::OsUser;
use pgherd_instance_protocol::{ApplyResult, InstanceSpec, RoleSpec};
use std::path::Path;

/// Why `clientCertificate` has no effect here (said at apply time and in the status).
pub const CLIENT_CERTIFICATE_NOT_ISSUED: &str =
    "not issued: the local platform does not issue client certificates yet (the role is managed; use a password)";

fn deleting(r: &DatabaseRole) -> bool {
    r.metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(DELETING_ANNOTATION))
}

fn of_cluster(
    state: &StateDir,
    namespace: &str,
    cluster: &str,
) -> Result<Vec<(String, DatabaseRole)>, LocalError> {
    let all: Vec<(String, String, DatabaseRole)> = state.list_objects("DatabaseRole")?;
    Ok(all
        .into_iter()
        .filter(|(ns, _, r)| ns == namespace && r.spec.cluster.name == cluster)
        .map(|(_, object, r)| (object, r))
        .collect())
}

/// The roles of `cluster`'s DatabaseRoles that `spec.managed.roles` (`inline`) does not declare.
pub fn specs(
    state: &StateDir,
    namespace: &str,
    cluster: &Cluster,
    inline: &[String],
    secrets_dir: &Path,
    user: &OsUser,
) -> Result<Vec<RoleSpec>, LocalError> {
    let name = cluster.metadata.name.as_deref().unwrap_or_default();
    let mut out = Vec::new();
    for (object, r) in of_cluster(state, namespace, name)? {
        if inline.contains(&r.spec.role.name) {
            continue;
        }
        let file = secrets_dir.join(format!("databaserole-{object}"));
        let present = !deleting(&r);
        out.push(crate::declarative::role_spec(
            state,
            namespace,
            &r.spec.role,
            present,
            &file,
            user,
        )?);
    }
    Ok(out)
}

/// Whether deleting the DatabaseRole stored at `path` must drop its role first.
pub fn drops_on_delete(path: &Path) -> Result<bool, LocalError> {
    Ok(read_json::<DatabaseRole>(path)?
        .is_some_and(|r| r.spec.database_role_reclaim_policy == Some(ReclaimPolicy::Delete)))
}

/// Each DatabaseRole's status from the primary's role results (`applied`: the spec they were
/// produced under, when they are for it); a deleted one whose drop was applied goes away.
pub fn write_status(
    state: &StateDir,
    namespace: &str,
    cluster: &Cluster,
    results: &[ApplyResult],
    applied: Option<&InstanceSpec>,
) -> Result<(), LocalError> {
    let name = cluster.metadata.name.as_deref().unwrap_or_default();
    let inline: Vec<&str> = cluster
        .spec
        .managed
        .iter()
        .flat_map(|m| m.roles.iter().flatten())
        .map(|r| r.name.as_str())
        .collect();
    for (object, r) in of_cluster(state, namespace, name)? {
        let role = r.spec.role.name.as_str();
        let (applied_now, message) = if inline.contains(&role) {
            (
                false,
                Some(format!(
                    "role {role:?} is also declared in spec.managed.roles of Cluster {name:?}, which wins; remove one of the two"
                )),
            )
        } else {
            match results.iter().find(|x| x.name == role) {
                Some(x) => (x.applied, x.message.clone()),
                None => continue, // not applied yet
            }
        };
        let dropped = applied.is_some_and(|s| s.roles.iter().any(|x| x.name == role && !x.present));
        if applied_now && deleting(&r) && dropped {
            for path in [
                state.object_path("DatabaseRole", namespace, &object),
                state.status_path("DatabaseRole", namespace, &object),
            ] {
                let _ = std::fs::remove_file(path);
            }
            continue;
        }
        let certificate = r
            .spec
            .client_certificate
            .as_ref()
            .filter(|c| c.enabled != Some(false))
            .map(|_| ClientCertificateState {
                expiration: None,
                message: Some(CLIENT_CERTIFICATE_NOT_ISSUED.to_string()),
            });
        let status = DatabaseRoleStatus {
            observed_generation: None,
            applied: Some(applied_now),
            message,
            client_certificate: certificate,
            ..DatabaseRoleStatus::default()
        };
        write_json(
            &state.status_path("DatabaseRole", namespace, &object),
            &status,
            0o600,
        )?;
    }
    Ok(())
}
