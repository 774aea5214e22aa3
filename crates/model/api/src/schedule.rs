//! Cron schedules, read exactly the way CloudNativePG's ScheduledBackup reads them: with
//! `cron.Parse` of github.com/robfig/cron v1.2.0, whose default parser takes a **seconds-first**
//! line.
//!
//! ```text
//! ┌──────────── second        0-59
//! │ ┌────────── minute        0-59
//! │ │ ┌──────── hour          0-23
//! │ │ │ ┌────── day of month  1-31
//! │ │ │ │ ┌──── month         1-12 or JAN-DEC
//! │ │ │ │ │ ┌── day of week   0-6 or SUN-SAT (Sunday is 0; optional)
//! 0 0 2 * * 0    02:00:00 every Sunday
//! ```
//!
//! The first field is the **second**, not the minute as in crontab. A 5-field line is still
//! accepted, but it is read as `second minute hour day-of-month month` with any day of week, so
//! the crontab line `0 2 * * *` ("02:00 every day") means "at second 0 of minute 2 of every
//! hour" here, and the crontab line `0 2 * * 0` is rejected (month 0 does not exist). CloudNativePG
//! only warns about lines that do not have 6 fields; [`diagnose`] explains what such a line
//! really does and proposes the 6-field line that was most likely meant.
//!
//! Each field takes `*` or `?` (any value), a number, a range `a-b`, a step `*/n`, `a-b/n` or
//! `a/n` (from `a` to the field's maximum), or a comma-separated list of those; months and days of
//! week may be given by their English three-letter names, in any case. When both day of month
//! and day of week are restricted (neither starts with `*` or `?`), a day matches when *either*
//! matches; otherwise both must.
//!
//! Descriptors: `@yearly` (`@annually`), `@monthly`, `@weekly`, `@daily` (`@midnight`),
//! `@hourly`, and `@every <duration>` with a Go duration such as `1h30m` or `90s`, counted from
//! the previous run and truncated to whole seconds (at least one second).
//!
//! All times are UTC, as in the operator.

use std::fmt;

use chrono::{DateTime, Datelike, NaiveDate, TimeDelta, Timelike, Utc};

use crate::diagnostics::{did_you_mean, Diagnostic};

/// One of the six fields of a schedule line, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Field {
    Second,
    Minute,
    Hour,
    DayOfMonth,
    Month,
    DayOfWeek,
}

impl Field {
    /// The six fields in the order they are written.
    pub const ALL: [Field; 6] = [
        Field::Second,
        Field::Minute,
        Field::Hour,
        Field::DayOfMonth,
        Field::Month,
        Field::DayOfWeek,
    ];

    /// The field's name as used in messages: `second`, …, `day-of-month`, `day-of-week`.
    pub fn name(self) -> &'static str {
        match self {
            Field::Second => "second",
            Field::Minute => "minute",
            Field::Hour => "hour",
            Field::DayOfMonth => "day-of-month",
            Field::Month => "month",
            Field::DayOfWeek => "day-of-week",
        }
    }

    /// The smallest and largest value the field accepts.
    pub fn range(self) -> (u32, u32) {
        match self {
            Field::Second | Field::Minute => (0, 59),
            Field::Hour => (0, 23),
            Field::DayOfMonth => (1, 31),
            Field::Month => (1, 12),
            Field::DayOfWeek => (0, 6),
        }
    }

    fn index(self) -> usize {
        match self {
            Field::Second => 0,
            Field::Minute => 1,
            Field::Hour => 2,
            Field::DayOfMonth => 3,
            Field::Month => 4,
            Field::DayOfWeek => 5,
        }
    }

    /// The value of a month or day name (case-insensitive), for the fields that have names.
    fn named_value(self, text: &str) -> Option<u64> {
        let lower = text.to_lowercase();
        let names: &[&str] = match self {
            Field::Month => &MONTH_ABBREVIATIONS,
            Field::DayOfWeek => &DAY_ABBREVIATIONS,
            _ => return None,
        };
        let first = if self == Field::Month { 1 } else { 0 };
        names
            .iter()
            .position(|name| *name == lower)
            .map(|i| i as u64 + first)
    }

    /// What the field accepts, for hints.
    fn accepted(self) -> String {
        let (lo, hi) = self.range();
        match self {
            Field::Month => format!("{lo}-{hi} or JAN-DEC"),
            Field::DayOfWeek => format!("{lo}-{hi} or SUN-SAT (Sunday is 0)"),
            _ => format!("{lo}-{hi}"),
        }
    }
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

const MONTH_ABBREVIATIONS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
const DAY_ABBREVIATIONS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];
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
/// The longest each month can be (February in leap years).
const MONTH_MAX_DAYS: [u32; 12] = [31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
const DESCRIPTORS: [&str; 8] = [
    "@yearly",
    "@annually",
    "@monthly",
    "@weekly",
    "@daily",
    "@midnight",
    "@hourly",
    "@every",
];
const FIELD_ORDER: &str = "second minute hour day-of-month month day-of-week";

/// What is wrong with one item of a field (the text between commas).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FieldProblem {
    /// A part that should be a number (or a name) is not one; `text` may be empty.
    NotANumber { text: String },
    /// A number too large to read.
    TooLarge { text: String },
    /// A negative step such as the `-2` of `*/-2`.
    Negative { text: String },
    /// A value outside the field's range.
    OutOfRange { value: u64 },
    /// A range whose start is after its end, such as `5-3`.
    StartAfterEnd { start: u64, end: u64 },
    /// A step of 0.
    ZeroStep,
    /// More than one `-`, such as `1-2-3`.
    TooManyHyphens,
    /// More than one `/`, such as `*/2/3`.
    TooManySlashes,
}

fn explain(field: &Field, problem: &FieldProblem) -> String {
    let (lo, hi) = field.range();
    match problem {
        FieldProblem::NotANumber { text } if text.is_empty() => "a number is missing".to_string(),
        FieldProblem::NotANumber { text } => match field {
            Field::Month => format!("{text:?} is not a number or a month name (JAN-DEC)"),
            Field::DayOfWeek => format!("{text:?} is not a number or a day name (SUN-SAT)"),
            _ => format!("{text:?} is not a number"),
        },
        FieldProblem::TooLarge { text } => format!("{text} is too large"),
        FieldProblem::Negative { text } => format!("the step {text} is negative"),
        FieldProblem::OutOfRange { value } => {
            format!("{value} is out of range {lo}-{hi}")
        }
        FieldProblem::StartAfterEnd { start, end } => {
            format!("the range starts at {start}, after its end {end}")
        }
        FieldProblem::ZeroStep => "the step must be a positive number, not 0".to_string(),
        FieldProblem::TooManyHyphens => "too many '-' (a range is start-end)".to_string(),
        FieldProblem::TooManySlashes => "too many '/' (a step is range/step)".to_string(),
    }
}

/// Why a schedule line cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    /// The line is empty.
    #[error("the schedule is empty")]
    Empty,
    /// Not 5 or 6 whitespace-separated fields.
    #[error("expected 5 to 6 fields, found {found}")]
    FieldCount { found: usize },
    /// One item of one field is wrong; `token` is that item (the text between commas).
    #[error("{field} field {token:?}: {}", explain(.field, .problem))]
    Field {
        field: Field,
        token: String,
        problem: FieldProblem,
    },
    /// A line starting with `@` that is not a known descriptor.
    #[error("unrecognized descriptor {descriptor:?}")]
    UnrecognizedDescriptor { descriptor: String },
    /// `@every` followed by something that is not a Go duration.
    #[error("@every: {text:?} is not a duration: {reason}")]
    Duration { text: String, reason: String },
    /// `@every` with a duration of zero or less.
    #[error("@every: the interval {text:?} is not greater than zero")]
    NonPositiveInterval { text: String },
}

