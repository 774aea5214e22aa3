//! The layout of `status` text as CloudNativePG's plugin prints it (its tables go through a
//! tab writer padding every column but the last to its widest cell plus two spaces): labelled
//! fields, tables whose header is underlined with one dash per header character, and Go's
//! way of printing a time and a duration.

use std::fmt::Write;

/// `-` for a missing or empty value.
pub(super) fn dash(v: Option<&str>) -> &str {
    v.filter(|s| !s.is_empty()).unwrap_or("-")
}

/// Lines `label: value`, the values starting two spaces after the longest `label:`.
pub(super) fn fields(out: &mut String, rows: &[(&str, String)]) {
    let width = rows.iter().map(|(l, _)| l.len() + 1).max().unwrap_or(0) + 2;
    for (label, value) in rows {
        let line = format!("{:<width$}{value}", format!("{label}:"));
        let _ = writeln!(out, "{}", line.trim_end());
    }
}

/// A table: the header, a line with as many dashes as each header has characters, the rows;
/// every column but the last padded to its widest cell plus two spaces.
pub(super) fn table(out: &mut String, header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let line = |out: &mut String, cells: &[&str]| {
        let mut s = String::new();
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == cells.len() {
                s.push_str(cell);
            } else {
                let _ = write!(s, "{cell:<w$}  ");
            }
        }
        let _ = writeln!(out, "{}", s.trim_end());
    };
    line(out, header);
    let dashes: Vec<String> = header.iter().map(|h| "-".repeat(h.len())).collect();
    line(out, &dashes.iter().map(String::as_str).collect::<Vec<_>>());
    for row in rows {
        line(out, &row.iter().map(String::as_str).collect::<Vec<_>>());
    }
}

/// A duration in whole seconds the way Go prints one (`1m14s`, `2h0m5s`, `0s`).
pub(super) fn go_duration(seconds: i64) -> String {
    let sign = if seconds < 0 { "-" } else { "" };
    let s = seconds.unsigned_abs();
    let (h, m, s) = (s / 3600, s / 60 % 60, s % 60);
    match (h, m) {
        (0, 0) => format!("{sign}{s}s"),
        (0, _) => format!("{sign}{m}m{s}s"),
        _ => format!("{sign}{h}h{m}m{s}s"),
    }
}

/// An RFC 3339 time the way Go prints a UTC time rounded to the second
/// (`2024-10-08 18:31:57 +0000 UTC`); the text itself when it does not parse.
pub(super) fn go_time(rfc3339: &str) -> String {
    use k8s_openapi::jiff::{Timestamp, Unit};
    rfc3339
        .parse::<Timestamp>()
        .ok()
        .and_then(|t| t.round(Unit::Second).ok())
        .map_or_else(
            || rfc3339.to_string(),
            |t| t.strftime("%Y-%m-%d %H:%M:%S +0000 UTC").to_string(),
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_formats() {
        assert_eq!(go_duration(74), "1m14s");
        assert_eq!(go_duration(124), "2m4s");
        assert_eq!(go_duration(0), "0s");
        assert_eq!(go_duration(3605), "1h0m5s");
        assert_eq!(go_duration(-3), "-3s");
        assert_eq!(
            go_time("2024-10-08T18:31:57.123456Z"),
            "2024-10-08 18:31:57 +0000 UTC"
        );
        assert_eq!(
            go_time("2024-10-08T20:31:56.6+02:00"),
            "2024-10-08 18:31:57 +0000 UTC"
        );
        assert_eq!(go_time("yesterday"), "yesterday");
    }

    #[test]
    fn layout_is_the_tab_writers() {
        let mut out = String::new();
        fields(
            &mut out,
            &[("Name", "a".into()), ("Ready instances", "3".into())],
        );
        assert_eq!(out, "Name:             a\nReady instances:  3\n");
        let mut out = String::new();
        table(
            &mut out,
            &["Name", "State"],
            &[vec!["sandbox-2".into(), "streaming".into()]],
        );
        assert_eq!(
            out,
            "Name       State\n----       -----\nsandbox-2  streaming\n"
        );
    }
}
