//! PostgreSQL's ISO text for `timestamptz`, `timestamp` and `date` values read as seconds
//! since the epoch: CloudNativePG's exporter turns a timestamp column declared GAUGE or COUNTER
//! into Unix time, and its dashboards and alerts rely on it. The exporter's sessions run with
//! `DateStyle = ISO` and `TimeZone = UTC`; a value without an offset is UTC.

/// `YYYY-MM-DD[ HH:MM:SS[.frac]][+HH[:MM[:SS]]|-HH...]` as seconds since the epoch.
pub fn epoch_seconds(text: &str) -> Option<f64> {
    let (date, rest) = match text.split_once(' ') {
        Some((d, r)) => (d, Some(r)),
        None => (text, None),
    };
    let mut parts = date.splitn(3, '-');
    let year: i64 = digits(parts.next()?, 4..=7)?;
    let month: i64 = digits(parts.next()?, 2..=2)?;
    let day: i64 = digits(parts.next()?, 2..=2)?;
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return None;
    }
    let mut seconds = days_from_civil(year, month, day) as f64 * 86_400.0;
    let Some(rest) = rest else {
        return Some(seconds);
    };
    // Split the time of day from its offset: the first '+' or '-' after the time.
    let at = rest.find(['+', '-']).unwrap_or(rest.len());
    let (time, offset) = rest.split_at(at);
    let mut hms = time.splitn(3, ':');
    let hours: i64 = digits(hms.next()?, 2..=2)?;
    let minutes: i64 = digits(hms.next()?, 2..=2)?;
    let secs = hms.next()?;
    let (whole, fraction) = secs.split_once('.').unwrap_or((secs, ""));
    let whole: i64 = digits(whole, 2..=2)?;
    if hours > 24 || minutes > 59 || whole > 60 {
        return None;
    }
    let fraction = if fraction.is_empty() {
        0.0
    } else {
        digits::<u64>(fraction, 1..=9)?;
        format!("0.{fraction}").parse::<f64>().ok()?
    };
    seconds += (hours * 3600 + minutes * 60 + whole) as f64 + fraction;
    if !offset.is_empty() {
        let sign = if offset.starts_with('-') { -1 } else { 1 };
        let mut units = offset[1..].split(':');
        let mut total = 0;
        for scale in [3600, 60, 1] {
            match units.next() {
                Some(u) => total += digits::<i64>(u, 2..=2)? * scale,
                None => break,
            }
        }
        if units.next().is_some() {
            return None;
        }
        seconds -= (sign * total) as f64;
    }
    Some(seconds)
}

fn digits<T: std::str::FromStr>(s: &str, len: std::ops::RangeInclusive<usize>) -> Option<T> {
    (len.contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit()))
        .then(|| s.parse().ok())
        .flatten()
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = (month + 9) % 12;
    let doy = (153 * m + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::epoch_seconds;

    #[test]
    fn iso_timestamps_and_dates() {
        assert_eq!(epoch_seconds("1970-01-01"), Some(0.0));
        assert_eq!(epoch_seconds("1970-01-02 00:00:00"), Some(86_400.0));
        assert_eq!(epoch_seconds("2000-03-01 00:00:00+00"), Some(951_868_800.0));
        assert_eq!(
            epoch_seconds("2024-02-29 12:30:15.25+00"),
            Some(1_709_209_815.25)
        );
        assert_eq!(
            epoch_seconds("2024-02-29 18:15:15.25+05:45"),
            Some(1_709_209_815.25)
        );
        assert_eq!(
            epoch_seconds("2024-02-29 08:30:15.25-04"),
            Some(1_709_209_815.25)
        );
        assert_eq!(epoch_seconds("1969-12-31 23:59:59+00"), Some(-1.0));
    }

    #[test]
    fn not_timestamps() {
        for text in [
            "",
            "12",
            "2024-13-01",
            "2024-02-29T12:00:00",
            "2024-02-29 25",
            "abc",
            "2024-02-29 12:00:00+5",
        ] {
            assert_eq!(epoch_seconds(text), None, "{text}");
        }
    }
}
