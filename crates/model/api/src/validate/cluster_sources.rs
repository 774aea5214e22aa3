//! Cluster: bootstrap, external clusters and replica mode.

use super::backup_config::{check_plugin_store, check_store_secrets, credential_count};
use super::Context;
use crate::cluster::{Cluster, RecoveryTarget};
use crate::common::SqlRefs;
use crate::diagnostics::{did_you_mean, Diagnostic, FieldPath};

/// The barman-cloud plugin's name.
pub const BARMAN_CLOUD_PLUGIN: &str = "barman-cloud.cloudnative-pg.io";

fn external_names(cluster: &Cluster) -> Vec<&str> {
    cluster
        .spec
        .external_clusters
        .iter()
        .flatten()
        .map(|e| e.name.as_str())
        .collect()
}

fn check_source(cluster: &Cluster, path: &FieldPath, source: &str, out: &mut Vec<Diagnostic>) {
    let names = external_names(cluster);
    if names.contains(&source) {
        return;
    }
    let mut d = Diagnostic::error(
        path.as_str(),
        format!("external cluster {source:?} not found in spec.externalClusters"),
    );
    d = match did_you_mean(source, names.iter().copied()) {
        Some(best) => d.with_hint(format!("did you mean {best:?}?")),
        None if names.is_empty() => d.with_hint(format!(
            "add an entry named {source:?} to spec.externalClusters"
        )),
        None => d.with_hint(format!("known external clusters: {}", names.join(", "))),
    };
    out.push(d);
}

fn check_app_database(
    path: &FieldPath,
    database: Option<&str>,
    owner: Option<&str>,
    out: &mut Vec<Diagnostic>,
) {
    let (db, owner) = (database.unwrap_or_default(), owner.unwrap_or_default());
    if !db.is_empty() && owner.is_empty() {
        out.push(Diagnostic::error(
            path.key("owner").as_str(),
            "required when database is set",
        ));
    }
    if db.is_empty() && !owner.is_empty() {
        out.push(Diagnostic::error(
            path.key("database").as_str(),
            "required when owner is set",
        ));
    }
}

fn check_sql_refs(
    path: &FieldPath,
    refs: Option<&SqlRefs>,
    ctx: &Context,
    out: &mut Vec<Diagnostic>,
) {
    let Some(refs) = refs else { return };
    for (i, sel) in refs.secret_refs.iter().enumerate() {
        ctx.secret_key(&path.key("secretRefs").index(i), sel, out);
    }
    for (i, sel) in refs.config_map_refs.iter().enumerate() {
        ctx.config_map_key(&path.key("configMapRefs").index(i), sel, out);
    }
}

