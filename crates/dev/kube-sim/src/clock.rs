//! Time as the API writes it: RFC 3339 UTC seconds (`2026-01-02T03:04:05Z`), and the short ages
//! `kubectl get` prints (`5m`, `3h`), computed here so no date crate is needed.

use std::time::{SystemTime, UNIX_EPOCH};

pub fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Now as an RFC 3339 timestamp.
pub fn now_rfc3339() -> String {
    format_rfc3339(now_secs())
}

/// Now as a `MicroTime` (`2026-01-02T03:04:05.123456Z`), as Leases carry it.
pub fn now_micro() -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let secs = format_rfc3339(now.as_secs() as i64);
    format!("{}.{:06}Z", secs.trim_end_matches('Z'), now.subsec_micros())
}

pub fn format_rfc3339(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// Seconds since the epoch of an RFC 3339 timestamp (fractions and offsets tolerated).
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    let (date, time) = s.split_once('T')?;
    let mut dp = date.split('-');
    let y: i64 = dp.next()?.parse().ok()?;
    let m: i64 = dp.next()?.parse().ok()?;
    let d: i64 = dp.next()?.parse().ok()?;
    let t = time.get(..8)?;
    let mut tp = t.split(':');
    let hh: i64 = tp.next()?.parse().ok()?;
    let mm: i64 = tp.next()?.parse().ok()?;
    let ss: i64 = tp.next()?.parse().ok()?;
    Some(days_from_civil(y, m, d) * 86_400 + hh * 3600 + mm * 60 + ss)
}

/// `kubectl`'s short duration: 45s, 5m, 3h, 2d.
pub fn human_age(secs: i64) -> String {
    let s = secs.max(0);
    if s < 120 {
        format!("{s}s")
    } else if s < 3600 * 3 {
        format!("{}m", s / 60)
    } else if s < 86_400 * 2 {
        format!("{}h", s / 3600)
    } else {
        format!("{}d", s / 86_400)
    }
}

// Howard Hinnant's days-from-civil arithmetic (public domain algorithm description).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let s = format_rfc3339(1_767_225_600 + 3_723);
        assert_eq!(s, "2026-01-01T01:02:03Z");
        assert_eq!(parse_rfc3339(&s), Some(1_767_225_600 + 3_723));
        assert_eq!(human_age(300), "5m");
    }
}
