//! Rules for PostgreSQL configuration parameters (GUCs) in a cluster's `postgresql.parameters`.
//!
//! The operator owns some parameters outright (*fixed*: it computes them, e.g. `port`,
//! `archive_command`) and forbids others (*blocked*: they would break how the instance is run,
//! e.g. `data_directory`). Users may set everything else. Matching is case-insensitive, as
//! PostgreSQL's own parameter names are.

use crate::MajorVersion;

/// What a user may do with a parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParameterRule {
    /// Users may set it.
    Allowed,
    /// The operator computes it; a user value would be ignored, so it is rejected.
    Fixed,
    /// Setting it would break the instance manager's control of Postgres.
    Blocked,
}

/// The settings a hot standby may not run below its primary's (recorded in `pg_control`),
/// with PostgreSQL's defaults. pgherd writes them out on every instance, whatever its role:
/// a postmaster-level setting that disappears from the configuration (a promoted standby
/// dropping the minimums it ran with) marks the server as needing a restart even when the
/// value does not change.
pub const HOT_STANDBY_PARAMETERS: &[(&str, u64)] = &[
    ("max_connections", 100),
    ("max_worker_processes", 8),
    ("max_wal_senders", 10),
    ("max_prepared_transactions", 0),
    ("max_locks_per_transaction", 64),
];

/// Parameters the operator computes. A trailing `*` matches any suffix.
pub const FIXED_PARAMETERS: &[&str] = &[
    "archive_mode",
    "archive_command",
    "cluster_name",
    "port",
    "primary_conninfo",
    "primary_slot_name",
    "recovery_target*",
    "restore_command",
    "shared_preload_libraries",
    "temp_tablespaces",
    "pg_failover_slots.primary_dsn",
    "pg_failover_slots.standby_slot_names",
    "ssl",
    "ssl_ca_file",
    "ssl_cert_file",
    "ssl_crl_file",
    "ssl_crl_dir",
    "ssl_dh_params_file",
    "ssl_key_file",
    "ssl_passphrase_command*",
    "ssl_prefer_server_ciphers",
    "synchronous_standby_names",
    "synchronized_standby_slots",
];

/// Parameters nobody may set. A trailing `*` matches any suffix.
pub const BLOCKED_PARAMETERS: &[&str] = &[
    "allow_system_table_mods",
    "archive_cleanup_command",
    "bonjour*",
    "config_file",
    "data_directory",
    "data_sync_retry",
    "event_source",
    "external_pid_file",
    "hba_file",
    "hot_standby",
    "ident_file",
    "jit_provider",
    "listen_addresses",
    "log_destination",
    "log_directory",
    "log_file_mode",
    "log_filename",
    "log_rotation_*",
    "log_truncate_on_rotation",
    "logging_collector",
    "promote_trigger_file",
    "recovery_end_command",
    "recovery_min_apply_delay",
    "restart_after_crash",
    "stats_temp_directory",
    "syslog_*",
    "unix_socket_*",
];

/// The operator's defaults, applied under the user's values.
pub const DEFAULT_PARAMETERS: &[(&str, &str)] = &[
    ("archive_timeout", "5min"),
    ("dynamic_shared_memory_type", "posix"),
    ("full_page_writes", "on"),
    ("logging_collector", "on"),
    ("log_destination", "csvlog"),
    ("log_directory", "/controller/log"),
    ("log_filename", "postgres"),
    ("log_rotation_age", "0"),
    ("log_rotation_size", "0"),
    ("log_truncate_on_rotation", "false"),
    ("max_parallel_workers", "32"),
    ("max_replication_slots", "32"),
    ("max_worker_processes", "32"),
    ("shared_memory_type", "mmap"),
    ("shared_preload_libraries", ""),
    ("ssl_max_protocol_version", "TLSv1.3"),
    ("ssl_min_protocol_version", "TLSv1.3"),
    ("wal_keep_size", "512MB"),
    ("wal_level", "logical"),
    ("wal_log_hints", "on"),
    ("wal_receiver_timeout", "5s"),
    ("wal_sender_timeout", "5s"),
];

/// Parameters whose use makes the operator add a library to `shared_preload_libraries`.
pub const MANAGED_EXTENSION_PREFIXES: &[(&str, &str)] = &[
    ("pgaudit.", "pgaudit"),
    ("pg_stat_statements.", "pg_stat_statements"),
    ("auto_explain.", "auto_explain"),
    ("pg_failover_slots.", "pg_failover_slots"),
];

/// Of [`MANAGED_EXTENSION_PREFIXES`]' libraries, those CloudNativePG also creates as an
/// extension in every database (`auto_explain` and `pg_failover_slots` are libraries only).
pub const MANAGED_EXTENSIONS_CREATED: &[&str] = &["pgaudit", "pg_stat_statements"];

/// `shared_preload_libraries` as CloudNativePG computes it: the libraries of the managed
/// extensions whose parameters are set (in [`MANAGED_EXTENSION_PREFIXES`]' order), then the
/// user's own list, each once.
pub fn preload_libraries<'a>(
    parameters: impl IntoIterator<Item = &'a str> + Clone,
    user_libraries: &[String],
) -> Vec<String> {
    let mut out: Vec<String> = MANAGED_EXTENSION_PREFIXES
        .iter()
        .filter(|(prefix, _)| {
            parameters
                .clone()
                .into_iter()
                .any(|p| p.to_ascii_lowercase().starts_with(prefix))
        })
        .map(|(_, library)| (*library).to_string())
        .collect();
    for library in user_libraries {
        let library = library.trim();
        if !library.is_empty() && !out.iter().any(|l| l == library) {
            out.push(library.to_string());
        }
    }
    out
}

