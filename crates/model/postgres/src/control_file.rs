//! The few fields of `global/pg_control` the instance manager needs without running
//! `pg_controldata` (server-only builds lack it): the cluster state and the latest checkpoint.
//! The leading fields of `ControlFileData` have kept this layout since PostgreSQL 9.3
//! (little-endian on the platforms pgherd runs on).

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
    /// Timeline of the latest checkpoint.
    pub timeline: u32,
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
        timeline: u32_at(bytes, 48)?,
    })
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
        bytes[16..20].copy_from_slice(&9_u32.to_le_bytes());
        assert_eq!(parse(&bytes), None);
        assert_eq!(parse(&bytes[..20]), None);
    }
}