/// The sets of values a field line selects, one bit per value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Fields {
    bits: [u64; 6],
    /// Whether the day-of-month field has an item starting with `*` or `?`.
    dom_star: bool,
    /// Whether the day-of-week field has an item starting with `*` or `?`.
    dow_star: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Form {
    SixFields,
    FiveFields,
    Descriptor,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Timing {
    Fields(Fields),
    /// `@every`: a fixed delay in whole seconds; `exact` is false when the duration was
    /// rounded to get there.
    Every {
        seconds: u64,
        exact: bool,
    },
}

/// A schedule line that parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    form: Form,
    timing: Timing,
}

/// Read a schedule line the way CloudNativePG does (robfig/cron v1.2.0 `cron.Parse`).
pub fn parse(spec: &str) -> Result<Schedule, ScheduleError> {
    if spec.is_empty() {
        return Err(ScheduleError::Empty);
    }
    if spec.starts_with('@') {
        return parse_descriptor(spec);
    }
    let words: Vec<&str> = spec.split_whitespace().collect();
    let form = match words.len() {
        5 => Form::FiveFields,
        6 => Form::SixFields,
        found => return Err(ScheduleError::FieldCount { found }),
    };
    let mut fields = Fields {
        bits: [0; 6],
        dom_star: false,
        dow_star: false,
    };
    for field in Field::ALL {
        let text = words.get(field.index()).copied().unwrap_or("*");
        let (bits, star) = parse_field(text, field)?;
        fields.bits[field.index()] = bits;
        match field {
            Field::DayOfMonth => fields.dom_star = star,
            Field::DayOfWeek => fields.dow_star = star,
            _ => {}
        }
    }
    Ok(Schedule {
        form,
        timing: Timing::Fields(fields),
    })
}

fn parse_field(text: &str, field: Field) -> Result<(u64, bool), ScheduleError> {
    let mut bits = 0;
    let mut star = false;
    // Empty items are skipped, as Go's strings.FieldsFunc does.
    for item in text.split(',').filter(|item| !item.is_empty()) {
        let (b, s) = parse_item(item, field).map_err(|problem| ScheduleError::Field {
            field,
            token: item.to_string(),
            problem,
        })?;
        bits |= b;
        star |= s;
    }
    Ok((bits, star))
}

fn parse_item(item: &str, field: Field) -> Result<(u64, bool), FieldProblem> {
    let (lo, hi) = field.range();
    let (lo, hi) = (u64::from(lo), u64::from(hi));
    let range_and_step: Vec<&str> = item.split('/').collect();
    let range = range_and_step.first().copied().unwrap_or_default();
    let low_and_high: Vec<&str> = range.split('-').collect();
    let low = low_and_high.first().copied().unwrap_or_default();
    let (start, mut end, star) = if low == "*" || low == "?" {
        // Like robfig, whatever follows a `*-` is ignored.
        (lo, hi, true)
    } else {
        let start = parse_value(low, field)?;
        let end = match low_and_high.as_slice() {
            [_] => start,
            [_, high] => parse_value(high, field)?,
            _ => return Err(FieldProblem::TooManyHyphens),
        };
        (start, end, false)
    };
    let step = match range_and_step.as_slice() {
        [_] => 1,
        [_, step] => {
            let step = parse_int(step)?;
            // `a/n` means `a-max/n`.
            if low_and_high.len() == 1 {
                end = hi;
            }
            step
        }
        _ => return Err(FieldProblem::TooManySlashes),
    };
    if start < lo {
        return Err(FieldProblem::OutOfRange { value: start });
    }
    if end > hi {
        return Err(FieldProblem::OutOfRange { value: end });
    }
    if start > end {
        return Err(FieldProblem::StartAfterEnd { start, end });
    }
    if step == 0 {
        return Err(FieldProblem::ZeroStep);
    }
    let mut bits = 0u64;
    let mut value = start;
    while value <= end {
        bits |= 1 << value;
        match value.checked_add(step) {
            Some(next) => value = next,
            None => break,
        }
    }
    Ok((bits, star))
}

fn parse_value(text: &str, field: Field) -> Result<u64, FieldProblem> {
    match field.named_value(text) {
        Some(value) => Ok(value),
        None => parse_int(text),
    }
}

/// A number as Go's `strconv.Atoi` reads it, then refused when negative.
fn parse_int(text: &str) -> Result<u64, FieldProblem> {
    let (negative, digits) = match text.as_bytes().first() {
        Some(b'+') => (false, &text[1..]),
        Some(b'-') => (true, &text[1..]),
        _ => (false, text),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(FieldProblem::NotANumber {
            text: text.to_string(),
        });
    }
    let magnitude = digits.bytes().try_fold(0u64, |n, b| {
        n.checked_mul(10)?.checked_add(u64::from(b - b'0'))
    });
    let limit = if negative { 1 << 63 } else { (1 << 63) - 1 };
    match magnitude {
        Some(m) if m <= limit => {
            if negative && m > 0 {
                Err(FieldProblem::Negative {
                    text: text.to_string(),
                })
            } else {
                Ok(m)
            }
        }
        _ => Err(FieldProblem::TooLarge {
            text: text.to_string(),
        }),
    }
}

fn bits_all(field: Field) -> u64 {
    let (lo, hi) = field.range();
    (lo..=hi).fold(0, |bits, v| bits | 1 << v)
}

fn parse_descriptor(spec: &str) -> Result<Schedule, ScheduleError> {
    let all = |field| bits_all(field);
    let at =
        |sec: u64, min: u64, hour: u64, dom: (u64, bool), month: u64, dow: (u64, bool)| Schedule {
            form: Form::Descriptor,
            timing: Timing::Fields(Fields {
                bits: [sec, min, hour, dom.0, month, dow.0],
                dom_star: dom.1,
                dow_star: dow.1,
            }),
        };
    let any_dom = (all(Field::DayOfMonth), true);
    let any_dow = (all(Field::DayOfWeek), true);
    let months = all(Field::Month);
    match spec {
        "@yearly" | "@annually" => return Ok(at(1, 1, 1, (1 << 1, false), 1 << 1, any_dow)),
        "@monthly" => return Ok(at(1, 1, 1, (1 << 1, false), months, any_dow)),
        "@weekly" => return Ok(at(1, 1, 1, any_dom, months, (1, false))),
        "@daily" | "@midnight" => return Ok(at(1, 1, 1, any_dom, months, any_dow)),
        "@hourly" => return Ok(at(1, 1, all(Field::Hour), any_dom, months, any_dow)),
        _ => {}
    }
    let Some(text) = spec.strip_prefix("@every ") else {
        return Err(ScheduleError::UnrecognizedDescriptor {
            descriptor: spec.to_string(),
        });
    };
    let nanos = go_duration_nanos(text).map_err(|reason| ScheduleError::Duration {
        text: text.to_string(),
        reason,
    })?;
    if nanos <= 0 {
        return Err(ScheduleError::NonPositiveInterval {
            text: text.to_string(),
        });
    }
    const SECOND: i128 = 1_000_000_000;
    let seconds = u64::try_from((nanos / SECOND).max(1)).unwrap_or(u64::MAX);
    Ok(Schedule {
        form: Form::Descriptor,
        timing: Timing::Every {
            seconds,
            exact: nanos % SECOND == 0,
        },
    })
}

