//! Backup schedules, read exactly as CloudNativePG reads them (robfig/cron v1): **seconds
//! first**. A schedule has six fields, `second minute hour day-of-month month day-of-week`, or
//! five, which are the first five of those (day-of-week then means every day) — *not* the five
//! fields of a crontab line. So `0 2 * * 0` is second 0, minute 2, month 0, and month 0 does not
//! exist. Descriptors (`@daily`, `@every 1h30m`, ...) are accepted too. Times are UTC.
//!
//! [`diagnostics`] tells the user what a schedule really means and, for a crontab-style line,
//! which six-field line they most likely meant.

use crate::diagnostics::Diagnostic;

const NAMES: [&str; 6] = [
    "second",
    "minute",
    "hour",
    "day-of-month",
    "month",
    "day-of-week",
];
const RANGES: [(u32, u32); 6] = [(0, 59), (0, 59), (0, 23), (1, 31), (1, 12), (0, 6)];
const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
const DAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];
const MONTH_NAMES: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const DAY_NAMES: [&str; 7] = [
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
];

/// A parsed schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Schedule {
    /// Six fields (`fields[5]` is `*` when the line had five), each a bitset of allowed values.
    Fields {
        bits: [u64; 6],
        tokens: [String; 6],
        five_fields: bool,
    },
    /// `@every <duration>`, in seconds.
    Every(u64),
}

/// Why a schedule is invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    #[error("empty schedule")]
    Empty,
    #[error("expected 5 to 6 fields, found {0}")]
    FieldCount(usize),
    #[error("unrecognized descriptor {0:?}")]
    Descriptor(String),
    #[error("invalid duration {0:?} after @every")]
    Duration(String),
    #[error("{field} field: {problem}")]
    Field {
        field: &'static str,
        problem: String,
    },
}

fn value(token: &str, field: usize) -> Result<u32, String> {
    let lower = token.to_ascii_lowercase();
    let named = match field {
        4 => MONTHS
            .iter()
            .position(|m| *m == lower)
            .map(|i| i as u32 + 1),
        5 => DAYS.iter().position(|d| *d == lower).map(|i| i as u32),
        _ => None,
    };
    named.map_or_else(
        || {
            token
                .parse::<u32>()
                .map_err(|_| format!("{token:?} is not a number"))
        },
        Ok,
    )
}

fn parse_field(text: &str, field: usize) -> Result<u64, ScheduleError> {
    let (min, max) = RANGES[field];
    let err = |problem: String| ScheduleError::Field {
        field: NAMES[field],
        problem,
    };
    let mut bits = 0u64;
    for part in text.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => (
                r,
                Some(
                    s.parse::<u32>()
                        .map_err(|_| err(format!("step {s:?} is not a number")))?,
                ),
            ),
            None => (part, None),
        };
        let (start, end) = if range == "*" || range == "?" {
            (min, max)
        } else if let Some((a, b)) = range.split_once('-') {
            (value(a, field).map_err(err)?, value(b, field).map_err(err)?)
        } else {
            let v = value(range, field).map_err(err)?;
            (v, if step.is_some() { max } else { v })
        };
        if start < min || end > max {
            let bad = if start < min { start } else { end };
            return Err(err(format!("{bad} is out of range {min}-{max}")));
        }
        if start > end {
            return Err(err(format!("range {start}-{end} runs backwards")));
        }
        let step = step.unwrap_or(1);
        if step == 0 {
            return Err(err("step must be at least 1".to_string()));
        }
        let mut v = start;
        while v <= end {
            bits |= 1 << v;
            v += step;
        }
    }
    Ok(bits)
}

/// (year, month 1-12, day 1-31) of a day number since 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Whole seconds (at least one) in a positive Go duration such as `1h30m`, `90s`, `1.5h`.
fn go_duration_seconds(text: &str) -> Option<u64> {
    let d = crate::duration::parse_go_duration(text).ok()?;
    let seconds = d.as_secs_f64();
    (seconds > 0.0 && seconds < 1e12).then(|| (seconds.round() as u64).max(1))
}

