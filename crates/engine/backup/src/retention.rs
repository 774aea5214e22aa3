//! Recovery-window retention, as barman's `RECOVERY WINDOW OF N DAYS|WEEKS|MONTHS`: the point
//! of recoverability is `now - window`; `DONE` backups that ended after it are kept, and so is
//! the newest one that ended before it (needed to reach that point); older `DONE` backups are
//! obsolete. Backups in other states are left alone. WAL older than the oldest kept backup is
//! obsolete too (timeline history files are always kept). Pure: no I/O.

use crate::catalog::BackupCatalog;
use crate::layout::{BackupId, WalFileKind, WalFileName};
use std::str::FromStr;
use time::{Duration, OffsetDateTime};

/// A retention policy window: `^[1-9][0-9]*[dwm]$` (a month is 31 days, as in barman).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecoveryWindow {
    /// How many units.
    pub count: u32,
    /// `d`, `w` or `m`.
    pub unit: WindowUnit,
}

/// The unit of a [`RecoveryWindow`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowUnit {
    /// Days.
    Days,
    /// Weeks.
    Weeks,
    /// Months of 31 days.
    Months,
}

/// Why a retention policy cannot be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("retentionPolicy {0:?} is not a recovery window (expected a number and d, w or m, such as 30d, 4w or 6m)")]
pub struct WindowParseError(pub String);

impl FromStr for RecoveryWindow {
    type Err = WindowParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || WindowParseError(s.to_string());
        let (num, unit) = s.split_at(s.len().saturating_sub(1));
        let unit = match unit {
            "d" => WindowUnit::Days,
            "w" => WindowUnit::Weeks,
            "m" => WindowUnit::Months,
            _ => return Err(err()),
        };
        if num.is_empty() || num.starts_with('0') || !num.bytes().all(|b| b.is_ascii_digit()) {
            return Err(err());
        }
        let count = num.parse().map_err(|_| err())?;
        Ok(RecoveryWindow { count, unit })
    }
}

impl RecoveryWindow {
    /// The window's length.
    pub fn duration(self) -> Duration {
        let days = i64::from(self.count)
            * match self.unit {
                WindowUnit::Days => 1,
                WindowUnit::Weeks => 7,
                WindowUnit::Months => 31,
            };
        Duration::days(days)
    }

    /// barman's policy string, for messages: `RECOVERY WINDOW OF 30 DAYS`.
    pub fn barman_policy(self) -> String {
        let unit = match self.unit {
            WindowUnit::Days => "DAYS",
            WindowUnit::Weeks => "WEEKS",
            WindowUnit::Months => "MONTHS",
        };
        format!("RECOVERY WINDOW OF {} {unit}", self.count)
    }
}

/// What retention decides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetentionPlan {
    /// `now - window`.
    pub point_of_recoverability: OffsetDateTime,
    /// `DONE` backups kept, oldest first.
    pub keep: Vec<BackupId>,
    /// Backups to delete, oldest first.
    pub obsolete: Vec<BackupId>,
    /// WAL files older than this segment name (24 hex) are obsolete; `None` deletes no WAL.
    pub wal_cutoff: Option<String>,
    /// The earliest time recovery can reach with the kept backups (end of the oldest kept).
    pub first_recoverability_point: Option<OffsetDateTime>,
}

/// Applies `window` to `catalog` at `now`.
pub fn plan(catalog: &BackupCatalog, window: RecoveryWindow, now: OffsetDateTime) -> RetentionPlan {
    let por = now - window.duration();
    let mut keep = Vec::new();
    let mut obsolete = Vec::new();
    let mut found_before = false;
    for entry in catalog.done().collect::<Vec<_>>().into_iter().rev() {
        if found_before {
            obsolete.push(entry.id.clone());
            continue;
        }
        keep.push(entry);
        // A backup without end time is treated as inside the window (kept, conservative).
        if entry.info.end_time().is_some_and(|end| end < por) {
            found_before = true;
        }
    }
    obsolete.reverse();
    keep.reverse();
    let oldest = keep.first();
    RetentionPlan {
        point_of_recoverability: por,
        wal_cutoff: oldest.and_then(|b| b.info.begin_wal()).map(str::to_string),
        first_recoverability_point: oldest.and_then(|b| b.info.end_time()),
        keep: keep.into_iter().map(|b| b.id.clone()).collect(),
        obsolete,
    }
}

