//! barman's `backup.info`: one `key=value` line per field, keys sorted, `None` for null,
//! Python `repr()` for strings that may hold newlines (`backup_label`) and for lists
//! (`tablespaces`), `str(datetime)` for times (`2024-01-31 23:59:59.123456+00:00`).
//! Fields pgherd does not model are kept verbatim, so a file read and written back is unchanged.

use crate::pylit::{self, PyValue};
pub use crate::timestamp::{format_time, parse_time};
use std::collections::BTreeMap;
use time::OffsetDateTime;

/// Every field barman's `BackupInfo` writes (barman omits `backup_name` and `snapshots_info`
/// when null).
pub const FIELDS: [&str; 35] = [
    "backup_label",
    "backup_name",
    "begin_offset",
    "begin_time",
    "begin_wal",
    "begin_xlog",
    "children_backup_ids",
    "cluster_size",
    "compression",
    "config_file",
    "copy_stats",
    "data_checksums",
    "deduplicated_size",
    "encryption",
    "end_offset",
    "end_time",
    "end_wal",
    "end_xlog",
    "error",
    "hba_file",
    "ident_file",
    "included_files",
    "mode",
    "parent_backup_id",
    "pgdata",
    "server_name",
    "size",
    "snapshots_info",
    "status",
    "summarize_wal",
    "systemid",
    "tablespaces",
    "timeline",
    "version",
    "xlog_segment_size",
];

const HIDE_IF_NULL: [&str; 2] = ["backup_name", "snapshots_info"];

/// Fields newer barman releases added (3.10+: incremental backups, checksums, WAL summaries,
/// encryption). Older barman-cloud (e.g. 3.4, Debian 12) refuses a `backup.info` with a field it
/// does not know, while newer releases read files without them; so a new info leaves them out
/// until they are set.
pub const NEWER_FIELDS: [&str; 6] = [
    "children_backup_ids",
    "cluster_size",
    "data_checksums",
    "encryption",
    "parent_backup_id",
    "summarize_wal",
];

/// barman's backup statuses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackupStatus {
    /// `EMPTY`
    Empty,
    /// `STARTED`
    Started,
    /// `WAITING_FOR_WALS`
    WaitingForWals,
    /// `DONE`: usable for recovery.
    Done,
    /// `SYNCING`
    Syncing,
    /// `FAILED`
    Failed,
    /// Anything else, verbatim.
    Other(String),
}

impl BackupStatus {
    /// The string barman writes.
    pub fn as_str(&self) -> &str {
        match self {
            BackupStatus::Empty => "EMPTY",
            BackupStatus::Started => "STARTED",
            BackupStatus::WaitingForWals => "WAITING_FOR_WALS",
            BackupStatus::Done => "DONE",
            BackupStatus::Syncing => "SYNCING",
            BackupStatus::Failed => "FAILED",
            BackupStatus::Other(s) => s,
        }
    }

    fn parse(s: &str) -> Self {
        match s {
            "EMPTY" => BackupStatus::Empty,
            "STARTED" => BackupStatus::Started,
            "WAITING_FOR_WALS" => BackupStatus::WaitingForWals,
            "DONE" => BackupStatus::Done,
            "SYNCING" => BackupStatus::Syncing,
            "FAILED" => BackupStatus::Failed,
            other => BackupStatus::Other(other.to_string()),
        }
    }
}

/// A tablespace in a backup: `(name, oid, location)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tablespace {
    /// Name.
    pub name: String,
    /// OID (also the name of its tarball).
    pub oid: u32,
    /// Directory on the server.
    pub location: String,
}

/// Why a `backup.info` cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("backup.info line {line}: {reason}")]
pub struct BackupInfoError {
    /// 1-based line number (0 for a field-level problem).
    pub line: usize,
    /// What is wrong.
    pub reason: String,
}

/// The contents of a `backup.info`, as raw field values (`None` = Python `None`) with typed
/// accessors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupInfo {
    fields: BTreeMap<String, Option<String>>,
}

impl Default for BackupInfo {
    fn default() -> Self {
        Self::new()
    }
}

