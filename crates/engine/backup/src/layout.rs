//! barman-cloud's object layout under `<destinationPath>/<serverName>/`: WAL file names and the
//! directory they go to, backup ids, and the keys of backups and WAL. Pure: no I/O.

use crate::compression::Compression;
use std::fmt;
use std::str::FromStr;
use time::OffsetDateTime;

/// What kind of file a WAL-archive name denotes (barman's `is_any_xlog_file`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WalFileKind {
    /// A full segment: `000000010000000000000003`.
    Segment,
    /// A partial segment left by a promotion: `000000010000000000000003.partial`.
    Partial,
    /// A backup history file: `000000010000000000000003.00000028.backup`.
    BackupHistory,
    /// A timeline history file: `00000002.history`.
    History,
}

/// A valid WAL-archive file name (uncompressed, without directory).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WalFileName(String);

/// Why a name is not a WAL-archive file name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a WAL file name (expected a segment such as 000000010000000000000003, optionally with .partial or .XXXXXXXX.backup, or a timeline history file such as 00000002.history)")]
pub struct WalNameError(pub String);

fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit())
}

impl FromStr for WalFileName {
    type Err = WalNameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || WalNameError(s.to_string());
        if !s.is_ascii() || s.len() < 8 || !is_hex(&s[..8], 8) {
            return Err(err());
        }
        let rest = &s[8..];
        if rest == ".history" {
            return Ok(WalFileName(s.to_string()));
        }
        if rest.len() < 16 || !is_hex(&rest[..16], 16) {
            return Err(err());
        }
        let tail = &rest[16..];
        let ok = tail.is_empty()
            || tail == ".partial"
            || (tail.len() == 1 + 8 + 7
                && tail.starts_with('.')
                && is_hex(&tail[1..9], 8)
                && &tail[9..] == ".backup");
        if ok {
            Ok(WalFileName(s.to_string()))
        } else {
            Err(err())
        }
    }
}

impl fmt::Display for WalFileName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl WalFileName {
    /// The name as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Which kind of file this is.
    pub fn kind(&self) -> WalFileKind {
        if self.0.ends_with(".history") {
            WalFileKind::History
        } else if self.0.ends_with(".partial") {
            WalFileKind::Partial
        } else if self.0.ends_with(".backup") {
            WalFileKind::BackupHistory
        } else {
            WalFileKind::Segment
        }
    }

    /// The timeline the file belongs to.
    pub fn timeline(&self) -> u32 {
        // The first 8 characters were checked to be hexadecimal when parsing.
        u32::from_str_radix(&self.0[..8], 16).unwrap_or(0)
    }

    /// The 24 characters naming the segment (timeline, log, segment), if not a history file.
    pub fn segment(&self) -> Option<&str> {
        (self.kind() != WalFileKind::History).then(|| &self.0[..24])
    }

    /// barman's `hash_dir`: the first 16 characters (timeline + log) for segments and their
    /// partial/backup files, empty for history files (stored directly under `wals/`).
    pub fn hash_dir(&self) -> &str {
        match self.kind() {
            WalFileKind::History => "",
            _ => &self.0[..16],
        }
    }
}

impl WalFileName {
    /// The `count` segment names after this segment on its timeline (for prefetching), given
    /// the WAL segment size; empty for files that are not segments.
    pub fn next_segments(&self, segment_size: u64, count: usize) -> Vec<WalFileName> {
        if self.kind() != WalFileKind::Segment || segment_size == 0 {
            return Vec::new();
        }
        let hex = |r: std::ops::Range<usize>| u64::from_str_radix(&self.0[r], 16).unwrap_or(0);
        let per_log = 0x1_0000_0000 / segment_size;
        let mut n = hex(8..16) * per_log + hex(16..24);
        let tli = self.timeline();
        (0..count)
            .map(|_| {
                n += 1;
                WalFileName(format!("{tli:08X}{:08X}{:08X}", n / per_log, n % per_log))
            })
            .collect()
    }
}

/// A barman backup id: the local time the backup started, `YYYYMMDDTHHMMSS`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BackupId(String);

/// Why a string is not a backup id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a backup id (expected YYYYMMDDTHHMMSS such as 20240131T235959)")]
pub struct BackupIdError(pub String);