/// Whether an archived WAL file is obsolete under a cutoff (history files never are).
pub fn wal_is_obsolete(name: &WalFileName, cutoff: &str) -> bool {
    match (name.kind(), name.segment()) {
        (WalFileKind::History, _) | (_, None) => false,
        (_, Some(segment)) => segment < cutoff,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backup_info::{BackupInfo, BackupStatus};
    use crate::catalog::CatalogEntry;
    use time::macros::datetime;

    fn backup(id: &str, end: OffsetDateTime, wal: &str, status: BackupStatus) -> CatalogEntry {
        let mut info = BackupInfo::new();
        info.set_status(status);
        info.set_end_time(end);
        info.set_begin(wal, "0/1000028", 40);
        CatalogEntry {
            id: id.parse().unwrap(),
            info,
        }
    }

    #[test]
    fn windows() {
        assert_eq!(
            "30d".parse::<RecoveryWindow>().unwrap().duration(),
            Duration::days(30)
        );
        assert_eq!(
            "4w".parse::<RecoveryWindow>().unwrap().duration(),
            Duration::days(28)
        );
        assert_eq!(
            "6m".parse::<RecoveryWindow>().unwrap().duration(),
            Duration::days(186)
        );
        assert_eq!(
            "6m".parse::<RecoveryWindow>().unwrap().barman_policy(),
            "RECOVERY WINDOW OF 6 MONTHS"
        );
        for bad in ["", "d", "0d", "05d", "30", "30y", "-1d", "3 d"] {
            assert!(bad.parse::<RecoveryWindow>().is_err(), "{bad}");
        }
    }

    #[test]
    fn keeps_the_window_and_one_backup_before_it() {
        let now = datetime!(2024-03-01 00:00 UTC);
        let catalog = BackupCatalog {
            backups: vec![
                backup(
                    "20240101T000000",
                    datetime!(2024-01-01 01:00 UTC),
                    "000000010000000000000002",
                    BackupStatus::Done,
                ),
                backup(
                    "20240115T000000",
                    datetime!(2024-01-15 01:00 UTC),
                    "000000010000000000000010",
                    BackupStatus::Failed,
                ),
                backup(
                    "20240201T000000",
                    datetime!(2024-02-01 01:00 UTC),
                    "000000010000000000000020",
                    BackupStatus::Done,
                ),
                backup(
                    "20240210T000000",
                    datetime!(2024-02-10 01:00 UTC),
                    "000000010000000000000030",
                    BackupStatus::Done,
                ),
                backup(
                    "20240225T000000",
                    datetime!(2024-02-25 01:00 UTC),
                    "000000020000000000000040",
                    BackupStatus::Done,
                ),
            ],
            unreadable: Vec::new(),
        };
        let p = plan(&catalog, "2w".parse().unwrap(), now);
        assert_eq!(p.point_of_recoverability, datetime!(2024-02-16 00:00 UTC));
        let ids = |v: &[BackupId]| v.iter().map(|b| b.to_string()).collect::<Vec<_>>();
        assert_eq!(ids(&p.keep), ["20240210T000000", "20240225T000000"]);
        assert_eq!(ids(&p.obsolete), ["20240101T000000", "20240201T000000"]);
        assert_eq!(p.wal_cutoff.as_deref(), Some("000000010000000000000030"));
        assert_eq!(
            p.first_recoverability_point,
            Some(datetime!(2024-02-10 01:00 UTC))
        );

        let cutoff = p.wal_cutoff.unwrap();
        let wal = |s: &str| s.parse::<WalFileName>().unwrap();
        assert!(wal_is_obsolete(&wal("00000001000000000000002F"), &cutoff));
        assert!(wal_is_obsolete(
            &wal("000000010000000000000020.00000028.backup"),
            &cutoff
        ));
        assert!(!wal_is_obsolete(&wal("000000010000000000000030"), &cutoff));
        assert!(!wal_is_obsolete(&wal("00000002.history"), &cutoff));
    }

    #[test]
    fn never_deletes_the_last_backup() {
        let now = datetime!(2025-01-01 00:00 UTC);
        let catalog = BackupCatalog {
            backups: vec![
                backup(
                    "20240101T000000",
                    datetime!(2024-01-01 01:00 UTC),
                    "000000010000000000000002",
                    BackupStatus::Done,
                ),
                backup(
                    "20240102T000000",
                    datetime!(2024-01-02 01:00 UTC),
                    "000000010000000000000004",
                    BackupStatus::Done,
                ),
            ],
            unreadable: Vec::new(),
        };
        let p = plan(&catalog, "1d".parse().unwrap(), now);
        assert_eq!(p.keep.len(), 1);
        assert_eq!(p.keep[0].to_string(), "20240102T000000");
        assert_eq!(p.obsolete.len(), 1);
        let empty = plan(&BackupCatalog::default(), "1d".parse().unwrap(), now);
        assert!(empty.keep.is_empty() && empty.obsolete.is_empty() && empty.wal_cutoff.is_none());
    }
}
