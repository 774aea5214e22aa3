//! Turning an empty PGDATA into a running instance: `initdb` plus the application database
//! for a new primary, or a clone of the primary for a replica.

use crate::observe::{connect, QUERY_TIMEOUT};
use crate::replication::PrimarySource;
use crate::sql::{identifier, literal};
use crate::{InstanceError, Postgres};
use pgherd_backup::catalog::RecoveryPoint;
use pgherd_instance_protocol::{Bootstrap, InstanceSpec};
use std::time::Duration;

async fn run_sql(
    pg: &Postgres,
    database: &str,
    statements: &[String],
) -> Result<(), InstanceError> {
    if statements.is_empty() {
        return Ok(());
    }
    let client = connect(pg, database).await?;
    for sql in statements {
        // User-supplied SQL from the manifest, run as written (as CloudNativePG does).
        client
            .batch_execute(sql)
            .await
            .map_err(|e| InstanceError::Sql {
                context: "post-init SQL",
                message: e.to_string(),
            })?;
    }
    Ok(())
}

/// Create the application role and database of a new cluster and run the post-init SQL, in
/// CloudNativePG's order: role, `postgres` SQL, `template1` SQL, database, application SQL.
/// After a recovery or a clone of another cluster only the role's password and the database
/// are ensured.
pub async fn initialize_application(
    pg: &Postgres,
    bootstrap: &Bootstrap,
) -> Result<(), InstanceError> {
    let none: &[String] = &[];
    let (
        database,
        owner,
        owner_password_file,
        post_init_sql,
        post_init_template_sql,
        post_init_application_sql,
    ) = match bootstrap {
        Bootstrap::Initdb {
            database,
            owner,
            owner_password_file,
            post_init_sql,
            post_init_template_sql,
            post_init_application_sql,
            ..
        } => (
            database,
            owner,
            owner_password_file,
            post_init_sql.as_slice(),
            post_init_template_sql.as_slice(),
            post_init_application_sql.as_slice(),
        ),
        Bootstrap::Recovery {
            database,
            owner,
            owner_password_file,
            ..
        }
        | Bootstrap::CloneSource {
            database,
            owner,
            owner_password_file,
            ..
        } => (database, owner, owner_password_file, none, none, none),
        Bootstrap::Clone | Bootstrap::FromObjectStore { .. } => return Ok(()),
    };
    let client = connect(pg, "postgres").await?;
    let role = identifier(owner)?;
    let role_literal = literal(owner)?;
    let password = match owner_password_file {
        Some(file) => {
            let text = std::fs::read_to_string(file)
                .map_err(|e| InstanceError::io("cannot read", file, e))?;
            format!(" PASSWORD {}", literal(text.trim_end_matches('\n'))?)
        }
        None => String::new(),
    };
    // Keep the password out of the server log whatever log_statement says.
    let sql = format!(
        "SET log_statement = 'none'; SET log_min_duration_statement = -1; \
         DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = {role_literal}) THEN \
           CREATE ROLE {role} LOGIN; END IF; END $$; ALTER ROLE {role} LOGIN{password}"
    );
    tokio::time::timeout(QUERY_TIMEOUT, client.batch_execute(&sql))
        .await
        .map_err(|_| InstanceError::Sql {
            context: "create application role",
            message: "timed out".into(),
        })?
        .map_err(|e| InstanceError::Sql {
            context: "create application role",
            message: e.to_string(),
        })?;
    run_sql(pg, "postgres", post_init_sql).await?;
    run_sql(pg, "template1", post_init_template_sql).await?;
    let exists = client
        .query_opt(
            "SELECT 1 FROM pg_catalog.pg_database WHERE datname = $1",
            &[database],
        )
        .await
        .map_err(|e| InstanceError::Sql {
            context: "look up application database",
            message: e.to_string(),
        })?
        .is_some();
    if !exists {
        let sql = format!("CREATE DATABASE {} OWNER {role}", identifier(database)?);
        client
            .batch_execute(&sql)
            .await
            .map_err(|e| InstanceError::Sql {
                context: "create application database",
                message: e.to_string(),
            })?;
    }
    run_sql(pg, database, post_init_application_sql).await
}

