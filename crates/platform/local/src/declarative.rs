//! From the stored objects to the declarative parts of an instance spec — managed roles (from
//! `Cluster.spec.managed.roles`, passwords from their Secrets) and `Database` objects — and
//! from the primary's results back to status.

use crate::state::{write_json, StateDir};
use crate::LocalError;
use pgherd_api::cluster::EnsureOption;
use pgherd_api::{Cluster, Database};
use pgherd_instance_manager::OsUser;
use pgherd_instance_protocol::{ApplyResult, DatabaseSpec, PasswordSource, RoleSpec};
use std::path::Path;

fn present(ensure: Option<EnsureOption>) -> bool {
    ensure != Some(EnsureOption::Absent)
}

/// The managed roles of `cluster`; passwords are copied from their Secrets into 0600 files
/// in `secrets_dir` owned by the PostgreSQL user.
pub fn roles(
    state: &StateDir,
    namespace: &str,
    cluster: &Cluster,
    secrets_dir: &Path,
    user: &OsUser,
) -> Result<Vec<RoleSpec>, LocalError> {
    let mut out = Vec::new();
    for (i, r) in cluster
        .spec
        .managed
        .iter()
        .flat_map(|m| m.roles.iter().flatten())
        .enumerate()
    {
        let file = secrets_dir.join(format!("role-{i}"));
        out.push(role_spec(
            state,
            namespace,
            r,
            present(r.ensure),
            &file,
            user,
        )?);
    }
    let inline: Vec<String> = out.iter().map(|r| r.name.clone()).collect();
    out.extend(crate::database_roles::specs(
        state,
        namespace,
        cluster,
        &inline,
        secrets_dir,
        user,
    )?);
    Ok(out)
}

/// One role as the instance manager applies it; its password (from its Secret) is copied to
/// `password_file`, owned by the PostgreSQL user, mode 0600.
pub(crate) fn role_spec(
    state: &StateDir,
    namespace: &str,
    r: &pgherd_api::cluster::RoleConfiguration,
    present: bool,
    password_file: &Path,
    user: &OsUser,
) -> Result<RoleSpec, LocalError> {
    let password = match &r.password_secret {
        Some(secret) if r.disable_password != Some(true) => {
            match crate::secrets::read(state, namespace, &secret.name)?
                .and_then(|d| d.get(pgherd_controller::declarative::PASSWORD_KEY).cloned())
            {
                Some(password) => {
                    if let Some(dir) = password_file.parent() {
                        user.own_dir(dir, 0o700)?;
                    }
                    user.write_file(password_file, &password, 0o600)?;
                    PasswordSource::File {
                        path: password_file.to_path_buf(),
                    }
                }
                // The Secret may be created later (ExternalSecrets): leave the password alone.
                None => PasswordSource::Unchanged,
            }
        }
        _ => PasswordSource::Unchanged,
    };
    Ok(pgherd_controller::declarative::role_spec(
        r, present, password,
    ))
}

/// The `postgres` role's password as CloudNativePG's `enableSuperuserAccess` has it: from
/// `superuserSecret` when given (left alone until that Secret exists), else from
/// `<cluster>-superuser`, generated on first use; `PASSWORD NULL` when access is disabled. The
/// password is copied into a 0600 file in the cluster directory for the PostgreSQL user.
pub fn superuser_password(
    state: &StateDir,
    namespace: &str,
    cluster: &Cluster,
    user: &OsUser,
    rw_port: u16,
) -> Result<PasswordSource, LocalError> {
    if cluster.spec.enable_superuser_access != Some(true) {
        return Ok(PasswordSource::Disabled);
    }
    let name = cluster.metadata.name.clone().unwrap_or_default();
    let password = match &cluster.spec.superuser_secret {
        Some(secret) => match crate::secrets::read(state, namespace, &secret.name)?
            .and_then(|d| d.get("password").cloned())
        {
            Some(password) => password,
            None => return Ok(PasswordSource::Unchanged),
        },
        None => crate::secrets::ensure_basic_auth_secret(
            state,
            &crate::secrets::BasicAuth {
                namespace,
                secret_name: &format!("{name}-superuser"),
                owner: "postgres",
                database: "*",
                host: "127.0.0.1",
                port: rw_port,
                user_type: "superuser",
            },
        )?
        .password
        .into_bytes(),
    };
    let path = state
        .cluster_dir(namespace, &name)
        .join("superuser-password");
    user.write_file(&path, &password, 0o600)?;
    Ok(PasswordSource::File { path })
}

/// Marks a deleted `Database` whose `databaseReclaimPolicy` is `delete`: the database is
/// dropped on the primary first, then the object goes (a finalizer, in Kubernetes terms).
pub const DELETING_ANNOTATION: &str = "pgherd.io/deleting";

fn deleting(d: &Database) -> bool {
    d.metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(DELETING_ANNOTATION))
}

/// The `Database` objects of `cluster` in `namespace`.
pub fn databases(
    state: &StateDir,
    namespace: &str,
    cluster: &str,
) -> Result<Vec<DatabaseSpec>, LocalError> {
    let all: Vec<(String, String, Database)> = state.list_objects("Database")?;
    Ok(all
        .into_iter()
        .filter(|(ns, _, d)| ns == namespace && d.spec.cluster.name == cluster)
        .map(|(_, object, d)| {
            pgherd_controller::declarative::database_spec(&object, &d, deleting(&d))
        })
        .collect())
}

/// Write each Database's status (`applied`, `message`) from the primary's results; a deleted
/// Database whose drop was applied goes away with its status.
///
/// `applied_spec` is the primary's spec when its results are for that spec: a drop is known to
/// be done only when the spec they were produced under asked for it.
pub fn write_database_status(
    state: &StateDir,
    namespace: &str,
    results: &[ApplyResult],
    applied_spec: Option<&pgherd_instance_protocol::InstanceSpec>,
) -> Result<(), LocalError> {
    for r in results {
        let object: Option<Database> =
            crate::state::read_json(&state.object_path("Database", namespace, &r.name))?;
        let dropped = applied_spec.is_some_and(|spec| {
            spec.databases
                .iter()
                .any(|d| d.object == r.name && !d.present)
        });
        if r.applied && dropped && object.as_ref().is_some_and(deleting) {
            for path in [
                state.object_path("Database", namespace, &r.name),
                state.status_path("Database", namespace, &r.name),
            ] {
                let _ = std::fs::remove_file(path);
            }
            continue;
        }
        let status = pgherd_api::kinds::database::DatabaseStatus {
            applied: Some(r.applied),
            message: r.message.clone(),
            ..Default::default()
        };
        write_json(
            &state.status_path("Database", namespace, &r.name),
            &status,
            0o600,
        )?;
    }
    Ok(())
}
