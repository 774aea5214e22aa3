//! The declarative parts of a cluster as every platform hands them to the primary's manager
//! (managed roles, databases), and the primary's results back as the Cluster's status
//! (roles, tablespaces). The platform only
//! resolves where passwords are.

use pgherd_api::cluster::{EnsureOption, ManagedRoles, RoleConfiguration, TablespaceState};
use pgherd_api::Database;
use pgherd_instance_protocol::{
    ApplyResult, DatabaseSpec, ExtensionSpec, PasswordSource, RoleSpec, SchemaSpec, TablespaceSpec,
};
use std::collections::BTreeMap;

/// The Secret key a managed role's password is read from (CloudNativePG's `kubernetes.io/
/// basic-auth` Secrets).
pub const PASSWORD_KEY: &str = "password";

/// One role as the instance manager applies it, its password from where the platform put it.
/// `present`: `false` for `ensure: absent`.
pub fn role_spec(r: &RoleConfiguration, present: bool, password: PasswordSource) -> RoleSpec {
    let password = if r.disable_password == Some(true) {
        PasswordSource::Disabled
    } else {
        password
    };
    RoleSpec {
        name: r.name.clone(),
        present,
        comment: r.comment.clone(),
        login: r.login.unwrap_or(false),
        superuser: r.superuser.unwrap_or(false),
        createdb: r.createdb.unwrap_or(false),
        createrole: r.createrole.unwrap_or(false),
        inherit: r.inherit.unwrap_or(true),
        replication: r.replication.unwrap_or(false),
        bypassrls: r.bypassrls.unwrap_or(false),
        connection_limit: r.connection_limit.unwrap_or(-1),
        valid_until: r.valid_until.clone(),
        in_roles: r.in_roles.clone().unwrap_or_default(),
        password,
    }
}

fn present(ensure: Option<EnsureOption>) -> bool {
    ensure != Some(EnsureOption::Absent)
}

/// The `Database` object `object` as the primary's manager applies it; `dropping`: it is
/// being deleted with `databaseReclaimPolicy: delete`, so the database goes too.
pub fn database_spec(object: &str, d: &Database, dropping: bool) -> DatabaseSpec {
    let s = d.spec.clone();
    DatabaseSpec {
        object: object.to_string(),
        name: s.name,
        present: present(s.ensure) && !dropping,
        owner: s.owner,
        template: s.template,
        encoding: s.encoding,
        locale: s.locale,
        locale_provider: s.locale_provider,
        locale_collate: s.locale_collate,
        locale_ctype: s.locale_ctype,
        icu_locale: s.icu_locale,
        icu_rules: s.icu_rules,
        builtin_locale: s.builtin_locale,
        collation_version: s.collation_version,
        is_template: s.is_template,
        allow_connections: s.allow_connections,
        connection_limit: s.connection_limit,
        tablespace: s.tablespace,
        schemas: s
            .schemas
            .unwrap_or_default()
            .into_iter()
            .map(|x| SchemaSpec {
                name: x.name,
                present: present(x.ensure),
                owner: x.owner,
            })
            .collect(),
        extensions: s
            .extensions
            .unwrap_or_default()
            .into_iter()
            .map(|x| ExtensionSpec {
                name: x.name,
                present: present(x.ensure),
                version: x.version,
                schema: x.schema,
            })
            .collect(),
    }
}

/// `status.managedRolesStatus` from the primary's results: the roles applied under
/// `byStatus.reconciled`, the rest under `cannotReconcile` with their errors; `None` when no
/// role is managed.
pub fn managed_roles_status(results: &[ApplyResult]) -> Option<ManagedRoles> {
    if results.is_empty() {
        return None;
    }
    let mut reconciled = Vec::new();
    let mut cannot: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for r in results {
        if r.applied {
            reconciled.push(r.name.clone());
        } else {
            cannot.insert(r.name.clone(), r.message.iter().cloned().collect());
        }
    }
    Some(ManagedRoles {
        by_status: Some(BTreeMap::from([("reconciled".to_string(), reconciled)])),
        cannot_reconcile: Some(cannot).filter(|c| !c.is_empty()),
        password_status: None,
    })
}

/// `status.tablespacesStatus`: each declared tablespace `reconciled` once the primary applied
/// it, else `pending` with the primary's error if it gave one; `None` when none is declared.
pub fn tablespaces_status(
    declared: &[TablespaceSpec],
    results: &[ApplyResult],
) -> Option<Vec<TablespaceState>> {
    if declared.is_empty() {
        return None;
    }
    Some(
        declared
            .iter()
            .map(|t| {
                let result = results.iter().find(|r| r.name == t.name);
                let applied = result.is_some_and(|r| r.applied);
                TablespaceState {
                    name: t.name.clone(),
                    owner: t.owner.clone(),
                    state: if applied { "reconciled" } else { "pending" }.into(),
                    error: result
                        .filter(|r| !r.applied)
                        .and_then(|r| r.message.clone()),
                }
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_disabled_password_wins_over_its_secret() {
        let r = RoleConfiguration {
            name: "app2".into(),
            disable_password: Some(true),
            login: Some(true),
            ..Default::default()
        };
        let spec = role_spec(&r, true, PasswordSource::File { path: "/x".into() });
        assert_eq!(spec.password, PasswordSource::Disabled);
        assert!(spec.login && spec.inherit && spec.connection_limit == -1);
    }

    /// Object `a` applied, `b` failed with `message`.
    fn a_applied_b_failed(message: &str) -> Vec<ApplyResult> {
        vec![
            ApplyResult {
                name: "a".into(),
                applied: true,
                message: None,
            },
            ApplyResult {
                name: "b".into(),
                applied: false,
                message: Some(message.into()),
            },
        ]
    }

    #[test]
    fn results_become_cloudnativepgs_status() {
        let results = a_applied_b_failed("role \"x\" does not exist");
        let s = managed_roles_status(&results).unwrap();
        assert_eq!(s.by_status.unwrap()["reconciled"], ["a"]);
        assert_eq!(
            s.cannot_reconcile.unwrap()["b"],
            ["role \"x\" does not exist"]
        );
        assert!(managed_roles_status(&[]).is_none());
    }

    #[test]
    fn tablespaces_are_pending_until_the_primary_applied_them() {
        let declared = |name: &str| TablespaceSpec {
            name: name.into(),
            owner: Some("app".into()),
            location: format!("/t/{name}/data").into(),
            temporary: false,
            creatable: true,
        };
        let declared = [declared("a"), declared("b"), declared("c")];
        let results = a_applied_b_failed("role \"app\" does not exist");
        let s = tablespaces_status(&declared, &results).unwrap();
        let states: Vec<_> = s
            .iter()
            .map(|t| (t.state.as_str(), t.error.as_deref()))
            .collect();
        assert_eq!(
            states,
            [
                ("reconciled", None),
                ("pending", Some("role \"app\" does not exist")),
                ("pending", None)
            ]
        );
        assert_eq!(s[0].owner.as_deref(), Some("app"));
        assert!(tablespaces_status(&[], &results).is_none());
    }
}