/// A duration as Go's `time.ParseDuration` reads it, in nanoseconds.
fn go_duration_nanos(orig: &str) -> Result<i128, String> {
    const LIMIT: u64 = 1 << 63;
    let invalid = || format!("invalid duration {orig:?}");
    let (negative, mut s) = match orig.as_bytes().first() {
        Some(b'-') => (true, &orig[1..]),
        Some(b'+') => (false, &orig[1..]),
        _ => (false, orig),
    };
    if s == "0" {
        return Ok(0);
    }
    if s.is_empty() {
        return Err(invalid());
    }
    let mut total: u64 = 0;
    while let Some(&first) = s.as_bytes().first() {
        if !(first == b'.' || first.is_ascii_digit()) {
            return Err(invalid());
        }
        // Integer part.
        let int_len = s.bytes().take_while(u8::is_ascii_digit).count();
        let mut value: u64 = 0;
        for b in s[..int_len].bytes() {
            if value > LIMIT / 10 {
                return Err(invalid());
            }
            value = value * 10 + u64::from(b - b'0');
            if value > LIMIT {
                return Err(invalid());
            }
        }
        s = &s[int_len..];
        // Fraction.
        let mut fraction: u64 = 0;
        let mut scale: f64 = 1.0;
        let mut frac_len = 0;
        if let Some(rest) = s.strip_prefix('.') {
            frac_len = rest.bytes().take_while(u8::is_ascii_digit).count();
            let mut overflow = false;
            for b in rest[..frac_len].bytes() {
                if overflow {
                    continue;
                }
                if fraction > (LIMIT - 1) / 10 {
                    overflow = true;
                    continue;
                }
                let next = fraction * 10 + u64::from(b - b'0');
                if next > LIMIT {
                    overflow = true;
                    continue;
                }
                fraction = next;
                scale *= 10.0;
            }
            s = &rest[frac_len..];
        }
        if int_len == 0 && frac_len == 0 {
            return Err(invalid());
        }
        // Unit: everything up to the next digit or '.'.
        let unit_len = s
            .bytes()
            .take_while(|b| !(*b == b'.' || b.is_ascii_digit()))
            .count();
        if unit_len == 0 {
            return Err(format!("missing unit in duration {orig:?}"));
        }
        let unit_text = &s[..unit_len];
        s = &s[unit_len..];
        let unit: u64 = match unit_text {
            "ns" => 1,
            "us" | "\u{b5}s" | "\u{3bc}s" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => {
                return Err(format!(
                    "unknown unit {unit_text:?} in duration {orig:?} (units: h, m, s, ms, us, ns)"
                ))
            }
        };
        if value > LIMIT / unit {
            return Err(invalid());
        }
        value *= unit;
        if fraction > 0 {
            // At most 3.6e12 (an hour in nanoseconds): the cast cannot overflow.
            value += (fraction as f64 * (unit as f64 / scale)) as u64;
            if value > LIMIT {
                return Err(invalid());
            }
        }
        total = match total.checked_add(value) {
            Some(t) if t <= LIMIT => t,
            _ => return Err(invalid()),
        };
    }
    if negative {
        Ok(-i128::from(total))
    } else if total > LIMIT - 1 {
        Err(invalid())
    } else {
        Ok(i128::from(total))
    }
}

impl Schedule {
    /// How many fields the line had: `Some(6)` or `Some(5)`, `None` for a descriptor.
    pub fn field_count(&self) -> Option<usize> {
        match self.form {
            Form::SixFields => Some(6),
            Form::FiveFields => Some(5),
            Form::Descriptor => None,
        }
    }

    /// Whether the line had 5 fields (read as `second minute hour day-of-month month`).
    pub fn is_five_field(&self) -> bool {
        self.form == Form::FiveFields
    }

    /// The fixed interval of an `@every` schedule, in whole seconds as it is applied.
    pub fn interval(&self) -> Option<std::time::Duration> {
        match self.timing {
            Timing::Every { seconds, .. } => Some(std::time::Duration::from_secs(seconds)),
            Timing::Fields(_) => None,
        }
    }

    /// A plain-English reading, e.g. `at 02:00:00, every Sunday` or
    /// `at second 0 of minute 2 of every hour (hh:02:00), every day`.
    pub fn describe(&self) -> String {
        match self.timing {
            Timing::Every { seconds, .. } => format!(
                "every {} (counted from the previous run, not aligned to the clock)",
                duration_text(seconds)
            ),
            Timing::Fields(fields) => match fields.never_reason() {
                Some(reason) => format!("never: {reason}"),
                None => format!("{}, {}", fields.time_phrase(), fields.day_phrase()),
            },
        }
    }

    /// The first run strictly after `t` (UTC, whole seconds), or `None` when there is none
    /// within about five years (robfig's limit), or the time cannot be represented.
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self.timing {
            Timing::Every { seconds, .. } => {
                let floor = DateTime::from_timestamp(t.timestamp(), 0)?;
                let delay = TimeDelta::try_seconds(i64::try_from(seconds).ok()?)?;
                floor.checked_add_signed(delay)
            }
            Timing::Fields(fields) => fields.next_after(t),
        }
    }

    fn never_reason(&self) -> Option<String> {
        match self.timing {
            Timing::Fields(fields) => fields.never_reason(),
            Timing::Every { .. } => None,
        }
    }
}

impl Fields {
    fn get(&self, field: Field) -> u64 {
        self.bits.get(field.index()).copied().unwrap_or_default()
    }

    fn has(&self, field: Field, value: u32) -> bool {
        value < 64 && self.get(field) >> value & 1 == 1
    }

    fn values(&self, field: Field) -> Vec<u32> {
        let (lo, hi) = field.range();
        (lo..=hi).filter(|v| self.has(field, *v)).collect()
    }

    fn is_full(&self, field: Field) -> bool {
        self.get(field) & bits_all(field) == bits_all(field)
    }

    /// Like robfig: when either day field was written with `*` or `?`, both must match;
    /// otherwise either is enough.
    fn day_matches(&self, date: NaiveDate) -> bool {
        let dom = self.has(Field::DayOfMonth, date.day());
        let dow = self.has(Field::DayOfWeek, date.weekday().num_days_from_sunday());
        if self.dom_star || self.dow_star {
            dom && dow
        } else {
            dom || dow
        }
    }

    /// The first value of `field` at or after `from`.
    fn next_value(&self, field: Field, from: u32) -> Option<u32> {
        if from >= 64 {
            return None;
        }
        let rest = self.get(field) >> from;
        (rest != 0).then(|| from + rest.trailing_zeros())
    }

    /// The first time of day at or after `from` (h, m, s) that matches.
    fn first_time_from(&self, from: (u32, u32, u32)) -> Option<(u32, u32, u32)> {
        let (h0, m0, s0) = from;
        let mut hour = self.next_value(Field::Hour, h0);
        while let Some(h) = hour.filter(|h| *h <= 23) {
            let m_from = if h == h0 { m0 } else { 0 };
            let mut minute = self.next_value(Field::Minute, m_from);
            while let Some(m) = minute.filter(|m| *m <= 59) {
                let s_from = if h == h0 && m == m0 { s0 } else { 0 };
                if let Some(s) = self.next_value(Field::Second, s_from).filter(|s| *s <= 59) {
                    return Some((h, m, s));
                }
                minute = self.next_value(Field::Minute, m + 1);
            }
            hour = self.next_value(Field::Hour, h + 1);
        }
        None
    }

    fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let start = DateTime::from_timestamp(t.timestamp().checked_add(1)?, 0)?;
        let year_limit = start.year().checked_add(5)?;
        let mut date = start.date_naive();
        let mut from = (start.hour(), start.minute(), start.second());
        while date.year() <= year_limit {
            if self.has(Field::Month, date.month()) && self.day_matches(date) {
                if let Some((h, m, s)) = self.first_time_from(from) {
                    return date.and_hms_opt(h, m, s).map(|n| n.and_utc());
                }
            }
            from = (0, 0, 0);
            date = date.succ_opt()?;
        }
        None
    }

    /// Why the schedule can never run, if it cannot.
    fn never_reason(&self) -> Option<String> {
        for field in [Field::Second, Field::Minute, Field::Hour, Field::Month] {
            if self.get(field) == 0 {
                return Some(format!("the {field} field selects no value"));
            }
        }
        let dom = self.values(Field::DayOfMonth);
        let dow = self.values(Field::DayOfWeek);
        if self.dom_star || self.dow_star {
            // Both must match.
            if dow.is_empty() {
                return Some("the day-of-week field selects no value".to_string());
            }
            if dom.is_empty() {
                return Some("the day-of-month field selects no value".to_string());
            }
        } else {
            // Either is enough, and every month has every day of week.
            if !dow.is_empty() {
                return None;
            }
            if dom.is_empty() {
                return Some("the day-of-month and day-of-week fields select no value".to_string());
            }
        }
        let months = self.values(Field::Month);
        let possible = months.iter().any(|m| {
            let max = MONTH_MAX_DAYS.get(*m as usize - 1).copied().unwrap_or(31);
            dom.iter().any(|d| *d <= max)
        });
        if possible {
            None
        } else {
            Some(format!(
                "{} of the month never falls in {}",
                day_of_month_text(&dom),
                month_list(&months)
            ))
        }
    }

    fn time_phrase(&self) -> String {
        let s = self.values(Field::Second);
        let m = self.values(Field::Minute);
        let h = self.values(Field::Hour);
        let (s_all, m_all, h_all) = (
            self.is_full(Field::Second),
            self.is_full(Field::Minute),
            self.is_full(Field::Hour),
        );
        if let ([sec], [min]) = (s.as_slice(), m.as_slice()) {
            if !h_all && h.len() <= 6 {
                let times: Vec<String> = h
                    .iter()
                    .map(|hour| format!("{hour:02}:{min:02}:{sec:02}"))
                    .collect();
                return format!("at {}", join_list(&times, "and"));
            }
        }
        let s_step = uniform_step(&s, 0, 59);
        let mut out = if s_all {
            "every second".to_string()
        } else if let Some(step) = s_step {
            format!("every {step} seconds")
        } else if let [sec] = s.as_slice() {
            format!("at second {sec}")
        } else {
            format!("at seconds {}", number_list(&s))
        };
        if m_all && h_all {
            if !s_all && s_step.is_none() {
                out.push_str(" of every minute");
            }
        } else {
            let minutes = match m.as_slice() {
                _ if m_all => "every minute".to_string(),
                [min] => format!("minute {min}"),
                _ => format!("minutes {}", number_list(&m)),
            };
            let hours = match h.as_slice() {
                _ if h_all => "every hour".to_string(),
                [hour] => format!("hour {hour}"),
                _ => format!("hours {}", number_list(&h)),
            };
            out = format!("{out} of {minutes} of {hours}");
        }
        if let [sec] = s.as_slice() {
            if !m_all && m.len() <= 4 && (h_all || h.len() > 6) {
                let clocks: Vec<String> = m
                    .iter()
                    .map(|min| format!("hh:{min:02}:{sec:02}"))
                    .collect();
                out = format!("{out} ({})", join_list(&clocks, "and"));
            }
        }
        out
    }

    fn day_phrase(&self) -> String {
        let dom = self.values(Field::DayOfMonth);
        let dow = self.values(Field::DayOfWeek);
        let months = self.values(Field::Month);
        let dom_full = self.is_full(Field::DayOfMonth);
        let dow_full = self.is_full(Field::DayOfWeek);
        let months_full = self.is_full(Field::Month);
        let single_run = month_run(&months);
        let months_in = match single_run {
            _ if months_full => String::new(),
            Some((a, b)) => format!(" from {a} to {b}"),
            None => format!(" in {}", month_list(&months)),
        };
        let months_of = match single_run {
            _ if months_full => "every month".to_string(),
            Some((a, b)) => format!("every month from {a} to {b}"),
            None => month_list(&months),
        };
        let on_days = || match (dom.as_slice(), months.as_slice()) {
            ([day], [month]) if !months_full => {
                let name = MONTH_NAMES.get(*month as usize - 1).copied().unwrap_or("?");
                format!("on {name} {day}")
            }
            _ => format!("on {} of {months_of}", day_of_month_text(&dom)),
        };
        if self.dom_star || self.dow_star {
            match (dom_full, dow_full) {
                (true, true) => format!("every day{months_in}"),
                (true, false) => format!("{}{months_in}", every_weekday(&dow)),
                (false, true) => on_days(),
                (false, false) => format!(
                    "on {} of {months_of}, when that day is a {}",
                    day_of_month_text(&dom),
                    weekday_alternatives(&dow)
                ),
            }
        } else if dom_full || dow_full {
            format!("every day{months_in}")
        } else if dow.is_empty() {
            on_days()
        } else if dom.is_empty() {
            format!("{}{months_in}", every_weekday(&dow))
        } else {
            format!("{}, and also {}{months_in}", on_days(), every_weekday(&dow))
        }
    }
}

/// `a`, `a and b`, `a, b and c`.
fn join_list(items: &[String], conjunction: &str) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} {conjunction} {last}", init.join(", ")),
    }
}

/// The step of an arithmetic progression of at least two values.
fn progression_step(values: &[u32]) -> Option<u32> {
    let [first, second, ..] = values else {
        return None;
    };
    let step = second.checked_sub(*first)?;
    values
        .windows(2)
        .all(|w| matches!(w, [a, b] if b.checked_sub(*a) == Some(step)))
        .then_some(step)
}

/// The step when `values` is `lo, lo+n, …` all the way round (a `*/n` with n dividing the
/// field's size), so that runs are evenly spaced.
fn uniform_step(values: &[u32], lo: u32, hi: u32) -> Option<u32> {
    let step = progression_step(values)?;
    let size = hi - lo + 1;
    (step >= 2
        && values.first() == Some(&lo)
        && size % step == 0
        && values.last() == Some(&(hi + 1 - step)))
    .then_some(step)
}

/// Numbers as `0-10 and 30`, or `0, 5, 10, ..., 55` for long progressions.
fn number_list(values: &[u32]) -> String {
    if values.len() > 6 {
        if let (Some(step), [a, b, c, .., last]) = (progression_step(values), values) {
            if step >= 2 {
                return format!("{a}, {b}, {c}, ..., {last}");
            }
        }
    }
    let mut items = Vec::new();
    for (a, b) in runs(values) {
        if b >= a + 2 {
            items.push(format!("{a}-{b}"));
        } else {
            items.extend((a..=b).map(|v| v.to_string()));
        }
    }
    join_list(&items, "and")
}

fn runs(values: &[u32]) -> Vec<(u32, u32)> {
    let mut out: Vec<(u32, u32)> = Vec::new();
    for &v in values {
        match out.last_mut() {
            Some((_, end)) if *end + 1 == v => *end = v,
            _ => out.push((v, v)),
        }
    }
    out
}

fn day_of_month_text(dom: &[u32]) -> String {
    match dom {
        [day] => format!("day {day}"),
        _ => format!("days {}", number_list(dom)),
    }
}

fn month_name(month: u32) -> &'static str {
    (month as usize)
        .checked_sub(1)
        .and_then(|i| MONTH_NAMES.get(i))
        .copied()
        .unwrap_or("?")
}

fn day_name(day: u32) -> &'static str {
    DAY_NAMES.get(day as usize).copied().unwrap_or("?")
}

/// `(first, last)` when the months are one run of at least three.
fn month_run(months: &[u32]) -> Option<(&'static str, &'static str)> {
    match runs(months).as_slice() {
        [(a, b)] if *b >= a + 2 => Some((month_name(*a), month_name(*b))),
        _ => None,
    }
}

fn month_list(months: &[u32]) -> String {
    let names: Vec<String> = months.iter().map(|m| month_name(*m).to_string()).collect();
    join_list(&names, "and")
}

fn every_weekday(dow: &[u32]) -> String {
    match runs(dow).as_slice() {
        [(a, b)] if *b >= a + 2 => {
            format!("every day from {} to {}", day_name(*a), day_name(*b))
        }
        _ => {
            let names: Vec<String> = dow.iter().map(|d| day_name(*d).to_string()).collect();
            format!("every {}", join_list(&names, "and"))
        }
    }
}

fn weekday_alternatives(dow: &[u32]) -> String {
    let names: Vec<String> = dow.iter().map(|d| day_name(*d).to_string()).collect();
    join_list(&names, "or")
}

/// Whole seconds as `1h30m`, `90s` → `1m30s`.
fn duration_text(seconds: u64) -> String {
    let (h, m, s) = (seconds / 3600, seconds / 60 % 60, seconds % 60);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if m > 0 {
        out.push_str(&format!("{m}m"));
    }
    if s > 0 || out.is_empty() {
        out.push_str(&format!("{s}s"));
    }
    out
}

/// What [`diagnose`] makes of a schedule line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScheduleDiagnosis {
    /// The line parses. `warning` says when it most likely does not do what was meant (a
    /// 5-field line, a schedule that never runs, a rounded `@every`); `suggestion` is the line
    /// to write instead, when there is one.
    Valid {
        schedule: Schedule,
        warning: Option<String>,
        suggestion: Option<String>,
    },
    /// The line is rejected; `hint` says how to fix it and `suggestion` is the corrected line
    /// when one is clear.
    Invalid {
        error: ScheduleError,
        hint: String,
        suggestion: Option<String>,
    },
}

