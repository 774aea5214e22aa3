//! Cluster: PostgreSQL parameters, synchronous replication, pg_hba, LDAP, managed roles and
//! tablespaces.

use super::Context;
use crate::cluster::{Cluster, DataDurability, RoleConfiguration};
use crate::diagnostics::{did_you_mean, Diagnostic, FieldPath};
use pgherd_postgres::guc::{self, ParameterRule, DEFAULT_PARAMETERS};
use pgherd_postgres::hba;
use std::collections::BTreeSet;

pub(super) fn postgres_bool(value: &str) -> Option<bool> {
    let v = value.trim().to_ascii_lowercase();
    if v.is_empty() {
        return None;
    }
    let matches = |word: &str, min: usize| v.len() >= min && word.starts_with(&v);
    if matches("true", 1) || matches("yes", 1) || matches("on", 2) || v == "1" {
        Some(true)
    } else if matches("false", 1) || matches("no", 1) || matches("off", 2) || v == "0" {
        Some(false)
    } else {
        None
    }
}

/// The value the operator itself gives an owned parameter, if it writes one into the spec.
fn operator_value(cluster: &Cluster, name: &str) -> Option<String> {
    if name == "archive_mode" {
        return Some(cluster.archive_mode().to_string());
    }
    DEFAULT_PARAMETERS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v.to_string())
}

pub(super) fn validate_postgresql(cluster: &Cluster, ctx: &Context, out: &mut Vec<Diagnostic>) {
    let s = &cluster.spec;
    let instances = s.instances.unwrap_or(1);
    let base = FieldPath::new("spec.postgresql");
    let Some(pg) = &s.postgresql else { return };
    let params = pg.parameters.clone().unwrap_or_default();
    let major = cluster.major_version();
    let at = |name: &str| base.key("parameters").key(name);

    for (name, value) in &params {
        if !guc::is_valid_name(name) {
            out.push(Diagnostic::error(at(name).as_str(), "not a valid parameter name").with_hint("a parameter name is an identifier, optionally with one dot (pg_stat_statements.max)"));
            continue;
        }
        let lower = name.to_ascii_lowercase();
        // Defaulting writes some owned parameters into the spec; their own values pass.
        let operator_default = operator_value(cluster, &lower).as_deref() == Some(value.as_str());
        match guc::rule_for(&lower) {
            ParameterRule::Allowed => {}
            _ if operator_default => {}
            ParameterRule::Fixed => out.push(
                Diagnostic::error(
                    at(name).as_str(),
                    "this parameter is set by the operator and cannot be changed",
                )
                .with_hint("remove it; the operator computes it from the rest of the spec"),
            ),
            ParameterRule::Blocked => out.push(
                Diagnostic::error(
                    at(name).as_str(),
                    "this parameter cannot be set: it would break how the instance is run",
                )
                .with_hint("remove it"),
            ),
        }
        if let Some(removed) = major.and_then(|m| guc::removed_parameter(&lower, m)) {
            out.push(
                Diagnostic::error(at(name).as_str(), format!("this parameter does not exist in PostgreSQL {} (removed in {}); Postgres would refuse to start", major.map(|m| m.0).unwrap_or_default(), removed.release))
                    .with_hint(format!("use {} instead", removed.instead)),
            );
        }
    }

    let wal_level = params
        .get("wal_level")
        .map(|v| v.to_ascii_lowercase())
        .unwrap_or_else(|| "logical".into());
    match wal_level.as_str() {
        "logical" | "replica" => {}
        "minimal" => {
            if instances > 1 || cluster.archive_mode() != "off" {
                out.push(
                    Diagnostic::error(
                        at("wal_level").as_str(),
                        "minimal is only possible for a single instance without WAL archiving",
                    )
                    .with_hint("use replica or logical"),
                );
            }
            if params.get("max_wal_senders").map(String::as_str) != Some("0") {
                out.push(Diagnostic::error(
                    at("max_wal_senders").as_str(),
                    "must be \"0\" when wal_level is minimal",
                ));
            }
        }
        other => out.push(Diagnostic::error(
            at("wal_level").as_str(),
            format!("unsupported value {other:?}; must be one of: logical, replica, minimal"),
        )),
    }
    for name in [
        "hot_standby_feedback",
        "sync_replication_slots",
        "wal_log_hints",
    ] {
        if let Some(value) = params.get(name) {
            match postgres_bool(value) {
                None => out.push(
                    Diagnostic::error(at(name).as_str(), format!("{value:?} is not a boolean"))
                        .with_hint("use on or off"),
                ),
                Some(false) if name == "wal_log_hints" && instances > 1 => out.push(
                    Diagnostic::error(
                        at(name).as_str(),
                        "must be on when there is more than one instance",
                    )
                    .with_hint("pg_rewind needs it to bring a former primary back as a replica"),
                ),
                Some(_) => {}
            }
        }
    }

    validate_synchronous(cluster, &base, out);
    validate_hba(cluster, &base, out);
    for (i, lib) in pg.shared_preload_libraries.iter().flatten().enumerate() {
        if lib.trim().is_empty() || lib.contains(',') {
            out.push(
                Diagnostic::error(
                    base.key("shared_preload_libraries").index(i).as_str(),
                    "must be one library name",
                )
                .with_hint("list each library as its own item"),
            );
        }
    }
    if let Some(ldap) = &pg.ldap {
        if ldap.server.as_deref().unwrap_or_default().is_empty() {
            out.push(Diagnostic::error(
                base.key("ldap").key("server").as_str(),
                "required when ldap is configured",
            ));
        }
        if ldap.bind_as_auth.is_some() && ldap.bind_search_auth.is_some() {
            out.push(Diagnostic::error(
                base.key("ldap").as_str(),
                "bindAsAuth and bindSearchAuth cannot both be set",
            ));
        }
        if let Some(pw) = ldap
            .bind_search_auth
            .as_ref()
            .and_then(|b| b.bind_password.as_ref())
        {
            ctx.secret_key(
                &base.key("ldap").key("bindSearchAuth").key("bindPassword"),
                &pw.selector(),
                out,
            );
        }
    }
    if let Some(c) = &pg.sync_replica_election_constraint {
        if c.enabled
            && c.node_labels_anti_affinity
                .as_ref()
                .is_none_or(|l| l.is_empty())
        {
            out.push(Diagnostic::error(
                base.key("syncReplicaElectionConstraint")
                    .key("nodeLabelsAntiAffinity")
                    .as_str(),
                "required when the constraint is enabled",
            ));
        }
    }
    if let Some(patterns) = s
        .replication_slots
        .as_ref()
        .and_then(|r| r.synchronize_replicas.as_ref())
        .and_then(|r| r.exclude_patterns.as_ref())
    {
        for (i, p) in patterns.iter().enumerate() {
            if let Err(e) = regex::Regex::new(p) {
                out.push(Diagnostic::error(
                    format!("spec.replicationSlots.synchronizeReplicas.excludePatterns[{i}]"),
                    format!("not a valid regular expression: {e}"),
                ));
            }
        }
    }
}