pub(super) fn validate_bootstrap(cluster: &Cluster, ctx: &Context, out: &mut Vec<Diagnostic>) {
    let Some(b) = &cluster.spec.bootstrap else {
        return;
    };
    let path = FieldPath::new("spec.bootstrap");
    let methods = [
        b.initdb.is_some(),
        b.recovery.is_some(),
        b.pg_basebackup.is_some(),
    ];
    if methods.iter().filter(|m| **m).count() > 1 {
        out.push(
            Diagnostic::error(path.as_str(), "only one bootstrap method can be used")
                .with_hint("keep exactly one of initdb, recovery, pg_basebackup"),
        );
    }
    if let Some(initdb) = &b.initdb {
        let p = path.key("initdb");
        check_app_database(&p, initdb.database.as_deref(), initdb.owner.as_deref(), out);
        if let Some(size) = initdb.wal_segment_size {
            if size > 0 && (size & (size - 1)) != 0 {
                out.push(
                    Diagnostic::error(
                        p.key("walSegmentSize").as_str(),
                        format!("must be a power of two, got {size}"),
                    )
                    .with_hint("use 16, 32, 64, ..."),
                );
            }
        }
        if let Some(secret) = &initdb.secret {
            ctx.secret(&p.key("secret").key("name"), &secret.name, out);
        }
        check_sql_refs(
            &p.key("postInitSQLRefs"),
            initdb.post_init_sql_refs.as_ref(),
            ctx,
            out,
        );
        check_sql_refs(
            &p.key("postInitTemplateSQLRefs"),
            initdb.post_init_template_sql_refs.as_ref(),
            ctx,
            out,
        );
        check_sql_refs(
            &p.key("postInitApplicationSQLRefs"),
            initdb.post_init_application_sql_refs.as_ref(),
            ctx,
            out,
        );
        let provider = initdb.locale_provider.as_deref().unwrap_or_default();
        if initdb.builtin_locale.is_some() && provider != "builtin" {
            out.push(Diagnostic::error(
                p.key("builtinLocale").as_str(),
                "requires localeProvider: builtin",
            ));
        }
        if (initdb.icu_locale.is_some() || initdb.icu_rules.is_some()) && provider != "icu" {
            out.push(Diagnostic::error(
                p.key("icuLocale").as_str(),
                "icuLocale and icuRules require localeProvider: icu",
            ));
        }
        if let Some(import) = &initdb.import {
            let ip = p.key("import");
            check_source(
                cluster,
                &ip.key("source").key("externalCluster"),
                &import.source.external_cluster,
                out,
            );
            match import.import_type {
                crate::cluster::ImportType::Microservice => {
                    if import.databases.len() != 1 {
                        out.push(Diagnostic::error(
                            ip.key("databases").as_str(),
                            "a microservice import takes exactly one database",
                        ));
                    }
                    if import.databases.iter().any(|d| d.contains('*')) {
                        out.push(Diagnostic::error(
                            ip.key("databases").as_str(),
                            "wildcards are only allowed in a monolith import",
                        ));
                    }
                    if import.roles.as_ref().is_some_and(|r| !r.is_empty()) {
                        out.push(Diagnostic::error(
                            ip.key("roles").as_str(),
                            "a microservice import does not import roles",
                        ));
                    }
                }
                crate::cluster::ImportType::Monolith => {
                    if import.databases.is_empty() {
                        out.push(Diagnostic::error(
                            ip.key("databases").as_str(),
                            "a monolith import needs at least one database",
                        ));
                    }
                    if import
                        .post_import_application_sql
                        .as_ref()
                        .is_some_and(|s| !s.is_empty())
                    {
                        out.push(Diagnostic::error(
                            ip.key("postImportApplicationSQL").as_str(),
                            "only allowed in a microservice import",
                        ));
                    }
                }
            }
        }
    }
    if let Some(clone) = &b.pg_basebackup {
        let p = path.key("pg_basebackup");
        check_app_database(&p, clone.database.as_deref(), clone.owner.as_deref(), out);
        check_source(cluster, &p.key("source"), &clone.source, out);
    }
    if let Some(recovery) = &b.recovery {
        let p = path.key("recovery");
        check_app_database(
            &p,
            recovery.database.as_deref(),
            recovery.owner.as_deref(),
            out,
        );
        if let Some(source) = recovery.source.as_deref().filter(|s| !s.is_empty()) {
            check_source(cluster, &p.key("source"), source, out);
        }
        if recovery.backup.is_some()
            && recovery.source.is_some()
            && recovery.volume_snapshots.is_none()
        {
            out.push(Diagnostic::warning(p.key("source").as_str(), "both backup and source are set: the backup is restored and source is only used to fetch WAL"));
        }
        if recovery.backup.is_none()
            && recovery.source.is_none()
            && recovery.volume_snapshots.is_none()
        {
            out.push(Diagnostic::error(p.as_str(), "nothing to recover from").with_hint("set backup.name (a Backup object), source (an external cluster with an object store) or volumeSnapshots"));
        }
        if recovery.volume_snapshots.is_some() && recovery.backup.is_some() {
            out.push(Diagnostic::error(
                p.key("backup").as_str(),
                "cannot be used together with volumeSnapshots",
            ));
        }
        if let Some(target) = &recovery.recovery_target {
            validate_recovery_target(
                target,
                recovery.volume_snapshots.is_some(),
                &p.key("recoveryTarget"),
                out,
            );
        }
    }
}

