//! What PostgreSQL runs with: the spec's settings, completed by what the instance manager
//! owns (hot-standby minimums, WAL archive and restore commands, recovery targets while a
//! recovery replays).

use crate::{InstanceError, Postgres};
use pgherd_instance_protocol::{DesiredRole, InstanceSpec};

/// Settings for this start: the spec's, a standby never below what its primary recorded in
/// `pg_control`, and no synchronous standbys before the new cluster's bootstrap SQL has run
/// (it would wait for standbys that cannot exist yet).
pub(crate) fn effective_settings(
    spec: &InstanceSpec,
    pg: &Postgres,
    recovering: bool,
) -> Result<std::collections::BTreeMap<String, String>, InstanceError> {
    let minimums = if spec.role == DesiredRole::Replica || spec.upstream.is_some() || recovering {
        // A standby cannot run with less than its primary recorded (e.g. while a decrease of
        // max_connections waits for the primary's restart); nor can a recovery replaying a
        // backup taken where they were higher (CloudNativePG raises them the same way).
        match pg.controldata_minimums() {
            Ok(minimums) => minimums,
            Err(InstanceError::ToolMissing { .. }) => Vec::new(),
            Err(e) => return Err(e),
        }
    } else {
        Vec::new()
    };
    let mut settings = with_standby_minimums(&spec.settings, &minimums);
    if let pgherd_instance_protocol::Bootstrap::Recovery {
        store_file,
        recovery_settings,
        ..
    } = &spec.bootstrap
    {
        if recovering {
            settings.extend(recovery_settings.clone());
            settings.insert(
                "restore_command".into(),
                restore_from(store_file.clone(), spec)?,
            );
        }
    }
    if let Some(store) = &spec.wal_store {
        let commands = crate::wal::WalCommands::new(store, &spec.socket_dir)?;
        settings.insert("archive_command".into(), commands.archive_command());
        if spec.role == DesiredRole::Replica {
            settings.insert("restore_command".into(), commands.restore_command());
        }
    }
    // A replica cluster's designated primary restores what its source archived.
    if let Some(store_file) = spec
        .upstream
        .as_ref()
        .filter(|_| spec.role == DesiredRole::Primary)
        .and_then(|u| u.store_file.clone())
    {
        settings.insert("restore_command".into(), restore_from(store_file, spec)?);
    }
    if !pg
        .pgdata
        .join(crate::supervisor::INITIALIZED_MARKER)
        .exists()
    {
        settings.remove("synchronous_standby_names");
    }
    Ok(settings)
}

/// `restore_command` reading WAL from another cluster's store (a recovery's source, a replica
/// cluster's source).
fn restore_from(
    store_file: std::path::PathBuf,
    spec: &InstanceSpec,
) -> Result<String, InstanceError> {
    let source = pgherd_instance_protocol::WalStore {
        store_file,
        skip_empty_check: false,
    };
    Ok(crate::wal::WalCommands::new(&source, &spec.socket_dir)?.restore_command())
}

/// `settings` with every hot-standby parameter written out (PostgreSQL's default when unset),
/// raised to `minimums`. Written out on every role: a promoted standby whose configuration
/// lost one of them would need a restart, a second outage right after the failover.
fn with_standby_minimums(
    settings: &std::collections::BTreeMap<String, String>,
    minimums: &[(&str, u64)],
) -> std::collections::BTreeMap<String, String> {
    let mut settings = settings.clone();
    for (name, default) in pgherd_postgres::guc::HOT_STANDBY_PARAMETERS {
        settings
            .entry((*name).to_string())
            .or_insert_with(|| default.to_string());
    }
    for (name, minimum) in minimums {
        let current = settings.get(*name).and_then(|v| v.parse::<u64>().ok());
        if current.is_none_or(|v| v < *minimum) {
            settings.insert((*name).to_string(), minimum.to_string());
        }
    }
    settings
}

#[cfg(test)]
mod tests {
    #[test]
    fn standby_minimums_are_written_out_on_every_role() {
        let mut user = std::collections::BTreeMap::new();
        user.insert("max_connections".to_string(), "50".to_string());
        // A primary (no minimums): every parameter explicit, the user's value kept.
        let primary = super::with_standby_minimums(&user, &[]);
        assert_eq!(primary["max_connections"], "50");
        assert_eq!(primary["max_locks_per_transaction"], "64");
        assert_eq!(primary["max_wal_senders"], "10");
        // A standby of a primary that runs with more: raised; the same keys either way, so a
        // promotion removes none of them.
        let standby = super::with_standby_minimums(&user, &[("max_connections", 200)]);
        assert_eq!(standby["max_connections"], "200");
        assert_eq!(
            primary.keys().collect::<Vec<_>>(),
            standby.keys().collect::<Vec<_>>()
        );
    }
}
