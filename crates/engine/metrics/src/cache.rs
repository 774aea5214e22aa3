//! Query results kept between scrapes: one entry per (query, database), valid for the query's
//! `cache_seconds` or the exporter's TTL (`metricsQueriesTTL`; zero disables caching). Failed
//! runs are not cached, so the next scrape retries them.

use crate::exposition::Family;
use std::collections::HashMap;
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
struct Entry {
    stored: Instant,
    ttl: Duration,
    families: Vec<Family>,
}

/// Results by (query key, database).
#[derive(Debug, Default)]
pub struct ResultCache {
    entries: HashMap<(String, String), Entry>,
}

impl ResultCache {
    /// The fresh result of `query` in `database`, if any.
    pub fn get(&self, query: &str, database: &str, now: Instant) -> Option<&[Family]> {
        self.entries
            .get(&(query.to_string(), database.to_string()))
            .filter(|e| now.saturating_duration_since(e.stored) < e.ttl)
            .map(|e| e.families.as_slice())
    }

    /// Keep a result for `ttl` (not kept when `ttl` is zero).
    pub fn put(
        &mut self,
        query: &str,
        database: &str,
        families: Vec<Family>,
        ttl: Duration,
        now: Instant,
    ) {
        let key = (query.to_string(), database.to_string());
        if ttl.is_zero() {
            self.entries.remove(&key);
            return;
        }
        self.entries.insert(
            key,
            Entry {
                stored: now,
                ttl,
                families,
            },
        );
    }

    /// Forget entries that expired (databases dropped, queries removed).
    pub fn prune(&mut self, now: Instant) {
        self.entries
            .retain(|_, e| now.saturating_duration_since(e.stored) < e.ttl);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exposition::MetricKind;

    #[test]
    fn entries_expire_and_zero_ttl_disables() {
        let mut cache = ResultCache::default();
        let now = Instant::now();
        let f = vec![Family::new("m", "h", MetricKind::Gauge)];
        cache.put("q", "postgres", f.clone(), Duration::from_secs(30), now);
        assert!(cache.get("q", "postgres", now).is_some());
        assert!(cache.get("q", "app", now).is_none());
        assert!(cache
            .get("q", "postgres", now + Duration::from_secs(31))
            .is_none());
        cache.put("q", "postgres", f, Duration::ZERO, now);
        assert!(cache.get("q", "postgres", now).is_none());
        cache.prune(now);
        assert!(cache.entries.is_empty());
    }
}