/// The replica's source, from the spec.
pub fn primary_source(spec: &InstanceSpec) -> Result<PrimarySource, InstanceError> {
    let primary = spec.primary.as_ref().ok_or_else(|| {
        InstanceError::InvalidSetting("a replica needs a primary to stream from".into())
    })?;
    Ok(PrimarySource {
        host: primary.host.clone(),
        port: primary.port,
        application_name: spec.name.clone(),
        slot: primary.slot.clone(),
        ca_file: spec.certificates.server_ca().to_path_buf(),
        cert_file: spec.certificates.replication_cert.clone(),
        key_file: spec.certificates.replication_key.clone(),
        socket_dir: primary.socket_dir.clone(),
    })
}

/// Give an empty PGDATA its data: `initdb`, a clone, or a base backup from the object store
/// (left to replay WAL up to the recovery target at its first start).
pub async fn create_data(pg: &Postgres, spec: &InstanceSpec) -> Result<(), InstanceError> {
    match &spec.bootstrap {
        Bootstrap::Initdb { initdb_args, .. } => pg.initdb_with_args(initdb_args),
        Bootstrap::Clone => pg.clone_from(&primary_source(spec)?),
        Bootstrap::Recovery { .. } => restore_for_recovery(pg, spec).await,
        Bootstrap::CloneSource {
            source, conninfo, ..
        } => clone_source(pg, source, conninfo),
        Bootstrap::FromObjectStore { store_file } => {
            let restored = match pgherd_backup::store::StoreTarget::read(store_file) {
                Ok(target) => {
                    restore_into_place(pg, spec, &target, None, &RecoveryPoint::Latest).await
                }
                Err(e) => Err(InstanceError::Backup(e.to_string())),
            };
            match restored {
                Ok(info) => {
                    tracing::info!(
                            "replica restored from the object store (backup {}); replaying the archive, then streaming",
                            info.backup_name().unwrap_or("-")
                        );
                    Ok(())
                }
                Err(e) => {
                    // No backup yet, or the store is away: the primary can still be copied.
                    tracing::warn!(
                        "cannot restore from the object store ({e}); cloning the primary"
                    );
                    pg.clone_from(&primary_source(spec)?)
                }
            }
        }
    }
}

/// `bootstrap.pg_basebackup`: a copy of the external cluster `source`, made next to PGDATA and
/// moved into place whole once it is complete and of the image's major.
fn clone_source(pg: &Postgres, source: &str, conninfo: &str) -> Result<(), InstanceError> {
    let staging = pg.pgdata.with_extension("cloning");
    if staging.exists() {
        std::fs::remove_dir_all(&staging)
            .map_err(|e| InstanceError::io("cannot remove", &staging, e))?;
    }
    pg.base_backup_into(&staging, conninfo, "cloning the external cluster")
        .map_err(|e| {
            InstanceError::Backup(format!(
                "spec.bootstrap.pg_basebackup: cannot clone external cluster {source:?}: {e}"
            ))
        })?;
    let version = std::fs::read_to_string(staging.join("PG_VERSION"))
        .map_err(|e| InstanceError::io("cannot read", staging.join("PG_VERSION"), e))?;
    let version = version.trim();
    if version != pg.binaries.major.to_string() {
        let _ = std::fs::remove_dir_all(&staging);
        return Err(InstanceError::InvalidSetting(format!(
            "spec.bootstrap.pg_basebackup: external cluster {source:?} runs PostgreSQL {version}, but spec.imageName runs PostgreSQL {}: a physical copy needs the same major (hint: use an image of PostgreSQL {version}, or bootstrap.initdb.import for another major)",
            pg.binaries.major
        )));
    }
    move_copy_into_place(pg, &staging)?;
    tracing::info!("cloned external cluster {source:?}");
    Ok(())
}