impl BackupInfo {
    /// A new info with every barman field null (except [`NEWER_FIELDS`]), `status=EMPTY` and
    /// 16 MiB WAL segments, as barman starts one.
    pub fn new() -> Self {
        let mut fields: BTreeMap<String, Option<String>> = FIELDS
            .iter()
            .filter(|f| !NEWER_FIELDS.contains(f))
            .map(|f| (f.to_string(), None))
            .collect();
        fields.insert("status".into(), Some("EMPTY".into()));
        fields.insert("xlog_segment_size".into(), Some("16777216".into()));
        BackupInfo { fields }
    }

    /// Parses a `backup.info`.
    pub fn parse(text: &str) -> Result<Self, BackupInfoError> {
        let mut fields = BTreeMap::new();
        for (n, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let (k, v) = line.split_once('=').ok_or_else(|| BackupInfoError {
                line: n + 1,
                reason: format!("{line:?} is not key=value"),
            })?;
            let v = (v != "None").then(|| v.to_string());
            fields.insert(k.to_string(), v);
        }
        for hidden in HIDE_IF_NULL {
            fields.entry(hidden.to_string()).or_insert(None);
        }
        let info = BackupInfo { fields };
        // Validate the typed fields once so later accessors can trust them.
        info.tablespaces()
            .map_err(|reason| BackupInfoError { line: 0, reason })?;
        Ok(info)
    }

