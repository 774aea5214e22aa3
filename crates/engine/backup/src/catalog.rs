//! The backup catalog: every `base/<id>/backup.info` under a server folder, as
//! `barman-cloud-backup-list` sees it, and barman's backup selectors.

use crate::backup_info::{BackupInfo, BackupInfoError, BackupStatus};
use crate::layout::{BackupId, ServerPrefix};
use crate::store::{ObjectStore, StoreError};
use bytes::Bytes;

/// A failed catalog operation.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// The object store call failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A `backup.info` could not be parsed.
    #[error("{key:?}: {source} (the file is corrupt; inspect or delete it)")]
    BadInfo {
        /// Its key.
        key: String,
        /// Why.
        source: BackupInfoError,
    },
    /// The selector matches no backup.
    #[error("no backup {selector:?} under {root:?} (see the backup list)")]
    NoSuchBackup {
        /// The selector.
        selector: String,
        /// The server folder.
        root: String,
    },
}

impl CatalogError {
    /// A stable label for metrics and events.
    pub fn category(&self) -> &'static str {
        match self {
            CatalogError::Store(e) => e.category(),
            CatalogError::BadInfo { .. } => "corrupt",
            CatalogError::NoSuchBackup { .. } => "no_such_backup",
        }
    }
}

/// One backup in the catalog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogEntry {
    /// Its id (the directory name).
    pub id: BackupId,
    /// Its `backup.info`.
    pub info: BackupInfo,
}

/// The backups of one server, sorted by id (oldest first).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BackupCatalog {
    /// The backups.
    pub backups: Vec<CatalogEntry>,
    /// Why some `backup.info` files could not be read (those backups are left out).
    pub unreadable: Vec<String>,
}

impl BackupCatalog {
    /// Reads every `base/<id>/backup.info` under `server`. Directories that are not backup ids,
    /// have no `backup.info` or an unreadable one are skipped, as barman does (the latter are
    /// listed in `unreadable`).
    pub async fn load(
        store: &dyn ObjectStore,
        server: &ServerPrefix,
    ) -> Result<Self, CatalogError> {
        let listing = store.list_dir(&server.base_dir()).await?;
        let mut backups = Vec::new();
        let mut unreadable = Vec::new();
        for dir in listing.dirs {
            let name = dir.trim_end_matches('/').rsplit('/').next().unwrap_or("");
            let Ok(id) = name.parse::<BackupId>() else {
                continue;
            };
            let key = server.backup_info_key(&id);
            let bytes = match store.get(&key).await {
                Ok(b) => b,
                Err(StoreError::NotFound { .. }) => continue,
                Err(e) => return Err(e.into()),
            };
            let text = String::from_utf8_lossy(&bytes);
            match BackupInfo::parse(&text) {
                Ok(info) => backups.push(CatalogEntry { id, info }),
                Err(source) => {
                    // As barman: a corrupt backup.info hides that backup, not the others.
                    let error = CatalogError::BadInfo { key, source };
                    tracing::warn!(%error, "skipping an unreadable backup");
                    unreadable.push(error.to_string());
                }
            }
        }
        backups.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(BackupCatalog {
            backups,
            unreadable,
        })
    }

    /// Backups with status `DONE`, oldest first.
    pub fn done(&self) -> impl Iterator<Item = &CatalogEntry> {
        self.backups
            .iter()
            .filter(|b| b.info.status() == BackupStatus::Done)
    }

    /// barman's selectors: an id, a `backup_name`, `first`/`oldest`, `last`/`latest` (of the
    /// `DONE` backups), `last-failed`.
    pub fn find(&self, selector: &str) -> Option<&CatalogEntry> {
        match selector {
            "first" | "oldest" => self.done().next(),
            "last" | "latest" => self.done().last(),
            "last-failed" => self
                .backups
                .iter()
                .rfind(|b| b.info.status() == BackupStatus::Failed),
            s => self
                .backups
                .iter()
                .find(|b| b.id.as_str() == s)
                .or_else(|| {
                    self.backups
                        .iter()
                        .find(|b| b.info.backup_name() == Some(s))
                }),
        }
    }
}

