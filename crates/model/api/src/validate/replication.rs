//! Publication, Subscription and DatabaseRole: the rules of CloudNativePG's CEL expressions,
//! plus the names pgherd's in-database reconciler puts into SQL.

use super::cluster_config::validate_role;
use super::{check_cluster_ref, Context};
use crate::cluster::EnsureOption;
use crate::diagnostics::{Diagnostic, FieldPath};
use crate::{DatabaseRole, Publication, Subscription};
use std::collections::BTreeMap;

/// A `WITH (...)` parameter name goes into SQL as a bare keyword: letters, digits and `_`.
fn check_parameters(parameters: Option<&BTreeMap<String, String>>, out: &mut Vec<Diagnostic>) {
    for key in parameters.into_iter().flat_map(BTreeMap::keys) {
        let valid = key
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
            && key
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if !valid {
            out.push(
                Diagnostic::error(
                    FieldPath::new("spec.parameters").key(key).as_str(),
                    format!("{key:?} is not a parameter name"),
                )
                .with_hint(
                    "parameter names are lowercase letters, digits and _ (e.g. publish, copy_data)",
                ),
            );
        }
    }
}

fn check_sql_name(path: &str, what: &str, name: &str, out: &mut Vec<Diagnostic>) {
    if name.is_empty() || name.len() > 63 {
        out.push(Diagnostic::error(
            path,
            format!("a {what} name must have 1 to 63 bytes"),
        ));
    }
}

/// Every problem with a Publication.
pub fn validate_publication(p: &Publication) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    let s = &p.spec;
    check_cluster_ref(&s.cluster.name, &mut out);
    check_sql_name("spec.name", "publication", &s.name, &mut out);
    check_sql_name("spec.dbname", "database", &s.dbname, &mut out);
    check_parameters(s.parameters.as_ref(), &mut out);
    let target = FieldPath::new("spec.target");
    match (&s.target.all_tables, &s.target.objects) {
        (Some(_), Some(_)) => out.push(
            Diagnostic::error(
                target.as_str(),
                "allTables and objects are mutually exclusive",
            )
            .with_hint("publish all tables (allTables: true) or list objects, not both"),
        ),
        (None, None) => out.push(
            Diagnostic::error(target.as_str(), "one of allTables or objects is required")
                .with_hint(
                    "allTables: true, or objects: [{table: {name: ...}}, {tablesInSchema: ...}]",
                ),
        ),
        _ => {}
    }
    let objects = s.target.objects.as_deref().unwrap_or_default();
    let in_schema = objects.iter().any(|o| o.tables_in_schema.is_some());
    for (i, object) in objects.iter().enumerate() {
        let path = target.key("objects").index(i);
        match (&object.tables_in_schema, &object.table) {
            (Some(_), Some(_)) => out.push(Diagnostic::error(
                path.as_str(),
                "tablesInSchema and table are mutually exclusive",
            )),
            (None, None) => out.push(Diagnostic::error(
                path.as_str(),
                "one of tablesInSchema or table is required",
            )),
            _ => {}
        }
        if let Some(table) = &object.table {
            check_sql_name(
                path.key("table").key("name").as_str(),
                "table",
                &table.name,
                &mut out,
            );
            if in_schema && table.columns.is_some() {
                out.push(
                    Diagnostic::error(
                        path.key("table").key("columns").as_str(),
                        "a column list is not supported when the publication also publishes tablesInSchema",
                    )
                    .with_hint("remove the column list, or publish the schema's tables one by one"),
                );
            }
        }
        if let Some(schema) = &object.tables_in_schema {
            check_sql_name(
                path.key("tablesInSchema").as_str(),
                "schema",
                schema,
                &mut out,
            );
        }
    }
    out
}

/// Every problem with a Subscription; `ctx` gives the subscriber Cluster when it is among the
/// documents, whose `spec.externalClusters` must then hold the publisher.
pub fn validate_subscription(s: &Subscription, ctx: &Context) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    let spec = &s.spec;
    check_cluster_ref(&spec.cluster.name, &mut out);
    check_sql_name("spec.name", "subscription", &spec.name, &mut out);
    check_sql_name("spec.dbname", "database", &spec.dbname, &mut out);
    check_sql_name(
        "spec.publicationName",
        "publication",
        &spec.publication_name,
        &mut out,
    );
    if let Some(db) = &spec.publication_db_name {
        check_sql_name("spec.publicationDBName", "database", db, &mut out);
    }
    check_parameters(spec.parameters.as_ref(), &mut out);
    // CREATE SUBSCRIPTION names the publisher's replication slot after the subscription.
    let slot_name_given = spec
        .parameters
        .as_ref()
        .is_some_and(|p| p.contains_key("slot_name"));
    let valid_slot = |n: &str| {
        n.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    };
    if !spec.name.is_empty() && !slot_name_given && !valid_slot(&spec.name) {
        out.push(
            Diagnostic::error(
                "spec.name",
                format!(
                    "{:?} cannot name the replication slot the subscription creates on the publisher (slot names allow lowercase letters, digits and _ only)",
                    spec.name
                ),
            )
            .with_hint("rename the subscription, or name the slot in spec.parameters.slot_name"),
        );
    }
    if spec.external_cluster_name.is_empty() {
        out.push(
            Diagnostic::error("spec.externalClusterName", "required field is missing").with_hint(
                "name the entry of the subscriber's spec.externalClusters that publishes",
            ),
        );
    } else if let Some(cluster) = ctx.find(&ctx.clusters, &spec.cluster.name) {
        if !cluster.keys.contains(&spec.external_cluster_name) {
            let mut d = Diagnostic::error(
                "spec.externalClusterName",
                format!(
                    "Cluster {:?} has no external cluster {:?}",
                    spec.cluster.name, spec.external_cluster_name
                ),
            );
            d = match crate::diagnostics::did_you_mean(
                &spec.external_cluster_name,
                cluster.keys.iter().map(String::as_str),
            ) {
                Some(best) => d.with_hint(format!("did you mean {best:?}?")),
                None => d.with_hint(format!(
                    "add it to spec.externalClusters of Cluster {:?} with the publisher's connection",
                    spec.cluster.name
                )),
            };
            out.push(d);
        }
    }
    out
}

/// Every problem with a DatabaseRole: the rules of a managed role, and CloudNativePG's rules
/// for the standalone object.
pub fn validate_database_role(r: &DatabaseRole, ctx: &Context) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    let s = &r.spec;
    check_cluster_ref(&s.cluster.name, &mut out);
    validate_role(&s.role, &FieldPath::new("spec"), ctx, &mut out);
    if s.role.ensure == Some(EnsureOption::Absent) {
        out.push(
            Diagnostic::error(
                "spec.ensure",
                "ensure: absent is not supported for DatabaseRole",
            )
            .with_hint("delete the DatabaseRole with databaseRoleReclaimPolicy: delete instead"),
        );
    }
    let certificate = s.client_certificate.as_ref();
    if certificate.is_some_and(|c| c.enabled != Some(false)) && s.role.login != Some(true) {
        out.push(
            Diagnostic::error(
                "spec.clientCertificate",
                "a client certificate requires the role to have login enabled",
            )
            .with_hint("add login: true, or remove clientCertificate"),
        );
    }
    out
}
