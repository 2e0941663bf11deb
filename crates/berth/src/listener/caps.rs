//! Caps on open connections (`http.limits.connectionsperclient`, `http.limits.maxconnections`).
//!
//! Every accepted connection asks [`Admission::admit`] for a [`Permit`] before anything is read
//! from it; a connection past a cap is closed at once. The per-client cap counts connections per
//! client address (IPv6 clients per /64 network, since one host may hold a whole /64); peers in
//! `http.trustedproxies` are exempt from it (behind nginx every connection comes from nginx) and
//! count only towards the total. The total bounds the descriptors connections can take, so that
//! storage, the database and the listener itself always find one.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use berth_api::IpNet;
use metrics::Gauge;

/// Descriptors kept for everything but client connections (database files and pool, listening
/// sockets, certificate reloads, log files) when the total cap is derived from `RLIMIT_NOFILE`.
const RESERVED_FDS: u64 = 256;
/// Descriptors one connection may hold: its socket plus a blob file it streams or appends to.
const FDS_PER_CONNECTION: u64 = 2;
/// At most one "connection refused" warning per this interval (the rest are counted in it).
const LOG_EVERY: Duration = Duration::from_secs(10);

/// The caps of one listener.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnLimits {
    /// Open connections per client address (IPv6: per /64); 0 is unlimited.
    pub per_client: u32,
    /// Open connections in all; 0 is unlimited.
    pub total: u32,
    /// Peers exempt from `per_client`.
    pub trusted: Vec<IpNet>,
}

impl ConnLimits {
    /// No caps.
    #[cfg(test)]
    pub const NONE: ConnLimits = ConnLimits {
        per_client: 0,
        total: 0,
        trusted: Vec::new(),
    };
}

/// Why a connection was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    /// Its address already holds `per_client` connections.
    PerClient,
    /// The listener already holds `total` connections.
    Total,
}

impl Refused {
    fn label(self) -> &'static str {
        match self {
            Refused::PerClient => "per_client",
            Refused::Total => "total",
        }
    }

    fn key(self) -> &'static str {
        match self {
            Refused::PerClient => "http.limits.connectionsperclient",
            Refused::Total => "http.limits.maxconnections",
        }
    }
}

/// Counts the open connections of one listener.
#[derive(Clone)]
pub struct Admission {
    inner: Arc<Inner>,
}

struct Inner {
    name: &'static str,
    limits: ConnLimits,
    state: Mutex<State>,
    open: Gauge,
    started: Instant,
    /// Milliseconds after `started` of the last refusal warning.
    last_warn_ms: AtomicU64,
    /// Refusals since the last warning.
    unlogged: AtomicU64,
}

#[derive(Default)]
struct State {
    total: u32,
    per_client: HashMap<IpAddr, u32>,
}

/// One admitted connection; dropping it frees its place.
pub struct Permit {
    inner: Arc<Inner>,
    /// The per-client key, when counted per client.
    client: Option<IpAddr>,
}

impl Admission {
    /// Caps for listener `name`.
    pub fn new(name: &'static str, limits: ConnLimits) -> Admission {
        Admission {
            inner: Arc::new(Inner {
                name,
                limits,
                state: Mutex::new(State::default()),
                open: metrics::gauge!("berth_connections_open", "listener" => name),
                started: Instant::now(),
                last_warn_ms: AtomicU64::new(0),
                unlogged: AtomicU64::new(0),
            }),
        }
    }

    /// A place for a connection from `ip`, or why there is none (logged, rate-limited, and
    /// counted in `berth_connections_refused_total`).
    pub fn admit(&self, ip: IpAddr) -> Result<Permit, Refused> {
        let i = &self.inner;
        let client = (i.limits.per_client > 0 && !i.limits.trusted.iter().any(|n| n.contains(ip)))
            .then(|| client_key(ip));
        let mut s = lock(&i.state);
        if i.limits.total > 0 && s.total >= i.limits.total {
            drop(s);
            return Err(self.refused(Refused::Total, ip));
        }
        if let Some(key) = client {
            let n = s.per_client.entry(key).or_insert(0);
            if *n >= i.limits.per_client {
                drop(s);
                return Err(self.refused(Refused::PerClient, ip));
            }
            *n += 1;
        }
        s.total += 1;
        drop(s);
        i.open.increment(1.0);
        Ok(Permit {
            inner: Arc::clone(i),
            client,
        })
    }

    /// Open connections now.
    #[cfg(test)]
    pub fn open(&self) -> u32 {
        lock(&self.inner.state).total
    }