/// A server folder of a store: its name and its completed backups' ids (oldest first).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerBackups {
    /// The server name (`serverName`).
    pub name: String,
    /// Its `DONE` backups.
    pub backups: Vec<String>,
}

/// Every server folder next to `server` (under the same destination path) with its completed
/// backups: what a recovery source whose `serverName` finds nothing can choose from.
pub async fn servers_beside(
    store: &dyn ObjectStore,
    server: &ServerPrefix,
) -> Result<Vec<ServerBackups>, CatalogError> {
    let prefix = server.bucket_prefix();
    let dir = if prefix.is_empty() {
        String::new()
    } else {
        format!("{prefix}/")
    };
    let mut found = Vec::new();
    for sub in store.list_dir(&dir).await?.dirs {
        let name = sub.trim_end_matches('/').rsplit('/').next().unwrap_or("");
        let Ok(other) = ServerPrefix::new(prefix, name) else {
            continue;
        };
        let catalog = BackupCatalog::load(store, &other).await?;
        let wals = store.list_dir(&other.wals_dir()).await?;
        let has_wal = !wals.dirs.is_empty() || !wals.objects.is_empty();
        if catalog.backups.is_empty() && !has_wal {
            continue; // not a server's folder
        }
        found.push(ServerBackups {
            name: name.to_string(),
            backups: catalog.done().map(|b| b.id.as_str().to_string()).collect(),
        });
    }
    Ok(found)
}