/// Parse a schedule as CloudNativePG does.
pub fn parse(spec: &str) -> Result<Schedule, ScheduleError> {
    let spec = spec.trim();
    if spec.is_empty() {
        return Err(ScheduleError::Empty);
    }
    if let Some(descriptor) = spec.strip_prefix('@') {
        let fields = match descriptor {
            "yearly" | "annually" => "0 0 0 1 1 *",
            "monthly" => "0 0 0 1 * *",
            "weekly" => "0 0 0 * * 0",
            "daily" | "midnight" => "0 0 0 * * *",
            "hourly" => "0 0 * * * *",
            d => match d.strip_prefix("every ") {
                Some(duration) => {
                    return go_duration_seconds(duration.trim())
                        .map(Schedule::Every)
                        .ok_or_else(|| ScheduleError::Duration(duration.trim().to_string()))
                }
                None => return Err(ScheduleError::Descriptor(spec.to_string())),
            },
        };
        return parse(fields);
    }
    let mut tokens: Vec<&str> = spec.split_whitespace().collect();
    let five_fields = tokens.len() == 5;
    if !(5..=6).contains(&tokens.len()) {
        return Err(ScheduleError::FieldCount(tokens.len()));
    }
    if five_fields {
        tokens.push("*");
    }
    let mut bits = [0u64; 6];
    for (i, token) in tokens.iter().enumerate() {
        bits[i] = parse_field(token, i)?;
    }
    let tokens = [0, 1, 2, 3, 4, 5].map(|i| tokens[i].to_string());
    Ok(Schedule::Fields {
        bits,
        tokens,
        five_fields,
    })
}

fn single(bits: u64) -> Option<u32> {
    (bits.count_ones() == 1).then(|| bits.trailing_zeros())
}

fn is_all(bits: u64, field: usize) -> bool {
    let (min, max) = RANGES[field];
    (min..=max).all(|v| bits & (1 << v) != 0)
}

fn values(bits: u64, field: usize) -> String {
    let names = |v: u32| match field {
        4 => MONTH_NAMES[(v - 1) as usize].to_string(),
        5 => DAY_NAMES[v as usize].to_string(),
        _ => v.to_string(),
    };
    let list: Vec<String> = (0..64)
        .filter(|v| bits & (1 << v) != 0)
        .map(names)
        .collect();
    list.join(", ")
}

impl Schedule {
    /// The first time strictly after `after` (seconds since the Unix epoch, UTC) the schedule
    /// fires, as robfig/cron v1 reads it (day of month and day of week both restricted: either
    /// matches). `None` when it never fires in the next five years (e.g. February 30th).
    pub fn next_after(&self, after: i64) -> Option<i64> {
        let (bits, tokens) = match self {
            Schedule::Every(s) => return Some(after + i64::try_from((*s).max(1)).ok()?),
            Schedule::Fields { bits, tokens, .. } => (bits, tokens),
        };
        let star = |t: &str| t == "*" || t == "?";
        let either_day = !star(&tokens[3]) && !star(&tokens[5]);
        let start = after + 1;
        let first_day = start.div_euclid(86_400);
        let first_second = start.rem_euclid(86_400);
        let has = |field: usize, v: i64| bits[field] & (1u64 << v) != 0;
        for day in first_day..first_day + 5 * 366 {
            let (_, month, dom) = civil_from_days(day);
            let dow = (day + 4).rem_euclid(7);
            let (dom_ok, dow_ok) = (has(3, dom), has(5, dow));
            let day_ok = if either_day {
                dom_ok || dow_ok
            } else {
                dom_ok && dow_ok
            };
            if !has(4, month) || !day_ok {
                continue;
            }
            let floor = if day == first_day { first_second } else { 0 };
            for hour in floor / 3600..24 {
                if !has(2, hour) {
                    continue;
                }
                for minute in 0..60 {
                    if !has(1, minute) {
                        continue;
                    }
                    for second in 0..60 {
                        let at = hour * 3600 + minute * 60 + second;
                        if at >= floor && has(0, second) {
                            return Some(day * 86_400 + at);
                        }
                    }
                }
            }
        }
        None
    }

