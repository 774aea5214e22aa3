//! Backup, ScheduledBackup, Pooler, Database and ObjectStore.

use super::backup_config::validate_store_credentials;
use super::{check_cluster_ref, is_dns1035_label, Context};
use crate::diagnostics::{did_you_mean, Diagnostic, FieldPath};
use crate::kinds::backup::{Backup, BackupMethod, BackupPluginConfiguration};
use crate::kinds::database::Database;
use crate::kinds::object_store::ObjectStore;
use crate::kinds::pooler::{Pooler, ALLOWED_PGBOUNCER_PARAMETERS};
use crate::kinds::scheduled_backup::ScheduledBackup;
use pgherd_postgres::hba;

/// The rules a Backup and a ScheduledBackup share: which cluster, and which method with which
/// options.
fn check_backup_request(
    cluster: &str,
    method: Option<BackupMethod>,
    online: bool,
    online_configuration: bool,
    plugin: Option<&BackupPluginConfiguration>,
    out: &mut Vec<Diagnostic>,
) {
    check_cluster_ref(cluster, out);
    let method = method.unwrap_or_default();
    if method == BackupMethod::BarmanObjectStore {
        if online {
            out.push(
                Diagnostic::error("spec.online", "only used with method volumeSnapshot")
                    .with_hint("remove it: object store backups are always online"),
            );
        }
        if online_configuration {
            out.push(Diagnostic::error(
                "spec.onlineConfiguration",
                "only used with method volumeSnapshot",
            ));
        }
    }
    if method == BackupMethod::Plugin && plugin.is_none_or(|p| p.name.is_empty()) {
        out.push(
            Diagnostic::error(
                "spec.pluginConfiguration.name",
                "required with method plugin",
            )
            .with_hint("for the barman-cloud plugin use barman-cloud.cloudnative-pg.io"),
        );
    }
}

/// Every problem with a Backup.
pub fn validate_backup(backup: &Backup) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    let s = &backup.spec;
    check_backup_request(
        &s.cluster.name,
        s.method,
        s.online.is_some(),
        s.online_configuration.is_some(),
        s.plugin_configuration.as_ref(),
        &mut out,
    );
    if let Some(deadline) = backup
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get("cnpg.io/volumeSnapshotDeadline"))
    {
        if !deadline.is_empty() && deadline.parse::<i64>().is_err() {
            out.push(Diagnostic::error(
                "metadata.annotations[\"cnpg.io/volumeSnapshotDeadline\"]",
                format!("{deadline:?} is not a number of minutes"),
            ));
        }
    }
    out
}

/// Every problem with a ScheduledBackup.
pub fn validate_scheduled_backup(backup: &ScheduledBackup) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    let s = &backup.spec;
    check_backup_request(
        &s.cluster.name,
        s.method,
        s.online.is_some(),
        s.online_configuration.is_some(),
        s.plugin_configuration.as_ref(),
        &mut out,
    );
    out.extend(crate::cron::diagnostics(&s.schedule, "spec.schedule"));
    out
}

