//! What PostgreSQL's own log files say about why it stopped: the last `FATAL:` message, and
//! a standby's timeline divergence, read from the end of the newest files (plain or CSV).

use std::path::{Path, PathBuf};

/// The last `FATAL:` message in the log files of `dir`, the newest file first.
/// How much of the end of a log file is searched for its last FATAL message.
const LOG_TAIL_BYTES: u64 = 256 * 1024;

/// The last `bytes` of the file at `path` (all of it when shorter), as text.
fn log_tail(path: &Path, bytes: u64) -> Option<String> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = std::fs::File::open(path).ok()?;
    let len = file.metadata().ok()?.len();
    file.seek(SeekFrom::Start(len.saturating_sub(bytes))).ok()?;
    let mut raw = Vec::new();
    file.read_to_end(&mut raw).ok()?;
    Some(String::from_utf8_lossy(&raw).into_owned())
}

pub(crate) fn last_fatal_in(dir: &Path) -> Option<String> {
    let mut files: Vec<(std::time::SystemTime, PathBuf)> = std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .collect();
    files.sort();
    files.iter().rev().find_map(|(_, path)| {
        let text = log_tail(path, LOG_TAIL_BYTES)?;
        text.lines().rev().find_map(|line| {
            let at = line.find("FATAL")?;
            let message = line[at..]
                .trim_start_matches("FATAL")
                .trim_start_matches([':', ',', ' ', '"']);
            // csvlog: FATAL,<sqlstate>,"<message>",... (fields quoted only when they must be)
            let message = match message.split_once(',') {
                Some((sqlstate, rest))
                    if sqlstate.trim_matches('"').len() == 5
                        && sqlstate
                            .trim_matches('"')
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric()) =>
                {
                    // The message, then its DETAIL when there is one (the useful part of
                    // "recovery aborted because of insufficient parameter settings").
                    let rest = rest.trim_start_matches('"');
                    let (text, after) = rest.split_once("\",").unwrap_or((rest, ""));
                    let detail = after
                        .strip_prefix('"')
                        .and_then(|d| d.split("\",").next())
                        .filter(|d| !d.is_empty());
                    return Some(match detail {
                        Some(detail) => format!("{text}: {detail}"),
                        None => text.trim_end_matches('"').to_string(),
                    });
                }
                _ => message,
            };
            Some(message.trim_end_matches('"').to_string())
        })
    })
}

/// See [`Postgres::divergence`].
pub(crate) fn divergence_in(dir: &Path) -> Option<String> {
    const MARKERS: &[&str] = &[
        "forked off current database system timeline",
        "is not a child of this server's history",
        "is not in this server's history",
    ];
    let newest = std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .max()?;
    // Recent lines only (a standby retries every second, and logs other lines between): an
    // old divergence already dealt with must not count.
    let text = log_tail(&newest.1, 16 * 1024)?;
    text.lines()
        .rev()
        .take(30)
        .find(|l| MARKERS.iter().any(|m| l.contains(m)))
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_standby_whose_history_diverged_is_recognised_from_recent_lines_only() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("postgres.csv");
        let forked = "2026-12-05 22:01:50.1 GMT,,,9,,,,LOG,00000,\"new timeline 35 forked off current database system timeline 34 before current recovery point 0/12030628\",,,,,,,,,\"\",\"startup\"\n";
        let streaming = "2026-12-05 22:01:51.1 GMT,,,9,,,,LOG,00000,\"started streaming WAL from primary at 0/12000000 on timeline 34\",,,,,,,,,\"\",\"walreceiver\"\n";
        std::fs::write(&log, format!("{forked}{streaming}")).unwrap();
        assert!(divergence_in(dir.path()).is_some_and(|l| l.contains("forked off")));
        std::fs::write(&log, format!("{forked}{}", streaming.repeat(40))).unwrap();
        assert_eq!(divergence_in(dir.path()), None, "long past");
    }

    #[test]
    fn the_last_fatal_message_is_found_in_plain_and_csv_logs() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("postgres.log");
        std::fs::write(&log, "2026-12-02 01:00:00 GMT [1] LOG:  starting\n2026-12-02 01:00:00 GMT [1] FATAL:  configuration file contains errors\n").unwrap();
        assert_eq!(
            last_fatal_in(dir.path()).as_deref(),
            Some("configuration file contains errors")
        );
        std::thread::sleep(Duration::from_millis(20));
        std::fs::write(
            dir.path().join("postgres.csv"),
            "2026-12-02 01:00:01.000 GMT,,,7,,1,,2026-12-02 01:00:00 GMT,,0,FATAL,\"XX000\",\"recovery ended before configured recovery target was reached\",,,,,,,,,\"\",\"startup\",,0\n",
        )
        .unwrap();
        assert_eq!(
            last_fatal_in(dir.path()).as_deref(),
            Some("recovery ended before configured recovery target was reached")
        );
        // As PostgreSQL writes it: severity and SQLSTATE unquoted.
        std::thread::sleep(Duration::from_millis(20));
        std::fs::write(
            dir.path().join("postgres.1.csv"),
            "2026-12-05 22:00:01.000 GMT,,,7,,1,,2026-12-05 22:00:00 GMT,,0,FATAL,22023,\"recovery aborted because of insufficient parameter settings\",\"max_connections = 100 is a lower setting than on the primary server, where its value was 150.\",,,,,,,,\"\",\"startup\",,0\n",
        )
        .unwrap();
        assert_eq!(
            last_fatal_in(dir.path()).as_deref(),
            Some("recovery aborted because of insufficient parameter settings: max_connections = 100 is a lower setting than on the primary server, where its value was 150.")
        );
    }

    #[test]
    fn only_the_end_of_a_long_log_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("postgres.log");
        let filler = "2026-12-02 01:00:00 GMT [1] LOG:  checkpoint complete\n".repeat(10_000);
        std::fs::write(&log, format!("[1] FATAL:  long ago\n{filler}")).unwrap();
        assert_eq!(last_fatal_in(dir.path()), None, "beyond the tail");
        std::fs::write(
            &log,
            format!("{filler}[2] FATAL:  could not start WAL streaming\n"),
        )
        .unwrap();
        assert_eq!(
            last_fatal_in(dir.path()).as_deref(),
            Some("could not start WAL streaming")
        );
    }
}
