//! Times as barman writes them in `backup.info`: Python's `str()` of a timezone-aware
//! `datetime` (`2024-01-31 23:59:59.123456+00:00`), read back leniently as `dateutil` does for
//! the formats barman produces.

use time::{OffsetDateTime, UtcOffset};

/// Formats a time as Python's `str(datetime)` of an aware datetime.
pub fn format_time(t: OffsetDateTime) -> String {
    let off = t.offset();
    let (h, m, _) = off.as_hms();
    let sign = if off.is_negative() { '-' } else { '+' };
    let frac = if t.microsecond() == 0 {
        String::new()
    } else {
        format!(".{:06}", t.microsecond())
    };
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}{frac}{sign}{:02}:{:02}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        h.unsigned_abs(),
        m.unsigned_abs()
    )
}

/// Parses the time formats barman writes (`str(datetime)`, ISO 8601 with `T`); a time without
/// offset is taken as UTC.
pub fn parse_time(s: &str) -> Option<OffsetDateTime> {
    let s = s.trim();
    let num = |a: usize, b: usize| s.get(a..b).and_then(|x| x.parse::<u32>().ok());
    if s.len() < 19 || !matches!(s.as_bytes()[10], b' ' | b'T') {
        return None;
    }
    let month = time::Month::try_from(u8::try_from(num(5, 7)?).ok()?).ok()?;
    let date = time::Date::from_calendar_date(
        i32::try_from(num(0, 4)?).ok()?,
        month,
        u8::try_from(num(8, 10)?).ok()?,
    )
    .ok()?;
    let mut rest = &s[19..];
    let mut micro = 0u32;
    if let Some(r) = rest.strip_prefix('.') {
        let digits = r.bytes().take_while(u8::is_ascii_digit).count();
        let frac = &r[..digits];
        let padded: String = frac.chars().chain("000000".chars()).take(6).collect();
        micro = padded.parse().ok()?;
        rest = &r[digits..];
    }
    let t = time::Time::from_hms_micro(
        u8::try_from(num(11, 13)?).ok()?,
        u8::try_from(num(14, 16)?).ok()?,
        u8::try_from(num(17, 19)?).ok()?,
        micro,
    )
    .ok()?;
    let rest = rest.trim();
    let offset = if rest.is_empty() || rest == "Z" {
        UtcOffset::UTC
    } else {
        let sign: i8 = match rest.as_bytes()[0] {
            b'+' => 1,
            b'-' => -1,
            _ => return None,
        };
        let digits: String = rest[1..].chars().filter(char::is_ascii_digit).collect();
        if digits.len() != 4 {
            return None;
        }
        let h: i8 = digits[..2].parse().ok()?;
        let m: i8 = digits[2..].parse().ok()?;
        UtcOffset::from_hms(sign * h, sign * m, 0).ok()?
    };
    Some(date.with_time(t).assume_offset(offset))
}

/// A time as Kubernetes status fields write it (RFC 3339).
pub fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// Now, as [`rfc3339`].
pub fn rfc3339_now() -> String {
    rfc3339(OffsetDateTime::now_utc())
}

/// A time as CloudNativePG stamps object names: `YYYYMMDDhhmmss` (UTC).
pub fn name_stamp(t: OffsetDateTime) -> String {
    let t = t.to_offset(UtcOffset::UTC);
    format!(
        "{:04}{:02}{:02}{:02}{:02}{:02}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times() {
        let t = parse_time("2012-12-15 10:14:51.898000 +0100").unwrap();
        assert_eq!(t.offset(), UtcOffset::from_hms(1, 0, 0).unwrap());
        assert_eq!(t.microsecond(), 898000);
        assert_eq!(
            parse_time("2024-01-01T00:00:00Z").unwrap().unix_timestamp(),
            1704067200
        );
        assert_eq!(
            parse_time("2024-01-01 00:00:00").unwrap().unix_timestamp(),
            1704067200
        );
        assert!(parse_time("yesterday").is_none());
        let neg = parse_time("2024-01-01 00:00:00-05:30").unwrap();
        assert_eq!(format_time(neg), "2024-01-01 00:00:00-05:30");
    }
}