fn matches_pattern(pattern: &str, name: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => name == pattern,
    }
}

/// Classify a parameter name.
pub fn rule_for(name: &str) -> ParameterRule {
    let name = name.to_ascii_lowercase();
    if FIXED_PARAMETERS.iter().any(|p| matches_pattern(p, &name)) {
        ParameterRule::Fixed
    } else if BLOCKED_PARAMETERS.iter().any(|p| matches_pattern(p, &name)) {
        ParameterRule::Blocked
    } else {
        ParameterRule::Allowed
    }
}

/// Whether `name` has the shape of a parameter name: an identifier, optionally qualified by one
/// extension prefix (`pg_stat_statements.max`).
pub fn is_valid_name(name: &str) -> bool {
    fn ident(s: &str) -> bool {
        let mut bytes = s.bytes();
        matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_')
            && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'$')
    }
    let mut parts = name.split('.');
    let first = parts.next().is_some_and(ident);
    let second = parts.next().is_none_or(ident);
    first && second && parts.next().is_none()
}

/// A parameter that no longer exists in a PostgreSQL version: Postgres refuses to start with
/// it in its configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RemovedParameter {
    pub name: &'static str,
    pub removed_in: MajorVersion,
    /// The release that removed it, as PostgreSQL numbers it (`9.5`, `13`).
    pub release: &'static str,
    /// What to use instead.
    pub instead: &'static str,
}

const REMOVED_PARAMETERS: &[RemovedParameter] = &[
    RemovedParameter {
        name: "checkpoint_segments",
        removed_in: MajorVersion(9),
        release: "9.5",
        instead: "max_wal_size (and min_wal_size)",
    },
    RemovedParameter {
        name: "wal_keep_segments",
        removed_in: MajorVersion(13),
        release: "13",
        instead: "wal_keep_size",
    },
    RemovedParameter {
        name: "operator_precedence_warning",
        removed_in: MajorVersion(14),
        release: "14",
        instead: "nothing (remove it)",
    },
    RemovedParameter {
        name: "vacuum_cleanup_index_scale_factor",
        removed_in: MajorVersion(14),
        release: "14",
        instead: "nothing (remove it)",
    },
    RemovedParameter {
        name: "force_parallel_mode",
        removed_in: MajorVersion(16),
        release: "16",
        instead: "debug_parallel_query",
    },
    RemovedParameter {
        name: "vacuum_defer_cleanup_age",
        removed_in: MajorVersion(16),
        release: "16",
        instead: "hot_standby_feedback or replication slots",
    },
    RemovedParameter {
        name: "old_snapshot_threshold",
        removed_in: MajorVersion(17),
        release: "17",
        instead: "nothing (remove it)",
    },
    RemovedParameter {
        name: "db_user_namespace",
        removed_in: MajorVersion(17),
        release: "17",
        instead: "nothing (remove it)",
    },
    RemovedParameter {
        name: "trace_recovery_messages",
        removed_in: MajorVersion(17),
        release: "17",
        instead: "log_min_messages",
    },
];

/// The parameter's removal, if `name` no longer exists in `major`.
pub fn removed_parameter(name: &str, major: MajorVersion) -> Option<RemovedParameter> {
    let name = name.to_ascii_lowercase();
    REMOVED_PARAMETERS
        .iter()
        .find(|r| r.name == name && major >= r.removed_in)
        .copied()
}

/// `wal_level` values that support streaming replicas.
pub fn wal_level_supports_replication(value: &str) -> bool {
    matches!(
        value.to_ascii_lowercase().as_str(),
        "replica" | "logical" | "archive" | "hot_standby"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preload_libraries_follow_the_parameters_then_the_users_list() {
        let params = [
            "pg_stat_statements.max",
            "auto_explain.log_min_duration",
            "work_mem",
        ];
        assert_eq!(
            preload_libraries(params, &["pg_cron".into(), "auto_explain".into()]),
            ["pg_stat_statements", "auto_explain", "pg_cron"]
        );
        assert!(preload_libraries(["work_mem"], &[]).is_empty());
        assert_eq!(preload_libraries(["PGAUDIT.log"], &[]), ["pgaudit"]);
    }

    #[test]
    fn classification() {
        assert_eq!(rule_for("port"), ParameterRule::Fixed);
        assert_eq!(rule_for("PORT"), ParameterRule::Fixed);
        assert_eq!(rule_for("recovery_target_time"), ParameterRule::Fixed);
        assert_eq!(rule_for("ssl_key_file"), ParameterRule::Fixed);
        assert_eq!(rule_for("unix_socket_directories"), ParameterRule::Blocked);
        assert_eq!(rule_for("log_rotation_age"), ParameterRule::Blocked);
        assert_eq!(rule_for("max_connections"), ParameterRule::Allowed);
        assert_eq!(rule_for("ssl_min_protocol_version"), ParameterRule::Allowed);
        assert_eq!(rule_for("shared_buffers"), ParameterRule::Allowed);
    }

    #[test]
    fn names() {
        for ok in ["work_mem", "pg_stat_statements.max", "_x", "a$b"] {
            assert!(is_valid_name(ok), "{ok}");
        }
        for bad in ["", "1abc", "a.b.c", "a-b", "a.", ".a", "a b"] {
            assert!(!is_valid_name(bad), "{bad}");
        }
    }

    #[test]
    fn removed() {
        assert!(removed_parameter("checkpoint_segments", MajorVersion(16)).is_some());
        assert!(removed_parameter("wal_keep_segments", MajorVersion(12)).is_none());
        assert!(removed_parameter("wal_keep_segments", MajorVersion(13)).is_some());
        assert!(removed_parameter("work_mem", MajorVersion(18)).is_none());
    }
}