impl ScheduleDiagnosis {
    /// Whether the line parses (possibly with a warning).
    pub fn is_valid(&self) -> bool {
        matches!(self, ScheduleDiagnosis::Valid { .. })
    }

    /// The line that most likely was meant, if it differs from the one given.
    pub fn suggestion(&self) -> Option<&str> {
        match self {
            ScheduleDiagnosis::Valid { suggestion, .. }
            | ScheduleDiagnosis::Invalid { suggestion, .. } => suggestion.as_deref(),
        }
    }
}

/// Parse `spec` and explain it: no note for a clear 6-field line or descriptor, a warning for
/// lines that parse but probably do not mean what was intended (above all 5-field crontab
/// lines, whose first field is read as the second), and a hint for lines that do not parse.
pub fn diagnose(spec: &str) -> ScheduleDiagnosis {
    match parse(spec) {
        Ok(schedule) => {
            let (warning, suggestion) = warn_about(spec, &schedule);
            ScheduleDiagnosis::Valid {
                schedule,
                warning,
                suggestion,
            }
        }
        Err(error) => {
            let (hint, suggestion) = hint_for(spec, &error);
            ScheduleDiagnosis::Invalid {
                error,
                hint,
                suggestion,
            }
        }
    }
}

/// [`diagnose`] as validation diagnostics about the field at `path` (e.g. `spec.schedule`):
/// nothing, one warning, or one error with its hint.
pub fn diagnostics(spec: &str, path: &str) -> Vec<Diagnostic> {
    match diagnose(spec) {
        ScheduleDiagnosis::Valid { warning: None, .. } => Vec::new(),
        ScheduleDiagnosis::Valid {
            warning: Some(warning),
            ..
        } => vec![Diagnostic::warning(path, warning)],
        ScheduleDiagnosis::Invalid { error, hint, .. } => {
            vec![Diagnostic::error(path, error.to_string()).with_hint(hint)]
        }
    }
}

/// The 6-field line a 5-field crontab line most likely meant (`0 ` in front, with a crontab
/// day-of-week 7 turned into 0), if it parses; the flag says whether 7 was turned into 0.
fn crontab_suggestion(words: &[&str]) -> Option<(String, Schedule, bool)> {
    let [_, _, _, _, dow] = words else {
        return None;
    };
    let line = format!("0 {}", words.join(" "));
    if let Ok(schedule) = parse(&line) {
        return Some((line, schedule, false));
    }
    let fixed_dow = sunday_as_zero(dow)?;
    let mut fixed: Vec<&str> = words.to_vec();
    if let Some(last) = fixed.last_mut() {
        *last = &fixed_dow;
    }
    let line = format!("0 {}", fixed.join(" "));
    parse(&line).ok().map(|schedule| (line, schedule, true))
}

/// A day-of-week field with crontab's Sunday-as-7 written as 0, if it has any.
fn sunday_as_zero(dow: &str) -> Option<String> {
    let mut changed = false;
    let items: Vec<String> = dow
        .split(',')
        .map(|item| {
            if item == "7" {
                changed = true;
                return "0".to_string();
            }
            if let Some(start) = item.strip_suffix("-7") {
                if !start.is_empty() && !start.contains(['-', '/']) {
                    changed = true;
                    if start == "0" || start.eq_ignore_ascii_case("sun") {
                        return "0-6".to_string();
                    }
                    return format!("{start}-6,0");
                }
            }
            item.to_string()
        })
        .collect();
    changed.then(|| items.join(","))
}

fn warn_about(spec: &str, schedule: &Schedule) -> (Option<String>, Option<String>) {
    if let Some(reason) = schedule.never_reason() {
        return (Some(format!("this schedule never runs: {reason}")), None);
    }
    if let Timing::Every {
        seconds,
        exact: false,
    } = schedule.timing
    {
        return (
            Some(format!(
                "@every only counts whole seconds (at least one): this runs every {}",
                duration_text(seconds)
            )),
            None,
        );
    }
    if !schedule.is_five_field() {
        return (None, None);
    }
    let words: Vec<&str> = spec.split_whitespace().collect();
    let meaning = schedule.describe();
    let line = words.join(" ");
    match crontab_suggestion(&words) {
        Some((suggested, meant, seven)) => {
            let seven = if seven {
                " (day-of-week 7 written 0: Sunday is 0 here)"
            } else {
                ""
            };
            (
                Some(format!(
                    "this line has 5 fields; pgherd (like CloudNativePG) reads the first field as \
                     seconds, so `{line}` runs {meaning}; if it is a crontab line (minute hour \
                     day-of-month month day-of-week), you probably meant `{suggested}`{seven}, \
                     which runs {}",
                    meant.describe()
                )),
                Some(suggested),
            )
        }
        None => {
            let explicit = format!("{line} *");
            (
                Some(format!(
                    "this line has 5 fields, read as second minute hour day-of-month month with \
                     any day of week: it runs {meaning}; write all 6 fields ({FIELD_ORDER}) to \
                     say so: `{explicit}`"
                )),
                Some(explicit),
            )
        }
    }
}

fn hint_for(spec: &str, error: &ScheduleError) -> (String, Option<String>) {
    let generic = format!(
        "write 6 fields ({FIELD_ORDER}), e.g. `0 0 2 * * *` for 02:00:00 every day, or a \
         descriptor such as @daily"
    );
    let trimmed = spec.trim();
    let whitespace_fix = || {
        (trimmed != spec && parse(trimmed).is_ok()).then(|| {
            (
                format!(
                    "remove the whitespace around the schedule: a descriptor must start the \
                     value and nothing may follow it: `{trimmed}`"
                ),
                Some(trimmed.to_string()),
            )
        })
    };
    let words: Vec<&str> = spec.split_whitespace().collect();
    match error {
        ScheduleError::Empty => (generic, None),
        ScheduleError::FieldCount { found } => {
            if let Some(fix) = whitespace_fix() {
                return fix;
            }
            if let [word] = words.as_slice() {
                let candidates = DESCRIPTORS.iter().map(|d| d.trim_start_matches('@'));
                if let Some(name) = did_you_mean(word.trim_start_matches('@'), candidates) {
                    if name != "every" {
                        let line = format!("@{name}");
                        return (format!("did you mean `{line}`?"), Some(line));
                    }
                }
            }
            if *found == 7 {
                let line = words.get(..6).map(|w| w.join(" ")).unwrap_or_default();
                if let Ok(schedule) = parse(&line) {
                    return (
                        format!(
                            "pgherd (like CloudNativePG) has no year field; without it: `{line}` \
                             ({})",
                            schedule.describe()
                        ),
                        Some(line),
                    );
                }
            }
            (generic, None)
        }
        ScheduleError::Field { field, problem, .. } => {
            if let Some((line, schedule, seven)) = crontab_suggestion(&words) {
                let seven = if seven {
                    ", with day-of-week 7 written 0 (Sunday is 0 here)"
                } else {
                    ""
                };
                return (
                    format!(
                        "this looks like a 5-field crontab line; pgherd (like CloudNativePG) reads \
                         the first field as seconds; you probably meant `{line}` ({}){seven}",
                        schedule.describe()
                    ),
                    Some(line),
                );
            }
            let mut hint = format!(
                "the {field} field takes {}, `*` or `?`, ranges such as 1-5, steps such as */10 \
                 or 1-5/2, and comma-separated lists; the fields are {FIELD_ORDER}",
                field.accepted()
            );
            if words.len() == 5 {
                hint.push_str(" (with 5 fields, day-of-week is left out)");
            }
            if *field == Field::DayOfWeek && *problem == (FieldProblem::OutOfRange { value: 7 }) {
                let fixed = words
                    .get(5)
                    .and_then(|dow| sunday_as_zero(dow))
                    .and_then(|dow| {
                        let mut fixed: Vec<&str> = words.clone();
                        let last = fixed.last_mut()?;
                        *last = &dow;
                        let line = fixed.join(" ");
                        parse(&line).ok().map(|_| line)
                    });
                if let Some(line) = fixed {
                    return (
                        format!("Sunday is 0, not 7, in day-of-week (0-6 or SUN-SAT): `{line}`"),
                        Some(line),
                    );
                }
            }
            (hint, None)
        }
        ScheduleError::UnrecognizedDescriptor { descriptor } => {
            if let Some(fix) = whitespace_fix() {
                return fix;
            }
            if descriptor.starts_with("@every") {
                return (every_hint(), None);
            }
            if let Some(name) = did_you_mean(descriptor, DESCRIPTORS) {
                if name != "@every" {
                    return (format!("did you mean `{name}`?"), Some(name.to_string()));
                }
            }
            (
                format!(
                    "the descriptors are {} followed by a duration; or write 6 fields \
                     ({FIELD_ORDER})",
                    DESCRIPTORS.join(", ")
                ),
                None,
            )
        }
        ScheduleError::Duration { .. } | ScheduleError::NonPositiveInterval { .. } => {
            whitespace_fix().unwrap_or_else(|| (every_hint(), None))
        }
    }
}