    /// A plain-English reading.
    pub fn describe(&self) -> String {
        let (bits, _) = match self {
            Schedule::Every(s) => return format!("every {s} seconds"),
            Schedule::Fields { bits, tokens, .. } => (bits, tokens),
        };
        let time = match (single(bits[0]), single(bits[1]), single(bits[2])) {
            (Some(s), Some(m), Some(h)) => format!("at {h:02}:{m:02}:{s:02}"),
            _ => {
                let part = |i: usize, unit: &str| {
                    if is_all(bits[i], i) {
                        format!("every {unit}")
                    } else {
                        format!("{unit} {}", values(bits[i], i))
                    }
                };
                format!(
                    "at {} of {} of {}",
                    part(0, "second"),
                    part(1, "minute"),
                    part(2, "hour")
                )
            }
        };
        let (dom_all, dow_all) = (is_all(bits[3], 3), is_all(bits[5], 5));
        let days = match (dom_all, dow_all) {
            (true, true) => "every day".to_string(),
            (true, false) => format!("on {}", values(bits[5], 5)),
            (false, true) => format!("on day {} of the month", values(bits[3], 3)),
            (false, false) => format!(
                "on day {} of the month or on {}",
                values(bits[3], 3),
                values(bits[5], 5)
            ),
        };
        let months = if is_all(bits[4], 4) {
            String::new()
        } else {
            format!(", in {}", values(bits[4], 4))
        };
        format!("{time} {days}{months} (UTC)")
    }
}