/// `servers` as an error message's list: `a (backups X, Y), b (no completed backup)`.
pub fn describe_servers(servers: &[ServerBackups]) -> String {
    if servers.is_empty() {
        return "none".into();
    }
    servers
        .iter()
        .map(|s| match s.backups.as_slice() {
            [] => format!("{} (no completed backup)", s.name),
            ids => format!("{} (backups {})", s.name, ids.join(", ")),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// What a recovery must reach, for choosing the backup to restore from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecoveryPoint {
    /// The latest state (no target, or a target that any backup can reach).
    Latest,
    /// `recoveryTarget.targetTime`.
    Time(time::OffsetDateTime),
    /// `recoveryTarget.targetLSN`.
    Lsn(pgherd_postgres::Lsn),
}

impl BackupCatalog {
    /// The backup a recovery should start from, as CNPG picks it: the newest `DONE` backup
    /// that ended before a time target (or whose end LSN is before an LSN target), on
    /// `timeline` when given; the newest `DONE` backup without target.
    pub fn for_recovery(
        &self,
        point: &RecoveryPoint,
        timeline: Option<u32>,
    ) -> Option<&CatalogEntry> {
        let on_timeline = |b: &&CatalogEntry| timeline.is_none_or(|t| b.info.timeline() == Some(t));
        let candidates = self.done().filter(on_timeline);
        match point {
            RecoveryPoint::Latest => candidates.last(),
            RecoveryPoint::Time(target) => candidates
                .filter(|b| b.info.end_time().is_some_and(|end| end <= *target))
                .last(),
            RecoveryPoint::Lsn(target) => candidates
                .filter(|b| {
                    b.info
                        .end_xlog()
                        .and_then(|l| l.parse::<pgherd_postgres::Lsn>().ok())
                        .is_some_and(|end| end < *target)
                })
                .last(),
        }
    }
}

/// Uploads `info` as `base/<id>/backup.info`.
pub async fn put_backup_info(
    store: &dyn ObjectStore,
    server: &ServerPrefix,
    id: &BackupId,
    info: &BackupInfo,
) -> Result<(), StoreError> {
    store
        .put(&server.backup_info_key(id), Bytes::from(info.render()))
        .await
}

/// Deletes a backup: `backup.info` first (so the catalog stops listing it even if the rest of
/// the deletion is interrupted), then every other object under `base/<id>/`.
pub async fn delete_backup(
    store: &dyn ObjectStore,
    server: &ServerPrefix,
    id: &BackupId,
) -> Result<(), StoreError> {
    let info_key = server.backup_info_key(id);
    store.delete(&info_key).await?;
    for object in store.list(&server.backup_dir(id)).await? {
        store.delete(&object.key).await?;
    }
    Ok(())
}

/// Applies a retention plan: deletes the obsolete backups (oldest first), then the WAL files
/// older than the oldest kept backup (timeline history files are kept). Returns how many
/// backups and WAL files were deleted.
pub async fn apply_retention(
    store: &dyn ObjectStore,
    server: &ServerPrefix,
    plan: &crate::retention::RetentionPlan,
) -> Result<(usize, usize), CatalogError> {
    for id in &plan.obsolete {
        delete_backup(store, server, id).await?;
        tracing::info!(backup = %id, root = server.root(), "deleted obsolete backup");
    }
    let mut wal_deleted = 0;
    if let Some(cutoff) = &plan.wal_cutoff {
        for object in store.list(&server.wals_dir()).await? {
            let file = object.key.rsplit('/').next().unwrap_or("");
            let Some((name, _)) = crate::layout::parse_archived_wal(file) else {
                continue;
            };
            if crate::retention::wal_is_obsolete(&name, cutoff) {
                store.delete(&object.key).await?;
                wal_deleted += 1;
            }
        }
    }
    Ok((plan.obsolete.len(), wal_deleted))
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn entry(
        id: &str,
        status: BackupStatus,
        end: time::OffsetDateTime,
        lsn: &str,
        tli: u32,
    ) -> CatalogEntry {
        let mut info = BackupInfo::new();
        info.set_status(status);
        info.set_end_time(end);
        info.set_end("000000010000000000000001", lsn, 0);
        info.set_timeline(tli);
        CatalogEntry {
            id: id.parse().unwrap(),
            info,
        }
    }

    #[test]
    fn picks_the_backup_for_a_recovery_target() {
        let catalog = BackupCatalog {
            backups: vec![
                entry(
                    "20240101T000000",
                    BackupStatus::Done,
                    datetime!(2024-01-01 01:00 UTC),
                    "0/3000000",
                    1,
                ),
                entry(
                    "20240102T000000",
                    BackupStatus::Done,
                    datetime!(2024-01-02 01:00 UTC),
                    "0/5000000",
                    1,
                ),
                entry(
                    "20240103T000000",
                    BackupStatus::Failed,
                    datetime!(2024-01-03 01:00 UTC),
                    "0/6000000",
                    1,
                ),
                entry(
                    "20240104T000000",
                    BackupStatus::Done,
                    datetime!(2024-01-04 01:00 UTC),
                    "0/9000000",
                    2,
                ),
            ],
            unreadable: Vec::new(),
        };
        let id = |p: &RecoveryPoint, t: Option<u32>| {
            catalog.for_recovery(p, t).map(|b| b.id.to_string())
        };
        assert_eq!(
            id(&RecoveryPoint::Latest, None).as_deref(),
            Some("20240104T000000")
        );
        assert_eq!(
            id(&RecoveryPoint::Latest, Some(1)).as_deref(),
            Some("20240102T000000")
        );
        let t = RecoveryPoint::Time(datetime!(2024-01-03 12:00 UTC));
        assert_eq!(id(&t, None).as_deref(), Some("20240102T000000"));
        let t = RecoveryPoint::Time(datetime!(2024-01-02 01:00 UTC));
        assert_eq!(
            id(&t, None).as_deref(),
            Some("20240102T000000"),
            "end time == target"
        );
        let early = RecoveryPoint::Time(datetime!(2023-12-31 00:00 UTC));
        assert_eq!(id(&early, None), None);
        let l = RecoveryPoint::Lsn("0/5000000".parse().unwrap());
        assert_eq!(
            id(&l, None).as_deref(),
            Some("20240101T000000"),
            "end LSN must be before"
        );
        let l = RecoveryPoint::Lsn("1/0".parse().unwrap());
        assert_eq!(id(&l, None).as_deref(), Some("20240104T000000"));
    }
}
