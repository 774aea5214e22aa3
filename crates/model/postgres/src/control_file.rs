//! The few fields of `global/pg_control` the instance manager needs without running
//! `pg_controldata` (server-only builds lack it): the cluster state, the latest checkpoint and
//! the hot-standby settings the server ran with. The leading fields of `ControlFileData` have
//! kept this layout since PostgreSQL 9.3 (little-endian on the platforms pgherd runs on); the
//! settings' offsets are those of the control file versions listed in [`standby_settings`].

use crate::Lsn;

/// `DBState` from `pg_control.h`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DbState {
    Startup,
    ShutDown,
    ShutDownInRecovery,
    ShuttingDown,
    InCrashRecovery,
    InArchiveRecovery,
    InProduction,
}

impl DbState {
    fn from_code(code: u32) -> Option<Self> {
        Some(match code {
            0 => DbState::Startup,
            1 => DbState::ShutDown,
            2 => DbState::ShutDownInRecovery,
            3 => DbState::ShuttingDown,
            4 => DbState::InCrashRecovery,
            5 => DbState::InArchiveRecovery,
            6 => DbState::InProduction,
            _ => return None,
        })
    }

    /// Whether the server was stopped cleanly (a shutdown checkpoint is the last record).
    pub fn is_clean_shutdown(self) -> bool {
        matches!(self, DbState::ShutDown | DbState::ShutDownInRecovery)
    }
}

/// What pgherd reads from `pg_control`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ControlFile {
    pub system_identifier: u64,
    pub state: DbState,
    /// Start of the latest checkpoint record.
    pub checkpoint: Lsn,
    /// The latest checkpoint's REDO location (for a shutdown checkpoint, its own start).
    pub redo: Lsn,
    /// Timeline of the latest checkpoint.
    pub timeline: u32,
    /// When the file was last written (seconds since the epoch): a clean shutdown's time.
    pub time: i64,
}

fn u32_at(bytes: &[u8], offset: usize) -> Option<u32> {
    Some(u32::from_le_bytes(
        bytes.get(offset..offset + 4)?.try_into().ok()?,
    ))
}

fn u64_at(bytes: &[u8], offset: usize) -> Option<u64> {
    Some(u64::from_le_bytes(
        bytes.get(offset..offset + 8)?.try_into().ok()?,
    ))
}

/// Parse the leading fields; `None` if the file is too short or the state unknown.
pub fn parse(bytes: &[u8]) -> Option<ControlFile> {
    // system_identifier u64 @0, pg_control_version u32 @8, catalog_version_no u32 @12,
    // state u32 @16, (padding) time i64 @24, checkPoint u64 @32, checkPointCopy.redo u64 @40,
    // checkPointCopy.ThisTimeLineID u32 @48.
    Some(ControlFile {
        system_identifier: u64_at(bytes, 0)?,
        state: DbState::from_code(u32_at(bytes, 16)?)?,
        checkpoint: Lsn(u64_at(bytes, 32)?),
        redo: Lsn(u64_at(bytes, 40)?),
        timeline: u32_at(bytes, 48)?,
        time: i64::from_le_bytes(bytes.get(24..32)?.try_into().ok()?),
    })
}

/// The `pg_control_version`s whose settings block pgherd knows (PostgreSQL 13–16: 1300,
/// 17: 1700, 18: 1800), all with `MaxConnections` at the same offset: after the checkpoint copy,
/// the unlogged/minimum-recovery/backup positions, `wal_level` and `wal_log_hints`.
const SETTINGS_VERSIONS: [u32; 3] = [1300, 1700, 1800];
/// Offset of `MaxConnections`; `max_worker_processes`, `max_wal_senders`,
/// `max_prepared_xacts` and `max_locks_per_xact` follow as 32-bit integers.
const SETTINGS_OFFSET: usize = 180;

/// The settings a hot standby may not run below, as the server that wrote the file ran with
/// them (what `pg_controldata` prints as "max_connections setting" and so on), by their
/// `postgresql.conf` names. `None` for a control file version pgherd does not know or a
/// file too short.
pub fn standby_settings(bytes: &[u8]) -> Option<Vec<(&'static str, u64)>> {
    if !SETTINGS_VERSIONS.contains(&u32_at(bytes, 8)?) {
        return None;
    }
    // The settings block is in the order of `HOT_STANDBY_PARAMETERS`.
    crate::guc::HOT_STANDBY_PARAMETERS
        .iter()
        .enumerate()
        .map(|(i, (name, _))| {
            let value = i32::from_le_bytes(
                bytes
                    .get(SETTINGS_OFFSET + 4 * i..SETTINGS_OFFSET + 4 * i + 4)?
                    .try_into()
                    .ok()?,
            );
            Some((*name, u64::try_from(value).ok()?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_leading_fields() {
        let mut bytes = vec![0_u8; 8192];
        bytes[0..8].copy_from_slice(&7_711_501_821_679_293_956_u64.to_le_bytes());
        bytes[8..12].copy_from_slice(&1800_u32.to_le_bytes());
        bytes[16..20].copy_from_slice(&1_u32.to_le_bytes());
        bytes[32..40].copy_from_slice(&0x2053C38_u64.to_le_bytes());
        bytes[48..52].copy_from_slice(&3_u32.to_le_bytes());
        let c = parse(&bytes).unwrap();
        assert_eq!(c.system_identifier, 7_711_501_821_679_293_956);
        assert_eq!(c.state, DbState::ShutDown);
        assert!(c.state.is_clean_shutdown());
        assert_eq!(c.checkpoint.to_string(), "0/2053C38");
        assert_eq!(c.timeline, 3);
        bytes[8..12].copy_from_slice(&1201_u32.to_le_bytes());
        assert_eq!(
            standby_settings(&bytes),
            None,
            "an unknown layout is not read"
        );
        bytes[8..12].copy_from_slice(&1700_u32.to_le_bytes());
        for (i, v) in [123_i32, 9, 11, 13, 77].iter().enumerate() {
            bytes[180 + 4 * i..184 + 4 * i].copy_from_slice(&v.to_le_bytes());
        }
        assert_eq!(
            standby_settings(&bytes).unwrap(),
            [
                ("max_connections", 123),
                ("max_worker_processes", 9),
                ("max_wal_senders", 11),
                ("max_prepared_transactions", 13),
                ("max_locks_per_transaction", 77)
            ]
        );
        bytes[16..20].copy_from_slice(&9_u32.to_le_bytes());
        assert_eq!(parse(&bytes), None);
        assert_eq!(parse(&bytes[..20]), None);
    }
}