fn validate_synchronous(cluster: &Cluster, base: &FieldPath, out: &mut Vec<Diagnostic>) {
    let s = &cluster.spec;
    let instances = s.instances.unwrap_or(1);
    let sync = s.postgresql.as_ref().and_then(|p| p.synchronous.as_ref());
    let legacy = s.min_sync_replicas.unwrap_or(0) > 0 || s.max_sync_replicas.unwrap_or(0) > 0;
    let path = base.key("synchronous");
    match sync {
        Some(_) if legacy => out.push(
            Diagnostic::error(path.as_str(), "cannot be used together with spec.minSyncReplicas/spec.maxSyncReplicas")
                .with_hint("keep spec.postgresql.synchronous and set minSyncReplicas and maxSyncReplicas to 0"),
        ),
        Some(sync) => {
            let pre = sync.standby_names_pre.as_ref().map_or(0, Vec::len) as i64;
            let post = sync.standby_names_post.as_ref().map_or(0, Vec::len) as i64;
            if sync.number <= 0 {
                out.push(Diagnostic::error(path.key("number").as_str(), format!("must be greater than 0, got {}", sync.number)));
            } else if sync.number >= instances + pre + post {
                out.push(
                    Diagnostic::error(path.key("number").as_str(), format!("{} synchronous standbys cannot be found among {} other instance(s) and {} listed name(s)", sync.number, instances - 1, pre + post))
                        .with_hint(format!("lower number to at most {} or add instances", (instances - 1 + pre + post).max(1))),
                );
            }
            if sync.data_durability == Some(DataDurability::Preferred) && pre + post > 0 {
                out.push(Diagnostic::error(path.key("dataDurability").as_str(), "preferred cannot be used with standbyNamesPre or standbyNamesPost"));
            }
            if sync.pod_failure_domain_keys.is_some() && sync.node_failure_domain_keys.is_some() {
                out.push(Diagnostic::error(path.key("podFailureDomainKeys").as_str(), "cannot be set together with nodeFailureDomainKeys"));
            }
            if sync.failover_quorum == Some(true) && sync.number <= pre + post {
                out.push(Diagnostic::error(path.key("failoverQuorum").as_str(), "needs number to exceed the count of standbyNamesPre and standbyNamesPost"));
            }
        }
        None if instances >= 2 && !cluster.is_replica() && s.min_sync_replicas.unwrap_or(0) == 0 => out.push(
            Diagnostic::warning(path.as_str(), "no synchronous replication: a failover can lose recently committed transactions")
                .with_hint("set spec.postgresql.synchronous (method: any, number: 1) to never lose an acknowledged commit"),
        ),
        None => {}
    }
}