    /// Renders the file exactly as barman does: sorted keys, `None` for null.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for (k, v) in &self.fields {
            if v.is_none() && HIDE_IF_NULL.contains(&k.as_str()) {
                continue;
            }
            out.push_str(k);
            out.push('=');
            out.push_str(v.as_deref().unwrap_or("None"));
            out.push('\n');
        }
        out
    }

    /// The raw value of a field (`None` when null or absent).
    pub fn raw(&self, key: &str) -> Option<&str> {
        self.fields.get(key).and_then(|v| v.as_deref())
    }

    /// Sets the raw value of a field (`None` = null). Values must not contain newlines.
    pub fn set_raw(&mut self, key: &str, value: Option<String>) {
        let value = value.map(|v| v.replace('\n', " "));
        self.fields.insert(key.to_string(), value);
    }

    fn set_str(&mut self, key: &str, value: Option<&str>) {
        self.set_raw(key, value.map(str::to_string));
    }

    fn int<T: std::str::FromStr>(&self, key: &str) -> Option<T> {
        self.raw(key).and_then(|v| v.parse().ok())
    }

    /// `status`.
    pub fn status(&self) -> BackupStatus {
        BackupStatus::parse(self.raw("status").unwrap_or("EMPTY"))
    }

    /// Sets `status`.
    pub fn set_status(&mut self, status: BackupStatus) {
        self.set_str("status", Some(status.as_str()));
    }

    /// `backup_name` (CNPG passes `--name backup-<timestamp>`).
    pub fn backup_name(&self) -> Option<&str> {
        self.raw("backup_name")
    }

    /// Sets `backup_name`.
    pub fn set_backup_name(&mut self, name: Option<&str>) {
        self.set_str("backup_name", name);
    }

    /// `begin_time`.
    pub fn begin_time(&self) -> Option<OffsetDateTime> {
        self.raw("begin_time").and_then(parse_time)
    }

    /// `end_time`.
    pub fn end_time(&self) -> Option<OffsetDateTime> {
        self.raw("end_time").and_then(parse_time)
    }

    /// Sets `begin_time`.
    pub fn set_begin_time(&mut self, t: OffsetDateTime) {
        self.set_raw("begin_time", Some(format_time(t)));
    }

    /// Sets `end_time`.
    pub fn set_end_time(&mut self, t: OffsetDateTime) {
        self.set_raw("end_time", Some(format_time(t)));
    }

    /// `begin_wal` / `end_wal` (segment names).
    pub fn begin_wal(&self) -> Option<&str> {
        self.raw("begin_wal")
    }

    /// `end_wal`.
    pub fn end_wal(&self) -> Option<&str> {
        self.raw("end_wal")
    }

    /// `begin_xlog` (an LSN such as `0/2000028`).
    pub fn begin_xlog(&self) -> Option<&str> {
        self.raw("begin_xlog")
    }

    /// `end_xlog`.
    pub fn end_xlog(&self) -> Option<&str> {
        self.raw("end_xlog")
    }

    /// Sets the start position: WAL segment, LSN and offset of the LSN in the segment.
    pub fn set_begin(&mut self, wal: &str, xlog: &str, offset: u64) {
        self.set_str("begin_wal", Some(wal));
        self.set_str("begin_xlog", Some(xlog));
        self.set_raw("begin_offset", Some(offset.to_string()));
    }

    /// Sets the end position.
    pub fn set_end(&mut self, wal: &str, xlog: &str, offset: u64) {
        self.set_str("end_wal", Some(wal));
        self.set_str("end_xlog", Some(xlog));
        self.set_raw("end_offset", Some(offset.to_string()));
    }

    /// `timeline`.
    pub fn timeline(&self) -> Option<u32> {
        self.int("timeline")
    }

    /// Sets `timeline`.
    pub fn set_timeline(&mut self, tli: u32) {
        self.set_raw("timeline", Some(tli.to_string()));
    }

    /// `version` (`server_version_num`, e.g. 170002).
    pub fn version(&self) -> Option<u32> {
        self.int("version")
    }

    /// Sets `version`.
    pub fn set_version(&mut self, v: u32) {
        self.set_raw("version", Some(v.to_string()));
    }

    /// `systemid`.
    pub fn systemid(&self) -> Option<&str> {
        self.raw("systemid")
    }

    /// Sets `systemid`.
    pub fn set_systemid(&mut self, id: &str) {
        self.set_str("systemid", Some(id));
    }

    /// `size` in bytes.
    pub fn size(&self) -> Option<u64> {
        self.int("size")
    }

    /// Sets `size`.
    pub fn set_size(&mut self, size: u64) {
        self.set_raw("size", Some(size.to_string()));
    }

    /// `xlog_segment_size`.
    pub fn xlog_segment_size(&self) -> u64 {
        self.int("xlog_segment_size").unwrap_or(16 * 1024 * 1024)
    }

    /// `compression` of the tarballs (`gzip`, `bzip2`, `snappy`, ...).
    pub fn compression(&self) -> Option<&str> {
        self.raw("compression")
    }

    /// Sets `compression`.
    pub fn set_compression(&mut self, c: Option<&str>) {
        self.set_str("compression", c);
    }

    /// `error`.
    pub fn error(&self) -> Option<&str> {
        self.raw("error")
    }

    /// Sets `error` (newlines become spaces).
    pub fn set_error(&mut self, e: Option<&str>) {
        self.set_str("error", e);
    }

    /// `pgdata`.
    pub fn pgdata(&self) -> Option<&str> {
        self.raw("pgdata")
    }

    /// Sets `pgdata`, `server_name` and `mode` as barman-cloud-backup does.
    pub fn set_source(&mut self, pgdata: &str, server_name: &str) {
        self.set_str("pgdata", Some(pgdata));
        self.set_str("server_name", Some(server_name));
        self.set_str("mode", Some("concurrent"));
    }

    /// `backup_label`: the label file's content (stored as a Python string literal).
    pub fn backup_label(&self) -> Option<String> {
        match self.raw("backup_label").map(pylit::parse) {
            Some(Ok(PyValue::Str(s))) => Some(s),
            _ => None,
        }
    }

    /// Sets `backup_label`.
    pub fn set_backup_label(&mut self, label: Option<&str>) {
        let v = label.filter(|l| !l.is_empty()).map(pylit::repr_str);
        self.fields.insert("backup_label".into(), v);
    }

    /// `tablespaces`.
    pub fn tablespaces(&self) -> Result<Vec<Tablespace>, String> {
        let Some(raw) = self.raw("tablespaces") else {
            return Ok(Vec::new());
        };
        let bad = |why: &str| format!("tablespaces={raw}: {why}");
        let items = match pylit::parse(raw).map_err(|e| bad(&e.to_string()))? {
            PyValue::List(items) | PyValue::Tuple(items) => items,
            PyValue::None => return Ok(Vec::new()),
            _ => return Err(bad("expected a list")),
        };
        items
            .into_iter()
            .map(|item| match item {
                PyValue::Tuple(t) | PyValue::List(t) => match t.as_slice() {
                    [PyValue::Str(name), PyValue::Int(oid), PyValue::Str(location)] => {
                        Ok(Tablespace {
                            name: name.clone(),
                            oid: u32::try_from(*oid).map_err(|_| bad("oid out of range"))?,
                            location: location.clone(),
                        })
                    }
                    _ => Err(bad("expected (name, oid, location)")),
                },
                _ => Err(bad("expected (name, oid, location)")),
            })
            .collect()
    }

    /// Sets `tablespaces` (null when empty, as barman writes it).
    pub fn set_tablespaces(&mut self, ts: &[Tablespace]) {
        let v = (!ts.is_empty()).then(|| {
            pylit::repr(&PyValue::List(
                ts.iter()
                    .map(|t| {
                        PyValue::Tuple(vec![
                            PyValue::Str(t.name.clone()),
                            PyValue::Int(i64::from(t.oid)),
                            PyValue::Str(t.location.clone()),
                        ])
                    })
                    .collect(),
            ))
        });
        self.fields.insert("tablespaces".into(), v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::UtcOffset;

    // From barman's own test suite (tests/test_infofile.py, BASE_BACKUP_INFO).
    const BARMAN_SAMPLE: &str = "backup_label=None
begin_offset=40
begin_time=2014-12-22 09:25:22.561207+01:00
begin_wal=000000010000000000000004
begin_xlog=0/4000028
children_backup_ids=None
config_file=/fakepath/postgresql.conf
end_offset=184
end_time=2014-12-22 09:25:27.410470+01:00
end_wal=000000010000000000000004
end_xlog=0/40000B8
error=None
hba_file=/fakepath/pg_hba.conf
ident_file=/fakepath/pg_ident.conf
mode=default
parent_backup_id=None
pgdata=/fakepath/data
server_name=fake-9.4-server
size=20935690
status=DONE
tablespaces=[('fake_tbs', 16384, '/fake_tmp/tbs')]
timeline=1
version=90400
";

    #[test]
    fn reads_barman_files_and_writes_them_back_unchanged() {
        let info = BackupInfo::parse(BARMAN_SAMPLE).unwrap();
        assert_eq!(info.status(), BackupStatus::Done);
        assert_eq!(info.timeline(), Some(1));
        assert_eq!(info.version(), Some(90400));
        assert_eq!(info.begin_wal(), Some("000000010000000000000004"));
        assert_eq!(info.end_xlog(), Some("0/40000B8"));
        assert_eq!(info.backup_label(), None);
        assert_eq!(
            info.tablespaces().unwrap(),
            vec![Tablespace {
                name: "fake_tbs".into(),
                oid: 16384,
                location: "/fake_tmp/tbs".into()
            }]
        );
        let begin = info.begin_time().unwrap();
        assert_eq!(begin.offset(), UtcOffset::from_hms(1, 0, 0).unwrap());
        assert_eq!(begin.microsecond(), 561207);
        assert_eq!(format_time(begin), "2014-12-22 09:25:22.561207+01:00");
        assert_eq!(info.render(), BARMAN_SAMPLE);
    }

    #[test]
    fn a_new_info_has_every_barman_field() {
        let mut info = BackupInfo::new();
        info.set_status(BackupStatus::Done);
        info.set_backup_label(Some(
            "START WAL LOCATION: 0/2000028 (file 000000010000000000000002)\nLABEL: x\n",
        ));
        info.set_begin_time(time::macros::datetime!(2024-01-31 23:59:59 UTC));
        let text = info.render();
        let keys: Vec<&str> = text
            .lines()
            .map(|l| l.split('=').next().unwrap_or(""))
            .collect();
        let expected: Vec<&str> = FIELDS
            .iter()
            .copied()
            .filter(|f| !HIDE_IF_NULL.contains(f) && !NEWER_FIELDS.contains(f))
            .collect();
        assert_eq!(keys, expected);
        assert!(text.contains("begin_time=2024-01-31 23:59:59+00:00\n"));
        assert!(text.contains("backup_label='START WAL LOCATION: 0/2000028 (file 000000010000000000000002)\\nLABEL: x\\n'\n"));
        assert!(text.contains("status=DONE\nsystemid=None\n"));
        assert!(text.contains("xlog_segment_size=16777216\n"));
        let back = BackupInfo::parse(&text).unwrap();
        assert_eq!(back, info);
        assert_eq!(
            back.backup_label().unwrap(),
            "START WAL LOCATION: 0/2000028 (file 000000010000000000000002)\nLABEL: x\n"
        );
        info.set_backup_name(Some("backup-20240131235959"));
        assert!(info
            .render()
            .contains("backup_name=backup-20240131235959\n"));
    }

    #[test]
    fn rejects_garbage() {
        assert!(BackupInfo::parse("status=DONE\nnot a field\n").is_err());
        assert!(BackupInfo::parse("tablespaces=[('x', 'notanoid', '/x')]\n").is_err());
    }
}