/// Every problem with a Pooler.
pub fn validate_pooler(pooler: &Pooler) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    let s = &pooler.spec;
    let name = pooler.metadata.name.as_deref().unwrap_or_default();
    check_cluster_ref(&s.cluster.name, &mut out);
    if !is_dns1035_label(name) {
        out.push(Diagnostic::error("metadata.name", format!("{name:?} is not a valid pooler name")).with_hint("the pooler's service takes this name: lowercase letters, digits and '-', starting with a letter"));
    }
    if name == s.cluster.name {
        out.push(
            Diagnostic::error(
                "metadata.name",
                "a Pooler cannot have the same name as its Cluster",
            )
            .with_hint(format!("name it e.g. {name}-pooler-rw")),
        );
    }
    let pgb = &s.pgbouncer;
    let path = FieldPath::new("spec.pgbouncer");
    let has_auth_secret = pgb
        .auth_query_secret
        .as_ref()
        .is_some_and(|r| !r.name.is_empty())
        || pgb
            .server_tls_secret
            .as_ref()
            .is_some_and(|r| !r.name.is_empty());
    let has_query = pgb.auth_query.as_deref().is_some_and(|q| !q.is_empty());
    if has_auth_secret && !has_query {
        out.push(Diagnostic::error(
            path.key("authQuery").as_str(),
            "required when authQuerySecret or serverTLSSecret is set",
        ));
    }
    if !has_auth_secret && has_query {
        out.push(Diagnostic::error(
            path.key("authQuerySecret").key("name").as_str(),
            "required when authQuery is set",
        ));
    }
    for key in pgb.parameters.iter().flat_map(|p| p.keys()) {
        if !ALLOWED_PGBOUNCER_PARAMETERS.contains(&key.as_str()) {
            let mut d = Diagnostic::error(
                path.key("parameters").key(key).as_str(),
                "not a PgBouncer parameter a Pooler may set",
            );
            d = match did_you_mean(key, ALLOWED_PGBOUNCER_PARAMETERS.iter().copied()) {
                Some(best) => d.with_hint(format!("did you mean {best}?")),
                None => d.with_hint(
                    "the operator owns the others (listen address, TLS files, auth file...)",
                ),
            };
            out.push(d);
        }
    }
    if pgb.image.is_some() && pgb.image_catalog_ref.is_some() {
        out.push(Diagnostic::error(
            path.key("image").as_str(),
            "cannot be set together with imageCatalogRef",
        ));
    }
    let monitoring = s.monitoring.as_ref();
    if monitoring
        .and_then(|m| m.tls.as_ref())
        .and_then(|t| t.enabled)
        == Some(true)
        && monitoring.and_then(|m| m.enable_pod_monitor) == Some(true)
        && pgb.client_tls_secret.is_none()
    {
        out.push(Diagnostic::error(
            path.key("clientTLSSecret").as_str(),
            "required when monitoring TLS and the PodMonitor are enabled",
        ));
    }
    for (i, line) in pgb.pg_hba.iter().flatten().enumerate() {
        if let Err(e) = hba::parse_record(line) {
            out.push(Diagnostic::error(
                path.key("pg_hba").index(i).as_str(),
                format!("invalid pg_hba line {line:?}: {e}"),
            ));
        }
    }
    out
}

const RESERVED_DATABASES: &[&str] = &["postgres", "template0", "template1"];

