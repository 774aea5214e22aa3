//! Durations as CloudNativePG writes them (Go's notation: `30s`, `1m30s`, `1.5h`, `250ms`),
//! used by `metricsQueriesTTL` and DURATION columns. PostgreSQL's `HH:MM:SS[.fff]` interval
//! text is accepted too.

use std::time::Duration;

/// Parse a duration; `None` when it is not one (or negative).
pub fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    if text.contains(':') {
        return parse_clock(text);
    }
    pgherd_api::duration::parse_go_duration(text).ok()
}

fn parse_clock(text: &str) -> Option<Duration> {
    let parts: Vec<&str> = text.split(':').collect();
    let [h, m, s] = parts.as_slice() else {
        return None;
    };
    let total =
        h.parse::<f64>().ok()? * 3600.0 + m.parse::<f64>().ok()? * 60.0 + s.parse::<f64>().ok()?;
    Duration::try_from_secs_f64(total).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_and_postgres_notation() {
        assert_eq!(parse_duration("30s"), Some(Duration::from_secs(30)));
        assert_eq!(parse_duration("1m30s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("1.5h"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_duration("0"), Some(Duration::ZERO));
        assert_eq!(
            parse_duration("00:00:01.5"),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(parse_duration("30"), None);
        assert_eq!(parse_duration("-1s"), None);
        assert_eq!(parse_duration(""), None);
    }
}
