//! Process measurements: the client's own CPU time (getrusage) and a server's resident set size
//! sampled from `/proc/<pid>/status` on a plain thread, so sampling never waits behind the
//! benchmark's own tasks.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

const SAMPLE_EVERY: Duration = Duration::from_millis(20);

/// CPU time (user + system) this process has used so far.
pub(crate) fn cpu_time() -> Duration {
    // SAFETY: getrusage writes into the zeroed struct we pass and reads nothing else.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: RUSAGE_SELF with a valid pointer to a rusage struct.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    if rc != 0 {
        return Duration::ZERO;
    }
    timeval(usage.ru_utime) + timeval(usage.ru_stime)
}

fn timeval(t: libc::timeval) -> Duration {
    Duration::from_secs(t.tv_sec.max(0) as u64) + Duration::from_micros(t.tv_usec.max(0) as u64)
}

/// `VmRSS` of a process in KiB, if it exists.
pub(crate) fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Samples a process's RSS every 20 ms until stopped; keeps the peak.
pub(crate) struct RssSampler {
    stop: Arc<AtomicBool>,
    peak: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
}

impl RssSampler {
    pub(crate) fn start(pid: u32) -> RssSampler {
        let stop = Arc::new(AtomicBool::new(false));
        let peak = Arc::new(AtomicU64::new(rss_kib(pid).unwrap_or(0)));
        let thread = {
            let (stop, peak) = (Arc::clone(&stop), Arc::clone(&peak));
            std::thread::Builder::new()
                .name("rss-sampler".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        if let Some(kib) = rss_kib(pid) {
                            peak.fetch_max(kib, Ordering::Relaxed);
                        }
                        std::thread::sleep(SAMPLE_EVERY);
                    }
                })
                .ok()
        };
        RssSampler { stop, peak, thread }
    }

    /// Stops sampling; returns the peak in KiB.
    pub(crate) fn finish(mut self, pid: u32) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        if let Some(kib) = rss_kib(pid) {
            self.peak.fetch_max(kib, Ordering::Relaxed);
        }
        self.peak.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_rss_and_cpu_are_visible() {
        let me = std::process::id();
        let rss = rss_kib(me).unwrap_or(0);
        assert!(rss > 0, "VmRSS of this process");
        let s = RssSampler::start(me);
        let mut x = 0u64;
        for i in 0..2_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        assert!(s.finish(me) >= rss.min(1) || x == 0);
        assert!(cpu_time() > Duration::ZERO);
        assert_eq!(rss_kib(u32::MAX), None);
    }
}