fn validate_hba(cluster: &Cluster, base: &FieldPath, out: &mut Vec<Diagnostic>) {
    let selectors: BTreeSet<&str> = cluster
        .spec
        .pod_selector_refs
        .iter()
        .flatten()
        .map(|r| r.name.as_str())
        .collect();
    let lines = cluster
        .spec
        .postgresql
        .as_ref()
        .and_then(|p| p.pg_hba.as_ref());
    for (i, line) in lines.into_iter().flatten().enumerate() {
        let path = base.key("pg_hba").index(i);
        match hba::parse_record(line) {
            Err(e) => out.push(Diagnostic::error(
                path.as_str(),
                format!("invalid pg_hba line {line:?}: {e}"),
            )),
            Ok(record) => {
                if let Some(name) = record.pod_selector.as_deref() {
                    if !selectors.contains(name) {
                        let mut d = Diagnostic::error(path.as_str(), format!("${{podselector:{name}}} does not name an entry of spec.podSelectorRefs"));
                        if let Some(best) = did_you_mean(name, selectors.iter().copied()) {
                            d = d.with_hint(format!("did you mean {best:?}?"));
                        }
                        out.push(d);
                    }
                }
            }
        }
    }
}

const RESERVED_ROLES: &[&str] = &["postgres", "streaming_replica"];

pub(super) fn validate_managed_roles(cluster: &Cluster, ctx: &Context, out: &mut Vec<Diagnostic>) {
    let roles = cluster.spec.managed.as_ref().and_then(|m| m.roles.as_ref());
    let mut seen = BTreeSet::new();
    for (i, role) in roles.into_iter().flatten().enumerate() {
        let path = FieldPath::new("spec.managed.roles").index(i);
        validate_role(role, &path, ctx, out);
        if !seen.insert(role.name.as_str()) {
            out.push(Diagnostic::error(
                path.key("name").as_str(),
                format!("duplicate role {:?}", role.name),
            ));
        }
    }
}

/// The rules of one role, at `path`: an entry of `spec.managed.roles` or a DatabaseRole's spec.
pub(super) fn validate_role(
    role: &RoleConfiguration,
    path: &FieldPath,
    ctx: &Context,
    out: &mut Vec<Diagnostic>,
) {
    if RESERVED_ROLES.contains(&role.name.as_str())
        || role.name.starts_with("cnpg_")
        || role.name.starts_with("pg_")
    {
        out.push(Diagnostic::error(path.key("name").as_str(), format!("{:?} is reserved", role.name)).with_hint("postgres, streaming_replica and names starting with cnpg_ or pg_ belong to the operator or PostgreSQL"));
    }
    if role.name.is_empty() || role.name.len() > 63 {
        out.push(Diagnostic::error(
            path.key("name").as_str(),
            "a role name must have 1 to 63 characters",
        ));
    }
    if role.disable_password == Some(true) && role.password_secret.is_some() {
        out.push(Diagnostic::error(
            path.key("disablePassword").as_str(),
            "cannot be used together with passwordSecret",
        ));
    }
    if let Some(secret) = &role.password_secret {
        ctx.secret(&path.key("passwordSecret").key("name"), &secret.name, out);
    }
}

pub(super) fn validate_tablespaces(cluster: &Cluster, out: &mut Vec<Diagnostic>) {
    let mut seen = BTreeSet::new();
    for (i, t) in cluster.spec.tablespaces.iter().flatten().enumerate() {
        let path = FieldPath::new("spec.tablespaces").index(i);
        let valid = t.name.len() <= 63
            && !t.name.starts_with("pg_")
            && t.name
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && t.name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$');
        if !valid {
            out.push(
                Diagnostic::error(
                    path.key("name").as_str(),
                    format!("{:?} is not a valid tablespace name", t.name),
                )
                .with_hint("letters, digits and _, not starting with pg_, at most 63 characters"),
            );
        }
        let volume = t.name.to_ascii_lowercase().replace('_', "-");
        if !seen.insert(volume) {
            out.push(Diagnostic::error(path.key("name").as_str(), format!("{:?} clashes with another tablespace (names are compared case-insensitively, with _ and - alike)", t.name)));
        }
        super::cluster::validate_storage(Some(&t.storage), &path.key("storage"), true, out);
    }
}

#[cfg(test)]
mod tests {
    use super::postgres_bool;

    #[test]
    fn booleans() {
        for (v, b) in [
            ("on", true),
            ("OFF", false),
            ("t", true),
            ("ye", true),
            ("0", false),
            ("fal", false),
        ] {
            assert_eq!(postgres_bool(v), Some(b), "{v}");
        }
        for v in ["o", "maybe", "", "2"] {
            assert_eq!(postgres_bool(v), None, "{v}");
        }
    }
}
