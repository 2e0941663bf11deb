//! bcrypt verification off the async runtime, with a short-lived cache of recent successes.
//!
//! A bcrypt check at cost 10 takes tens of milliseconds of CPU. Clients send basic credentials
//! with every request (a push is dozens of requests), so verifying each one would make auth the
//! bottleneck and block the runtime's worker threads. So:
//! * every bcrypt runs in `spawn_blocking`, at most [`PasswordVerifier`]'s permit count at once
//!   (a flood of wrong passwords queues instead of taking every thread);
//! * a success is remembered for a short TTL under the SHA-256 of (user, password, stored hash):
//!   the cache holds no password, and changing the password (a new hash) misses it;
//! * an unknown user still costs one bcrypt (against a fixed hash), so response time does not
//!   tell which user names exist;
//! * concurrent checks of the same (user, password, hash) share one bcrypt run
//!   ([`PasswordVerifier::check_admitted`]): a client that opens many connections at once with
//!   the same credentials costs one check, and only the call that runs bcrypt asks the caller's
//!   `admit` (the failed-login limiter) for a slot.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use sha2::{Digest as _, Sha256};
use tokio::sync::{OnceCell, Semaphore};

/// How long a verified password is remembered by default.
pub const DEFAULT_TTL: Duration = Duration::from_secs(60);
/// How many verified (user, password) pairs are remembered at most by default.
pub const DEFAULT_CAPACITY: usize = 1024;

/// A valid bcrypt hash (cost 10) of a random string nobody knows, checked for unknown users.
const DUMMY_HASH: &str = "$2y$10$12jjl9YdpfbNkT4sMj7x6.TOJpA1v94u17aQci06.8i98W5hHYx3y";

/// The outcome of a password check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Checked {
    /// Correct; bcrypt ran.
    Verified,
    /// Correct; remembered from a recent bcrypt run.
    Cached,
    /// Wrong password or unknown user.
    Rejected,
}

impl Checked {
    /// Whether the password was right.
    pub fn ok(self) -> bool {
        self != Checked::Rejected
    }
}

/// Verifies passwords against bcrypt hashes.
pub struct PasswordVerifier {
    ttl: Duration,
    capacity: usize,
    cache: Mutex<HashMap<[u8; 32], Instant>>,
    flights: Mutex<HashMap<[u8; 32], Flight>>,
    permits: Arc<Semaphore>,
}

/// One bcrypt run that concurrent identical checks wait for.
type Flight = Arc<OnceCell<bool>>;

impl Default for PasswordVerifier {
    fn default() -> Self {
        PasswordVerifier::new(DEFAULT_TTL, DEFAULT_CAPACITY)
    }
}

impl PasswordVerifier {
    /// A verifier remembering up to `capacity` successes for `ttl` each.
    pub fn new(ttl: Duration, capacity: usize) -> PasswordVerifier {
        let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
        PasswordVerifier {
            ttl,
            capacity: capacity.max(1),
            cache: Mutex::new(HashMap::new()),
            flights: Mutex::new(HashMap::new()),
            permits: Arc::new(Semaphore::new(cpus * 2)),
        }
    }

    /// Checks `password` for `user` whose stored hash is `hash` (`None`: unknown user).
    pub async fn check(&self, user: &str, password: &str, hash: Option<&str>) -> Checked {
        match self
            .check_admitted(user, password, hash, || Ok::<_, ()>(()))
            .await
        {
            Ok((checked, _)) => checked,
            Err(()) => Checked::Rejected,
        }
    }

    /// [`PasswordVerifier::check`], asking `admit` before this call runs bcrypt itself. A
    /// remembered success, or a result shared from an identical check already running, needs no
    /// admission (the ticket is `None` then). When `admit` refuses, its error is returned and
    /// nothing runs.
    pub async fn check_admitted<T, E>(
        &self,
        user: &str,
        password: &str,
        hash: Option<&str>,
        admit: impl FnOnce() -> Result<T, E>,
    ) -> Result<(Checked, Option<T>), E> {
        let known = hash.is_some();
        let hash = hash.unwrap_or(DUMMY_HASH);
        let key = cache_key(user, password, hash);
        if known && self.cached(&key) {
            return Ok((Checked::Cached, None));
        }
        let flight = self.join(key);
        let mut ticket = None;
        let ran = flight
            .get_or_try_init(|| async {
                ticket = Some(admit()?);
                Ok(self.bcrypt(password, hash).await)
            })
            .await
            .copied();
        let ok = matches!(ran, Ok(true)) && known;
        if ok && ticket.is_some() {
            // Before leaving the flight: a check arriving next finds the cache, not bcrypt.
            self.remember(key);
        }
        self.leave(key, flight);
        ran?;
        let checked = match (ok, ticket.is_some()) {
            (false, _) => Checked::Rejected,
            (true, true) => Checked::Verified,
            (true, false) => Checked::Cached,
        };
        Ok((checked, ticket))
    }

    fn join(&self, key: [u8; 32]) -> Flight {
        let mut flights = self.flights.lock().unwrap_or_else(PoisonError::into_inner);
        Arc::clone(flights.entry(key).or_default())
    }

    /// Drops this caller's handle; the last one out removes the flight (under the lock, so no
    /// handle is cloned in between).
    fn leave(&self, key: [u8; 32], flight: Flight) {
        let mut flights = self.flights.lock().unwrap_or_else(PoisonError::into_inner);
        drop(flight);
        if flights.get(&key).is_some_and(|f| Arc::strong_count(f) == 1) {
            flights.remove(&key);
        }
    }