async fn restore_for_recovery(pg: &Postgres, spec: &InstanceSpec) -> Result<(), InstanceError> {
    let bootstrap = &spec.bootstrap;
    let Bootstrap::Recovery {
        store_file,
        backup_id,
        target_time,
        target_lsn,
        ..
    } = bootstrap
    else {
        return Ok(());
    };
    let target = pgherd_backup::store::StoreTarget::read(store_file)
        .map_err(|e| InstanceError::Backup(e.to_string()))?;
    let point = match (target_time, target_lsn) {
        (Some(t), _) => RecoveryPoint::Time(parse_target_time(t)?),
        (None, Some(l)) => RecoveryPoint::Lsn(l.parse().map_err(|_| {
            InstanceError::InvalidSetting(format!(
                "recoveryTarget.targetLSN: {l:?} is not an LSN (hint: like 0/3000060)"
            ))
        })?),
        (None, None) => RecoveryPoint::Latest,
    };
    let info = restore_into_place(pg, spec, &target, backup_id.as_deref(), &point).await?;
    std::fs::write(pg.pgdata.join("recovery.signal"), b"")
        .map_err(|e| InstanceError::io("cannot write", pg.pgdata.join("recovery.signal"), e))?;
    tracing::info!(
        "restored backup {} ({}), replaying WAL from {}",
        info.backup_name().unwrap_or("-"),
        info.end_time().map(|t| t.to_string()).unwrap_or_default(),
        target.server_name
    );
    Ok(())
}

/// Restores a backup (by id or name, else the one for `point`) next to PGDATA and moves it into
/// place whole: a failed restore never leaves a half-restored PGDATA that would look like data.
async fn restore_into_place(
    pg: &Postgres,
    spec: &InstanceSpec,
    target: &pgherd_backup::store::StoreTarget,
    backup_id: Option<&str>,
    point: &RecoveryPoint,
) -> Result<pgherd_backup::BackupInfo, InstanceError> {
    let staging = pg.pgdata.with_extension("restoring");
    if staging.exists() {
        std::fs::remove_dir_all(&staging)
            .map_err(|e| InstanceError::io("cannot remove", &staging, e))?;
    }
    let info = crate::base_backup::restore(
        target,
        backup_id,
        point,
        None,
        &staging,
        Some(pg.binaries.major),
        spec.tablespace_volumes
            .then_some(spec.tablespaces.as_slice()),
    )
    .await?;
    // The data tarball ends with global/pg_control (then backup_label): without it the tar
    // stopped early (a download cut short that read as the end of the archive) or the backup is
    // incomplete. Never moved into place: the next pass restores again, and says why.
    if !staging.join("global/pg_control").is_file() {
        return Err(InstanceError::Backup(format!(
            "backup {} was restored without global/pg_control (its data tarball ended early); restoring it again",
            info.backup_name().unwrap_or("-")
        )));
    }
    move_copy_into_place(pg, &staging)?;
    Ok(info)
}

/// Moves a copy of another server's data (a restored backup, a clone of an external cluster)
/// from `staging` into PGDATA, without what the source had done or set for itself.
fn move_copy_into_place(pg: &Postgres, staging: &std::path::Path) -> Result<(), InstanceError> {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(staging, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| InstanceError::io("cannot set the mode of", staging, e))?;
    // What the source cluster had done is not done here.
    for stale in [
        crate::supervisor::INITIALIZED_MARKER,
        "postmaster.pid",
        "standby.signal",
    ] {
        let _ = std::fs::remove_file(staging.join(stale));
    }
    // The source's ALTER SYSTEM settings (its listen_addresses, its archive_command, ...) would
    // override this cluster's: kept aside for reference, not applied.
    let auto_conf = staging.join("postgresql.auto.conf");
    if auto_conf.exists() {
        std::fs::rename(&auto_conf, staging.join("postgresql.auto.conf.from-backup"))
            .map_err(|e| InstanceError::io("cannot set aside", &auto_conf, e))?;
    }
    // On disk before it is moved into place: a crash in between must not leave a data
    // directory whose files were never written (PostgreSQL only syncs at its first start).
    crate::base_backup::sync_filesystem(staging)?;
    if pg.pgdata.exists() {
        std::fs::remove_dir(&pg.pgdata)
            .map_err(|e| InstanceError::io("cannot replace", &pg.pgdata, e))?;
    }
    std::fs::rename(staging, &pg.pgdata)
        .map_err(|e| InstanceError::io("cannot move the copied data to", &pg.pgdata, e))?;
    Ok(())
}

/// `recoveryTarget.targetTime` as the controller passes it (RFC 3339).
fn parse_target_time(text: &str) -> Result<time::OffsetDateTime, InstanceError> {
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).map_err(
        |_| {
            InstanceError::InvalidSetting(format!(
                "recoveryTarget.targetTime: {text:?} is not an RFC 3339 time"
            ))
        },
    )
}

/// How long a fresh instance may take to accept connections.
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(120);