    fn refused(&self, why: Refused, ip: IpAddr) -> Refused {
        let i = &self.inner;
        metrics::counter!("berth_connections_refused_total", "listener" => i.name, "reason" => why.label())
            .increment(1);
        let now = u64::try_from(i.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let last = i.last_warn_ms.load(Ordering::Relaxed);
        let due = last == 0 || now.saturating_sub(last) >= LOG_EVERY.as_millis() as u64;
        if due
            && i.last_warn_ms
                .compare_exchange(last, now.max(1), Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            let suppressed = i.unlogged.swap(0, Ordering::Relaxed);
            tracing::warn!(
                listener = i.name,
                client = %ip,
                limit = why.key(),
                suppressed,
                "connection refused: over {}; further refusals in the next {}s are only counted \
                 (berth_connections_refused_total)",
                why.key(),
                LOG_EVERY.as_secs()
            );
        } else {
            i.unlogged.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(listener = i.name, client = %ip, limit = why.key(), "connection refused");
        }
        why
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut s = lock(&self.inner.state);
        s.total = s.total.saturating_sub(1);
        if let Some(key) = self.client {
            if let Some(n) = s.per_client.get_mut(&key) {
                *n -= 1;
                if *n == 0 {
                    s.per_client.remove(&key);
                }
            }
        }
        drop(s);
        self.inner.open.decrement(1.0);
    }
}

fn lock(m: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The address connections are counted under: IPv4 as is (also when IPv4-mapped), IPv6 by /64.
fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !u128::from(u64::MAX))),
        },
    }
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit (as Go programs, registry:2 among them, do
/// at startup) and returns the soft limit in force afterwards (`None` if it cannot be read).
pub fn raise_nofile_limit() -> Option<u64> {
    let mut rl = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes only into the struct it is given.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) } != 0 {
        return None;
    }
    if rl.rlim_cur < rl.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: rl.rlim_max,
            rlim_max: rl.rlim_max,
        };
        // SAFETY: setrlimit only reads the struct it is given.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            tracing::debug!(from = rl.rlim_cur, to = rl.rlim_max, "raised RLIMIT_NOFILE");
            return Some(rl.rlim_max);
        }
        tracing::debug!(
            soft = rl.rlim_cur,
            hard = rl.rlim_max,
            "cannot raise RLIMIT_NOFILE"
        );
    }
    Some(rl.rlim_cur)
}

/// The default total cap for a soft descriptor limit of `nofile`: what is left after
/// [`RESERVED_FDS`], two descriptors per connection, at least 64; 0 (unlimited) when the limit
/// is unknown.
pub fn auto_max_connections(nofile: Option<u64>) -> u32 {
    let Some(n) = nofile else { return 0 };
    let by_fds = n.saturating_sub(RESERVED_FDS) / FDS_PER_CONNECTION;
    u32::try_from(by_fds.max(64)).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn per_client_and_total_caps() {
        let a = Admission::new(
            "test",
            ConnLimits {
                per_client: 2,
                total: 5,
                trusted: vec!["10.0.0.0/8".parse().unwrap()],
            },
        );
        let p1 = a.admit(ip("127.0.0.1")).unwrap();
        let _p2 = a.admit(ip("127.0.0.1")).unwrap();
        assert_eq!(a.admit(ip("127.0.0.1")).err(), Some(Refused::PerClient));
        assert_eq!(
            a.admit(ip("::ffff:127.0.0.1")).err(),
            Some(Refused::PerClient),
            "IPv4-mapped addresses count as IPv4"
        );
        let _other = a.admit(ip("127.0.0.2")).unwrap();
        let _proxy1 = a.admit(ip("10.1.2.3")).unwrap();
        let _proxy2 = a.admit(ip("10.1.2.3")).unwrap();
        assert_eq!(a.open(), 5);
        assert_eq!(a.admit(ip("10.1.2.3")).err(), Some(Refused::Total));
        assert_eq!(a.admit(ip("192.0.2.1")).err(), Some(Refused::Total));
        drop(p1);
        assert_eq!(a.open(), 4);
        let _p3 = a.admit(ip("127.0.0.1")).unwrap();
    }

    #[test]
    fn ipv6_clients_count_per_64() {
        let a = Admission::new(
            "test",
            ConnLimits {
                per_client: 1,
                ..ConnLimits::NONE
            },
        );
        let _p = a.admit(ip("2001:db8:1:2::1")).unwrap();
        assert!(a.admit(ip("2001:db8:1:2:ffff::9")).is_err());
        let _q = a.admit(ip("2001:db8:1:3::1")).unwrap();
    }

    #[test]
    fn no_caps_admit_everyone() {
        let a = Admission::new("test", ConnLimits::NONE);
        let permits: Vec<Permit> = (0..1000).map(|_| a.admit(ip("::1")).unwrap()).collect();
        assert_eq!(a.open(), 1000);
        drop(permits);
        assert_eq!(a.open(), 0);
    }

    #[test]
    fn the_default_total_leaves_descriptors_over() {
        assert_eq!(auto_max_connections(Some(1024)), 384);
        assert_eq!(auto_max_connections(Some(100)), 64);
        assert_eq!(auto_max_connections(Some(u64::MAX)), u32::MAX);
        assert_eq!(auto_max_connections(None), 0);
        assert!(raise_nofile_limit().is_some_and(|n| n >= 64));
    }
}