fn every_hint() -> String {
    "write `@every`, one space, and a Go duration greater than zero, such as `@every 1h30m` or \
     `@every 90s` (units h, m, s, ms, us, ns)"
        .to_string()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use proptest::prelude::*;

    fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, s).unwrap()
    }

    fn next(spec: &str, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        parse(spec).unwrap().next_after(t)
    }

    fn describe(spec: &str) -> String {
        parse(spec).unwrap().describe()
    }

    fn field_error(spec: &str) -> (Field, String, FieldProblem) {
        match parse(spec) {
            Err(ScheduleError::Field {
                field,
                token,
                problem,
            }) => (field, token, problem),
            other => panic!("{spec:?}: expected a field error, got {other:?}"),
        }
    }

    #[test]
    fn crontab_line_with_month_zero_is_invalid_and_hinted() {
        let error = parse("0 2 * * 0").unwrap_err();
        assert_eq!(
            error,
            ScheduleError::Field {
                field: Field::Month,
                token: "0".into(),
                problem: FieldProblem::OutOfRange { value: 0 },
            }
        );
        assert_eq!(
            error.to_string(),
            "month field \"0\": 0 is out of range 1-12"
        );
        match diagnose("0 2 * * 0") {
            ScheduleDiagnosis::Invalid {
                hint, suggestion, ..
            } => {
                assert_eq!(suggestion.as_deref(), Some("0 0 2 * * 0"));
                assert_eq!(
                    hint,
                    "this looks like a 5-field crontab line; pgherd (like CloudNativePG) reads the \
                     first field as seconds; you probably meant `0 0 2 * * 0` (at 02:00:00, every \
                     Sunday)"
                );
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(describe("0 0 2 * * 0"), "at 02:00:00, every Sunday");
    }

    #[test]
    fn five_fields_are_seconds_first() {
        let s = parse("0 2 * * *").unwrap();
        assert_eq!(s.field_count(), Some(5));
        assert!(s.is_five_field());
        assert_eq!(
            s.describe(),
            "at second 0 of minute 2 of every hour (hh:02:00), every day"
        );
        assert_eq!(
            s.next_after(utc(2026, 10, 9, 6, 58, 0)),
            Some(utc(2026, 10, 9, 7, 2, 0))
        );
        match diagnose("0 2 * * *") {
            ScheduleDiagnosis::Valid {
                warning: Some(w),
                suggestion,
                ..
            } => {
                assert_eq!(suggestion.as_deref(), Some("0 0 2 * * *"));
                assert!(w.contains("reads the first field as seconds"), "{w}");
                assert!(w.contains("at second 0 of minute 2 of every hour"), "{w}");
                assert!(w.contains("you probably meant `0 0 2 * * *`"), "{w}");
                assert!(w.contains("which runs at 02:00:00, every day"), "{w}");
            }
            other => panic!("{other:?}"),
        }
        // A 5-field line whose crontab reading cannot be a 6-field line: made explicit.
        match diagnose("0 30 * * *") {
            ScheduleDiagnosis::Valid {
                warning: Some(w),
                suggestion,
                ..
            } => {
                assert_eq!(suggestion.as_deref(), Some("0 30 * * * *"));
                assert!(w.contains("write all 6 fields"), "{w}");
            }
            other => panic!("{other:?}"),
        }
        // Crontab's Sunday = 7.
        match diagnose("0 2 * * 7") {
            ScheduleDiagnosis::Valid {
                warning: Some(w),
                suggestion,
                ..
            } => {
                assert_eq!(suggestion.as_deref(), Some("0 0 2 * * 0"));
                assert!(w.contains("every Sunday"), "{w}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn six_fields_and_descriptors_have_no_note() {
        for spec in ["0 0 2 * * *", "@daily", "@every 1h", "*/5 * * * * *"] {
            match diagnose(spec) {
                ScheduleDiagnosis::Valid {
                    warning: None,
                    suggestion: None,
                    schedule,
                } => assert_ne!(schedule.field_count(), Some(5)),
                other => panic!("{spec}: {other:?}"),
            }
            assert!(diagnostics(spec, "spec.schedule").is_empty());
        }
        assert_eq!(parse("0 0 2 * * *").unwrap().field_count(), Some(6));
        assert_eq!(parse("@daily").unwrap().field_count(), None);
    }

    #[test]
    fn descriptors() {
        let t = utc(2024, 5, 17, 13, 45, 30);
        let cases = [
            (
                "@yearly",
                utc(2025, 1, 1, 0, 0, 0),
                "at 00:00:00, on January 1",
            ),
            (
                "@annually",
                utc(2025, 1, 1, 0, 0, 0),
                "at 00:00:00, on January 1",
            ),
            (
                "@monthly",
                utc(2024, 6, 1, 0, 0, 0),
                "at 00:00:00, on day 1 of every month",
            ),
            // 2024-05-17 is a Friday.
            (
                "@weekly",
                utc(2024, 5, 19, 0, 0, 0),
                "at 00:00:00, every Sunday",
            ),
            (
                "@daily",
                utc(2024, 5, 18, 0, 0, 0),
                "at 00:00:00, every day",
            ),
            (
                "@midnight",
                utc(2024, 5, 18, 0, 0, 0),
                "at 00:00:00, every day",
            ),
            (
                "@hourly",
                utc(2024, 5, 17, 14, 0, 0),
                "at second 0 of minute 0 of every hour (hh:00:00), every day",
            ),
        ];
        for (spec, expected, text) in cases {
            let s = parse(spec).unwrap();
            assert_eq!(s.next_after(t), Some(expected), "{spec}");
            assert_eq!(s.describe(), text, "{spec}");
            assert_eq!(s.field_count(), None);
            assert_eq!(s.interval(), None);
        }
    }

    #[test]
    fn every() {
        let s = parse("@every 1h30m").unwrap();
        assert_eq!(s.interval(), Some(std::time::Duration::from_secs(5400)));
        let t = utc(2024, 1, 1, 10, 0, 0) + TimeDelta::milliseconds(250);
        assert_eq!(s.next_after(t), Some(utc(2024, 1, 1, 11, 30, 0)));
        assert!(s.describe().starts_with("every 1h30m "), "{}", s.describe());
        let secs = |spec: &str| parse(spec).unwrap().interval().unwrap().as_secs();
        assert_eq!(secs("@every 90s"), 90);
        assert_eq!(secs("@every 1.5h"), 5400);
        assert_eq!(secs("@every 2m3.9s"), 123);
        assert_eq!(secs("@every 500ms"), 1);
        assert_eq!(secs("@every 1500000us"), 1);
        assert_eq!(secs("@every 1µs"), 1);
        assert_eq!(secs("@every .5h"), 1800);
        assert_eq!(secs("@every +1h"), 3600);
        assert!(matches!(
            diagnose("@every 500ms"),
            ScheduleDiagnosis::Valid {
                warning: Some(_),
                ..
            }
        ));
        for bad in [
            "@every",
            "@every ",
            "@every 1",
            "@every 1d",
            "@every h",
            "@every 1h ",
            "@every  1h",
            "@every .s",
            "@every 1..5h",
            "@every 99999999999999999999h",
        ] {
            let err = parse(bad).unwrap_err();
            assert!(
                matches!(
                    err,
                    ScheduleError::Duration { .. } | ScheduleError::UnrecognizedDescriptor { .. }
                ),
                "{bad:?}: {err:?}"
            );
            assert!(!diagnose(bad).is_valid());
        }
        for zero in ["@every 0", "@every 0s", "@every -1h", "@every -0"] {
            assert!(
                matches!(parse(zero), Err(ScheduleError::NonPositiveInterval { .. })),
                "{zero}"
            );
        }
        assert_eq!(duration_text(90), "1m30s");
        assert_eq!(duration_text(7200), "2h");
        assert_eq!(duration_text(3605), "1h5s");
    }

    #[test]
    fn unrecognized_descriptors() {
        let err = parse("@fortnightly").unwrap_err();
        assert_eq!(err.to_string(), "unrecognized descriptor \"@fortnightly\"");
        match diagnose("@Daily") {
            ScheduleDiagnosis::Invalid { suggestion, .. } => {
                assert_eq!(suggestion.as_deref(), Some("@daily"))
            }
            other => panic!("{other:?}"),
        }
        // robfig only looks for a descriptor at the very start and does not trim.
        assert_eq!(
            parse(" @daily").unwrap_err(),
            ScheduleError::FieldCount { found: 1 }
        );
        assert!(parse("@daily ").is_err());
        assert_eq!(diagnose(" @daily ").suggestion(), Some("@daily"));
        assert_eq!(diagnose("daily").suggestion(), Some("@daily"));
    }

    #[test]
    fn names_are_case_insensitive() {
        let a = parse("0 0 0 1 jan-Mar MON,wed,FRI").unwrap();
        let b = parse("0 0 0 1 1-3 1,3,5").unwrap();
        assert_eq!(a.timing, b.timing);
        assert_eq!(
            parse("0 0 0 * DEC SUN").unwrap().timing,
            parse("0 0 0 * 12 0").unwrap().timing
        );
        assert_eq!(
            parse("0 0 0 * * sat").unwrap().timing,
            parse("0 0 0 * * 6").unwrap().timing
        );
        // Names only in month and day-of-week, and not in steps.
        assert_eq!(field_error("0 0 0 jan * *").0, Field::DayOfMonth);
        assert_eq!(
            field_error("0 0 0 * */jan *").2,
            FieldProblem::NotANumber { text: "jan".into() }
        );
        assert_eq!(
            describe("0 0 0 * * MON-FRI"),
            "at 00:00:00, every day from Monday to Friday"
        );
    }

    #[test]
    fn steps_ranges_and_lists() {
        let bits = |spec: &str, field: Field| match parse(spec).unwrap().timing {
            Timing::Fields(f) => f.values(field),
            Timing::Every { .. } => panic!(),
        };
        assert_eq!(bits("*/15 * * * * *", Field::Second), vec![0, 15, 30, 45]);
        assert_eq!(bits("0 10-20/5 * * * *", Field::Minute), vec![10, 15, 20]);
        assert_eq!(bits("0 0 20/2 * * *", Field::Hour), vec![20, 22]);
        assert_eq!(
            bits("0 0 1,5-7,23 * * *", Field::Hour),
            vec![1, 5, 6, 7, 23]
        );
        assert_eq!(bits("0 0 0 ? * *", Field::DayOfMonth).len(), 31);
        assert_eq!(bits("0 0 0 * */5 *", Field::Month), vec![1, 6, 11]);
        assert_eq!(bits("0 0 0 * * 1-5/2", Field::DayOfWeek), vec![1, 3, 5]);
        assert_eq!(bits("0 0 +5 * * *", Field::Hour), vec![5]);
        assert_eq!(bits("0 0 05 * * *", Field::Hour), vec![5]);
        // Empty list items are skipped, like Go's strings.FieldsFunc.
        assert_eq!(bits("0 0 1,,2, * * *", Field::Hour), vec![1, 2]);
        // Like robfig, `*-x` is `*`.
        assert_eq!(bits("0 0 *-3 * * *", Field::Hour).len(), 24);

        assert_eq!(describe("*/5 * * * * *"), "every 5 seconds, every day");
        assert_eq!(describe("* * * * * *"), "every second, every day");
        assert_eq!(
            describe("0 * * * * *"),
            "at second 0 of every minute, every day"
        );
        assert_eq!(
            describe("0 */15 * * * *"),
            "at second 0 of minutes 0, 15, 30 and 45 of every hour \
             (hh:00:00, hh:15:00, hh:30:00 and hh:45:00), every day"
        );
        assert_eq!(
            describe("0 30 9-17 * * 1-5"),
            "at second 0 of minute 30 of hours 9-17 (hh:30:00), every day from Monday to Friday"
        );
        assert_eq!(
            describe("0 0 2,14 * * *"),
            "at 02:00:00 and 14:00:00, every day"
        );
        assert_eq!(
            describe("*/7 0 0 * * *"),
            "at seconds 0, 7, 14, ..., 56 of minute 0 of hour 0, every day"
        );
        assert_eq!(
            describe("0 0 3 1,15 * *"),
            "at 03:00:00, on days 1 and 15 of every month"
        );
        assert_eq!(
            describe("0 0 3 1 1-3 *"),
            "at 03:00:00, on day 1 of every month from January to March"
        );
        assert_eq!(
            describe("0 0 3 * 1,7 SUN"),
            "at 03:00:00, every Sunday in January and July"
        );
    }

    #[test]
    fn day_of_month_and_week_or_rule() {
        // Both restricted: either is enough. 2024-01-08 is a Monday.
        let or = parse("0 0 0 1 * MON").unwrap();
        assert_eq!(
            or.next_after(utc(2024, 1, 8, 0, 0, 0)),
            Some(utc(2024, 1, 15, 0, 0, 0))
        );
        assert_eq!(
            or.next_after(utc(2024, 1, 29, 0, 0, 0)),
            Some(utc(2024, 2, 1, 0, 0, 0))
        );
        assert_eq!(
            or.describe(),
            "at 00:00:00, on day 1 of every month, and also every Monday"
        );
        // 2024-09-13 is a Friday the 13th; the OR rule fires on 2024-01-05 (a Friday) first.
        assert_eq!(
            next("0 0 0 13 * FRI", utc(2024, 1, 1, 0, 0, 0)),
            Some(utc(2024, 1, 5, 0, 0, 0))
        );
        // A `*` in either field (even `*/2`) makes both required.
        let and = parse("0 0 0 */2 * MON").unwrap();
        assert_eq!(
            and.next_after(utc(2024, 1, 2, 0, 0, 0)),
            Some(utc(2024, 1, 15, 0, 0, 0))
        );
        assert_eq!(
            and.describe(),
            "at 00:00:00, on days 1, 3, 5, ..., 31 of every month, when that day is a Monday"
        );
        assert_eq!(
            next("0 0 0 ? * FRI", utc(2024, 1, 1, 0, 0, 0)),
            Some(utc(2024, 1, 5, 0, 0, 0))
        );
        // Restricted but full day of month: every day.
        assert_eq!(
            next("0 0 0 1-31 * MON", utc(2024, 1, 2, 0, 0, 0)),
            Some(utc(2024, 1, 3, 0, 0, 0))
        );
    }

    #[test]
    fn next_after_details() {
        // Strictly after, at whole seconds.
        let t = utc(2024, 1, 1, 2, 0, 0);
        assert_eq!(next("0 0 2 * * *", t), Some(utc(2024, 1, 2, 2, 0, 0)));
        assert_eq!(next("0 0 2 * * *", t - TimeDelta::milliseconds(1)), Some(t));
        assert_eq!(
            next("* * * * * *", t + TimeDelta::milliseconds(999)),
            Some(t + TimeDelta::seconds(1))
        );
        // Year and month wraps.
        assert_eq!(
            next("30 15 10 31 12 *", utc(2024, 12, 31, 10, 15, 30)),
            Some(utc(2025, 12, 31, 10, 15, 30))
        );
        // February 29th: the next leap year.
        assert_eq!(
            next("0 0 0 29 2 *", utc(2024, 3, 1, 0, 0, 0)),
            Some(utc(2028, 2, 29, 0, 0, 0))
        );
        // Days that never come.
        assert_eq!(next("0 0 0 30 2 *", t), None);
        assert_eq!(next("0 0 0 31 4,6,9,11 *", t), None);
        assert_eq!(next("0 0 , * * *", t), None);
        assert_eq!(
            describe("0 0 0 30 2 *"),
            "never: day 30 of the month never falls in February"
        );
        assert!(matches!(
            diagnose("0 0 0 31 4 *"),
            ScheduleDiagnosis::Valid {
                warning: Some(_),
                ..
            }
        ));
        // Against brute force, second by second.
        for spec in ["*/7 */13 * * * *", "5,50 59 23 * * *", "0-3 1/20 * 1 * 1"] {
            let s = parse(spec).unwrap();
            let Timing::Fields(f) = s.timing else {
                panic!()
            };
            let mut t = utc(2023, 12, 31, 22, 0, 0);
            for _ in 0..20 {
                let got = s.next_after(t).unwrap();
                let mut probe = t + TimeDelta::seconds(1);
                while !(f.has(Field::Second, probe.second())
                    && f.has(Field::Minute, probe.minute())
                    && f.has(Field::Hour, probe.hour())
                    && f.has(Field::Month, probe.month())
                    && f.day_matches(probe.date_naive()))
                {
                    probe += TimeDelta::seconds(1);
                }
                assert_eq!(got, probe, "{spec} after {t}");
                t = got;
            }
        }
    }

    #[test]
    fn invalid_field_counts() {
        for (spec, found) in [("* * * *", 4), ("   ", 0), ("0 0 0 * * * 2024", 7)] {
            let err = parse(spec).unwrap_err();
            assert_eq!(err, ScheduleError::FieldCount { found });
            assert_eq!(
                err.to_string(),
                format!("expected 5 to 6 fields, found {found}")
            );
        }
        assert_eq!(parse("").unwrap_err(), ScheduleError::Empty);
        assert_eq!(
            diagnose("0 0 2 * * ? 2024").suggestion(),
            Some("0 0 2 * * ?")
        );
        let d = diagnostics("* * * *", "spec.schedule");
        assert_eq!(d.len(), 1);
        assert!(d[0].is_error());
        assert!(d[0].hint.as_deref().unwrap().contains("6 fields"));
    }

    #[test]
    fn invalid_fields() {
        use FieldProblem::*;
        let cases: &[(&str, Field, &str, FieldProblem)] = &[
            (
                "60 * * * * *",
                Field::Second,
                "60",
                OutOfRange { value: 60 },
            ),
            (
                "0 60 * * * *",
                Field::Minute,
                "60",
                OutOfRange { value: 60 },
            ),
            ("0 0 24 * * *", Field::Hour, "24", OutOfRange { value: 24 }),
            (
                "0 0 0 0 * *",
                Field::DayOfMonth,
                "0",
                OutOfRange { value: 0 },
            ),
            (
                "0 0 0 32 * *",
                Field::DayOfMonth,
                "32",
                OutOfRange { value: 32 },
            ),
            ("0 0 0 * 13 *", Field::Month, "13", OutOfRange { value: 13 }),
            (
                "0 0 0 * * 7",
                Field::DayOfWeek,
                "7",
                OutOfRange { value: 7 },
            ),
            (
                "0 0 5-3 * * *",
                Field::Hour,
                "5-3",
                StartAfterEnd { start: 5, end: 3 },
            ),
            ("*/0 * * * * *", Field::Second, "*/0", ZeroStep),
            ("0 1-5/0 * * * *", Field::Minute, "1-5/0", ZeroStep),
            ("0 0 1-2-3 * * *", Field::Hour, "1-2-3", TooManyHyphens),
            ("0 0 */2/3 * * *", Field::Hour, "*/2/3", TooManySlashes),
            (
                "x * * * * *",
                Field::Second,
                "x",
                NotANumber { text: "x".into() },
            ),
            (
                "0 0 1- * * *",
                Field::Hour,
                "1-",
                NotANumber { text: "".into() },
            ),
            (
                "0 0 1,a * * *",
                Field::Hour,
                "a",
                NotANumber { text: "a".into() },
            ),
            (
                "0 0 0 * JANUARY *",
                Field::Month,
                "JANUARY",
                NotANumber {
                    text: "JANUARY".into(),
                },
            ),
            (
                "0 0 0 * * MONDAY",
                Field::DayOfWeek,
                "MONDAY",
                NotANumber {
                    text: "MONDAY".into(),
                },
            ),
            (
                "0 0 1_0 * * *",
                Field::Hour,
                "1_0",
                NotANumber { text: "1_0".into() },
            ),
            (
                "0 */-2 * * * *",
                Field::Minute,
                "*/-2",
                Negative { text: "-2".into() },
            ),
            (
                "0 0 99999999999999999999 * * *",
                Field::Hour,
                "99999999999999999999",
                TooLarge {
                    text: "99999999999999999999".into(),
                },
            ),
            ("0 0 0 * 0 *", Field::Month, "0", OutOfRange { value: 0 }),
        ];
        for (spec, field, token, problem) in cases {
            let (f, t, p) = field_error(spec);
            assert_eq!((f, t.as_str(), &p), (*field, *token, problem), "{spec}");
            let message = parse(spec).unwrap_err().to_string();
            assert!(
                message.starts_with(&format!("{field} field {token:?}: ")),
                "{message}"
            );
            match diagnose(spec) {
                ScheduleDiagnosis::Invalid { hint, .. } => assert!(!hint.is_empty()),
                other => panic!("{spec}: {other:?}"),
            }
        }
        assert_eq!(
            parse("0 0 5-3 * * *").unwrap_err().to_string(),
            "hour field \"5-3\": the range starts at 5, after its end 3"
        );
        // The first bad field, in order, is reported.
        assert_eq!(field_error("60 60 * * * *").0, Field::Second);
        // `-0` as a step is 0.
        assert_eq!(field_error("*/-0 * * * * *").2, ZeroStep);
        // Sunday as 7 in a 6-field line.
        assert_eq!(
            diagnose("0 0 2 * * 1-7").suggestion(),
            Some("0 0 2 * * 1-6,0")
        );
        assert_eq!(diagnose("0 0 2 * * 7").suggestion(), Some("0 0 2 * * 0"));
    }

    proptest! {
        #[test]
        fn arbitrary_strings_never_panic(spec in any::<String>()) {
            let _ = diagnose(&spec);
            if let Ok(s) = parse(&spec) {
                let _ = s.describe();
                let _ = s.next_after(utc(2024, 2, 28, 23, 59, 59));
            }
        }

        #[test]
        fn cron_like_strings_never_panic(spec in "[0-9*?/,@ a-zA-Z.µ+-]{0,30}") {
            let _ = diagnostics(&spec, "spec.schedule");
            if let Ok(s) = parse(&spec) {
                let _ = s.describe();
                let t = utc(2024, 12, 31, 23, 59, 59);
                if let Some(n) = s.next_after(t) {
                    prop_assert!(n > t);
                }
            }
        }

        #[test]
        fn field_lines_never_panic(
            fields in proptest::collection::vec("[0-9*?/,A-Za-z-]{1,8}", 5..=6)
        ) {
            let spec = fields.join(" ");
            match diagnose(&spec) {
                ScheduleDiagnosis::Valid { schedule, .. } => {
                    let _ = schedule.describe();
                    let t = DateTime::from_timestamp(i64::MAX / 1_000_000, 0);
                    if let Some(t) = t {
                        let _ = schedule.next_after(t);
                    }
                }
                ScheduleDiagnosis::Invalid { hint, .. } => prop_assert!(!hint.is_empty()),
            }
        }
    }
}