/// Whether `s` is a timestamp PostgreSQL and CloudNativePG both read: RFC 3339, or
/// `YYYY-MM-DD HH:MM:SS[.ffffff][+-TZ]`, or the same with a `T` and no zone.
pub fn is_recovery_time(s: &str) -> bool {
    let b = s.as_bytes();
    let digits =
        |r: std::ops::Range<usize>| b.get(r).is_some_and(|d| d.iter().all(u8::is_ascii_digit));
    let date_time = b.len() >= 19
        && digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10)
        && (b[10] == b' ' || b[10] == b'T' || b[10] == b't')
        && digits(11..13)
        && b[13] == b':'
        && digits(14..16)
        && b[16] == b':'
        && digits(17..19);
    if !date_time {
        return false;
    }
    let mut rest = &s[19..];
    if let Some(frac) = rest.strip_prefix('.') {
        let n = frac.bytes().take_while(u8::is_ascii_digit).count();
        if n == 0 {
            return false;
        }
        rest = &frac[n..];
    }
    let rest = rest.trim_start();
    rest.is_empty()
        || rest.eq_ignore_ascii_case("z")
        || rest.eq_ignore_ascii_case("utc")
        || ((rest.starts_with('+') || rest.starts_with('-'))
            && rest[1..].bytes().all(|c| c.is_ascii_digit() || c == b':')
            && rest.len() > 1)
}

fn validate_recovery_target(
    t: &RecoveryTarget,
    snapshots: bool,
    path: &FieldPath,
    out: &mut Vec<Diagnostic>,
) {
    let set = [
        t.target_immediate.is_some(),
        t.target_lsn.is_some(),
        t.target_name.is_some(),
        t.target_xid.is_some(),
        t.target_time.is_some(),
    ];
    if set.iter().filter(|s| **s).count() > 1 {
        out.push(Diagnostic::error(path.as_str(), "targetImmediate, targetLSN, targetName, targetXID and targetTime are mutually exclusive").with_hint("keep one of them"));
    }
    if let Some(time) = &t.target_time {
        if !is_recovery_time(time) {
            out.push(Diagnostic::error(path.key("targetTime").as_str(), format!("{time:?} is not a timestamp")).with_hint("write RFC 3339 (2025-10-06T12:00:00Z) or YYYY-MM-DD HH:MM:SS[+TZ] (no zone means UTC)"));
        }
    }
    if let Some(lsn) = &t.target_lsn {
        if lsn.parse::<pgherd_postgres::Lsn>().is_err() {
            out.push(
                Diagnostic::error(
                    path.key("targetLSN").as_str(),
                    format!("{lsn:?} is not an LSN"),
                )
                .with_hint("write it as two hex numbers, e.g. 0/3000148"),
            );
        }
    }
    if let Some(xid) = &t.target_xid {
        if xid.parse::<u32>().is_err() {
            out.push(Diagnostic::error(
                path.key("targetXID").as_str(),
                format!("{xid:?} is not a transaction id (an unsigned 32-bit number)"),
            ));
        }
    }
    if let Some(name) = &t.target_name {
        if name.len() >= 64 || name.bytes().any(|c| c < 0x20 || c == 0x7f) {
            out.push(Diagnostic::error(
                path.key("targetName").as_str(),
                "a restore point name has at most 63 bytes and no control characters",
            ));
        }
    }
    if let Some(tli) = &t.target_tli {
        if !(tli.is_empty() || tli == "latest" || tli.parse::<u32>().is_ok_and(|n| n >= 1)) {
            out.push(
                Diagnostic::error(
                    path.key("targetTLI").as_str(),
                    format!("{tli:?} is not a timeline"),
                )
                .with_hint("use latest or a positive number"),
            );
        }
    }
    let label_based =
        t.target_name.is_some() || t.target_xid.is_some() || t.target_immediate.is_some();
    if label_based && !snapshots && t.backup_id.as_deref().unwrap_or_default().is_empty() {
        out.push(
            Diagnostic::error(
                path.key("backupID").as_str(),
                "required with targetName, targetXID or targetImmediate",
            )
            .with_hint("name the backup to start from"),
        );
    }
}

