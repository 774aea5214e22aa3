//! Server version ranges of a query's `runonserver` (and a column's `pg_version`), in
//! CloudNativePG's notation: comparators separated by spaces are all required, alternatives are
//! separated by `||` (`">=12.0.0 <17.0.0 || >=18.0.0"`). A bare version means `=`.

use std::cmp::Ordering;
use std::fmt;

/// A PostgreSQL server version as CloudNativePG compares it: `major.minor.patch`, where a
/// server's `server_version_num` 150004 is `15.4.0`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServerVersion {
    pub major: u64,
    pub minor: u64,
    pub patch: u64,
}

impl ServerVersion {
    /// From `server_version_num` (PostgreSQL 10 and later: `major * 10000 + minor`).
    pub fn from_version_num(num: u64) -> Self {
        if num >= 100_000 {
            ServerVersion {
                major: num / 10_000,
                minor: num % 10_000,
                patch: 0,
            }
        } else {
            // 9.6.24 is 90624
            ServerVersion {
                major: num / 10_000,
                minor: (num / 100) % 100,
                patch: num % 100,
            }
        }
    }

    /// `"15"`, `"15.4"` or `"15.4.0"`; a `v` prefix is accepted.
    pub fn parse(text: &str) -> Option<Self> {
        let text = text.trim().trim_start_matches('v');
        let mut parts = text.split('.');
        let mut next = |required: bool| -> Option<u64> {
            match parts.next() {
                Some(p) => p.parse().ok(),
                None if required => None,
                None => Some(0),
            }
        };
        let version = ServerVersion {
            major: next(true)?,
            minor: next(false)?,
            patch: next(false)?,
        };
        if parts.next().is_some() {
            return None;
        }
        Some(version)
    }
}

impl fmt::Display for ServerVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

/// A parsed version range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionRange {
    text: String,
    alternatives: Vec<Vec<(Op, ServerVersion)>>,
}

impl VersionRange {
    /// Parse a range; the error says which part is not understood.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut alternatives = Vec::new();
        for alternative in text.split("||") {
            let mut all = Vec::new();
            for comparator in alternative.split_whitespace() {
                let (op, rest) = [
                    (">=", Op::Ge),
                    ("<=", Op::Le),
                    ("!=", Op::Ne),
                    ("==", Op::Eq),
                    (">", Op::Gt),
                    ("<", Op::Lt),
                    ("=", Op::Eq),
                ]
                .iter()
                .find_map(|(prefix, op)| comparator.strip_prefix(prefix).map(|r| (*op, r)))
                .unwrap_or((Op::Eq, comparator));
                let version = ServerVersion::parse(rest).ok_or_else(|| {
                    format!(
                        "{comparator:?} is not a version comparison; write e.g. \">=12.0.0\" or \">=12.0.0 <17.0.0\""
                    )
                })?;
                all.push((op, version));
            }
            if all.is_empty() {
                return Err(format!(
                    "{text:?} has an empty alternative; write e.g. \">=12.0.0\""
                ));
            }
            alternatives.push(all);
        }
        Ok(VersionRange {
            text: text.to_string(),
            alternatives,
        })
    }

    /// Whether `version` is in the range.
    pub fn contains(&self, version: ServerVersion) -> bool {
        self.alternatives.iter().any(|all| {
            all.iter().all(|(op, bound)| {
                let ord = version.cmp(bound);
                match op {
                    Op::Eq => ord == Ordering::Equal,
                    Op::Ne => ord != Ordering::Equal,
                    Op::Lt => ord == Ordering::Less,
                    Op::Le => ord != Ordering::Greater,
                    Op::Gt => ord == Ordering::Greater,
                    Op::Ge => ord != Ordering::Less,
                }
            })
        })
    }

    /// The range as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_version_num() {
        assert_eq!(
            ServerVersion::from_version_num(150004),
            ServerVersion::parse("15.4").unwrap()
        );
        assert_eq!(
            ServerVersion::from_version_num(170000).to_string(),
            "17.0.0"
        );
        assert_eq!(ServerVersion::from_version_num(90624).to_string(), "9.6.24");
    }

    #[test]
    fn ranges() {
        let v15 = ServerVersion::from_version_num(150004);
        let v17 = ServerVersion::from_version_num(170002);
        let below = VersionRange::parse("<17.0.0").unwrap();
        assert!(below.contains(v15) && !below.contains(v17));
        let from = VersionRange::parse(">=17.0.0").unwrap();
        assert!(!from.contains(v15) && from.contains(v17));
        let both = VersionRange::parse(">=12.0.0 <16.0.0 || >=17").unwrap();
        assert!(both.contains(v15) && both.contains(v17));
        assert!(!both.contains(ServerVersion::from_version_num(160001)));
        assert!(VersionRange::parse("15.4").unwrap().contains(v15));
    }

    #[test]
    fn bad_ranges_say_what_to_write() {
        let err = VersionRange::parse(">=twelve").unwrap_err();
        assert!(err.contains(">=12.0.0"), "{err}");
        assert!(VersionRange::parse(">=12 ||").is_err());
    }
}
