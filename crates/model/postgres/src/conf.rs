//! Rendering the configuration files an instance runs with: `postgresql.conf` settings,
//! `pg_hba.conf` (the operator's fixed rules first, then the user's, then the default
//! password rule) and `pg_ident.conf`. Pure text generation; the instance manager writes the
//! files.

use crate::MajorVersion;
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// A setting value as `postgresql.conf` wants it: single-quoted, with `'` and `\` escaped.
pub fn conf_value(value: &str) -> String {
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "''"))
}

/// `postgresql.conf` text for `settings`, one `name = 'value'` line each, in name order, with
/// a header saying who owns the file.
pub fn render_settings(settings: &BTreeMap<String, String>) -> String {
    let mut out = String::from("# Written by pgherd; changes here are overwritten.\n");
    for (name, value) in settings {
        // Names were validated (crate::guc::is_valid_name) before reaching here.
        let _ = writeln!(out, "{name} = {}", conf_value(value));
    }
    out
}

/// Roles the operator owns and authenticates by certificate or local peer.
pub const STREAMING_REPLICA_USER: &str = "streaming_replica";
/// The PgBouncer authentication role.
pub const POOLER_USER: &str = "cnpg_pooler_pgbouncer";
/// The metrics exporter role.
pub const METRICS_USER: &str = "cnpg_metrics_exporter";

/// `pg_hba.conf`: fixed rules (first match wins, so they cannot be overridden), the user's
/// lines, then password authentication for everyone else (`scram-sha-256`; `md5` before 14).
pub fn render_hba(user_lines: &[String], major: MajorVersion) -> String {
    let mut out =
        String::from("# Written by pgherd; changes here are overwritten.\n# Fixed rules\n");
    let _ = writeln!(out, "local all {METRICS_USER} peer map={METRICS_USER}");
    out.push_str("local all all peer map=local\n");
    // A clone through the socket by the PostgreSQL OS user (tools built without TLS).
    out.push_str("local replication postgres peer map=local\n");
    let _ = writeln!(
        out,
        "hostssl postgres {STREAMING_REPLICA_USER} all cert map=cnpg_streaming_replica"
    );
    let _ = writeln!(
        out,
        "hostssl replication {STREAMING_REPLICA_USER} all cert map=cnpg_streaming_replica"
    );
    let _ = writeln!(out, "hostssl all {POOLER_USER} all cert map={POOLER_USER}");
    out.push_str("# User rules (spec.postgresql.pg_hba)\n");
    for line in user_lines {
        out.push_str(line.trim_end());
        out.push('\n');
    }
    let method = if major.0 < 14 { "md5" } else { "scram-sha-256" };
    out.push_str("# Default rule\n");
    let _ = writeln!(out, "host all all all {method}");
    out
}

/// `pg_ident.conf`: the fixed maps, then the user's lines. `os_user` is the operating-system
/// user Postgres and the instance manager run as.
pub fn render_ident(os_user: &str, user_lines: &[String]) -> String {
    let mut out = String::from("# Written by pgherd; changes here are overwritten.\n");
    let _ = writeln!(out, "local {os_user} postgres");
    let _ = writeln!(
        out,
        "cnpg_streaming_replica {STREAMING_REPLICA_USER} {STREAMING_REPLICA_USER}"
    );
    let _ = writeln!(out, "{POOLER_USER} {POOLER_USER} {POOLER_USER}");
    let _ = writeln!(out, "{METRICS_USER} {os_user} {METRICS_USER}");
    for line in user_lines {
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// A libpq connection string from `key=value` pairs; values are single-quoted with `'` and `\`
/// escaped, so no value can inject another parameter.
pub fn conninfo(pairs: &[(&str, &str)]) -> String {
    conninfo_of(pairs.iter().copied())
}

/// [`conninfo`] from any pairs (a map of `connectionParameters`, in its order).
pub fn conninfo_of<K: AsRef<str>, V: AsRef<str>>(
    pairs: impl IntoIterator<Item = (K, V)>,
) -> String {
    pairs
        .into_iter()
        .map(|(k, v)| {
            format!(
                "{}='{}'",
                k.as_ref(),
                v.as_ref().replace('\\', "\\\\").replace('\'', "\\'")
            )
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Whether `key` can be a libpq connection keyword (lower-case letters and `_`): anything else
/// could not be one and could end the pair it is in.
pub fn is_conninfo_keyword(key: &str) -> bool {
    !key.is_empty() && key.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
}

/// A password file line (`.pgpass`) matching every host, port, database and user, with `:` and
/// `\` escaped as libpq reads them.
pub fn pgpass_line(password: &str) -> String {
    format!(
        "*:*:*:*:{}\n",
        password.replace('\\', "\\\\").replace(':', "\\:")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hba::parse_record;

    #[test]
    fn settings_are_quoted() {
        let mut s = BTreeMap::new();
        s.insert("shared_buffers".to_string(), "128MB".to_string());
        s.insert("search_path".to_string(), r#""$user", public"#.to_string());
        s.insert("x.y".to_string(), r"it's a\b".to_string());
        let text = render_settings(&s);
        assert!(text.contains("shared_buffers = '128MB'\n"));
        assert!(text.contains("search_path = '\"$user\", public'\n"));
        assert!(text.contains(r"x.y = 'it''s a\\b'"));
    }

    #[test]
    fn hba_fixed_rules_come_first_and_every_line_parses() {
        let text = render_hba(
            &["host all all 10.0.0.0/8 md5".to_string()],
            MajorVersion(15),
        );
        let lines: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
        assert!(lines[0].starts_with("local all cnpg_metrics_exporter"));
        assert_eq!(lines[lines.len() - 2], "host all all 10.0.0.0/8 md5");
        assert_eq!(lines[lines.len() - 1], "host all all all scram-sha-256");
        for line in lines {
            parse_record(line).unwrap_or_else(|e| panic!("{line}: {e}"));
        }
        assert!(render_hba(&[], MajorVersion(13)).ends_with("host all all all md5\n"));
    }

    #[test]
    fn ident_maps() {
        let text = render_ident("postgres", &[]);
        assert!(text.contains("local postgres postgres\n"));
        assert!(text.contains("cnpg_metrics_exporter postgres cnpg_metrics_exporter\n"));
    }

    #[test]
    fn values_are_quoted() {
        assert_eq!(
            conninfo(&[("host", "127.0.0.1"), ("application_name", "a' host=evil")]),
            r"host='127.0.0.1' application_name='a\' host=evil'"
        );
    }
}