pub(super) fn validate_external_clusters(
    cluster: &Cluster,
    ctx: &Context,
    out: &mut Vec<Diagnostic>,
) {
    let mut seen = std::collections::BTreeSet::new();
    for (i, e) in cluster.spec.external_clusters.iter().flatten().enumerate() {
        let path = FieldPath::new("spec.externalClusters").index(i);
        if !seen.insert(e.name.as_str()) {
            out.push(Diagnostic::error(
                path.key("name").as_str(),
                format!("duplicate external cluster {:?}", e.name),
            ));
        }
        if e.name.is_empty() || e.name == "." || e.name == ".." || e.name.contains(['/', '\\']) {
            out.push(Diagnostic::error(
                path.key("name").as_str(),
                "must not be empty, '.', '..' or contain a path separator",
            ));
        }
        if e.connection_parameters.is_none()
            && e.barman_object_store.is_none()
            && e.plugin.is_none()
        {
            out.push(Diagnostic::error(
                path.as_str(),
                "one of connectionParameters, barmanObjectStore and plugin is required",
            ));
        }
        for (field, sel) in [
            ("sslCert", &e.ssl_cert),
            ("sslKey", &e.ssl_key),
            ("sslRootCert", &e.ssl_root_cert),
            ("password", &e.password),
        ] {
            if let Some(sel) = sel.as_ref().filter(|s| s.optional != Some(true)) {
                ctx.secret_key(&path.key(field), &sel.selector(), out);
            }
        }
        if let Some(store) = &e.barman_object_store {
            let p = path.key("barmanObjectStore");
            if credential_count(store) == 0 {
                out.push(
                    Diagnostic::warning(p.as_str(), "no credentials: the object store will be read with the ambient credentials of the environment")
                        .with_hint("set s3Credentials (or azureCredentials / googleCredentials) unless the environment provides them"),
                );
            }
            check_store_secrets(store, &p, ctx, out);
        }
        if let Some(plugin) = &e.plugin {
            check_plugin_store(plugin, &path.key("plugin"), ctx, out);
        }
    }
}

pub(super) fn validate_replica(cluster: &Cluster, out: &mut Vec<Diagnostic>) {
    let Some(replica) = &cluster.spec.replica else {
        return;
    };
    let path = FieldPath::new("spec.replica");
    if replica.enabled.is_some() && replica.primary.is_some() {
        out.push(Diagnostic::error(path.key("enabled").as_str(), "cannot be used together with primary").with_hint("use enabled for a standalone replica cluster, or primary/self for a distributed topology"));
    }
    check_source(cluster, &path.key("source"), &replica.source, out);
    for (field, value) in [("self", &replica.self_name), ("primary", &replica.primary)] {
        if let Some(name) = value {
            let own = cluster.metadata.name.as_deref().unwrap_or_default();
            if name != own {
                check_source(cluster, &path.key(field), name, out);
            }
        }
    }
    // Only when the cluster is created (as CloudNativePG: a stored object has a
    // resourceVersion): a primary cluster demoted in the distributed topology was bootstrapped
    // long ago, by initdb.
    if cluster.is_replica() && cluster.metadata.resource_version.is_none() {
        let b = cluster.spec.bootstrap.as_ref();
        if !b.is_some_and(|b| b.recovery.is_some() || b.pg_basebackup.is_some()) {
            out.push(Diagnostic::error("spec.bootstrap", "a replica cluster must bootstrap from recovery or pg_basebackup").with_hint("add bootstrap.pg_basebackup.source or bootstrap.recovery.source naming the source cluster"));
        }
    }
    if replica.promotion_token.is_some() && replica.min_apply_delay.is_some() {
        out.push(Diagnostic::error(
            path.key("minApplyDelay").as_str(),
            "cannot be used together with promotionToken",
        ));
    }
    if let Some(delay) = &replica.min_apply_delay {
        if let Err(e) = crate::duration::parse_go_duration(delay) {
            out.push(Diagnostic::error(path.key("minApplyDelay").as_str(), e));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovery_times() {
        for ok in [
            "2025-10-06 12:00:00",
            "2024-12-05T12:00:00Z",
            "2025-01-15 12:00:00+02",
            "2025-01-15 12:00:00.123456+02:00",
            "2025-01-15T12:00:00",
            "2025-01-15 12:00:00 UTC",
        ] {
            assert!(is_recovery_time(ok), "{ok}");
        }
        for bad in [
            "yesterday",
            "2025-10-06",
            "2025-10-06 12:00",
            "2025-10-06 12:00:00 +",
            "2025-10-06 12:00:00.",
        ] {
            assert!(!is_recovery_time(bad), "{bad}");
        }
    }
}
