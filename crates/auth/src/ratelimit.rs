//! Slowing down password guessing: failed logins counted per key (client address, user name)
//! in a fixed window; past the limit the key is refused until the window ends.
//!
//! Attempts are reserved before the credentials are checked ([`FailureLimiter::reserve`]) and
//! count against the limit while they run, so a burst of concurrent guesses cannot slip past a
//! check that only sees finished failures.
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
    /// Attempts reserved and not finished yet (they count against the limit).
    in_flight: u32,
}

impl Window {
    fn new() -> Window {
        Window {
            start: Instant::now(),
            failures: 0,
            in_flight: 0,
        }
    }

    /// Failures plus attempts in flight, with an expired window's failures forgotten.
    fn used(&self, window: Duration) -> u32 {
        let failures = if self.start.elapsed() < window {
            self.failures
        } else {
            0
        };
        failures.saturating_add(self.in_flight)
    }

    fn roll(&mut self, window: Duration) {
        if self.start.elapsed() >= window {
            self.start = Instant::now();
            self.failures = 0;
        }
    }
}

/// Counts failures per key.
pub struct FailureLimiter {
    window: Duration,
    capacity: usize,
    map: Mutex<HashMap<String, Window>>,
}

/// Attempts reserved with [`FailureLimiter::reserve`]: one slot on each key until
/// [`Reservation::finish`]. Dropped unfinished (the request was cancelled while its password
/// was being checked) it counts as a failure, so hanging up cannot dodge the limit.
pub struct Reservation<'a> {
    limiter: &'a FailureLimiter,
    keys: Vec<String>,
    finished: bool,
}

