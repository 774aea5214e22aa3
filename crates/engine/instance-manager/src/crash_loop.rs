//! Backoff for restarting a PostgreSQL that keeps stopping on its own.

use std::time::{Duration, Instant};

/// Restarts after PostgreSQL stopped on its own: the first at once (a crash should cost no
/// more than crash recovery), then after 1, 2, 4 … up to 30 seconds; forgotten once PostgreSQL
/// has run for a minute.
#[derive(Debug, Default)]
pub(crate) struct CrashLoop {
    pub(crate) exits: u32,
    pub(crate) started: Option<Instant>,
    next_start: Option<Instant>,
}

const CRASH_LOOP_RESET: Duration = Duration::from_secs(60);
const CRASH_LOOP_MAX_PAUSE: Duration = Duration::from_secs(30);

impl CrashLoop {
    pub(crate) fn exited(&mut self, now: Instant) {
        if self
            .started
            .is_some_and(|s| now.duration_since(s) >= CRASH_LOOP_RESET)
        {
            self.exits = 0;
        }
        self.exits += 1;
        let pause = match self.exits {
            0 | 1 => Duration::ZERO,
            n => Duration::from_secs(1 << (n - 2).min(5)).min(CRASH_LOOP_MAX_PAUSE),
        };
        self.next_start = Some(now + pause);
    }

    /// How long to wait before the next start, if at all.
    pub(crate) fn wait(&self, now: Instant) -> Option<Duration> {
        self.next_start
            .filter(|t| *t > now)
            .map(|t| t.duration_since(now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_restart_is_immediate_then_pauses_grow_to_a_cap() {
        let t0 = Instant::now();
        let mut crashes = CrashLoop {
            started: Some(t0),
            ..CrashLoop::default()
        };
        crashes.exited(t0);
        assert_eq!(crashes.wait(t0), None, "a single crash restarts at once");
        let mut pauses = Vec::new();
        for _ in 0..10 {
            crashes.started = Some(t0);
            crashes.exited(t0);
            pauses.push(crashes.wait(t0).unwrap_or_default().as_secs());
        }
        assert_eq!(pauses, [1, 2, 4, 8, 16, 30, 30, 30, 30, 30]);
        assert_eq!(crashes.wait(t0 + Duration::from_secs(31)), None);
    }

    #[test]
    fn a_minute_of_running_forgets_earlier_crashes() {
        let t0 = Instant::now();
        let mut crashes = CrashLoop::default();
        for _ in 0..5 {
            crashes.exited(t0);
        }
        crashes.started = Some(t0);
        crashes.exited(t0 + Duration::from_secs(61));
        assert_eq!(crashes.exits, 1);
        assert_eq!(crashes.wait(t0 + Duration::from_secs(61)), None);
    }
}
