//! The kinds the webhooks serve and their paths, named as CloudNativePG names them
//! (`/mutate-postgresql-cnpg-io-v1-cluster`, `/validate-postgresql-cnpg-io-v1-pooler`, …) so a
//! release made for CloudNativePG finds the same endpoints.

use pgherd_api::manifest::CNPG_GROUP;

/// One served kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kind {
    pub kind: &'static str,
    pub group: &'static str,
    /// The resource (`clusters`), as webhook rules name it.
    pub plural: &'static str,
    /// Whether the release's MutatingWebhookConfiguration sends it (CloudNativePG's four);
    /// the server answers the mutate path of every kind.
    pub mutating: bool,
    /// Whether CloudNativePG's own release validates it (the others are pgherd's additions:
    /// the same rules `pgherd validate` applies).
    pub cloudnative_pg: bool,
}

const fn kind(kind: &'static str, plural: &'static str, mutating: bool, cnpg: bool) -> Kind {
    Kind {
        kind,
        group: CNPG_GROUP,
        plural,
        mutating,
        cloudnative_pg: cnpg,
    }
}

/// Every kind with webhooks, CloudNativePG's first.
pub const KINDS: &[Kind] = &[
    kind("Cluster", "clusters", true, true),
    kind("Backup", "backups", true, true),
    kind("ScheduledBackup", "scheduledbackups", true, true),
    kind("Database", "databases", true, true),
    kind("Pooler", "poolers", false, true),
    kind("Publication", "publications", false, false),
    kind("Subscription", "subscriptions", false, false),
    kind("DatabaseRole", "databaseroles", false, false),
    kind("ImageCatalog", "imagecatalogs", false, false),
    kind("ClusterImageCatalog", "clusterimagecatalogs", false, false),
];

/// What a path asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Mutate,
    Validate,
}

impl Action {
    fn prefix(self) -> &'static str {
        match self {
            Action::Mutate => "mutate",
            Action::Validate => "validate",
        }
    }
}

impl Kind {
    /// `/mutate-postgresql-cnpg-io-v1-cluster` and the like.
    pub fn path(&self, action: Action) -> String {
        format!(
            "/{}-{}-v1-{}",
            action.prefix(),
            self.group.replace('.', "-"),
            self.kind.to_ascii_lowercase()
        )
    }
}

/// The action and kind a request path names.
pub fn route(path: &str) -> Option<(Action, &'static Kind)> {
    KINDS.iter().find_map(|k| {
        [Action::Mutate, Action::Validate]
            .into_iter()
            .find(|a| k.path(*a) == path)
            .map(|a| (a, k))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_cloudnative_pgs() {
        let cluster = &KINDS[0];
        assert_eq!(
            cluster.path(Action::Mutate),
            "/mutate-postgresql-cnpg-io-v1-cluster"
        );
        assert_eq!(
            route("/validate-postgresql-cnpg-io-v1-scheduledbackup"),
            Some((Action::Validate, &KINDS[2]))
        );
        assert_eq!(route("/validate-postgresql-cnpg-io-v1-objectstore"), None);
        assert_eq!(route("/mutate-postgresql-cnpg-io-v1-cluster/x"), None);
    }
}
