//! Write-ahead log positions and names: [`Lsn`] (`16/B374D848`), [`Timeline`], and WAL segment
//! file names (`000000010000000000000003`).

use std::fmt;
use std::str::FromStr;

/// A position in the WAL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Lsn(pub u64);

/// Why a string is not an LSN.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not an LSN (expected two hexadecimal numbers such as 0/3000148)")]
pub struct LsnParseError(pub String);

impl FromStr for Lsn {
    type Err = LsnParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || LsnParseError(s.to_string());
        let (hi, lo) = s.split_once('/').ok_or_else(err)?;
        if hi.is_empty() || lo.is_empty() || hi.len() > 8 || lo.len() > 8 {
            return Err(err());
        }
        let hi = u64::from_str_radix(hi, 16).map_err(|_| err())?;
        let lo = u64::from_str_radix(lo, 16).map_err(|_| err())?;
        Ok(Lsn((hi << 32) | lo))
    }
}

impl fmt::Display for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xFFFF_FFFF)
    }
}

impl Lsn {
    /// Bytes of WAL from `earlier` to `self` (0 when `earlier` is ahead).
    pub fn bytes_since(self, earlier: Lsn) -> u64 {
        self.0.saturating_sub(earlier.0)
    }
}

/// A timeline id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timeline(pub u32);

/// The default WAL segment size (16 MB).
pub const DEFAULT_SEGMENT_SIZE: u64 = 16 * 1024 * 1024;

/// The name of the WAL segment file holding `lsn` on `timeline`.
pub fn segment_name(timeline: Timeline, lsn: Lsn, segment_size: u64) -> String {
    let segment = lsn.0 / segment_size;
    let per_log = 0x1_0000_0000 / segment_size;
    format!(
        "{:08X}{:08X}{:08X}",
        timeline.0,
        segment / per_log,
        segment % per_log
    )
}

/// Whether the segment `end` (a WAL file name) is archived once `last_archived` is: the same or
/// a later segment, whatever its timeline; `.partial` and `.history` files never count.
pub fn archived_through(end: &str, last_archived: &str) -> bool {
    let segment = |name: &str| {
        (name.len() == 24 && name.bytes().all(|b| b.is_ascii_hexdigit()))
            .then(|| name[8..].to_ascii_uppercase())
    };
    match (segment(end), segment(last_archived)) {
        (Some(end), Some(archived)) => archived >= end,
        _ => false,
    }
}

impl serde::Serialize for Lsn {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Lsn {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_segment_is_archived_once_it_or_a_later_one_is() {
        let end = "000000010000000000000003";
        assert!(archived_through(end, "000000010000000000000003"));
        assert!(archived_through(end, "000000020000000000000004"));
        assert!(!archived_through(end, "000000010000000000000002"));
        assert!(!archived_through(end, "000000010000000000000003.partial"));
        assert!(!archived_through(end, "00000002.history"));
        assert!(!archived_through("garbage", "000000010000000000000009"));
    }

    #[test]
    fn parse_and_print() {
        let lsn: Lsn = "16/B374D848".parse().unwrap();
        assert_eq!(lsn.0, 0x16_B374_D848);
        assert_eq!(lsn.to_string(), "16/B374D848");
        assert_eq!("0/3000148".parse::<Lsn>().unwrap().to_string(), "0/3000148");
        for bad in ["", "3000148", "0/", "/1", "x/1", "123456789/0"] {
            assert!(bad.parse::<Lsn>().is_err(), "{bad}");
        }
        assert_eq!(Lsn(10).bytes_since(Lsn(4)), 6);
        assert_eq!(Lsn(4).bytes_since(Lsn(10)), 0);
    }

    #[test]
    fn segment_names() {
        let lsn: Lsn = "0/3000148".parse().unwrap();
        assert_eq!(
            segment_name(Timeline(1), lsn, DEFAULT_SEGMENT_SIZE),
            "000000010000000000000003"
        );
        let lsn: Lsn = "16/B374D848".parse().unwrap();
        assert_eq!(
            segment_name(Timeline(2), lsn, DEFAULT_SEGMENT_SIZE),
            "0000000200000016000000B3"
        );
        assert_eq!(
            segment_name(Timeline(1), lsn, 64 * 1024 * 1024),
            "00000001000000160000002C"
        );
    }
}