    async fn bcrypt(&self, password: &str, hash: &str) -> bool {
        let Ok(_permit) = self.permits.acquire().await else {
            return false;
        };
        let (password, hash) = (password.to_string(), hash.to_string());
        tokio::task::spawn_blocking(move || bcrypt::verify(password, &hash).unwrap_or(false))
            .await
            .unwrap_or(false)
    }

    fn cached(&self, key: &[u8; 32]) -> bool {
        let cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        cache.get(key).is_some_and(|t| t.elapsed() < self.ttl)
    }

    fn remember(&self, key: [u8; 32]) {
        let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        if cache.len() >= self.capacity {
            cache.retain(|_, t| t.elapsed() < self.ttl);
        }
        if cache.len() >= self.capacity {
            if let Some(oldest) = cache.iter().min_by_key(|(_, t)| **t).map(|(k, _)| *k) {
                cache.remove(&oldest);
            }
        }
        cache.insert(key, Instant::now());
    }

    /// Records a success checked elsewhere (robot secrets, whose check is cheap) so that only
    /// the first use within the TTL counts as a login; returns whether it was remembered.
    pub fn note_success(&self, user: &str, secret: &str, salt: &str) -> bool {
        let key = cache_key(user, secret, salt);
        let seen = self.cached(&key);
        if !seen {
            self.remember(key);
        }
        seen
    }

    /// Number of remembered successes (for tests and metrics).
    pub fn cached_len(&self) -> usize {
        self.cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

fn cache_key(user: &str, password: &str, hash: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    for part in [user, password, hash] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part.as_bytes());
    }
    h.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hash(pw: &str) -> String {
        bcrypt::hash(pw, 4).unwrap()
    }

    #[tokio::test]
    async fn verifies_then_caches() {
        let v = PasswordVerifier::default();
        let h = hash("s3cret");
        assert_eq!(
            v.check("alice", "s3cret", Some(&h)).await,
            Checked::Verified
        );
        assert_eq!(v.check("alice", "s3cret", Some(&h)).await, Checked::Cached);
        assert_eq!(v.check("alice", "wrong", Some(&h)).await, Checked::Rejected);
        assert_eq!(v.check("alice", "s3cret", None).await, Checked::Rejected);
        // a new hash for the same password (password changed and changed back) misses the cache
        let h2 = hash("s3cret");
        assert_eq!(
            v.check("alice", "s3cret", Some(&h2)).await,
            Checked::Verified
        );
        assert_eq!(v.cached_len(), 2);
    }

    #[tokio::test]
    async fn ttl_expires_and_capacity_bounds() {
        let v = PasswordVerifier::new(Duration::ZERO, 2);
        let h = hash("pw");
        assert_eq!(v.check("a", "pw", Some(&h)).await, Checked::Verified);
        assert_eq!(
            v.check("a", "pw", Some(&h)).await,
            Checked::Verified,
            "TTL 0"
        );
        let v = PasswordVerifier::new(Duration::from_secs(60), 2);
        for u in ["a", "b", "c", "d"] {
            v.check(u, "pw", Some(&h)).await;
        }
        assert_eq!(v.cached_len(), 2);
        assert_eq!(v.check("d", "pw", Some(&h)).await, Checked::Cached);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_identical_checks_share_one_admission() {
        let v = Arc::new(PasswordVerifier::default());
        let h = Arc::new(hash("pw"));
        let admitted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let barrier = Arc::new(tokio::sync::Barrier::new(20));
        let mut tasks = Vec::new();
        for _ in 0..20 {
            let (v, h, a, b) = (v.clone(), h.clone(), admitted.clone(), barrier.clone());
            tasks.push(tokio::spawn(async move {
                b.wait().await;
                let admit = || {
                    a.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    Ok::<_, ()>(())
                };
                v.check_admitted("a", "pw", Some(&h), admit).await
            }));
        }
        for t in tasks {
            let (checked, _) = t.await.unwrap().unwrap();
            assert!(checked.ok());
        }
        // Calls that arrive after the first run finished hit the cache; none runs twice.
        assert_eq!(admitted.load(std::sync::atomic::Ordering::SeqCst), 1);
        assert!(
            v.flights.lock().unwrap().is_empty(),
            "flights are cleaned up"
        );
    }

    #[tokio::test]
    async fn a_refused_admission_runs_nothing() {
        let v = PasswordVerifier::default();
        let h = hash("pw");
        let r = v
            .check_admitted("a", "pw", Some(&h), || Err::<(), _>("limited"))
            .await;
        assert_eq!(r.unwrap_err(), "limited");
        assert_eq!(v.cached_len(), 0);
        let (checked, ticket) = v
            .check_admitted("a", "wrong", None, || Ok::<_, ()>(7))
            .await
            .unwrap();
        assert_eq!((checked, ticket), (Checked::Rejected, Some(7)));
    }

    #[test]
    fn dummy_hash_is_valid_bcrypt() {
        assert!(matches!(bcrypt::verify("anything", DUMMY_HASH), Ok(false)));
    }

    #[test]
    fn cache_keys_are_unambiguous() {
        assert_ne!(cache_key("ab", "c", "h"), cache_key("a", "bc", "h"));
    }
}
