//! Slowing down password guessing: failed logins counted per key (client address, user name)
//! in a fixed window; past the limit the key is refused until the window ends.
//!
//! Memory is bounded: at most `capacity` keys are tracked; when full, expired windows are
//! dropped first, then the oldest one. An attacker spraying addresses can therefore only push
//! out old entries, never grow the map.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Limits for failed logins.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LimitConfig {
    /// Failures allowed per client address within a window.
    pub per_client: u32,
    /// Failures allowed per user name within a window (higher, so one noisy client cannot
    /// easily lock a user out).
    pub per_user: u32,
    /// The window.
    pub window: Duration,
    /// Most keys tracked.
    pub capacity: usize,
}

impl Default for LimitConfig {
    fn default() -> Self {
        LimitConfig {
            per_client: 10,
            per_user: 50,
            window: Duration::from_secs(60),
            capacity: 10_000,
        }
    }
}

#[derive(Clone, Copy)]
struct Window {
    start: Instant,
    failures: u32,
}

/// Counts failures per key.
pub struct FailureLimiter {
    window: Duration,
    capacity: usize,
    map: Mutex<HashMap<String, Window>>,
}

impl FailureLimiter {
    /// A limiter with `window` and at most `capacity` keys.
    pub fn new(window: Duration, capacity: usize) -> FailureLimiter {
        FailureLimiter {
            window,
            capacity: capacity.max(1),
            map: Mutex::new(HashMap::new()),
        }
    }

    /// When `key` has `limit` or more failures in its current window: how long until it may
    /// try again.
    pub fn blocked(&self, key: &str, limit: u32) -> Option<Duration> {
        let map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        let w = map.get(key)?;
        let age = w.start.elapsed();
        (age < self.window && w.failures >= limit).then(|| self.window - age)
    }

    /// Counts one failure for `key`.
    pub fn fail(&self, key: &str) {
        let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        let window = self.window;
        if let Some(w) = map.get_mut(key) {
            if w.start.elapsed() >= window {
                *w = Window {
                    start: Instant::now(),
                    failures: 0,
                };
            }
            w.failures = w.failures.saturating_add(1);
            return;
        }
        if map.len() >= self.capacity {
            map.retain(|_, w| w.start.elapsed() < window);
        }
        if map.len() >= self.capacity {
            if let Some(oldest) = map
                .iter()
                .min_by_key(|(_, w)| w.start)
                .map(|(k, _)| k.clone())
            {
                map.remove(&oldest);
            }
        }
        map.insert(
            key.to_string(),
            Window {
                start: Instant::now(),
                failures: 1,
            },
        );
    }

    /// Number of keys tracked.
    pub fn len(&self) -> usize {
        self.map
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Whether nothing is tracked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_after_the_limit_until_the_window_ends() {
        let l = FailureLimiter::new(Duration::from_secs(60), 100);
        for _ in 0..3 {
            assert_eq!(l.blocked("ip:1", 3), None);
            l.fail("ip:1");
        }
        let retry = l.blocked("ip:1", 3).expect("blocked after 3 failures");
        assert!(retry <= Duration::from_secs(60) && retry > Duration::from_secs(50));
        assert_eq!(l.blocked("ip:2", 3), None, "other keys are unaffected");
        assert_eq!(l.blocked("ip:1", 4), None, "a higher limit is not reached");
    }

    #[test]
    fn an_expired_window_starts_over() {
        let l = FailureLimiter::new(Duration::ZERO, 100);
        for _ in 0..5 {
            l.fail("k");
        }
        assert_eq!(l.blocked("k", 1), None);
    }

    #[test]
    fn memory_is_bounded() {
        let l = FailureLimiter::new(Duration::from_secs(60), 10);
        for i in 0..1000 {
            l.fail(&format!("ip:{i}"));
        }
        assert_eq!(l.len(), 10);
        assert!(l.blocked("ip:999", 1).is_some(), "the newest key is kept");
    }
}