impl FromStr for BackupId {
    type Err = BackupIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let b = s.as_bytes();
        let ok = b.len() == 15
            && b[8] == b'T'
            && b[..8].iter().all(u8::is_ascii_digit)
            && b[9..].iter().all(u8::is_ascii_digit);
        if ok {
            Ok(BackupId(s.to_string()))
        } else {
            Err(BackupIdError(s.to_string()))
        }
    }
}

impl fmt::Display for BackupId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl BackupId {
    /// The id of a backup started at `at` (barman formats the local time; pass the time in the
    /// offset you want, UTC on servers).
    pub fn at(at: OffsetDateTime) -> Self {
        BackupId(format!(
            "{:04}{:02}{:02}T{:02}{:02}{:02}",
            at.year(),
            u8::from(at.month()),
            at.day(),
            at.hour(),
            at.minute(),
            at.second()
        ))
    }

    /// The id as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The root of one server's backups and WAL inside a bucket: `<prefix>/<serverName>`.
/// Keys are bucket-relative, `/`-separated, without a leading `/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerPrefix {
    root: String,
}

/// Why a server name or prefix cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("server name {0:?} is not usable as a folder: it must be non-empty and contain no '/' and no '..'")]
pub struct ServerNameError(pub String);

impl ServerPrefix {
    /// `<bucket_prefix>/<server>`; `bucket_prefix` may be empty.
    pub fn new(bucket_prefix: &str, server: &str) -> Result<Self, ServerNameError> {
        if server.is_empty() || server.contains('/') || server == ".." || server == "." {
            return Err(ServerNameError(server.to_string()));
        }
        let prefix = bucket_prefix.trim_matches('/');
        let root = if prefix.is_empty() {
            server.to_string()
        } else {
            format!("{prefix}/{server}")
        };
        Ok(ServerPrefix { root })
    }

    /// `<prefix>/<server>`.
    pub fn root(&self) -> &str {
        &self.root
    }

    /// `<prefix>`: where the store's other servers' folders are (empty at the bucket's root).
    pub fn bucket_prefix(&self) -> &str {
        self.root.rsplit_once('/').map_or("", |(p, _)| p)
    }

    /// `<root>/wals/`.
    pub fn wals_dir(&self) -> String {
        format!("{}/wals/", self.root)
    }

    /// The directory a WAL file is stored in: `<root>/wals/<hash>/` (or `<root>/wals/`).
    pub fn wal_dir(&self, name: &WalFileName) -> String {
        match name.hash_dir() {
            "" => self.wals_dir(),
            hash => format!("{}/wals/{hash}/", self.root),
        }
    }

    /// The key of an archived WAL file with the given compression.
    pub fn wal_key(&self, name: &WalFileName, compression: Option<Compression>) -> String {
        let ext = compression.map_or("", |c| c.extension());
        format!("{}{}{ext}", self.wal_dir(name), name)
    }

    /// `<root>/base/`.
    pub fn base_dir(&self) -> String {
        format!("{}/base/", self.root)
    }

    /// `<root>/base/<id>/`.
    pub fn backup_dir(&self, id: &BackupId) -> String {
        format!("{}/base/{id}/", self.root)
    }

    /// `<root>/base/<id>/backup.info`.
    pub fn backup_info_key(&self, id: &BackupId) -> String {
        format!("{}backup.info", self.backup_dir(id))
    }

    /// `<root>/base/<id>/data.tar[.ext]`.
    pub fn data_tar_key(&self, id: &BackupId, compression: Option<Compression>) -> String {
        let ext = compression.map_or("", |c| c.extension());
        format!("{}data.tar{ext}", self.backup_dir(id))
    }

    /// `<root>/base/<id>/<oid>.tar[.ext]`: one tablespace.
    pub fn tablespace_tar_key(
        &self,
        id: &BackupId,
        oid: u32,
        compression: Option<Compression>,
    ) -> String {
        let ext = compression.map_or("", |c| c.extension());
        format!("{}{oid}.tar{ext}", self.backup_dir(id))
    }
}