impl Reservation<'_> {
    /// Ends the attempt: a failure is counted on every key, a success only frees the slots.
    pub fn finish(mut self, failed: bool) {
        self.finished = true;
        self.limiter.release(&self.keys, failed);
    }
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        if !self.finished {
            self.limiter.release(&self.keys, true);
        }
    }
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

    /// When `key` has `limit` or more failures (and attempts in flight) in its current
    /// window: how long until it may try again.
    pub fn blocked(&self, key: &str, limit: u32) -> Option<Duration> {
        let map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        let w = map.get(key)?;
        self.retry_after(w, limit)
    }

    fn retry_after(&self, w: &Window, limit: u32) -> Option<Duration> {
        (w.used(self.window) >= limit).then(|| {
            let left = self.window.saturating_sub(w.start.elapsed());
            // Blocked by attempts in flight alone: they end within moments.
            left.max(Duration::from_secs(1))
        })
    }

    /// Reserves one attempt on every `(key, limit)` at once, before the credentials are
    /// checked: a key whose failures plus attempts in flight reach its limit refuses, so a
    /// burst of concurrent guesses gets at most `limit` checks per window. Err: how long until
    /// the caller may try again.
    pub fn reserve(&self, keys: &[(&str, u32)]) -> Result<Reservation<'_>, Duration> {
        let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        for (key, limit) in keys {
            if let Some(retry) = map.get(*key).and_then(|w| self.retry_after(w, *limit)) {
                return Err(retry);
            }
        }
        for (key, _) in keys {
            self.make_room(&mut map, key);
            let w = map.entry((*key).to_string()).or_insert_with(Window::new);
            w.roll(self.window);
            w.in_flight = w.in_flight.saturating_add(1);
        }
        Ok(Reservation {
            limiter: self,
            keys: keys.iter().map(|(k, _)| (*k).to_string()).collect(),
            finished: false,
        })
    }

    fn release(&self, keys: &[String], failed: bool) {
        let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        for key in keys {
            if let Some(w) = map.get_mut(key) {
                w.in_flight = w.in_flight.saturating_sub(1);
                if failed {
                    w.roll(self.window);
                    w.failures = w.failures.saturating_add(1);
                }
            } else if failed {
                self.make_room(&mut map, key);
                let mut w = Window::new();
                w.failures = 1;
                map.insert(key.clone(), w);
            }
        }
    }

    /// Counts one failure for `key`.
    pub fn fail(&self, key: &str) {
        self.release(&[key.to_string()], true);
    }

    /// Before inserting `key`: when the map is full, drop expired windows, then the oldest
    /// one with nothing in flight.
    fn make_room(&self, map: &mut HashMap<String, Window>, key: &str) {
        if map.len() < self.capacity || map.contains_key(key) {
            return;
        }
        let window = self.window;
        map.retain(|_, w| w.in_flight > 0 || w.start.elapsed() < window);
        if map.len() < self.capacity {
            return;
        }
        let oldest = map
            .iter()
            .filter(|(_, w)| w.in_flight == 0)
            .min_by_key(|(_, w)| w.start)
            .map(|(k, _)| k.clone());
        if let Some(k) = oldest {
            map.remove(&k);
        }
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

/// How long an address that logged in as a user stays exempt from that user's global limit.
pub const KNOWN_CLIENT_TTL: Duration = Duration::from_secs(24 * 3600);

/// Addresses that recently logged in successfully as a user. While guesses from elsewhere
/// have a user at their global limit, these addresses may still try (within their own
/// per-address limit): an attacker cannot lock a user out of the places they work from.
/// Bounded like the limiter: at most `capacity` pairs, the oldest dropped first.
pub struct KnownClients {
    ttl: Duration,
    capacity: usize,
    map: Mutex<HashMap<(String, String), Instant>>,
}

impl KnownClients {
    /// Remembers up to `capacity` (user, address) pairs for `ttl` each.
    pub fn new(ttl: Duration, capacity: usize) -> KnownClients {
        KnownClients {
            ttl,
            capacity: capacity.max(1),
            map: Mutex::new(HashMap::new()),
        }
    }

    /// Notes a successful login of `user` from `client`.
    pub fn note(&self, user: &str, client: &str) {
        let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        let key = (user.to_string(), client.to_string());
        if map.len() >= self.capacity && !map.contains_key(&key) {
            let ttl = self.ttl;
            map.retain(|_, t| t.elapsed() < ttl);
            if map.len() >= self.capacity {
                if let Some(oldest) = map.iter().min_by_key(|(_, t)| **t).map(|(k, _)| k.clone()) {
                    map.remove(&oldest);
                }
            }
        }
        map.insert(key, Instant::now());
    }

    /// Whether `client` logged in as `user` within the TTL.
    pub fn knows(&self, user: &str, client: &str) -> bool {
        let map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        map.get(&(user.to_string(), client.to_string()))
            .is_some_and(|t| t.elapsed() < self.ttl)
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

    #[test]
    fn attempts_in_flight_count_against_the_limit() {
        let l = FailureLimiter::new(Duration::from_secs(60), 100);
        let held: Vec<_> = (0..3)
            .map(|_| l.reserve(&[("ip:1", 3)]).expect("under the limit"))
            .collect();
        assert!(
            l.reserve(&[("ip:1", 3)]).is_err(),
            "3 in flight fill a limit of 3"
        );
        for r in held {
            r.finish(false);
        }
        assert!(
            l.reserve(&[("ip:1", 3)]).is_ok(),
            "successes free their slots"
        );
    }

    #[test]
    fn a_failed_attempt_keeps_its_slot_for_the_window() {
        let l = FailureLimiter::new(Duration::from_secs(60), 100);
        for _ in 0..2 {
            l.reserve(&[("ip:1", 2), ("user:a", 5)])
                .expect("under the limit")
                .finish(true);
        }
        assert!(l.reserve(&[("ip:1", 2)]).is_err());
        assert!(l.blocked("user:a", 2).is_some(), "both keys counted");
        assert!(l.reserve(&[("ip:2", 2), ("user:a", 5)]).is_ok());
    }

    #[test]
    fn a_dropped_reservation_counts_as_a_failure() {
        let l = FailureLimiter::new(Duration::from_secs(60), 100);
        drop(l.reserve(&[("ip:1", 1)]).expect("free"));
        assert!(l.blocked("ip:1", 1).is_some());
    }

    #[test]
    fn a_refused_reservation_reserves_nothing() {
        let l = FailureLimiter::new(Duration::from_secs(60), 100);
        l.fail("user:a");
        assert!(l.reserve(&[("ip:1", 5), ("user:a", 1)]).is_err());
        assert_eq!(
            l.blocked("ip:1", 1),
            None,
            "the address key was not touched"
        );
    }

    #[test]
    fn known_clients_are_remembered_bounded() {
        let k = KnownClients::new(Duration::from_secs(60), 2);
        k.note("alice", "10.0.0.1");
        assert!(k.knows("alice", "10.0.0.1"));
        assert!(!k.knows("alice", "10.0.0.2"));
        assert!(!k.knows("bob", "10.0.0.1"));
        k.note("bob", "10.0.0.1");
        k.note("carol", "10.0.0.1");
        assert!(!k.knows("alice", "10.0.0.1"), "the oldest went");
        assert!(k.knows("carol", "10.0.0.1"));
        let expired = KnownClients::new(Duration::ZERO, 2);
        expired.note("alice", "10.0.0.1");
        assert!(!expired.knows("alice", "10.0.0.1"));
    }

    #[test]
    fn keys_in_flight_are_not_evicted() {
        let l = FailureLimiter::new(Duration::from_secs(60), 2);
        let r = l.reserve(&[("ip:1", 1)]).expect("free");
        l.fail("ip:2");
        l.fail("ip:3");
        assert!(l.blocked("ip:1", 1).is_some(), "still in flight");
        r.finish(false);
        assert_eq!(l.len(), 2);
    }
}