/// Every problem with a Database.
pub fn validate_database(db: &Database) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    let s = &db.spec;
    check_cluster_ref(&s.cluster.name, &mut out);
    if RESERVED_DATABASES.contains(&s.name.as_str()) {
        out.push(
            Diagnostic::error("spec.name", format!("{:?} is reserved", s.name))
                .with_hint("postgres, template0 and template1 are managed by PostgreSQL itself"),
        );
    }
    if s.name.is_empty() || s.name.len() > 63 {
        out.push(Diagnostic::error(
            "spec.name",
            "a database name must have 1 to 63 bytes",
        ));
    }
    if s.owner.is_empty() || s.owner.len() > 63 {
        out.push(Diagnostic::error(
            "spec.owner",
            "an owner role name must have 1 to 63 bytes",
        ));
    }
    let provider = s.locale_provider.as_deref().unwrap_or_default();
    if s.builtin_locale.is_some() && provider != "builtin" {
        out.push(Diagnostic::error(
            "spec.builtinLocale",
            "requires localeProvider: builtin",
        ));
    }
    if (s.icu_locale.is_some() || s.icu_rules.is_some()) && provider != "icu" {
        out.push(Diagnostic::error(
            "spec.icuLocale",
            "icuLocale and icuRules require localeProvider: icu",
        ));
    }
    let mut seen = std::collections::BTreeSet::new();
    for (i, schema) in s.schemas.iter().flatten().enumerate() {
        if !seen.insert(&schema.name) {
            out.push(Diagnostic::error(
                format!("spec.schemas[{i}].name"),
                format!("duplicate schema {:?}", schema.name),
            ));
        }
    }
    let fdws: Vec<&str> = s.fdws.iter().flatten().map(|f| f.name.as_str()).collect();
    let mut seen = std::collections::BTreeSet::new();
    for (i, fdw) in s.fdws.iter().flatten().enumerate() {
        if !seen.insert(&fdw.name) {
            out.push(Diagnostic::error(
                format!("spec.fdws[{i}].name"),
                format!("duplicate foreign data wrapper {:?}", fdw.name),
            ));
        }
        let path = format!("spec.fdws[{i}]");
        unique_names(
            &path,
            "options",
            fdw.options.iter().flatten().map(|o| &o.name),
            &mut out,
        );
        unique_names(
            &path,
            "usage",
            fdw.usage.iter().flatten().map(|u| &u.name),
            &mut out,
        );
    }
    let mut seen = std::collections::BTreeSet::new();
    for (i, server) in s.servers.iter().flatten().enumerate() {
        if !seen.insert(&server.name) {
            out.push(Diagnostic::error(
                format!("spec.servers[{i}].name"),
                format!("duplicate server {:?}", server.name),
            ));
        }
        let path = format!("spec.servers[{i}]");
        unique_names(
            &path,
            "options",
            server.options.iter().flatten().map(|o| &o.name),
            &mut out,
        );
        unique_names(
            &path,
            "usage",
            server.usage.iter().flatten().map(|u| &u.name),
            &mut out,
        );
        let absent = server.ensure == Some(crate::cluster::EnsureOption::Absent);
        if !absent && !fdws.contains(&server.fdw.as_str()) {
            out.push(Diagnostic::error(
                format!("spec.servers[{i}].fdw"),
                format!(
                    "foreign data wrapper {:?} is not declared in spec.fdws",
                    server.fdw
                ),
            ));
        }
    }
    let mut seen = std::collections::BTreeSet::new();
    for (i, ext) in s.extensions.iter().flatten().enumerate() {
        if !seen.insert(&ext.name) {
            out.push(Diagnostic::error(
                format!("spec.extensions[{i}].name"),
                format!("duplicate extension {:?}", ext.name),
            ));
        }
    }
    out
}

/// Names in `parent.list` given twice (CloudNativePG's `validateNameOptionsUsages`).
fn unique_names<'a>(
    parent: &str,
    list: &str,
    names: impl Iterator<Item = &'a String>,
    out: &mut Vec<Diagnostic>,
) {
    let mut seen = std::collections::BTreeSet::new();
    for (i, name) in names.enumerate() {
        if !seen.insert(name) {
            out.push(Diagnostic::error(
                format!("{parent}.{list}[{i}].name"),
                format!("{name:?} is given twice"),
            ));
        }
    }
}

/// Every problem with an ObjectStore.
pub fn validate_object_store(store: &ObjectStore, ctx: &Context) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    let path = FieldPath::new("spec.configuration");
    if store.spec.configuration.server_name.is_some() {
        out.push(
            Diagnostic::error(
                path.key("serverName").as_str(),
                "cannot be set on an ObjectStore",
            )
            .with_hint("set the serverName parameter of the plugin in the Cluster instead"),
        );
    }
    validate_store_credentials(&store.spec.configuration, &path, ctx, &mut out);
    if let Some(sidecar) = &store.spec.instance_sidecar_configuration {
        for (i, arg) in sidecar
            .additional_container_args
            .iter()
            .flatten()
            .enumerate()
        {
            if arg.starts_with("--log-level") {
                out.push(
                    Diagnostic::error(
                        format!("spec.instanceSidecarConfiguration.additionalContainerArgs[{i}]"),
                        "--log-level cannot be passed here",
                    )
                    .with_hint("use spec.instanceSidecarConfiguration.logLevel"),
                );
            }
        }
    }
    out
}