/// Splits an archived object's file name into the WAL name and its compression
/// (by barman's extensions). `None` when the name is no WAL file.
pub fn parse_archived_wal(file_name: &str) -> Option<(WalFileName, Option<Compression>)> {
    for c in Compression::ALL {
        if let Some(base) = file_name.strip_suffix(c.extension()) {
            return base.parse().ok().map(|n| (n, Some(c)));
        }
    }
    file_name.parse().ok().map(|n| (n, None))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wal_names() {
        let seg: WalFileName = "000000010000000A000000FE".parse().unwrap();
        assert_eq!(seg.kind(), WalFileKind::Segment);
        assert_eq!(seg.hash_dir(), "000000010000000A");
        assert_eq!(seg.timeline(), 1);
        let p: WalFileName = "000000020000000000000003.partial".parse().unwrap();
        assert_eq!(p.kind(), WalFileKind::Partial);
        assert_eq!(p.hash_dir(), "0000000200000000");
        assert_eq!(p.segment(), Some("000000020000000000000003"));
        let b: WalFileName = "000000010000000000000002.00000028.backup".parse().unwrap();
        assert_eq!(b.kind(), WalFileKind::BackupHistory);
        let h: WalFileName = "0000000A.history".parse().unwrap();
        assert_eq!(h.kind(), WalFileKind::History);
        assert_eq!(h.hash_dir(), "");
        assert_eq!(h.timeline(), 10);
        for bad in [
            "",
            "00000001",
            "0000000100000000000000",
            "00000001000000000000000G",
            "000000010000000000000003.gz",
            "000000010000000000000002.0028.backup",
            "../00000001.history",
            "000000010000000000000003.partial.x",
        ] {
            assert!(bad.parse::<WalFileName>().is_err(), "{bad}");
        }
    }

    #[test]
    fn next_segments() {
        let seg: WalFileName = "0000000200000001000000FE".parse().unwrap();
        let next: Vec<String> = seg
            .next_segments(16 * 1024 * 1024, 3)
            .iter()
            .map(|n| n.to_string())
            .collect();
        assert_eq!(
            next,
            [
                "0000000200000001000000FF",
                "000000020000000200000000",
                "000000020000000200000001"
            ]
        );
        let big: WalFileName = "00000001000000000000003F".parse().unwrap();
        assert_eq!(
            big.next_segments(64 * 1024 * 1024, 1)[0].as_str(),
            "000000010000000100000000"
        );
        let h: WalFileName = "00000002.history".parse().unwrap();
        assert!(h.next_segments(16 * 1024 * 1024, 3).is_empty());
    }

    #[test]
    fn keys() {
        let s = ServerPrefix::new("/backups/pg/", "cluster-example").unwrap();
        let seg: WalFileName = "000000010000000000000003".parse().unwrap();
        assert_eq!(
            s.wal_key(&seg, Some(Compression::Gzip)),
            "backups/pg/cluster-example/wals/0000000100000000/000000010000000000000003.gz"
        );
        let h: WalFileName = "00000002.history".parse().unwrap();
        assert_eq!(
            s.wal_key(&h, None),
            "backups/pg/cluster-example/wals/00000002.history"
        );
        let id: BackupId = "20240131T235959".parse().unwrap();
        assert_eq!(
            s.backup_info_key(&id),
            "backups/pg/cluster-example/base/20240131T235959/backup.info"
        );
        assert_eq!(
            s.data_tar_key(&id, Some(Compression::Snappy)),
            "backups/pg/cluster-example/base/20240131T235959/data.tar.snappy"
        );
        let top = ServerPrefix::new("", "x").unwrap();
        assert_eq!(top.base_dir(), "x/base/");
        assert!(ServerPrefix::new("p", "a/b").is_err());
        assert!(ServerPrefix::new("p", "").is_err());
    }

    #[test]
    fn backup_ids() {
        let at = time::macros::datetime!(2024-01-05 03:04:09 UTC);
        assert_eq!(BackupId::at(at).as_str(), "20240105T030409");
        assert!("20240105T030409".parse::<BackupId>().is_ok());
        assert!("20240105030409".parse::<BackupId>().is_err());
        assert!("backup-20240105".parse::<BackupId>().is_err());
    }

    #[test]
    fn archived_names() {
        assert_eq!(
            parse_archived_wal("000000010000000000000003.zst"),
            Some((
                "000000010000000000000003".parse().unwrap(),
                Some(Compression::Zstd)
            ))
        );
        assert_eq!(
            parse_archived_wal("000000010000000000000003.partial.lz4").map(|(n, c)| (n.kind(), c)),
            Some((WalFileKind::Partial, Some(Compression::Lz4)))
        );
        assert_eq!(parse_archived_wal("backup.info"), None);
    }
}