/// What to tell a user about `spec` (found at `path`): nothing for a clear six-field line or a
/// descriptor; a warning for a five-field line (it is read seconds first); an error otherwise,
/// with the six-field line they most likely meant when the line looks like a crontab.
pub fn diagnostics(spec: &str, path: &str) -> Vec<Diagnostic> {
    let fields = spec.split_whitespace().count();
    let as_crontab = || {
        parse(&format!("0 {}", spec.trim()))
            .ok()
            .map(|s| (format!("0 {}", spec.trim()), s.describe()))
    };
    match parse(spec) {
        Ok(Schedule::Fields {
            five_fields: true, ..
        }) => {
            let meaning = parse(spec).map(|s| s.describe()).unwrap_or_default();
            let mut d = Diagnostic::warning(
                path,
                format!("{spec:?} has 5 fields and is read seconds first: it runs {meaning}"),
            );
            if let Some((line, what)) = as_crontab() {
                d = d.with_hint(format!(
                    "if this is a crontab line, write \"{line}\" ({what})"
                ));
            }
            vec![d]
        }
        Ok(_) => Vec::new(),
        Err(e) => {
            let mut d = Diagnostic::error(path, format!("invalid schedule {spec:?}: {e}"));
            d = match as_crontab() {
                Some((line, what)) if fields == 5 => d.with_hint(format!(
                    "this looks like a 5-field crontab line, but schedules are read seconds first (second minute hour day-of-month month [day-of-week]); you probably meant \"{line}\" ({what})"
                )),
                _ => d.with_hint("write six fields: second minute hour day-of-month month day-of-week, e.g. \"0 0 2 * * *\" for 02:00 every day"),
            };
            vec![d]
        }
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn next_times() {
        // 2024-01-01T00:00:00Z was a Monday.
        let monday = 1_704_067_200;
        let next = |spec: &str, after: i64| parse(spec).unwrap().next_after(after);
        assert_eq!(next("0 0 2 * * *", monday), Some(monday + 2 * 3600));
        assert_eq!(
            next("0 0 2 * * *", monday + 2 * 3600),
            Some(monday + 26 * 3600)
        );
        // Sundays at 02:00 (seconds first): six days later.
        assert_eq!(
            next("0 0 2 * * 0", monday),
            Some(monday + 6 * 86_400 + 2 * 3600)
        );
        assert_eq!(next("@every 90s", monday), Some(monday + 90));
        assert_eq!(next("*/15 * * * * *", monday + 1), Some(monday + 15));
        assert_eq!(next("@monthly", monday), Some(monday + 31 * 86_400));
        // Day of month or day of week when both are restricted: the 15th or a Friday.
        assert_eq!(next("0 0 0 15 * 5", monday), Some(monday + 4 * 86_400));
        assert_eq!(next("0 0 0 30 2 *", monday), None);
        assert_eq!(civil_from_days(19_723), (2024, 1, 1));
    }

    use super::*;

    #[test]
    fn crontab_line_is_read_seconds_first() {
        let err = parse("0 2 * * 0").unwrap_err();
        assert_eq!(
            err,
            ScheduleError::Field {
                field: "month",
                problem: "0 is out of range 1-12".into()
            }
        );
        let d = diagnostics("0 2 * * 0", "spec.schedule");
        assert_eq!(d.len(), 1);
        assert!(d[0].is_error());
        let hint = d[0].hint.clone().unwrap_or_default();
        assert!(
            hint.contains("\"0 0 2 * * 0\" (at 02:00:00 on Sunday (UTC))"),
            "{hint}"
        );
    }

    #[test]
    fn valid_five_field_line_warns_with_its_real_meaning() {
        let d = diagnostics("0 0 * * *", "spec.schedule");
        assert_eq!(d.len(), 1);
        assert!(!d[0].is_error());
        assert!(
            d[0].message
                .contains("at second 0 of minute 0 of every hour every day"),
            "{}",
            d[0].message
        );
        assert!(d[0]
            .hint
            .as_deref()
            .unwrap_or_default()
            .contains("\"0 0 0 * * *\" (at 00:00:00 every day (UTC))"));
    }

    #[test]
    fn six_fields_and_descriptors() {
        for ok in [
            "0 0 2 * * 0",
            "*/30 * * * * *",
            "0 0 0 1 JAN *",
            "0 0 12 * * MON-FRI",
            "0 0 0 1,15 * ?",
            "@daily",
            "@every 1h30m",
            "@every 1.5h",
            "@weekly",
        ] {
            assert!(parse(ok).is_ok(), "{ok}");
            assert!(diagnostics(ok, "s").is_empty(), "{ok}");
        }
        assert_eq!(parse("@every 90s"), Ok(Schedule::Every(90)));
        assert_eq!(
            parse("0 0 2 * * 0")
                .map(|s| s.describe())
                .unwrap_or_default(),
            "at 02:00:00 on Sunday (UTC)"
        );
    }

    #[test]
    fn invalid_lines() {
        assert_eq!(parse(""), Err(ScheduleError::Empty));
        assert_eq!(parse("0 2 * *"), Err(ScheduleError::FieldCount(4)));
        assert_eq!(parse("1 2 3 4 5 6 7"), Err(ScheduleError::FieldCount(7)));
        assert!(matches!(
            parse("@fortnightly"),
            Err(ScheduleError::Descriptor(_))
        ));
        assert!(matches!(
            parse("@every soon"),
            Err(ScheduleError::Duration(_))
        ));
        assert!(matches!(
            parse("60 * * * * *"),
            Err(ScheduleError::Field {
                field: "second",
                ..
            })
        ));
        assert!(matches!(
            parse("0 0 5-2 * * *"),
            Err(ScheduleError::Field { field: "hour", .. })
        ));
        assert!(matches!(
            parse("*/0 * * * * *"),
            Err(ScheduleError::Field {
                field: "second",
                ..
            })
        ));
        assert!(matches!(
            parse("0 0 0 * * FUNDAY"),
            Err(ScheduleError::Field {
                field: "day-of-week",
                ..
            })
        ));
        assert!(diagnostics("0 2 * *", "s")[0]
            .hint
            .as_deref()
            .unwrap_or_default()
            .contains("six fields"));
    }
}
